"""benchmarks/gpu.py, the GPU machine's one command, run here at small scale on the CPU
(--device cpu): every part runs end to end and writes what it found, a cut-off gap run
resumes from its state, and a retraining is measured against the shipped model."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def run(out: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_every_part_runs_and_reports(tmp_path):
    res = run(tmp_path / "all", "--floor-target", "0", "--gap-budget", "600", "--budget", "1200")   # 0: retrain all
    assert "errors" not in res, res.get("errors")
    assert res["tests"]["returncode"] == 0 and " passed" in res["tests"]["summary"], res["tests"]
    assert "failed" not in res["tests"]["summary"]
    speed = res["speed"]
    for column in ("device", "cpu"):
        rows = speed[column]
        assert rows["train steps/s, batch 1k"][0] > 0, rows
        assert rows["sample 4,000 points, 20 NFE (s)"][0] > 0, rows
        assert any(k.startswith("gap protocol") for k in rows) and "error" not in rows, rows
    assert "extrapolated" in speed["cpu"]["gap protocol, 600 samples (s)"][1]
    assert res["grid"]["steps_done"] > 0 and res["grid"]["row"][0] > 0
    for w in ("w0", "w1"):
        g = res["gap"][w]
        assert g["steps_done"] == g["steps"] and g["floor"] > 0 and g["ode_sde"] >= 0
    shipped, trained = res["pretrain"]["shipped"], res["pretrain"]["trained"]
    assert set(shipped) == set(trained) == {"ring"}
    assert all(r > 0 for r in shipped["ring"]) and len(trained["ring"][0]) == 3
    report = (tmp_path / "all" / "report.md").read_text()
    for heading in ("## CUDA tests on cpu", "## Speed: cpu beside the CPU", "## The grid model's paper recipe",
                    "## Deveney et al.'s network", "## The data-set models against their noise floor"):
        assert heading in report
    with tarfile.open(tmp_path / "all" / "gpu-results.tar.gz") as tar:
        names = tar.getnames()
    assert {"results.json", "report.md", "work/tests.txt"} <= set(names)
    assert any(n.startswith("work/pretrain-state/gap-") and n.endswith(".state.pt") for n in names)
    assert any(n.startswith("work/models/gap-") for n in names)


@pytest.mark.slow
def test_a_cut_off_gap_run_resumes_from_its_state(tmp_path):
    first = run(tmp_path / "first", "--part", "gap", "--gap-budget", "0")   # stops at its first report
    done = first["gap"]["w0"]["steps_done"]
    assert 0 < done < first["gap"]["w0"]["steps"] and first["gap"]["w0"]["resumed_from"] == 0
    with tarfile.open(tmp_path / "first" / "gpu-results.tar.gz") as tar:    # as after a device run
        tar.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    states = tmp_path / "unpacked" / "work" / "pretrain-state"
    second = run(tmp_path / "second", "--part", "gap", "--state-dir", str(states), "--gap-budget", "600")
    for w in ("w0", "w1"):
        assert second["gap"][w]["resumed_from"] == first["gap"][w]["steps_done"]
        assert second["gap"][w]["steps_done"] == second["gap"][w]["steps"]


def test_the_script_refuses_what_it_cannot_do(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--part", "speed,nonsense",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown part(s) nonsense" in r.stderr
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda:7", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cuda" in r.stderr.lower()
