"""Training speed, and the time until a model is usable.

Prints, for the default model (TrainConfig defaults) and for variants of it: steps/s,
samples/s, and the seconds of training until the learned score's relative error to the
exact mixture score first falls below the bound of tests/test_train.py (0.25 at
t = 0.05, 0.1, 0.25, 0.5, 0.9) — "time to a usable model". Evaluation time is left out
(train() does not count its callback's time).

    python benchmarks/train_speed.py                  # this machine's device, 1 CPU thread: 46 s here
    python benchmarks/train_speed.py --threads 2 --dataset gaussian_grid --quick
    python benchmarks/train_speed.py --quick --baseline HEAD~3   # before / after, in one run

``--baseline REV`` measures the lab at another git revision (a temporary worktree) with this
same script, alternating rounds of it and of this checkout, and prints each side's best
round and their ratio.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

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


def measure(args) -> dict:
    """{configuration: time_to_usable's result} for the configurations asked for."""
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
    if not args.json:
        print(f"data set {args.dataset}, device {device}, torch threads {torch.get_num_threads()}, "
              f"torch {torch.__version__}, runs of {args.steps} steps (cosine lr); "
              f"usable = max relative score error < {BOUND} at t in {TIMES}")
        print(f"{'configuration':42s} {'steps/s':>8s} {'samples/s':>10s} {'usable after':>16s} {'error':>6s}")
    out = {}
    for name, cfg in variants.items():
        r = out[name] = time_to_usable(x, cfg, exact)
        if not args.json:
            usable = f"{r['usable_s']:.1f} s / {r['usable_step']}" if r["usable_s"] else "not reached"
            print(f"{name:42s} {r['steps/s']:8.1f} {r['samples/s']:10,.0f} {usable:>16s} {r['err']:6.3f}",
                  flush=True)
    return out


def compare(args) -> None:
    """This checkout against ``args.baseline``, alternating rounds in fresh processes."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = ["--dataset", args.dataset, "--threads", str(args.threads), "--steps", str(args.steps),
             "--batch-size", str(args.batch_size), "--lr", repr(args.lr)]
    child += (["--quick"] if args.quick else []) + (["--device", args.device] if args.device else [])
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "baseline")
        subprocess.run(["git", "-C", here, "worktree", "add", "--detach", "-q", tree, args.baseline], check=True)
        try:
            best = {"baseline": {}, "this": {}}
            for rnd in range(args.rounds):
                for side, root in (("baseline", tree), ("this", here)):
                    env = dict(os.environ, PYTHONPATH=root)
                    r = subprocess.run([sys.executable, os.path.abspath(__file__), *child, "--json"], env=env, cwd=tmp,
                                       capture_output=True, text=True, check=True)
                    for name, v in json.loads(r.stdout.splitlines()[-1]).items():
                        old = best[side].get(name)
                        if old is None or v["steps/s"] > old["steps/s"]:
                            best[side][name] = v
                    print(f"round {rnd + 1}, {side}: done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", here, "worktree", "remove", "--force", tree], check=False)
    print(f"{args.dataset}, {args.threads} thread(s), best of {args.rounds} alternating rounds each: "
          f"baseline {args.baseline} against this checkout")
    print(f"{'configuration':42s} {'steps/s before':>14s} {'after':>8s} {'ratio':>6s} "
          f"{'usable before':>14s} {'after':>8s}")
    for name, a in best["baseline"].items():
        b = best["this"][name]
        def usable(r):
            return f"{r['usable_s']:.1f} s" if r["usable_s"] else "-"
        print(f"{name:42s} {a['steps/s']:14.1f} {b['steps/s']:8.1f} {b['steps/s'] / a['steps/s']:6.2f} "
              f"{usable(a):>14s} {usable(b):>8s}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ring")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="default: lab.pick_device()")
    ap.add_argument("--steps", type=int, default=3000, help="steps of each run (lr schedule length)")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--quick", action="store_true", help="only the default configuration")
    ap.add_argument("--baseline", default=None, help="a git revision to measure beside this checkout")
    ap.add_argument("--rounds", type=int, default=3, help="with --baseline: rounds of each side")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = ap.parse_args(argv)
    if args.baseline:
        compare(args)
        return
    out = measure(args)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
