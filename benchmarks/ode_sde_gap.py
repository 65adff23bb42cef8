"""The ODE-SDE gap and the Fokker-Planck regulariser, beside Deveney et al.

Their setup, which the lab follows: OU forward process dx = -x dt + dW on t in [1e-5, 10]
(lab schedule "ou"); their data sets in their units (gap_circles, gap_checker); their network
(LogDensityMLP: u(t, x) ~ log p_t, score = grad u) trained by DSM with unit weight on the
score and t = 1e-5 + 10 Beta(1, 2), plus w x (scalar Fokker-Planck residual)^2; Euler ODE and
Euler-Maruyama SDE on their grid (790 + 100 steps, the last without noise); W2^2 by exact
OT on a 64 x 64 binning of [-3.5, 3.5]^2 (lab.metrics.gap_binned, in chunks). Their figures
(W2^2 x 1e-2; ODE-truth, SDE-truth, ODE-SDE; recomputed from their released samples, 3M):
w = 0: circles 1.44, .23, 1.34; checker 2.44, .37, 2.72; w = 1: circles .83, .45, .31;
checker 1.14, 1.16, .35. The floor is W2^2 between two true sets of the same size.

    python benchmarks/ode_sde_gap.py                       # shipped models, 10k samples each (~5 min)
    python benchmarks/ode_sde_gap.py --full                # 300k each, docs/' figures: hours on a CPU
                                                           # (50k of the paper network took 50 min here;
                                                           # stopped, it goes on from runs/gap-eval/)
    python benchmarks/ode_sde_gap.py --n 60000 --exact     # with the exact score's row
    python benchmarks/ode_sde_gap.py --snapshots runs/pretrain/gap-gap_circles-paper-w0-20000x2000
                                                           # the scale table: steps vs the effect
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import time

import torch

from lab.data import dataset_mixture
from lab.fields import MixtureField
from lab.hallucination import end_law
from lab.metrics import gap_binned
from lab.pretrained import GAP_DATASET, GAP_NETWORKS, GAP_WEIGHTS, gap_path
from lab.train import load

PAPER = {"gap_circles": {0: (1.44, .23, 1.34), 1: (.83, .45, .31), 10: (None, None, .17)},
         "gap_checker": {0: (2.44, .37, 2.72), 1: (1.14, 1.16, .35), 10: (None, None, .21)}}
HEAD = f"{'model':34s} {'ODE-truth':>9s} {'SDE-truth':>9s} {'ODE-SDE':>8s} {'floor':>6s}   paper (same columns)"


def fmt(v):
    return f"{v:6.2f}" if v is not None else f"{'-':>6s}"


def row(name, field, dataset, n, chunk, weight=None, state_dir=None):
    """One model's row; with ``state_dir`` its counts are saved after each chunk, and a run
    with the same settings continues from them (``gap_binned(state=...)``)."""
    t0 = time.perf_counter()
    state = None
    if state_dir:
        os.makedirs(state_dir, exist_ok=True)
        state = os.path.join(state_dir, re.sub(r"[^\w.=-]+", "_", f"{dataset}-{name}-{n}") + ".state.pt")
    r = gap_binned(field, end_law(dataset_mixture(dataset), field.schedule), n=n, chunk=chunk, state=state,
                   callback=lambda done, total: print(f"  {name}: {done:,} of {total:,} samples "
                                                      f"({time.perf_counter() - t0:.0f} s)", end="\r", flush=True))
    paper = PAPER.get(dataset, {}).get(int(weight) if weight in (0, 1, 10) else -1, (None,) * 3)
    print(f"{name:34s} {r['ode_truth'] * 100:9.2f} {r['sde_truth'] * 100:9.2f} {r['ode_sde'] * 100:8.2f} "
          f"{r['floor'] * 100:6.2f}   {fmt(paper[0])} {fmt(paper[1])} {fmt(paper[2])}"
          f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=GAP_DATASET)
    ap.add_argument("--networks", default=",".join(GAP_NETWORKS))
    ap.add_argument("--weights", default=",".join(f"{w:g}" for w in GAP_WEIGHTS))
    ap.add_argument("--n", type=int, default=None,
                    help="samples per sampler (and per true set); default 10,000, with --full 300,000")
    ap.add_argument("--full", action="store_true", help="docs/' protocol: 300,000 samples (hours on a CPU)")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--exact", action="store_true", help="also the exact score's row (the sampler's own bias)")
    ap.add_argument("--snapshots", nargs="*", help="folders of step-*.pt snapshots to evaluate instead")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--state-dir", default="runs/gap-eval",
                    help="each model's counts so far, saved per chunk: a run stopped continues from them "
                         "('' to keep none)")
    args = ap.parse_args()
    # 10k: a paper-network model takes about a minute at 10k here (2 min at 20k, measured), the
    # lab's network less; --full is docs/' protocol
    args.n = args.n or (300_000 if args.full else 10_000)
    torch.set_num_threads(args.threads)
    print(f"{args.dataset}: {args.n:,} samples per sampler in chunks of {args.chunk:,}; 890 Euler / "
          "Euler-Maruyama steps (Deveney et al.'s grid); W2^2 x 1e-2 on a 64x64 binning of [-3.5, 3.5]^2")
    print(HEAD)
    if args.exact:
        row("exact score", MixtureField(dataset_mixture(args.dataset), "ou"), args.dataset, args.n, args.chunk,
            state_dir=args.state_dir)
    if args.snapshots:
        for folder in args.snapshots:
            for path in sorted(glob.glob(os.path.join(folder, "step-*.pt"))):
                if path.endswith("-raw.pt"):        # a snapshot's raw weights: its EMA is the model
                    continue
                field = load(path, device="cpu")
                run = os.path.basename(os.path.normpath(folder)).removeprefix(f"gap-{args.dataset}-")
                step = field.meta.get("snapshot_step") or (field.summary or {}).get("steps_done", 0)   # a run's end
                name = f"{run} @{step // 1000}k"
                row(name, field, args.dataset, args.n, args.chunk, field.meta.get("fp_weight"), args.state_dir)
        return
    for network in args.networks.split(","):
        for w in (float(v) for v in args.weights.split(",")):
            path = gap_path(w, network, args.dataset)
            if not path.is_file():
                print(f"{network}, w = {w:g}: no model at {path}")
                continue
            field = load(path, device="cpu")
            cfg = field.config
            row(f"{network} w={w:g} ({cfg.steps // 1000}k x {cfg.batch_size})", field, args.dataset,
                args.n, args.chunk, w, args.state_dir)


if __name__ == "__main__":
    main()
