"""Command line: ``python -m lab train | info``.

    python -m lab train --dataset gaussian_grid --steps 2000 --out runs/model.pt
    python -m lab info runs/model.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

__all__ = ["main"]

DEFAULT_DATASET = "gaussian_grid"


def _train(args) -> int:
    from tqdm import tqdm

    import lab
    from lab.data import DATASETS, load_points, make_dataset, standardize
    from lab.train import TrainConfig, save, train

    if args.data:
        x, source = load_points(args.data), os.path.basename(args.data)
        if not args.raw:
            x = standardize(x)
            print("centred and scaled your points to unit variance (--raw keeps them as they are)")
    else:
        if args.dataset not in DATASETS:
            raise ValueError(f"unknown data set {args.dataset!r}; choose one of {', '.join(DATASETS)}")
        x, source = make_dataset(args.dataset, args.n, seed=args.seed), args.dataset
    cfg = TrainConfig(schedule=args.schedule, model=args.model, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      device=args.device)
    out = args.out or os.path.join("runs", f"{source.rsplit('.', 1)[0]}-{cfg.schedule}-{cfg.model}.pt")
    device = cfg.device or lab.pick_device()
    print(f"training a {cfg.model} on {source} ({x.shape[0]:,} points), schedule {cfg.schedule}, "
          f"{cfg.steps} steps on {device}", flush=True)
    with tqdm(total=cfg.steps, unit="step", disable=args.quiet) as bar:
        def report(p):
            bar.update(p.step - bar.n)
            bar.set_postfix(loss=f"{p.loss:.4f}", samples_s=f"{p.samples_per_s:,.0f}")
        field, history = train(x, cfg, callback=report)
    summary = history["summary"]
    if summary["stopped"]:
        print(f"note: {summary['stopped']}")
    if summary["steps_done"] == 0:
        print("error: no training step finished; nothing saved", file=sys.stderr)
        return 1
    save(field, out, meta={"dataset": source})
    loss = summary["final_loss"]
    print(f"final loss {loss:.4f} after {summary['steps_done']} steps, {summary['train_s']:.1f} s"
          if loss is not None else f"{summary['steps_done']} steps, {summary['train_s']:.1f} s")
    print(f"saved the model to {os.path.abspath(out)}")
    return 0


def _info(args) -> int:
    from lab.train import load

    field = load(args.checkpoint, device="cpu")
    n_params = sum(p.numel() for p in field.model.parameters())
    info = {
        "model": type(field.model).__name__, "parameters": n_params,
        "schedule": field.schedule.name, "data_std": round(field.data_std, 6),
        "meta": field.meta,
        "config": dataclasses.asdict(field.config) if field.config else None,
        "summary": field.summary,
    }
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lab.schedules import SCHEDULES

    p = argparse.ArgumentParser(prog="python -m lab", description="score-lab: 2-D diffusion models")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a score model and save a checkpoint")
    t.add_argument("--dataset", default=DEFAULT_DATASET, help="built-in data set name")
    t.add_argument("--data", help="a CSV file of points (x, y) instead of a built-in data set")
    t.add_argument("--raw", action="store_true", help="train on --data points without standardising")
    t.add_argument("--n", type=int, default=20_000, help="points drawn from the data set")
    t.add_argument("--schedule", default="vp", choices=list(SCHEDULES))
    t.add_argument("--model", default="score_mlp", choices=["score_mlp", "potential_mlp"])
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=1024)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    t.add_argument("--out", help="checkpoint path (default: runs/DATASET-SCHEDULE-MODEL.pt)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    i = sub.add_parser("info", help="print a checkpoint's config and training summary")
    i.add_argument("checkpoint")
    i.set_defaults(func=_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
