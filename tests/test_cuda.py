"""The GPU path: everything the lab computes stays on the device it was given, gives the
CPU's numbers there, and trains as well.

Marked ``cuda``: ``pytest -o addopts= -m cuda`` runs these alone (``benchmarks/gpu.py``
does, on a GPU machine). Without CUDA they skip. ``LAB_CUDA_TEST_DEVICE=cpu`` runs the same
tests on the CPU (``benchmarks/gpu.py --device cpu``): the code paths run, the comparisons
with the CPU hold trivially. Public names only. Neither Panel nor nbval is imported.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections import Counter

import pytest
import torch
from torch.overrides import TorchFunctionMode

import lab
from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.guidance import fkc_sample
from lab.hallucination import end_law, score_samples
from lab.metrics import gap_binned, score_error
from lab.pretrained import gap_path, load_pretrained
from lab.solvers import SOLVERS, dc_ratios, sample, time_grid
from lab.train import TrainConfig, TrainingRun, load, save, train

DEVICE = torch.device(os.environ.get("LAB_CUDA_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA device here"),
]
N = 512                    # points sampled; host work on a tensor this large is per-point work
QUALITY_BOUND = 0.25       # tests/test_train.py's bound on the relative score error
TIMES = (0.05, 0.1, 0.25, 0.5, 0.9)
DETERMINISTIC = [name for name, spec in SOLVERS.items() if spec.order is not None]   # the ODE solvers


class HostWork(TorchFunctionMode):
    """Counts the torch calls that touch a tensor of at least ``size`` elements off
    ``device``: per-point work done elsewhere than where the computation was asked to be.
    Work that does not grow with the steps (drawing the prior, collecting results) is
    allowed; the tests compare the count at k and 2k steps."""

    def __init__(self, device, size: int = N):
        super().__init__()
        self.device, self.size, self.calls = torch.device(device), size, Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        seen = [*args, *kwargs.values(), out]
        seen += [v for a in list(seen) if isinstance(a, (list, tuple)) for v in a]
        if any(isinstance(t, torch.Tensor) and t.device.type != self.device.type and t.numel() >= self.size
               for t in seen):
            self.calls[getattr(func, "__name__", str(func))] += 1
        return out

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def host_work_at(run, steps=(5, 10)):
    """The HostWork counts of ``run(k)`` for each k in ``steps``, and the last result."""
    counts, out = [], None
    for k in steps:
        with HostWork(DEVICE) as w:
            out = run(k)
        counts.append(w)
    return counts, out


def assert_no_work_per_step(counts):
    a, b = counts
    assert a.total == b.total, f"host work grows with the steps: {dict(a.calls)} -> {dict(b.calls)}"


def on_device(t) -> bool:
    """Whether a tensor, or a field, is on the device under test."""
    return t.device.type == DEVICE.type


@pytest.fixture(autouse=True)
def lab_device(monkeypatch):
    """Whatever picks the device by itself picks the one under test."""
    monkeypatch.setenv("LAB_DEVICE", str(DEVICE))
    lab.pick_device.cache_clear()
    yield
    lab.pick_device.cache_clear()


@pytest.fixture(scope="module")
def ring():
    return make_dataset("ring", n=20_000, seed=0)


@pytest.fixture(scope="module")
def net():
    """The shipped ring model on the device under test."""
    return load_pretrained("ring", device=DEVICE)


def test_host_work_is_seen():
    """The watcher itself: work on the CPU, watched for a meta device, is counted."""
    with HostWork("meta", size=100) as w:
        (torch.ones(1000) * 2).sum()
        torch.ones(10) * 2                       # too small to count
    assert w.calls == Counter(ones=1, mul=1, sum=1), w.calls


@pytest.mark.parametrize("graph", [True, False], ids=["graph", "eager"])
def test_a_model_trained_on_the_device_meets_the_cpus_quality_bound(ring, graph):
    """The bound tests/test_train.py holds the CPU's model to, at the same settings (the
    random streams differ between devices: no bit equality), captured and not."""
    if not graph and DEVICE.type != "cuda":
        pytest.skip("the eager/captured choice exists on CUDA only")
    field, history = train(ring, TrainConfig(steps=2000, device=str(DEVICE), cuda_graph=graph))
    summary = history["summary"]
    assert summary["device"].startswith(DEVICE.type) and on_device(field)
    if DEVICE.type == "cuda":
        assert summary["cuda_graph"].startswith("captured") if graph else summary["cuda_graph"] == "off"
    errors = score_error(field, MixtureField(dataset_mixture("ring"), "vp"), TIMES, n=4000, seed=1)
    assert all(e < QUALITY_BOUND for e in errors.values()), errors


@pytest.mark.skipif(DEVICE.type != "cuda", reason="CUDA graphs exist on CUDA only")
def test_captured_steps_follow_the_eager_ones(ring):
    """A graph replays the eager step's arithmetic on the same random draws: the loss curves
    agree (to round-off, which Adam's steps carry along), for every kind of step the lab
    trains: plain, class-conditional, with the vector and the scalar Fokker-Planck penalty."""
    labels = (ring[:, 0] > 0).long()
    configs = {"plain": TrainConfig(steps=300, log_every=25),
               "classes": TrainConfig(steps=300, log_every=25, n_classes=2),
               "fp score": TrainConfig(steps=300, log_every=25, schedule="ou", fp_weight=0.1),
               "fp log-density": TrainConfig(steps=300, log_every=25, schedule="ou", model="log_density_mlp",
                                             weighting="score", t_sampling="beta", fp_weight=1.0,
                                             fp_form="log_density", lr=1e-3, ema=0.0)}
    for name, cfg in configs.items():
        runs = {}
        for graph in (True, False):
            c = dataclasses.replace(cfg, device="cuda", cuda_graph=graph)
            _, runs[graph] = train(ring, c, labels=labels if c.n_classes else None)
        assert runs[True]["summary"]["cuda_graph"].startswith("captured"), (name, runs[True]["summary"])
        torch.testing.assert_close(torch.tensor(runs[True]["loss"]), torch.tensor(runs[False]["loss"]),
                                   rtol=2e-2, atol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.skipif(DEVICE.type != "cuda", reason="host syncs exist on CUDA only")
@pytest.mark.parametrize("graph", [True, False], ids=["graph", "eager"])
def test_training_steps_never_wait_for_the_gpu(ring, graph):
    """A step launches work and goes on: no host sync inside it (the loss is read back only
    when it is logged), so the syncs of a run do not grow with its steps."""
    counts = []
    for steps in (40, 80):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(ring, TrainConfig(steps=steps, log_every=1000, device="cuda", cuda_graph=graph))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[0] == counts[1] and counts[0] > 0, counts   # > 0: the final read of the loss is seen


def test_checkpoints_move_between_devices(tmp_path, ring):
    field, _ = train(ring[:5000], TrainConfig(steps=200, device=str(DEVICE)))
    q = torch.randn(16, 2, device=DEVICE)
    assert on_device(field.eps(q, 0.5))
    back = load(save(field, tmp_path / "m.pt"), device=DEVICE)
    torch.testing.assert_close(back.eps(q, 0.5), field.eps(q, 0.5))
    cpu = load(tmp_path / "m.pt", device="cpu")
    torch.testing.assert_close(cpu.eps(q.cpu(), 0.5), field.eps(q, 0.5).cpu(), rtol=1e-4, atol=1e-5)


def test_a_training_run_stays_on_the_device(ring):
    run = TrainingRun(ring, TrainConfig(steps=300, device=str(DEVICE)), preview_every=1,
                      preview=lambda f: sample(f, n=N, steps=5, seed=0).samples).start()
    run.join(timeout=300)
    assert run.done and not run.error, run.error
    assert on_device(run.result) and on_device(run.preview)
    assert run.step == 300 and len(run.losses) == 6


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_solver_samples_on_the_device(solver, net):
    counts, traj = host_work_at(lambda k: sample(net, n=N, solver=solver, steps=k, seed=0))
    assert all(on_device(t) for t in (traj.samples, traj.xs, traj.x0_preds))
    assert torch.isfinite(traj.samples).all()
    assert_no_work_per_step(counts)


@pytest.mark.parametrize("solver", DETERMINISTIC)
def test_deterministic_solvers_give_the_cpus_samples(solver, net):
    """The same weights and the same x_T: the device's samples are the CPU's to float32
    round-off (dc_solver with the CPU's ratios: its search compares near-equal errors)."""
    cpu_net = load_pretrained("ring", device="cpu")
    x_T = cpu_net.schedule.prior_sample(N, generator=torch.Generator().manual_seed(3))
    options = {}
    if solver == "dc_solver":
        options["ratios"] = dc_ratios(cpu_net, time_grid(cpu_net.schedule, 10))
    ref = sample(cpu_net, x_T=x_T, solver=solver, steps=10, **options).samples
    got = sample(net, x_T=x_T.to(DEVICE), solver=solver, steps=10, **options).samples
    tol = 1e-3 if solver == "ode_adaptive" else 2e-4     # adaptive: its accepted steps may differ
    torch.testing.assert_close(got.cpu(), ref, rtol=tol, atol=tol)


def test_fkc_runs_on_the_device(net):
    other = load_pretrained("circles", device=DEVICE)
    counts, res = host_work_at(lambda k: fkc_sample("product", n=N, steps=k * 4, a=net, b=other))
    assert on_device(res.samples) and on_device(res.log_weights) and torch.isfinite(res.samples).all()
    assert_no_work_per_step(counts)


def test_the_hallucination_protocol_runs_on_the_device():
    grid = load_pretrained("gaussian_grid", device=DEVICE)
    counts, scored = host_work_at(lambda k: score_samples(grid, n=N, chunk=N, steps=10 * k), steps=(2, 4))
    assert scored.samples.shape == (N, 2) and torch.isfinite(scored.scores).all()
    assert_no_work_per_step(counts)


def test_the_gap_protocol_runs_on_the_device():
    field = load(gap_path(0.0, "paper"), device=DEVICE)
    law = end_law(dataset_mixture("gap_circles"), field.schedule)
    counts, r = host_work_at(lambda k: gap_binned(field, law, n=N, chunk=N, steps=10 * k), steps=(2, 4))
    assert all(v >= 0 for v in (r["ode_truth"], r["sde_truth"], r["ode_sde"], r["floor"]))
    assert_no_work_per_step(counts)
