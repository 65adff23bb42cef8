"""The command line, run as a user would."""
import json
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**__import__("os").environ, "LAB_DEVICE": "cpu"})


def test_train_then_info(tmp_path):
    out = tmp_path / "m.pt"
    r = run("train", "--dataset", "two_moons", "--steps", "60", "--n", "2000",
            "--batch-size", "128", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"saved the model to {out}" in r.stdout
    assert "step" in r.stderr  # the tqdm progress bar
    r = run("info", str(out))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["config"]["steps"] == 60 and info["summary"]["steps_done"] == 60
    assert info["meta"] == {"dataset": "two_moons"} and info["schedule"] == "vp"


def test_train_from_csv_default_path(tmp_path):
    csv = tmp_path / "pts.csv"
    csv.write_text("x,y\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(50)))
    r = run("train", "--data", str(csv), "--steps", "3", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "pts-vp-score_mlp.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "nope"], "unknown data set"),
    (["train", "--steps", "0"], "steps"),
    (["info", "missing.pt"], "no such checkpoint"),
])
def test_errors_are_one_clear_line(args, message, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
