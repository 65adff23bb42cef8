"""Tiny pretrained checkpoints, one per data set, so the served lab is useful at once on a
CPU. ``python -m lab pretrain`` rebuilds them (TrainConfig defaults, VP schedule), except
``gaussian_grid``, trained at Aithal et al. 2024's setting (``GRID_CONFIG``: hours on a CPU,
so the run is resumable: ``python -m lab pretrain gaussian_grid --resume``), beside its
undertrained snapshot ``gaussian_grid-2k`` from the same run."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED_DIR", "pretrained_path", "load_pretrained", "pretrain", "GAP_DATASET",
           "GAP_WEIGHTS", "gap_path", "pretrain_gap", "GRID_CONFIG", "GRID_POINTS", "GRID_SCHEDULE",
           "GRID_SNAPSHOTS", "UNDERTRAINED", "STATE_DIR"]

PRETRAINED_DIR = Path(__file__).resolve().parent
PRETRAIN_POINTS = 20_000   # points drawn from each data set for its checkpoint
GAP_DATASET = "circles"    # the ODE-SDE gap page's data set (Deveney et al. use circles)
GAP_WEIGHTS = (0.0, 0.1, 1.0)  # Fokker-Planck weights with a pretrained OU model each
STATE_DIR = Path("runs") / "pretrain"   # resumable states and snapshots of long runs (cwd-relative)

# Aithal et al. 2024's 2-D setting (locuslab/diffusion-model-hallucination): DDPM, T = 1000,
# betas linear 0.001..0.2, i.e. VP with beta(t) = 1..200 on t in [1e-5, 1]; 100k points;
# batch 10k; Adam 1e-3 constant, no clipping; times uniform (train() skips those past
# lambda = -10, where x_t holds no trace of the data); 100k steps. One departure, measured in
# benchmarks/hallucination.py --curve: an EMA of the weights (0.999) is what we ship.
GRID_SCHEDULE = dict(beta0=1.0, beta1=200.0, t_min=1e-5)
GRID_POINTS = 100_000
GRID_SNAPSHOTS = (2_000, 5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000)
UNDERTRAINED = 2_000     # the gaussian_grid-2k checkpoint: the same run, stopped early


def _grid_config():
    from lab.train import TrainConfig

    return TrainConfig(schedule="vp", schedule_args=GRID_SCHEDULE, hidden=128, depth=3,
                       steps=GRID_SNAPSHOTS[-1], batch_size=10_000, lr=1e-3, warmup=0, lr_final=1.0,
                       t_sampling="uniform", ema=0.999, grad_clip=None, log_every=100, device=None)


def __getattr__(name):   # GRID_CONFIG without importing torch at ``import lab.pretrained``
    if name == "GRID_CONFIG":
        return _grid_config()
    raise AttributeError(name)


def pretrained_path(dataset: str) -> Path:
    return PRETRAINED_DIR / f"{dataset}.pt"


def load_pretrained(dataset: str, device=None):
    """The pretrained NetworkField of ``dataset`` (VP schedule), or None if there is none.
    ``"gaussian_grid-2k"`` is the grid's run stopped at 2,000 steps (undertrained: it blurs
    the modes where the full run interpolates between them)."""
    from lab.train import load

    path = pretrained_path(dataset)
    return load(path, device=device) if path.is_file() else None


def pretrain(datasets=None, steps: int | None = None, out_dir=None, report=print,
             resume: bool = False, state_dir=None) -> list[str]:
    """Train each data set's model and save it as ``<dataset>.pt``: TrainConfig defaults on
    20k points, or, for ``gaussian_grid``, ``GRID_CONFIG`` on 100k points, which also
    writes ``gaussian_grid-2k.pt`` and keeps snapshots (EMA and raw weights) at
    ``GRID_SNAPSHOTS`` in ``state_dir/gaussian_grid/``. Every run writes a resumable state
    to ``state_dir`` every few minutes; ``resume`` continues from it."""
    import dataclasses

    from lab.data import DATASETS, make_dataset
    from lab.train import TrainConfig, save, train

    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    states = Path(state_dir) if state_dir is not None else STATE_DIR
    written = []
    for name in datasets or list(DATASETS):
        if name not in DATASETS:
            raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
        grid = name == "gaussian_grid"
        cfg = _grid_config() if grid else TrainConfig(device="cpu")
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        points = make_dataset(name, GRID_POINTS if grid else PRETRAIN_POINTS, seed=0)
        callback = _snapshots(name, states / name, out, report) if grid else None
        field, history = train(points, cfg, callback=callback, state=states / f"{name}.state.pt",
                               resume=resume)
        summary = history["summary"]
        if summary["stopped"]:
            report(f"{name}: {summary['stopped']}; nothing written (run again with --resume)")
            continue
        path = save(field, os.fspath(out / f"{name}.pt"), meta={"dataset": name})
        report(f"{name}: {summary['steps_done']} steps, loss {summary['final_loss']:.4f}, "
               f"{summary['train_s']:.1f} s on {summary['device']} -> {path}")
        written.append(path)
    return written


def _snapshots(name: str, folder: Path, out: Path, report):
    """A train() callback that saves the EMA and raw fields at GRID_SNAPSHOTS and the
    undertrained checkpoint at UNDERTRAINED steps, and reports progress now and then."""
    from lab.train import save

    def callback(p):
        if p.step in GRID_SNAPSHOTS:
            meta = {"dataset": name, "snapshot_step": p.step}
            save(p.field, os.fspath(folder / f"step-{p.step:06d}.pt"), meta=meta)
            save(p.raw_field, os.fspath(folder / f"step-{p.step:06d}-raw.pt"), meta=meta | {"raw": True})
            if p.step == UNDERTRAINED:
                save(p.field, os.fspath(out / f"{name}-{UNDERTRAINED // 1000}k.pt"), meta=meta)
        if p.step % 1000 == 0:
            report(f"{name}: step {p.step:,} of {p.steps:,}, loss {p.loss:.4f}, "
                   f"{p.samples_per_s:,.0f} samples/s, {p.seconds / 60:.1f} min")
    return callback


def gap_path(weight: float) -> Path:
    return PRETRAINED_DIR / f"gap-{GAP_DATASET}-w{weight:g}.pt"


def pretrain_gap(out_dir=None, report=print) -> list[str]:
    """The OU-schedule models of the gap page, one per Fokker-Planck weight (~1.5 minutes)."""
    from lab.data import make_dataset
    from lab.train import TrainConfig, save, train

    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    written = []
    for w in GAP_WEIGHTS:
        field, history = train(make_dataset(GAP_DATASET, PRETRAIN_POINTS, seed=0),
                               TrainConfig(schedule="ou", fp_weight=w, device="cpu"))
        path = save(field, os.fspath(out / gap_path(w).name), meta={"dataset": GAP_DATASET, "fp_weight": w})
        report(f"gap model w={w:g}: {history['summary']['train_s']:.1f} s -> {path}")
        written.append(path)
    return written
