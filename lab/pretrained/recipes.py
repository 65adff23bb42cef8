"""The recipes that make the shipped checkpoints (``python -m lab pretrain``): TrainConfig
defaults (VP schedule) on 20k points of each data set, except ``gaussian_grid``, trained at
Aithal et al. 2024's setting (their data, schedule, network width and batch; ``grid_config``),
with the lab's optimiser recipe, measured better than their constant Adam 1e-3 at equal
steps; and the ODE-SDE gap page's OU models (Deveney et al.; ``gap_config``). The long runs
are resumable (``python -m lab pretrain gaussian_grid --resume``)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lab.data import DATASETS, make_dataset
from lab.pretrained import (FLOW_ENDS, GAP_DATASET, GAP_NETWORKS, GAP_WEIGHTS, GRID_SCHEDULE, PRETRAINED_DIR,
                            UNDERTRAINED, check_gap_model, flow_path, gap_path)
from lab.train import TrainConfig, save, train

__all__ = ["pretrain", "pretrain_gap", "pretrain_flows", "FLOW_CONFIG", "grid_config", "gap_config", "GRID_CONFIG", "GRID_POINTS", "GRID_SNAPSHOTS",
           "GRID_RECIPES", "SHIPPED_RECIPE", "GAP_SCALE", "GAP_POINTS", "STATE_DIR", "PRETRAIN_POINTS"]

PRETRAIN_POINTS = 20_000   # points drawn from each data set for its checkpoint
GAP_POINTS = 1_000_000    # points drawn once for a gap run (the paper draws fresh ones each step)
# The scale the lab trains the paper's network at (theirs: 100k steps of batch 200k with 50k
# collocation points, ~100 h a model on this CPU); the smallest at which its models show the
# paper's gap and its closing (docs/ode_sde_gap.md: the scale table).
GAP_SCALE = dict(steps=20_000, batch_size=2_000, fp_points=1_000)
GAP_SNAPSHOT_EVERY = 5_000
STATE_DIR = Path("runs") / "pretrain"   # resumable states and snapshots of long runs (cwd-relative)

# Aithal et al. 2024's 2-D setting (locuslab/diffusion-model-hallucination): DDPM, T = 1000,
# betas linear 0.001..0.2, i.e. VP with beta(t) = 1..200 on t in [1e-5, 1]; 100k points;
# batch 10k; Adam 1e-3 constant, no clipping; times uniform (train() skips those past
# lambda = -10, where x_t holds no trace of the data); 100k steps; plus an EMA of the
# weights (0.999). Recipe "fast": the same data, schedule, network and batch, trained the
# lab's way (Adam 1e-2 with warm-up and cosine decay, clipping, times uniform in lambda).
# benchmarks/hallucination.py --curve compares their snapshots.
GRID_POINTS = 100_000
GRID_SNAPSHOTS = (2_000, 5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000)
GRID_RECIPES = ("paper", "fast")
SHIPPED_RECIPE = "fast"    # the recipe whose run becomes gaussian_grid.pt (measured better: see the note)
FAST_STEPS = 20_000


def grid_config(recipe: str = "paper"):
    """The TrainConfig of the grid model for ``recipe`` (one of GRID_RECIPES)."""
    common = dict(schedule="vp", schedule_args=GRID_SCHEDULE, hidden=128, depth=3, batch_size=10_000,
                  ema=0.999, log_every=100, device=None)
    if recipe == "paper":
        return TrainConfig(**common, steps=GRID_SNAPSHOTS[-1], lr=1e-3, warmup=0, lr_final=1.0,
                           t_sampling="uniform", grad_clip=None)
    if recipe == "fast":
        return TrainConfig(**common, steps=FAST_STEPS)
    raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(GRID_RECIPES)}")


GRID_CONFIG = grid_config(SHIPPED_RECIPE)   # the shipped grid model's


def pretrain(datasets=None, steps: int | None = None, out_dir=None, report=print,
             resume: bool = False, state_dir=None, recipe: str | None = None,
             batch_size: int | None = None, device: str | None = None) -> list[str]:
    """Train each data set's model and save it as ``<dataset>.pt``: TrainConfig defaults on
    20k points (on the CPU, or on ``device``; ``steps`` and ``batch_size`` replace the
    defaults: a longer run), or, for ``gaussian_grid``, ``grid_config(recipe)`` on 100k points (default
    recipe: SHIPPED_RECIPE; another recipe's model, or one with other ``steps``, goes to
    ``state_dir/gaussian_grid-RECIPE[-STEPS]/final.pt``, not to the lab). The grid's runs
    keep snapshots (EMA and raw weights) at ``GRID_SNAPSHOTS`` in their folder of
    ``state_dir``; the paper recipe's writes ``gaussian_grid-2k.pt``. Every run writes a
    resumable state to ``state_dir`` every few minutes; ``resume`` continues from it."""
    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    states = Path(state_dir) if state_dir is not None else STATE_DIR
    recipe = recipe or SHIPPED_RECIPE
    written = []
    for name in datasets or list(DATASETS):
        if name not in DATASETS:
            raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
        grid = name == "gaussian_grid"
        cfg = grid_config(recipe) if grid else TrainConfig(device="cpu")
        cfg = dataclasses.replace(cfg, **{k: v for k, v in dict(steps=steps, batch_size=batch_size,
                                                                  device=device).items() if v is not None})
        run = name if not grid or recipe == "paper" else f"{name}-{recipe}"
        if grid and steps is not None and recipe != "paper":   # another cosine schedule: another run
            run += f"-{steps // 1000}k" if steps % 1000 == 0 else f"-{steps}"
        shipped = not grid or (recipe == SHIPPED_RECIPE and steps is None and batch_size is None)
        target = out / f"{name}.pt" if shipped else states / run / "final.pt"
        points = make_dataset(name, GRID_POINTS if grid else PRETRAIN_POINTS, seed=0)
        callback = _snapshots(name, states / run, out, report, recipe == "paper") if grid else None
        field, history = train(points, cfg, callback=callback, state=states / f"{run}.state.pt", resume=resume)
        summary = history["summary"]
        if summary["stopped"]:
            report(f"{run}: {summary['stopped']}; nothing written (run again with --resume)")
            continue
        path = save(field, os.fspath(target), meta={"dataset": name} | ({"recipe": recipe} if grid else {}))
        report(f"{run}: {summary['steps_done']} steps, loss {summary['final_loss']:.4f}, "
               f"{summary['train_s']:.1f} s on {summary['device']} -> {path}")
        written.append(path)
    return written


# the shipped flows' recipe: Albergo et al.'s L_b on the linear interpolant (rectified flow /
# CondOT), independent coupling, at the score models' budget (TrainConfig's 2,000 steps of 1,024)
FLOW_CONFIG = TrainConfig(objective="velocity", interpolant="linear", coupling="independent", device="cpu")


def pretrain_flows(out_dir=None, report=print) -> list[str]:
    """The flows page's shipped flows (``FLOW_ENDS``): FLOW_CONFIG on PRETRAIN_POINTS of the
    target, from the source (12 s each on one CPU thread)."""
    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    written = []
    for source, target in FLOW_ENDS:
        field, history = train(make_dataset(target, PRETRAIN_POINTS, seed=0), FLOW_CONFIG, source=source)
        summary = history["summary"]
        path = save(field, os.fspath(out / flow_path(source, target).name),
                    meta={"dataset": target, "source": source})
        report(f"flow {source} -> {target}: {summary['steps_done']} steps, loss {summary['final_loss']:.4f}, "
               f"{summary['train_s']:.1f} s on {summary['device']} -> {path}")
        written.append(path)
    return written


def _snapshots(name: str, folder: Path, out: Path, report, undertrained: bool):
    """A train() callback that saves the EMA and raw fields at GRID_SNAPSHOTS (and at the
    run's last step), with ``undertrained`` the gaussian_grid-2k checkpoint at UNDERTRAINED
    steps, and reports progress now and then."""
    def callback(p):
        if p.step in GRID_SNAPSHOTS or p.step == p.steps:
            meta = {"dataset": name, "snapshot_step": p.step}
            save(p.field, os.fspath(folder / f"step-{p.step:06d}.pt"), meta=meta)
            save(p.raw_field, os.fspath(folder / f"step-{p.step:06d}-raw.pt"), meta=meta | {"raw": True})
            if undertrained and p.step == UNDERTRAINED:
                save(p.field, os.fspath(out / f"{name}-{UNDERTRAINED // 1000}k.pt"), meta=meta)
        _report_every_1000(p, folder.name, report)
    return callback


def _report_every_1000(p, run: str, report) -> None:
    if p.step % 1000 == 0:
        report(f"{run}: step {p.step:,} of {p.steps:,}, loss {p.loss:.4f}, "
               f"{p.samples_per_s:,.0f} samples/s, {p.seconds / 60:.1f} min of training")


def gap_config(weight: float, network: str = "paper", steps: int | None = None,
               batch_size: int | None = None):
    """The TrainConfig of a gap model. ``"paper"``: Deveney et al.'s setting (their
    LogDensityMLP 3 x 80, OU on [1e-5, 10], unit weight on the score, t = 1e-5 + 10 Beta(1, 2),
    Adam 1e-3 without clipping or weight average, the scalar residual on points uniform in
    [-3.5, 3.5]^2 x [1e-5, 10]) at the lab's scale GAP_SCALE (theirs: 100k steps, batch
    200k, 50k collocation points; Adam's rate falls 1e-3 -> 1e-5 here by a cosine, there in
    two drops). ``"lab"``: the lab's own preconditioned eps network and recipe (TrainConfig
    defaults, OU) with the vector residual penalty."""
    check_gap_model(network, GAP_DATASET)
    if network == "lab":
        return TrainConfig(schedule="ou", fp_weight=weight, device="cpu",
                           **({"steps": steps} if steps else {}), **({"batch_size": batch_size} if batch_size else {}))
    return TrainConfig(schedule="ou", model="log_density_mlp", hidden=80, depth=3, weighting="score",
                       t_sampling="beta", lr=1e-3, warmup=0, lr_final=0.01, grad_clip=None, ema=0.0,
                       steps=steps or GAP_SCALE["steps"], batch_size=batch_size or GAP_SCALE["batch_size"],
                       fp_weight=weight, fp_form="log_density", fp_points=GAP_SCALE["fp_points"],
                       fp_region=3.5, log_every=100, device=None)


def pretrain_gap(out_dir=None, report=print, weights=None, networks=GAP_NETWORKS, dataset: str | None = None,
                 steps: int | None = None, batch_size: int | None = None, resume: bool = False,
                 state_dir=None) -> list[str]:
    """The OU models of the gap page: for each network and Fokker-Planck weight, train
    ``gap_config`` on GAP_POINTS points of the data set. The paper network's runs take long
    on a CPU (see GAP_SCALE), so they are resumable like the grid's (a state in
    ``state_dir`` every few minutes; ``resume`` continues) and keep snapshots every
    GAP_SNAPSHOT_EVERY steps. A run at another scale (``steps``, ``batch_size``) is written to
    ``state_dir/RUN/final.pt``, not to the lab."""
    dataset = dataset or GAP_DATASET
    out = Path(out_dir) if out_dir is not None else PRETRAINED_DIR
    states = Path(state_dir) if state_dir is not None else STATE_DIR
    written = []
    points = make_dataset(dataset, GAP_POINTS, seed=0)
    for network in networks:
        for w in GAP_WEIGHTS if weights is None else weights:
            cfg = gap_config(w, network, steps, batch_size)
            shipped = steps is None and batch_size is None
            run = f"gap-{dataset}-{network}-w{w:g}" + ("" if shipped else f"-{cfg.steps}x{cfg.batch_size}")
            target = out / gap_path(w, network, dataset).name if shipped else states / run / "final.pt"
            meta = {"dataset": dataset, "fp_weight": w, "network": network}
            callback = _gap_snapshots(states / run, meta, report) if network == "paper" else None
            field, history = train(points, cfg, callback=callback, state=states / f"{run}.state.pt",
                                   resume=resume)
            summary = history["summary"]
            if summary["stopped"]:
                report(f"{run}: {summary['stopped']}; nothing written (run again with --resume)")
                continue
            path = save(field, os.fspath(target), meta=meta)
            report(f"{run}: {summary['steps_done']} steps, {summary['train_s']:.1f} s on "
                   f"{summary['device']} -> {path}")
            written.append(path)
    return written


def _gap_snapshots(folder: Path, meta: dict, report):
    def callback(p):
        if p.step % GAP_SNAPSHOT_EVERY == 0 or p.step == p.steps:
            save(p.field, os.fspath(folder / f"step-{p.step:06d}.pt"), meta=meta | {"snapshot_step": p.step})
        _report_every_1000(p, folder.name, report)
    return callback
