"""The command line, run as a user would."""
import json
import os
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300,
                          env={**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})


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


def test_sample_exact_field_to_csv(tmp_path):
    import numpy as np
    import torch
    from lab.data import dataset_mixture
    from lab.metrics import w2

    out = tmp_path / "s.csv"
    r = run("sample", "exact:ring", "--solver", "dpm++2m", "--steps", "25", "--n", "600",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "25 NFE" in r.stdout
    x = np.loadtxt(out, delimiter=",", skiprows=1)
    assert x.shape == (600, 2)
    truth = dataset_mixture("ring").sample(600, generator=torch.Generator().manual_seed(0))
    floor = w2(truth, dataset_mixture("ring").sample(600, generator=torch.Generator().manual_seed(1)))
    assert w2(x, truth) < 1.5 * floor


def test_sample_checkpoint_and_bad_solver(tmp_path):
    model = tmp_path / "m.pt"
    assert run("train", "--dataset", "ring", "--steps", "5", "--n", "500", "--quiet",
               "--out", str(model)).returncode == 0
    r = run("sample", str(model), "--solver", "ddim", "--eta", "0.5", "--steps", "4", "--n", "50",
            "--out", str(tmp_path / "s.csv"))
    assert r.returncode == 0, r.stderr
    r = run("sample", str(model), "--solver", "ode_heun", "--eta", "0.5", "--out", str(tmp_path / "t.csv"))
    assert r.returncode == 2 and "eta" in r.stderr and "Traceback" not in r.stderr
    r = run("sample", "exact:nope")
    assert r.returncode == 2 and "unknown data set" in r.stderr


@pytest.mark.slow
def test_pretrain_the_grid_resumes_from_its_state(tmp_path):
    """The grid's paper-recipe run (width 128, batch 10k) for a few steps, then resumed
    further: the state file carries it on; a recipe other than the shipped one, or other
    steps, writes its model beside its state, never into the lab."""
    out, states = tmp_path / "out", tmp_path / "states"
    args = ("pretrain", "gaussian_grid", "--recipe", "paper", "--out-dir", str(out), "--state-dir", str(states))
    r = run(*args, "--steps", "3")
    assert r.returncode == 0, r.stderr
    assert (states / "gaussian_grid.state.pt").is_file()
    r = run(*args, "--steps", "5", "--resume")
    assert r.returncode == 0, r.stderr
    assert "gaussian_grid: 5 steps" in r.stdout and not (out / "gaussian_grid.pt").exists()
    info = json.loads(run("info", str(states / "gaussian_grid" / "final.pt")).stdout)
    assert info["config"]["hidden"] == 128 and info["config"]["batch_size"] == 10_000
    assert info["config"]["lr"] == 1e-3 and info["config"]["lr_final"] == 1.0   # Adam 1e-3, constant
    assert info["config"]["schedule_args"] == {"beta0": 1.0, "beta1": 200.0, "t_min": 1e-5}
    assert info["summary"]["n_data"] == 100_000 and info["meta"]["recipe"] == "paper"
