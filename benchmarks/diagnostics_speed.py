"""Timings of the field diagnostics on this machine, for the default model.

curl on a 128 x 128 grid, Jacobian asymmetry, circulation, Helmholtz split, exact W2 on
1k / 2k / 4k points, sliced W2 and MMD, and the PF-ODE NLL of 1k points. Each figure is
the best of a few repeats (ms). The model is TrainConfig's default architecture; its
weights do not change the cost, so it is not trained.

    python benchmarks/diagnostics_speed.py [--threads 1] [--device cpu]     # 18 s here
"""
from __future__ import annotations

import argparse
import time

import torch

import lab
from lab.curl import asymmetry, circulation, curl, grid_points, helmholtz
from lab.data import dataset_mixture
from lab.fields import MixtureField, NetworkField
from lab.metrics import mmd, nll, noised_samples, sliced_w2, w2
from lab.models import build_model
from lab.train import TrainConfig


def best_ms(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else lab.pick_device()
    cfg = TrainConfig()
    torch.manual_seed(0)
    model = build_model(cfg.model, hidden=cfg.hidden, depth=cfg.depth).to(device).eval()
    field = NetworkField(model, cfg.schedule)
    exact = MixtureField(dataset_mixture("two_moons"), cfg.schedule)
    g = torch.Generator().manual_seed(0)
    _, grid = grid_points(3.0, 128, device=device)
    pts = noised_samples(exact, 0.3, 2000, generator=g, device=device)
    rows = [
        ("curl, 128x128 grid, default model", lambda: curl(field, grid, 0.3)),
        ("curl, 128x128 grid, exact field", lambda: curl(exact, grid.cpu(), 0.3)),
        ("asymmetry, 2000 points from p_t", lambda: asymmetry(field, pts, 0.3)),
        ("circulation, 16 circles x 256 points", lambda: circulation(field, 0.3, torch.randn(16, 2, generator=g), 0.5)),
    ]
    with torch.no_grad():
        s = field.score(grid, 0.3).cpu().numpy()
    u, v = s[:, 0].reshape(128, 128), s[:, 1].reshape(128, 128)
    rows.append(("helmholtz, 128x128 grid", lambda: helmholtz(u, v, 6.0 / 127)))
    for n in (1000, 2000, 4000):
        a, b = exact.mixture.sample(n, generator=g), exact.mixture.sample(n, generator=g)
        rows.append((f"w2 (exact OT), {n} points", lambda a=a, b=b: w2(a, b)))
    a, b = exact.mixture.sample(4000, generator=g), exact.mixture.sample(4000, generator=g)
    rows.append(("sliced_w2, 4000 points, 256 directions", lambda: sliced_w2(a, b)))
    rows.append(("mmd, 2000 points", lambda: mmd(a[:2000], b[:2000])))
    x = exact.mixture.sample(1000, generator=g)
    rows.append(("nll, 1000 points (dopri5, tol 1e-5)", lambda: nll(field, x)))
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"model {cfg.model} width {cfg.hidden} depth {cfg.depth}")
    for name, fn in rows:
        repeats = 1 if name.startswith(("nll", "w2 (exact OT), 4000")) else 5
        print(f"{name:44s} {best_ms(fn, repeats):10.1f} ms", flush=True)


if __name__ == "__main__":
    main()
