"""Tiny pretrained checkpoints, one per data set, so the served lab is useful at once on a
CPU. ``python -m lab pretrain`` rebuilds them (TrainConfig defaults, VP schedule)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED_DIR", "pretrained_path", "load_pretrained", "pretrain", "GAP_DATASET",
           "GAP_WEIGHTS", "gap_path", "pretrain_gap"]

PRETRAINED_DIR = Path(__file__).resolve().parent
PRETRAIN_POINTS = 20_000   # points drawn from each data set for its checkpoint
GAP_DATASET = "circles"    # the ODE-SDE gap page's data set (Deveney et al. use circles)
GAP_WEIGHTS = (0.0, 0.1, 1.0)  # Fokker-Planck weights with a pretrained OU model each


def pretrained_path(dataset: str) -> Path:
    return PRETRAINED_DIR / f"{dataset}.pt"


def load_pretrained(dataset: str, device=None):
    """The pretrained NetworkField of ``dataset`` (VP schedule), or None if there is none."""
    from lab.train import load

    path = pretrained_path(dataset)
    return load(path, device=device) if path.is_file() else None


def pretrain(datasets=None, steps: int | None = None, out_dir=None, report=print) -> list[str]:
    """Train the default model on each data set and save it as ``<dataset>.pt``."""
    from lab.data import DATASETS, make_dataset
    from lab.train import TrainConfig, save, train

    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    written = []
    for name in datasets or list(DATASETS):
        cfg = TrainConfig(device="cpu") if steps is None else TrainConfig(device="cpu", steps=steps)
        field, history = train(make_dataset(name, PRETRAIN_POINTS, seed=0), cfg)
        path = save(field, os.fspath(out / f"{name}.pt"), meta={"dataset": name})
        report(f"{name}: {history['summary']['steps_done']} steps, loss "
               f"{history['summary']['final_loss']:.4f}, {history['summary']['train_s']:.1f} s -> {path}")
        written.append(path)
    return written


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
