"""The lessons' form (issue 7): linked to each other, citing their papers, loading the
plotting libraries offline, committed without outputs but for the stored answers of their
checks. Running them is nbval's job (the test command collects notebooks/ with
--nbval-lax, in the quick setting)."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = ["00_start_here", "01_score_matching", "02_solvers", "03_curl", "04_hallucinations",
           "05_ode_vs_sde", "06_guidance", "07_flows"]
PAPERS = {   # the papers for each lesson (see shared PAPERS.md)
    "01_score_matching": ["Vincent 2011", "Ho et al. 2020", "Song et al. 2021"],
    "02_solvers": ["Song et al. 2021", "Song, Meng & Ermon 2021", "Lu et al. 2022", "Zhang & Chen 2022"],
    "03_curl": ["Vuong et al. 2025"],
    "04_hallucinations": ["Aithal et al. 2024"],
    "05_ode_vs_sde": ["Deveney et al."],
    "06_guidance": ["Skreta et al. 2025", "Lu et al. 2022b", "Ho & Salimans 2022"],
    "07_flows": ["Albergo, Boffi & Vanden-Eijnden 2023", "Lipman et al. 2023", "Liu et al. 2023", "Tong et al. 2024"],
}


def cells(name):
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def links(cell):
    return re.findall(r"\]\(([^)]+\.ipynb)\)", source(cell))


def test_the_eight_lessons_are_there():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == LESSONS


@pytest.mark.parametrize("i", range(len(LESSONS)))
def test_each_lesson_links_to_its_neighbours_at_top_and_bottom(i):
    nb = cells(LESSONS[i])
    want = {f"{LESSONS[j]}.ipynb" for j in (i - 1, i + 1) if 0 <= j < len(LESSONS)}
    if i > 0:
        want.add("00_start_here.ipynb")
    for cell in (nb[0], nb[-1]):
        assert cell["cell_type"] == "markdown" and set(links(cell)) == want


def test_the_start_page_links_every_lesson():
    linked = {link for cell in cells("00_start_here") for link in links(cell)}
    assert linked >= {f"{name}.ipynb" for name in LESSONS[1:]}


@pytest.mark.parametrize("name", PAPERS)
def test_each_lesson_cites_its_papers(name):
    text = " ".join(" ".join(source(c).split()) for c in cells(name) if c["cell_type"] == "markdown")
    for paper in PAPERS[name]:
        assert paper in text, f"{name} does not cite {paper}"


@pytest.mark.parametrize("name", LESSONS)
def test_first_code_cell_loads_the_plotting_libraries_offline(name):
    first = next(source(c) for c in cells(name) if c["cell_type"] == "code")
    assert "notebook()" in first and "from lab.app import notebook" in first
    assert 'os.environ.get("LAB_QUICK")' in first


@pytest.mark.parametrize("name", LESSONS)
def test_committed_clean_with_checks_that_can_fail(name):
    """No cell keeps an output or an execution count. nbval compares a marked cell's output
    only with a stored one, so with none stored a check cell must fail by itself: each
    asserts the claims it prints."""
    checks = 0
    for cell in cells(name):
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None, source(cell)[:200]
        if source(cell).startswith("# NBVAL_CHECK_OUTPUT"):
            checks += 1
            assert re.search(r"^assert all\(", source(cell), re.M), source(cell)
    assert checks >= 1


@pytest.mark.parametrize("name", LESSONS)
def test_cells_are_short(name):
    """No wall of code: every code cell fits on a laptop screen (20 lines)."""
    for cell in cells(name):
        if cell["cell_type"] == "code":
            assert len(source(cell).splitlines()) <= 20, source(cell)[:300]


def test_the_strip_script_clears_every_output(tmp_path):
    import subprocess
    import sys

    script = NOTEBOOKS.parent / "scripts" / "strip_notebooks.py"
    stream = {"name": "stdout", "output_type": "stream", "text": ["True True\n"]}
    shown = {"output_type": "display_data", "data": {"text/plain": ["<plot>"]}, "metadata": {}}
    nb = {"cells": [{"cell_type": "code", "source": ["# NBVAL_CHECK_OUTPUT\n", "print(a, b)"], "metadata": {},
                     "outputs": [stream, shown], "execution_count": 7},
                    {"cell_type": "markdown", "source": ["text"], "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps(nb))
    subprocess.run([sys.executable, str(script), str(path)], check=True, capture_output=True)
    check, text = json.loads(path.read_text())["cells"]
    assert check["outputs"] == [] and check["execution_count"] is None and text["source"] == ["text"]
