"""Distances between fields and between sample sets.

``score_error`` measures how far a field is from an exact one, in the relative L2(p_t)
norm that denoising score matching minimises (Vincent 2011): at time t,

    err(t) = sqrt( E_{x ~ p_t} |eps_theta(x, t) - eps*(x, t)|^2 / E_{x ~ p_t} |eps*(x, t)|^2 ),

which equals the relative error of the score itself (the factor sigma_t cancels).
"""
from __future__ import annotations

import torch

from lab.fields import MixtureField, ScoreField

__all__ = ["score_error", "noised_samples"]


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
