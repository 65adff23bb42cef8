"""The ODE-SDE gap and the Fokker-Planck regulariser, at toy scale, beside Deveney et al.

Their setup: OU forward process dx = -x dt + dW on t in [1e-5, 10] (lab schedule "ou"),
DSM + w * (Fokker-Planck residual)^2 on collocation points in [-3.5, 3.5]^2, Euler ODE and
Euler-Maruyama SDE samplers with 800 steps, W2^2 by exact OT on a 64x64 binning. Their
figures (W2^2 x 1e-2; ODE-truth, SDE-truth, ODE-SDE), recomputed from their samples:
w = 0: circles 1.44, .23, 1.34; checker 2.44, .37, 2.72. ODE-SDE at w = 1: .31, .35;
at w = 10: .17, .21 (with SDE-truth 4-9x worse).

Here: the lab's data sets of those names (Gaussian-mixture versions), ScoreMLP (or, with
--full, the paper's scalar potential network) trained with TrainConfig defaults but the OU
schedule; the regulariser penalises |sigma^3 R|^2 (see lab.train), so w's scale differs
from theirs. The exact field's row is the floor of sampler + binning + sample size.

    python benchmarks/ode_sde_gap.py              # CPU, about 10 minutes
    python benchmarks/ode_sde_gap.py --full       # potential network, longer training (GPU)
"""
from __future__ import annotations

import argparse
import time

import torch

from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.metrics import noised_samples, ode_sde_gap, w2_binned
from lab.train import TrainConfig, train

PAPER = {"circles": {0: (1.44, .23, 1.34), 1: (None, None, .31), 10: (None, None, .17)},
         "checkerboard": {0: (2.44, .37, 2.72), 1: (None, None, .35), 10: (None, None, .21)}}


def fmt(v):
    return f"{v:6.2f}" if v is not None else f"{'-':>6s}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--datasets", default="circles,checkerboard")
    ap.add_argument("--weights", default="0,0.1,1,10")
    ap.add_argument("--n", type=int, default=10_000, help="samples per sampler")
    ap.add_argument("--steps", type=int, default=2000, help="training steps")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = "potential_mlp" if args.full else "score_mlp"
    steps = 20_000 if args.full else args.steps
    print(f"model {model}, {steps} training steps, OU schedule, {args.n} samples per sampler, "
          "800 Euler / Euler-Maruyama steps, W2^2 x 1e-2 on a 64x64 binning of [-3.5, 3.5]^2")
    for name in args.datasets.split(","):
        exact = MixtureField(dataset_mixture(name), "ou")
        truth = noised_samples(exact, exact.schedule.t_min, args.n, generator=torch.Generator().manual_seed(7))
        x = make_dataset(name, 20_000, seed=0)
        print(f"\n{name}: {'w':>6s} {'ODE-truth':>10s} {'SDE-truth':>10s} {'ODE-SDE':>8s}   paper (same columns)")
        gap = ode_sde_gap(exact, truth, n=args.n, distance=w2_binned)
        print(f"{'':{len(name) + 1}s} {'exact':>6s} {gap['ode_truth'] * 100:10.2f} {gap['sde_truth'] * 100:10.2f} "
              f"{gap['ode_sde'] * 100:8.2f}")
        for w in (float(v) for v in args.weights.split(",")):
            t0 = time.perf_counter()
            field, hist = train(x, TrainConfig(schedule="ou", model=model, steps=steps, fp_weight=w))
            gap = ode_sde_gap(field, truth, n=args.n, distance=w2_binned)
            paper = PAPER.get(name, {}).get(int(w) if w in (0, 1, 10) else -1, (None, None, None))
            print(f"{'':{len(name) + 1}s} {w:6g} {gap['ode_truth'] * 100:10.2f} {gap['sde_truth'] * 100:10.2f} "
                  f"{gap['ode_sde'] * 100:8.2f}   {fmt(paper[0])} {fmt(paper[1])} {fmt(paper[2])}"
                  f"   ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
