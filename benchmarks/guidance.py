"""What guided and composed samplers sample, against the exact target (issue 17).

For each kind (classifier-free guidance, product, annealing; lab.guidance) and weight, on
exact mixture fields: W2 to ``exact_target`` of the naive sampler (Euler-Maruyama on the
combined score) and of the Feynman-Kac corrector (Skreta et al. 2025), beside the floor (W2
between two independent draws of the target at the same size), with FKC's cost (field
evaluations) and its weights' lowest effective sample size. Each W2 is the mean over
``--seeds`` runs (the spread in brackets). The paper's claim: FKC samples the target where
the naive sampler does not; the issue's target: FKC within 1.5x the floor.

Then guidance with a trained class-conditional network (the two moons as two classes, one
network with label dropout: ``TrainConfig(n_classes=2)``) against the same exact target.

Then DPM-Solver (eps form, Lu et al. 2022) against DPM-Solver++(2M) (data-prediction form,
Lu et al. 2022b) on the guided field at high guidance scales and few steps: W2 to the same
field's ODE solved finely (RK4, 400 steps) and the largest |x| reached; the DPM-Solver++
paper's claim: the data-prediction multistep form stays stable where the eps form breaks.

    python benchmarks/guidance.py                  # everything: 3.7 min here on one CPU thread
    python benchmarks/guidance.py --n 4000 --seeds 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lab.data import GaussianMixture, dataset_mixture
from lab.fields import MixtureField
from lab.guidance import (annealed_field, class_mixture, exact_target, example, fkc_sample, grid_classes,
                          guided_field, product_field)
from lab.hallucination import end_law
from lab.metrics import w2
from lab.schedules import get_schedule
from lab.solvers import sample

VP = get_schedule("vp")
STEPS, SPACING = 1000, "logsnr"


def cases():
    """(name, kind, sampler parts, target parts, naive field), every kind and weight."""
    blobs = GaussianMixture([[0.5, 0.0], [-0.5, 0.0]], 0.35)
    grid = dataset_mixture("gaussian_grid")
    moons = dataset_mixture("two_moons")
    blob = GaussianMixture([[0.6, 0.6]], 0.5)
    for label, whole, members in (("two overlapping blobs", blobs, [0]),
                                  ("5x5 grid, chessboard classes", grid, grid_classes(grid)[0])):
        cond = class_mixture(whole, members)
        fc, fu = MixtureField(cond, VP), MixtureField(whole, VP)
        for w in (0.0, 1.0, 3.0, 7.0):
            yield (f"cfg w={w:g}, {label}", "cfg", dict(cond=fc, uncond=fu, w=w),
                   dict(cond=end_law(cond, VP), uncond=end_law(whole, VP), w=w), guided_field(fc, fu, w))
    ex = example("product")
    yield "product, ring x blob", "product", ex.parts, ex.target_parts, ex.field
    fa, fb = MixtureField(moons, VP), MixtureField(blob, VP)
    yield ("product, moons x blob", "product", dict(a=fa, b=fb), dict(a=end_law(moons, VP), b=end_law(blob, VP)),
           product_field(fa, fb))
    for label, mix in (("5x5 grid", grid), ("two moons", moons)):
        f = MixtureField(mix, VP)
        for beta in (0.5, 2.0):
            yield (f"anneal beta={beta:g}, {label}", "anneal", dict(field=f, beta=beta),
                   dict(mixture=end_law(mix, VP), beta=beta), annealed_field(f, beta))


def spread(values):
    return f"{statistics.mean(values):6.3f} [{min(values):.3f}-{max(values):.3f}]"


def kinds_table(n: int, seeds: int) -> None:
    print(f"--- naive vs FKC, exact fields: {n:,} samples, {STEPS} {SPACING} Euler-Maruyama steps, "
          f"W2 (mean [min-max] over {seeds} seeds) ---")
    print(f"{'case':44s} {'floor':>6s} {'naive':>20s} {'x floor':>7s} {'FKC':>20s} {'x floor':>7s} "
          f"{'NFE':>6s} {'min ESS':>7s}")
    for name, kind, parts, target_parts, naive_field in cases():
        t0 = time.perf_counter()
        target = exact_target(kind, **target_parts)
        truth = target.sample(n, generator=torch.Generator().manual_seed(101))
        floors = [w2(target.sample(n, generator=torch.Generator().manual_seed(200 + s)), truth) for s in range(seeds)]
        naive = [w2(sample(naive_field, n=n, solver="euler_maruyama", steps=STEPS, spacing=SPACING, seed=s).samples,
                    truth) for s in range(seeds)]
        runs = [fkc_sample(kind, n=n, steps=STEPS, spacing=SPACING, seed=s, **parts) for s in range(seeds)]
        fkc = [w2(r.samples, truth) for r in runs]
        floor = statistics.mean(floors)
        print(f"{name:44s} {floor:6.3f} {spread(naive):>20s} {statistics.mean(naive) / floor:7.1f} "
              f"{spread(fkc):>20s} {statistics.mean(fkc) / floor:7.1f} {runs[0].nfe:6d} "
              f"{min(float(r.ess.min()) for r in runs):7.2f}   ({time.perf_counter() - t0:.0f} s)", flush=True)


def trained_table(n: int, seeds: int, steps: int = 3000) -> None:
    """Guidance with a trained class-conditional network (the two moons as two classes, label
    dropout 0.1) against the exact target of the exact class mixtures."""
    from lab.data import make_dataset
    from lab.train import TrainConfig, train

    moons = dataset_mixture("two_moons")
    half = moons.n_components // 2                        # lab.data: the upper moon first
    x = make_dataset("two_moons", 20_000, seed=0)
    labels = (torch.cdist(x.double(), moons.means).argmin(1) >= half).long()
    t0 = time.perf_counter()
    net, _ = train(x, TrainConfig(n_classes=2, steps=steps, device="cpu"), labels=labels)
    print(f"--- a trained class-conditional network ({steps:,} steps, {time.perf_counter() - t0:.0f} s): "
          f"guidance toward the upper moon, {n:,} samples, W2 to the exact target ---")
    cond_mix = class_mixture(moons, range(half))
    fc, fu = net.with_label(0), net.with_label(None)
    for w in (0.0, 1.0, 3.0):
        target = exact_target("cfg", cond=end_law(cond_mix, VP), uncond=end_law(moons, VP), w=w)
        truth = target.sample(n, generator=torch.Generator().manual_seed(101))
        floor = statistics.mean(w2(target.sample(n, generator=torch.Generator().manual_seed(200 + s)), truth)
                                for s in range(seeds))
        naive = [w2(sample(guided_field(fc, fu, w), n=n, solver="euler_maruyama", steps=STEPS, spacing=SPACING,
                           seed=s).samples, truth) for s in range(seeds)]
        fkc = [w2(fkc_sample("cfg", cond=fc, uncond=fu, w=w, n=n, steps=STEPS, spacing=SPACING, seed=s).samples,
                  truth) for s in range(seeds)]
        print(f"cfg w={w:g}, trained network{'':16s} {floor:6.3f} {spread(naive):>20s} "
              f"{statistics.mean(naive) / floor:7.1f} {spread(fkc):>20s} {statistics.mean(fkc) / floor:7.1f}",
              flush=True)


def solver_table(n: int) -> None:
    print("--- DPM-Solver (eps) vs DPM-Solver++(2M) (data prediction) on the guided field of the "
          "grid's chessboard class ---")
    print("W2 to the same field's ODE by RK4 at 400 steps (its own discretisation error: the gap to "
          "it), and the largest |x| reached on the way")
    grid = dataset_mixture("gaussian_grid")
    cond = class_mixture(grid, grid_classes(grid)[0])
    fc, fu = MixtureField(cond, VP), MixtureField(grid, VP)
    solvers = ("dpm2", "dpm3", "dpm++2m")
    print(f"{'w':>4s} {'NFE':>4s} " + " ".join(f"{s:>22s}" for s in solvers))
    for w in (3.0, 7.0, 15.0):
        field = guided_field(fc, fu, w)
        ref = sample(field, n=n, solver="ode_rk4", steps=400, spacing=SPACING, seed=0).samples
        for nfe in (6, 10, 20):
            cells = []
            for s in solvers:
                order = {"dpm2": 2, "dpm3": 3}.get(s, 1)
                try:
                    traj = sample(field, n=n, solver=s, steps=max(1, nfe // order), spacing=SPACING, seed=0)
                    reach = float(traj.xs.abs().amax())
                    cells.append(f"{w2(traj.samples, ref):8.3f} |x|<{reach:8.1f}")
                except ValueError as e:      # a solver that blew up says so
                    cells.append(f"{'diverged':>22s}" if "finite" in str(e).lower() else f"{str(e)[:22]:>22s}")
            print(f"{w:4g} {nfe:4d} " + " ".join(f"{c:>22s}" for c in cells), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="samples per run")
    ap.add_argument("--seeds", type=int, default=2, help="runs per sampler and case")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["kinds", "trained", "solvers"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.only in (None, "kinds"):
        kinds_table(args.n, args.seeds)
    if args.only in (None, "trained"):
        trained_table(args.n, args.seeds)
    if args.only in (None, "solvers"):
        solver_table(args.n)


if __name__ == "__main__":
    main()
