"""Solver quality against NFE, and solver overhead.

For every solver: W2 between its samples and fresh true samples at 5, 10, 20, 50 and 100
NFE, on the exact mixture field and on a trained network, beside the noise floor (W2
between two independent true draws of the same size) and a 1000-step ancestral (DDPM)
reference; every cell is the mean over --seeds runs, each against its own truth draw.
Then the solver race (``lab.metrics.solver_race``, the table the solvers page draws): each
solver at 5, 10, 20, 50 NFE on both fields from the same points, and which error dominates.
Then each solver's overhead per step beside the cost of one field evaluation.

    python benchmarks/solver_quality.py                     # two_moons, the shipped model: 3.4 min here
    python benchmarks/solver_quality.py --dataset gaussian_grid --model runs/grid.pt
    python benchmarks/solver_quality.py --race-only         # the race's table alone
    python benchmarks/solver_quality.py --time-shift        # TS-DDIM / TS-DDPM against DDIM / DDPM
"""
from __future__ import annotations

import argparse
import time

import torch

from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField
from lab.metrics import noised_samples, solver_race, w2
from lab.pretrained import load_pretrained, pretrained_path
from lab.solvers import SOLVERS, TS_CUTOFF, TS_WINDOW, sample
from lab.train import TrainConfig, load, train

BUDGETS = (5, 10, 20, 50, 100)


def quality_table(field, truths, n):
    """W2 of each solver at each NFE budget, averaged over one run per truth set."""
    rows = {}
    for name, spec in SOLVERS.items():
        row = []
        for nfe in BUDGETS:
            if name == "ode_adaptive" or nfe < spec.nfe_per_step:
                row.append(None)
                continue
            runs = [sample(field, n=n, solver=name, steps=nfe // spec.nfe_per_step, seed=seed).samples
                    for seed in range(len(truths))]
            row.append(sum(w2(x, t) for x, t in zip(runs, truths)) / len(truths))
        rows[name] = row
    return rows


def print_table(title, rows, floor, reference):
    print(f"\n{title}: W2 to fresh true samples (noise floor {floor:.4f}; DDPM 1000 steps {reference:.4f})")
    print(f"{'solver':16s}" + "".join(f"{f'{b} NFE':>10s}" for b in BUDGETS))
    for name, row in rows.items():
        cells = "".join(f"{'-':>10s}" if v is None else f"{v:10.4f}" for v in row)
        print(f"{name:16s}{cells}")


def adaptive_line(field, truths, n):
    parts = []
    for tol in (1e-3, 1e-5):
        trajs = [sample(field, n=n, solver="ode_adaptive", steps=4, seed=s, rtol=tol, atol=tol)
                 for s in range(len(truths))]
        dist = sum(w2(tr.samples, t) for tr, t in zip(trajs, truths)) / len(truths)
        parts.append(f"tol {tol:g}: {trajs[0].nfe} NFE, W2 {dist:.4f}")
    print("ode_adaptive (dopri5)  " + "; ".join(parts))


def overhead(field, n=4000, steps=20, repeats=3):
    x = field.schedule.prior_sample(n, generator=torch.Generator().manual_seed(0))
    x = x.to(getattr(field, "device", None) or "cpu")
    with torch.no_grad():
        field.eps(x, 0.5)
        t0 = time.perf_counter()
        for _ in range(20):
            field.eps(x, 0.5)
        per_eval = (time.perf_counter() - t0) / 20
    print(f"\none field evaluation on {n} points: {per_eval * 1e3:.2f} ms")
    print(f"{'solver':16s}{'NFE':>6s}{'total ms':>10s}{'overhead/step ms':>18s}")
    for name in SOLVERS:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            traj = sample(field, x_T=x, solver=name, steps=steps, seed=0)
            best = min(best, time.perf_counter() - t0)
        over = (best - traj.nfe * per_eval) / steps
        print(f"{name:16s}{traj.nfe:6d}{best * 1e3:10.1f}{over * 1e3:18.3f}")


def time_shift_table(n=2000, seeds=3):
    """Li et al. 2024's time shift against its base sampler at 10, 20, 50 steps, on trained
    models: the shipped two_moons model (VP, data of unit variance: nothing to shift) and
    the gap page's circles models (OU, the paper's units), mean W2 over ``seeds`` draws."""
    from lab.hallucination import end_law
    from lab.pretrained import gap_path

    cases = [("two_moons (vp)", load_pretrained("two_moons"), dataset_mixture("two_moons"))]
    for net in ("lab", "paper"):
        m = load(gap_path(0, net))
        cases.append((f"gap_circles, {net} network w = 0 (ou)", m, dataset_mixture("gap_circles")))
    print(f"\ntime-shifted sampling (window {TS_WINDOW}, cutoff {TS_CUTOFF}): mean W2 to the truth, {n} points x {seeds}")
    print(f"{'model':38s}{'steps':>6s}{'ddim':>9s}{'ts_ddim':>9s}{'ddpm':>9s}{'ts_ddpm':>9s}{'floor':>8s}")
    for name, field, mix in cases:
        law = end_law(mix, field.schedule)
        for steps in (10, 20, 50):
            cells, floors = {}, []
            for seed in range(seeds):
                g = torch.Generator().manual_seed(50 + seed)
                x = field.schedule.prior_sample(n, generator=g)
                truth = law.sample(n, generator=g)
                floors.append(w2(truth, law.sample(n, generator=g)))
                for solver in ("ddim", "ts_ddim", "ddpm", "ts_ddpm"):
                    d = w2(sample(field, x_T=x, solver=solver, steps=steps, seed=seed).samples, truth)
                    cells[solver] = cells.get(solver, 0.0) + d / seeds
            print(f"{name:38s}{steps:6d}" + "".join(f"{cells[k]:9.4f}" for k in ("ddim", "ts_ddim", "ddpm", "ts_ddpm"))
                  + f"{sum(floors) / seeds:8.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="two_moons")
    ap.add_argument("--model", help="a checkpoint trained on --dataset (default: the shipped one, else train one)")
    ap.add_argument("--n", type=int, default=1500, help="samples per W2 (exact OT: keep <= 4000)")
    ap.add_argument("--seeds", type=int, default=3, help="runs (and truth draws) averaged per cell")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--race-only", action="store_true", help="only the solver race's table")
    ap.add_argument("--race-n", type=int, default=500, help="samples per run of the race (the page's)")
    ap.add_argument("--time-shift", action="store_true", help="only the time-shift table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.time_shift:
        time_shift_table(args.n, args.seeds)
        return
    if args.model:
        model = load(args.model)
    elif pretrained_path(args.dataset).is_file():
        model = load_pretrained(args.dataset)
    else:
        print(f"training a model on {args.dataset} (TrainConfig defaults) ...", flush=True)
        model, _ = train(make_dataset(args.dataset, 20_000, seed=0), TrainConfig())
    exact = MixtureField(dataset_mixture(args.dataset), model.schedule)
    start = time.perf_counter()
    race = solver_race({"exact": exact, "learned": model}, exact, n=args.race_n)
    print(f"solver race on {args.dataset} ({time.perf_counter() - start:.0f} s)\n")
    print(race.markdown())
    if args.race_only:
        return
    g = torch.Generator().manual_seed(123)
    truths = [noised_samples(exact, exact.schedule.t_min, args.n, generator=g) for _ in range(args.seeds)]
    floor = sum(w2(t, noised_samples(exact, exact.schedule.t_min, args.n, generator=g))
                for t in truths) / args.seeds
    for title, field in (("exact field", exact), ("trained model", model)):
        ref = sum(w2(sample(field, n=args.n, solver="ddpm", steps=1000, seed=100 + i).samples, t)
                  for i, t in enumerate(truths)) / args.seeds
        print_table(f"{title} on {args.dataset}", quality_table(field, truths, args.n), floor, ref)
        adaptive_line(field, truths, args.n)
    overhead(model)


if __name__ == "__main__":
    main()
