"""Mode interpolation, by Aithal et al. 2024's protocol, beside the paper's figures.

Their 2-D setting: 5x5 grid (means 2*{-2..2}^2, std 0.05, scaled by 1/sqrt(0.05^2 + 8)),
100k points, DDPM T = 1000 with betas 0.001..0.2 (here: VP beta 1..200 on [1e-5, 1]),
eps-MLP of width 128, batch 10k, Adam 1e-3; ancestral sampling with 1000 time-uniform
steps; detector: variance of the predicted x0 over the last 10 steps. Paper: the true score
gives no interpolation; filtering on the detector removes > 95 % of hallucinations while
keeping 96 % of in-support samples.

Prints, for the shipped model (``gaussian_grid``), its undertrained snapshot
(``gaussian_grid-2k``) and the exact score, with labels at 3, 6 and 10 std (in support =
within k std of a mode of the law at t_min): the out-of-support rate, ROC AUC, retention at
95 % detection and detection at 96 % retention, each with its noise floor (the standard
deviation over 200 bootstrap resamples of the samples), and the paper's row; beside each
cut, the share of the exact score's samples it keeps ("exact kept": what the cut costs
samples that never leave the modes).

    python benchmarks/hallucination.py                 # 20k samples (the paper's): 1.5 min here
    python benchmarks/hallucination.py --full          # 100k samples in chunks: 5x that, on 1 CPU thread
    python benchmarks/hallucination.py --curve         # training curve: the pretrain run's snapshots
    python benchmarks/hallucination.py --recursive     # recursive training, plain vs filtered
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.hallucination import (LABEL_STDS, PAPER_DETECTION, PAPER_EXTRAS, PAPER_RETENTION, end_law,
                               kept_share, operating_floor, operating_points, recursive_training,
                               score_samples, support_labels)
from lab.pretrained import GRID_SCHEDULE, UNDERTRAINED, load_pretrained
from lab.pretrained.recipes import STATE_DIR
from lab.schedules import get_schedule
from lab.train import TrainConfig, load

BOOTSTRAP = 200
COLUMNS = ("rate", "auc", "retention_at_detection", "detection_at_retention")
HEADER = (f"{'model':<22s} {'std':>4s} {'out of support':>15s} {'ROC AUC':>14s} "
          f"{'retention @95% det':>19s} {'detection @96% ret':>19s} {'exact kept':>10s}")
EXACT_NOTE = ("exact kept: the share of the exact score's samples (all in support) that the same "
              "95%-detection cut keeps: the sampler's own false alarms, which the model's good "
              "samples share; only a higher cut (no quiet hallucinations) keeps more")


def figures(scored, law, k, seed=0):
    """Operating points at labels of k std, their bootstrap std, and the cut at 95 % detection."""
    labels = support_labels(scored.samples, law, k)
    op = operating_points(scored.scores, labels)
    floor = operating_floor(scored.scores, labels, BOOTSTRAP, seed)
    return np.array([getattr(op, c) for c in COLUMNS]), np.array([floor[c] for c in COLUMNS]), op.threshold_at_detection


def exact_scored(n, seed):
    """The exact score of the grid through the same protocol: the sampler's own false alarms."""
    field = MixtureField(dataset_mixture("gaussian_grid"), get_schedule("vp", **GRID_SCHEDULE))
    return score_samples(field, n, seed=seed + 1)


def row(name, k, point, floor, exact_kept=None):
    cells = []
    for j, c in enumerate(COLUMNS):
        v = point[j]
        text = f"{v:.2%}" if c == "rate" else f"{v:.3f}" if c == "auc" else f"{v:.1%}"
        if floor is not None:
            text += {"rate": f" ±{floor[j] * 100:.2f}", "auc": f" ±{floor[j]:.3f}"}.get(c, f" ±{floor[j] * 100:.1f}")
        cells.append(text)
    k_text = f" {k:4.0f}" if k is not None else ""
    exact = f" {exact_kept:10.1%}" if exact_kept is not None else ""
    return f"{name:<22s}{k_text} {cells[0]:>15s} {cells[1]:>14s} {cells[2]:>19s} {cells[3]:>19s}{exact}"


def table(n, seed, models):
    mix = dataset_mixture("gaussian_grid")
    law = end_law(mix, get_schedule("vp", **GRID_SCHEDULE))
    print(f"paper protocol: ancestral, 1000 time-uniform steps, {n:,} samples in chunks, "
          f"detector = x0 variance over the last 10 steps; ± = bootstrap std ({BOOTSTRAP})")
    print(HEADER)
    t0 = time.perf_counter()
    exact = exact_scored(n, seed)
    for k in LABEL_STDS:
        rate = float((support_labels(exact.samples, law, k) != 0).double().mean())
        print(f"{'exact score':<22s} {k:4.0f} {rate:15.2%}   (no detector figures: nothing to detect)")
    print(f"{'':<22s} ({time.perf_counter() - t0:.0f} s to sample)", flush=True)
    scored_all = {"exact score": exact}
    for name, field in models.items():
        t0 = time.perf_counter()
        scored_all[name] = scored = score_samples(field, n, seed=seed)
        took = time.perf_counter() - t0
        for k in LABEL_STDS:
            point, floor, cut = figures(scored, law, k, seed)
            print(row(name, k, point, floor, kept_share(exact.scores, cut)))
        print(f"{'':<22s} ({took:.0f} s to sample)", flush=True)
    print(f"{'paper (Aithal et al.)':<22s} {'':>4s} {'—':>15s} {'—':>14s} "
          f"{'96%':>19s} {'> 95%':>19s}")
    print(EXACT_NOTE)
    return scored_all


def curve(n, seed, folder: Path, pattern: str = "step-*.pt"):
    """The out-of-support rate and the operating points at each snapshot of the pretrain run."""
    mix = dataset_mixture("gaussian_grid")
    law = end_law(mix, get_schedule("vp", **GRID_SCHEDULE))
    snaps = sorted(folder.glob(pattern))
    if not snaps:
        sys.exit(f"no snapshots in {folder}: run `python -m lab pretrain gaussian_grid` first")
    print(f"training curve ({n:,} samples each, paper protocol; labels at 6 std; ± bootstrap std)")
    exact = exact_scored(n, seed)
    print(f"{'snapshot':<26s} {'out of support':>15s} {'ROC AUC':>14s} {'retention @95% det':>19s} "
          f"{'detection @96% ret':>19s} {'exact kept':>10s}")
    for path in snaps:
        field = load(path, device="cpu")
        scored = score_samples(field, n, seed=seed)
        point, floor, cut = figures(scored, law, 6.0, seed)
        print(row(f"{path.stem:<26s}", None, point, floor, kept_share(exact.scores, cut)), flush=True)
    print(EXACT_NOTE)


def recursive(seed, generations, n_samples, steps):
    """Recursive training on own samples, plain and with the paper's filters (N + 2.5 %,
    N + 5 %, keep the N lowest), at the model quality this CPU can train per generation."""
    mix = dataset_mixture("gaussian_grid")
    schedule = get_schedule("vp", **GRID_SCHEDULE)
    law = end_law(mix, schedule)
    # the paper's schedule; the lab's fast recipe (Adam 1e-2 with warm-up and cosine decay,
    # EMA), which reaches in minutes what Adam 1e-3 constant needs hours for
    cfg = TrainConfig(schedule_args=GRID_SCHEDULE, hidden=128, steps=steps, batch_size=2000)
    print(f"recursive training: {generations} generations of {n_samples:,} samples; each model "
          f"width 128, {steps:,} steps, batch 2,000, lr 1e-2 cosine; out-of-support rate at 6 std "
          "of each generation's samples (before filtering)")
    curves = {}
    for extra in (None, *PAPER_EXTRAS):
        gens = recursive_training(make_dataset("gaussian_grid", 100_000, seed=0), law, generations=generations,
                                  n_samples=n_samples, filtered=extra is not None, extra=extra or 0.0,
                                  config=cfg, solver="ddpm", steps=1000, spacing="time_uniform", k=6.0,
                                  seed=seed)
        name = "plain" if extra is None else f"filtered, N + {extra:.1%}"
        curves[name] = [g.hallucination_rate for g in gens]
        print(f"{name:<22s} " + " ".join(f"{r:7.2%}" for r in curves[name]), flush=True)
    print("paper: filtering slows the collapse (their Fig. 9: rates stay lower generation after generation)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="100k samples (paper: 20k; the floor shrinks)")
    ap.add_argument("--n", type=int, default=None, help="samples per model (default 20k; --full 100k)")
    ap.add_argument("--curve", action="store_true", help="evaluate the pretrain run's snapshots")
    ap.add_argument("--snapshots", default=str(STATE_DIR / "gaussian_grid"), help="their folder")
    ap.add_argument("--pattern", default="step-*.pt", help="which snapshots (a glob)")
    ap.add_argument("--recursive", action="store_true", help="recursive training, plain vs filtered")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=5000, help="training steps per generation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n or (100_000 if args.full else 20_000)
    if args.curve:
        curve(n, args.seed, Path(args.snapshots), args.pattern)
    elif args.recursive:
        recursive(args.seed, args.generations, min(n, 20_000), args.train_steps)
    else:
        models = {"gaussian_grid": load_pretrained("gaussian_grid", device="cpu"),
                  f"gaussian_grid-{UNDERTRAINED // 1000}k": load_pretrained(f"gaussian_grid-{UNDERTRAINED // 1000}k",
                                                                           device="cpu")}
        table(n, args.seed, {k: v for k, v in models.items() if v is not None})
    print(f"paper targets: retention >= {PAPER_RETENTION:.0%} at {PAPER_DETECTION:.0%} detection")


if __name__ == "__main__":
    main()
