"""Distances between fields and between sample sets.

``score_error`` measures how far a field is from an exact one, in the relative L2(p_t)
norm that denoising score matching minimises (Vincent 2011): at time t,

    err(t) = sqrt( E_{x ~ p_t} |eps_theta(x, t) - eps*(x, t)|^2 / E_{x ~ p_t} |eps*(x, t)|^2 ),

which equals the relative error of the score itself (the factor sigma_t cancels).
"""
from __future__ import annotations

import torch

from lab.fields import MixtureField, ScoreField

__all__ = ["score_error", "noised_samples", "w2"]


def noised_samples(reference: MixtureField, t: float, n: int, generator=None,
                   dtype=torch.float32, device=None):
    """n points (n, 2) from p_t: alpha_t x0 + sigma_t eps with x0 from the mixture."""
    s = reference.schedule
    x0 = reference.mixture.sample(n, generator=generator, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (s.alpha(float(t)) * x0 + s.sigma(float(t)) * eps).to(dtype=dtype, device=device)


@torch.no_grad()
def score_error(field: ScoreField, reference: MixtureField, ts=(0.05, 0.1, 0.25, 0.5, 0.9),
                n: int = 4000, seed: int = 0) -> dict[float, float]:
    """Relative L2(p_t) error of ``field``'s eps (equivalently, its score) to the exact
    ``reference`` at each t in ``ts``, on ``n`` points drawn from p_t. Returns {t: err}."""
    g = torch.Generator().manual_seed(seed)
    device = getattr(field, "device", None)  # a network's device; exact fields take any
    out = {}
    for t in ts:
        x = noised_samples(reference, t, n, generator=g, device=device)
        e_ref = reference.eps(x, t)
        e = field.eps(x, t)
        out[float(t)] = float(((e - e_ref) ** 2).sum(1).mean().sqrt() / (e_ref**2).sum(1).mean().sqrt())
    return out


def _as_points(x, name: str):
    import numpy as np
    arr = (x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor)
           else np.asarray(x, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array of points (n, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def w2(a, b, max_points: int = 20_000) -> float:
    """Exact 2-Wasserstein distance between two sample sets (n, d) and (m, d) with uniform
    weights: sqrt of the optimal transport cost with squared Euclidean ground cost, solved
    exactly by POT's network simplex (``ot.emd2``). Cost grows as n^2 memory, n^3 time."""
    import ot

    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b live in different dimensions: {a.shape[1]} and {b.shape[1]}")
    if max(len(a), len(b)) > max_points:
        raise ValueError(f"exact W2 on more than {max_points:,} points is too costly; subsample")
    cost = ot.dist(a, b, metric="sqeuclidean")
    wa, wb = ot.unif(len(a)), ot.unif(len(b))
    return float(max(ot.emd2(wa, wb, cost, numItermax=10_000_000), 0.0) ** 0.5)
