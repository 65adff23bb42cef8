"""Server time of a live solver change, driven in-process (no browser).

Issue 6's budget: a change of solver, steps, spacing or eta re-samples 4,000 points at 20
NFE in at most 150 ms of server time on this CPU with the default model. This script
trains the default model (TrainConfig defaults, two_moons), builds a ``SolverView`` and
times each change: sampling, the sliced W2 and the new plots (the Bokeh document update that
Panel sends afterwards is not included).

    python benchmarks/app_latency.py [--threads 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lab.app.session import Session
from lab.app.solver_view import SolverView
from lab.data import make_dataset
from lab.train import TrainConfig, train

CHANGES = [("solver", "ddim"), ("solver", "dpm++2m"), ("steps", 10), ("steps", 20),
           ("spacing", "karras"), ("spacing", "logsnr"), ("solver", "euler_maruyama"),
           ("eta", 0.5), ("eta", 1.0), ("solver", "deis"), ("solver", "dpm++2m")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    field, _ = train(make_dataset("two_moons", 20_000, seed=0), TrainConfig(device="cpu"))
    view = SolverView(Session(dataset="two_moons", model=field))
    print(f"torch threads {torch.get_num_threads()}; default model; 4000 points per update")
    print(f"{'change':28s} {'NFE':>5s} {'sampling+W2 ms':>15s} {'with plots ms':>14s}")
    totals = []
    for name, value in CHANGES:
        inner, outer = [], []
        for _ in range(args.repeats):
            setattr(view, name, value)  # the watcher updates once; then time one update
            t0 = time.perf_counter()
            view.update()
            outer.append((time.perf_counter() - t0) * 1e3)
            inner.append(view.last_ms)
        totals.extend(outer)
        print(f"{name + ' = ' + str(value):28s} {view.last.nfe:5d} {statistics.median(inner):15.1f} "
              f"{statistics.median(outer):14.1f}")
    print(f"median over all changes {statistics.median(totals):.1f} ms, worst {max(totals):.1f} ms "
          "(budget 150 ms at 20 NFE)")


if __name__ == "__main__":
    main()
