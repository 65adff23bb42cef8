"""Tiny pretrained checkpoints, one per data set, so the served lab is useful at once on a
CPU. ``python -m lab pretrain`` rebuilds them (TrainConfig defaults, VP schedule)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED_DIR", "pretrained_path", "load_pretrained", "pretrain"]

PRETRAINED_DIR = Path(__file__).resolve().parent
PRETRAIN_POINTS = 20_000   # points drawn from each data set for its checkpoint


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
