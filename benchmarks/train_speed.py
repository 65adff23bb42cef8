"""Training speed, and the time until a model is usable.

Prints, for the default model (TrainConfig defaults) and for variants of it: steps/s,
samples/s, and the seconds of training until the learned score's relative error to the
exact mixture score first falls below the bound of tests/test_train.py (0.25 at
t = 0.05, 0.1, 0.25, 0.5, 0.9) — "time to a usable model". Evaluation time is left out
(train() does not count its callback's time).

    python benchmarks/train_speed.py                  # this machine's device, 1 CPU thread
    python benchmarks/train_speed.py --threads 2 --dataset gaussian_grid --quick
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

import lab
from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.metrics import score_error
from lab.train import TrainConfig, train

BOUND = 0.25  # tests/test_train.py QUALITY_BOUND
TIMES = (0.05, 0.1, 0.25, 0.5, 0.9)


def time_to_usable(x, cfg: TrainConfig, exact: MixtureField, check_every: int = 100) -> dict:
    """Train with cfg; every ``check_every`` steps measure the EMA model's error and stop
    as soon as it is below BOUND."""
    found = {}

    def callback(p):
        if p.step % check_every and p.step != p.steps:
            return None
        err = max(score_error(p.field, exact, TIMES, n=2000, seed=1).values())
        found["err"] = err
        if err < BOUND:
            found.update(seconds=p.seconds, step=p.step)
            return True
        return None

    _, history = train(x, cfg, callback=callback)
    s = history["summary"]
    return {"steps/s": s["steps_done"] / s["train_s"],
            "samples/s": s["steps_done"] * cfg.batch_size / s["train_s"],
            "usable_s": found.get("seconds"), "usable_step": found.get("step"), "err": found["err"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ring")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="default: lab.pick_device()")
    ap.add_argument("--steps", type=int, default=3000, help="steps of each run (lr schedule length)")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--quick", action="store_true", help="only the default configuration")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device or str(lab.pick_device())
    x = make_dataset(args.dataset, n=20_000, seed=0)
    exact = MixtureField(dataset_mixture(args.dataset), "vp")
    base = TrainConfig(device=device, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    variants = {f"default (batch {base.batch_size}, width {base.hidden}, lr {base.lr:g})": base}
    if not args.quick:
        for name, change in [("batch 256", dict(batch_size=256)), ("batch 512", dict(batch_size=512)),
                             ("batch 2048", dict(batch_size=2048)), ("width 32", dict(hidden=32)),
                             ("width 128", dict(hidden=128)), ("depth 2", dict(depth=2)),
                             ("lr 3e-2", dict(lr=3e-2)), ("lr 3e-3", dict(lr=3e-3)),
                             ("no gradient clipping", dict(grad_clip=None)),
                             ("min-SNR weighting", dict(weighting="min_snr")),
                             ("width 128, lr 3e-3 (the first default)", dict(hidden=128, lr=3e-3))]:
            variants[name] = dataclasses.replace(base, **change)
    print(f"data set {args.dataset}, device {device}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, runs of {args.steps} steps (cosine lr); "
          f"usable = max relative score error < {BOUND} at t in {TIMES}")
    print(f"{'configuration':42s} {'steps/s':>8s} {'samples/s':>10s} {'usable after':>16s} {'error':>6s}")
    for name, cfg in variants.items():
        r = time_to_usable(x, cfg, exact)
        usable = f"{r['usable_s']:.1f} s / {r['usable_step']}" if r["usable_s"] else "not reached"
        print(f"{name:42s} {r['steps/s']:8.1f} {r['samples/s']:10,.0f} {usable:>16s} {r['err']:6.3f}",
              flush=True)


if __name__ == "__main__":
    main()
