"""Mode interpolation at toy scale, beside Aithal et al. 2024's figures.

Their 2-D setting: 5x5 grid (means 2*{-2..2}^2, std 0.05, scaled by 1/sqrt(0.05^2 + 8)),
100k points, DDPM T = 1000 with betas 0.001..0.2 (here: VP beta 1..200, 1000 time-uniform
DDPM steps), eps-MLP, ancestral sampling; detector: variance of predicted x0 over the last
10 steps; filter: draw N + extra, keep the N lowest. Paper: true score gives no
interpolation; the filter removes > 95% of hallucinations and keeps 96% of in-support samples.

Prints: hallucination rate of the exact score and of the trained model; the detector's ROC
AUC and the filter's detection / retention for several extras; the recursive-training curve
(hallucination rate per generation, with and without filtering).

    python benchmarks/hallucination.py            # CPU, a few minutes
    python benchmarks/hallucination.py --full     # paper-sized data and training (GPU)
"""
from __future__ import annotations

import argparse
import time

import torch

from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.hallucination import (BETWEEN_MODES, IN_SUPPORT, filter_report, recursive_training,
                               support_labels, trajectory_variance)
from lab.schedules import get_schedule
from lab.solvers import sample
from lab.train import TrainConfig, train

PAPER_SCHEDULE = dict(beta0=1.0, beta1=200.0, t_min=1e-5)


def rates(samples, mixture):
    labels = support_labels(samples, mixture)
    return labels, float((labels != IN_SUPPORT).double().mean()), float((labels == BETWEEN_MODES).double().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="100k points, width 128, 20k steps, batch 10k")
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_data, n_samples = (100_000, 10_000) if args.full else (20_000, 5000)
    cfg = (TrainConfig(schedule_args=PAPER_SCHEDULE, hidden=128, steps=20_000, batch_size=10_000, lr=1e-3)
           if args.full else TrainConfig(schedule_args=PAPER_SCHEDULE, steps=3000))
    mix = dataset_mixture("gaussian_grid")
    schedule = get_schedule("vp", **PAPER_SCHEDULE)
    at_end = mix.noised(float(schedule.alpha(schedule.t_min)), float(schedule.sigma(schedule.t_min)))
    opts = dict(solver="ddpm", steps=1000, spacing="time_uniform")
    print(f"5x5 grid, {n_data:,} training points, {cfg.steps} steps (width {cfg.hidden}, batch "
          f"{cfg.batch_size}); DDPM 1000 steps; in support = within 3 std of a mode at t_min")

    t0 = time.perf_counter()
    field, _ = train(make_dataset("gaussian_grid", n_data, seed=0), cfg)
    print(f"trained in {time.perf_counter() - t0:.1f} s")
    _, exact_rate, _ = rates(sample(MixtureField(mix, schedule), n=n_samples, seed=0, **opts).samples, at_end)
    extras = (0.1, 0.2, 0.5)
    traj = sample(field, n=int(n_samples * (1 + max(extras))), seed=0, **opts)
    labels, rate, between = rates(traj.samples, at_end)
    print(f"\nhallucination rate (out of support): exact score {exact_rate:.2%} (paper: none); "
          f"trained model {rate:.2%}, of which between modes {between:.2%}")
    scores = trajectory_variance(traj, last_k=10)
    print("\nfilter on x0 variance over the last 10 steps (paper: > 95% removed, 96% kept)")
    print(f"{'extra':>6s} {'drawn':>7s} {'kept':>6s} {'detection':>10s} {'retention':>10s} {'AUC':>6s} {'rate after':>11s}")
    for extra in extras:
        m = int(n_samples * (1 + extra))
        r = filter_report(scores[:m], labels[:m], keep=n_samples)
        print(f"{extra:6.0%} {m:7d} {r.n_kept:6d} {r.detection:10.1%} {r.retention:10.1%} {r.auc:6.3f} {r.rate_after:11.2%}")

    print(f"\nrecursive training, {args.generations} generations of {n_samples} samples each "
          "(generation g trains on g-1's samples)")
    rec_cfg = cfg if args.full else TrainConfig(schedule_args=PAPER_SCHEDULE, steps=3000)
    curves = {}
    for filtered in (False, True):
        gens = recursive_training(make_dataset("gaussian_grid", n_data, seed=0), at_end,
                                  generations=args.generations, n_samples=n_samples, filtered=filtered,
                                  extra=0.2, config=rec_cfg, **opts)
        curves[filtered] = [g.hallucination_rate for g in gens]
    print(f"{'generation':>10s} {'unfiltered':>11s} {'filtered (20% extra)':>21s}")
    for g in range(args.generations):
        print(f"{g:10d} {curves[False][g]:11.2%} {curves[True][g]:21.2%}")


if __name__ == "__main__":
    main()
