"""Strip the lessons' outputs before committing, keeping the stored answers of the checks.

nbval (run by the test command with --nbval-lax) compares what a cell marked
``# NBVAL_CHECK_OUTPUT`` prints with the output stored in the notebook, so those cells
keep their printed text; every other cell is saved without outputs or execution count.
Usage: ``python scripts/strip_notebooks.py [notebooks/*.ipynb]``.
"""
import json
import sys
from pathlib import Path

MARK = "# NBVAL_CHECK_OUTPUT"


def strip(path: Path) -> bool:
    """Strip one notebook in place; True if it changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        if "".join(cell["source"]).startswith(MARK):
            kept = [o for o in cell["outputs"] if o.get("output_type") == "stream" and o.get("name") == "stdout"]
            if not kept:
                raise SystemExit(f"{path}: a check cell has no printed answer to keep; run it first")
            printed = "".join("".join(o["text"]) for o in kept)
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": printed.splitlines(True)}]
            cell["execution_count"] = 1
        else:
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(Path(__file__).resolve().parents[1].glob("notebooks/*.ipynb"))
    for p in paths:
        print(f"{p}: {'stripped' if strip(p) else 'already clean'}")
