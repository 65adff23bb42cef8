"""Strip the lessons' outputs and execution counts before committing.

The notebooks are committed clean; their check cells (marked ``# NBVAL_CHECK_OUTPUT``)
assert what they print, so nbval fails them without a stored answer to compare.
Usage: ``python scripts/strip_notebooks.py [notebooks/*.ipynb]``.
"""
import json
import sys
from pathlib import Path


def strip(path: Path) -> bool:
    """Strip one notebook in place; True if it changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
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
