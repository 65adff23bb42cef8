"""Time-shifted sampling (Li et al. 2024): at each step, the time whose noise level matches
the samples' own variance."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lab import _check
from lab.solvers.base import first_order_step, _last, Run
from lab.solvers.classic import _ancestral_step, _check_variance

__all__ = ["ts_ddim", "ts_ddpm", "shifted_time", "TS_WINDOW", "TS_CUTOFF"]

TS_WINDOW = 10     # candidate times s + k/1000 of the range, |k| <= window (theirs: 5-30)
TS_CUTOFF = 300    # shift only above this thousandth of the range (theirs: 300-900)


def _data_variance(field, data_var) -> float:
    """The data's variance per coordinate, what the forward marginals' variance is made of:
    given, or the exact mixture's, or the network's data_std^2 (the scale it was trained at)."""
    if data_var is not None:
        return _check.real(data_var, "data_var", 0.0, 1e12)
    mixture = getattr(field, "mixture", None)
    if mixture is not None:
        return float(torch.diagonal(mixture.cov()).mean())
    if hasattr(field, "data_std"):
        return float(field.data_std) ** 2
    raise ValueError("time-shifted sampling needs the data's variance: pass data_var=...")


def shifted_time(run: Run, x: Tensor, s: float, t: float, window: int, cutoff: int, var0: float) -> float:
    """Li et al. 2024's shifted time: among s + k/1000 of the time range (|k| <= window, and
    after t), the time whose forward marginal variance alpha^2 var0 + sigma^2 is nearest
    the variance of the samples x, per coordinate; s itself below the cutoff. Their images
    take each image's variance over its pixels; a 2-D point has two coordinates, so here the
    whole batch shares one time, matched to the batch's variance, and moves only when that
    explains the variance better by more than twice its standard error (sampling noise)."""
    sch = run.schedule
    span = sch.t_max - sch.t_min
    if window == 0 or (s - sch.t_min) <= cutoff / 1000 * span or x.shape[0] < 2:
        return s    # (one sample has no variance to match)
    x = x.detach() if x.device.type != "mps" else x.detach().cpu()   # float64 where the device has it
    v = float(x.double().var(dim=0).mean())
    a_s, sg_s, _ = run.coef(s)
    best, best_d = s, abs(v - (a_s * a_s * var0 + sg_s * sg_s))
    for k in sorted(range(-window, window + 1), key=abs):       # ties go to the nearest to s
        tau = min(s + k * span / 1000, sch.t_max)
        if tau <= t:
            continue
        a, sg, _ = run.coef(tau)
        d = abs(v - (a * a * var0 + sg * sg))
        if d < best_d - 1e-9 * (1 + v):      # round-off is no reason to move
            best, best_d = tau, d
    # the batch's variance is itself uncertain (standard error v sqrt(2 / its numbers)): a
    # move that explains it better by less than twice that is a move on noise (2-D batches
    # are small; on VP with data of unit variance every time's variance is about 1)
    gain = abs(v - (a_s * a_s * var0 + sg_s * sg_s)) - best_d
    return best if gain > 2 * v * math.sqrt(2 / max(x.numel() - 1, 1)) else s


def _ts_options(run, window, cutoff, data_var):
    window = _check.integer(window, "window", 0, 1000)
    cutoff = _check.integer(cutoff, "cutoff", 0, 1000)
    return window, cutoff, _data_variance(run.field, data_var)


def ts_ddim(run: Run, x: Tensor, window: int = TS_WINDOW, cutoff: int = TS_CUTOFF,
            data_var: float | None = None) -> Tensor:
    """TS-DDIM (Li et al. 2024, "Alleviating exposure bias in diffusion models through sampling
    with shifted time steps", Alg. 2): DDIM whose network is asked at a shifted time, the one
    whose noise level the current samples' variance matches (``shifted_time``), and which
    steps from there to the grid's next time. Exposure bias leaves the samples noisier than
    their time says; the shift asks the network about the noise they have.

    ``window``, ``cutoff``: in thousandths of the time range, as the paper's steps of a
    1000-step chain; ``data_var``: the data's variance per coordinate (default: the field's).
    With VP or OU and data of unit variance, alpha^2 + sigma^2 = 1 at every time: the variance
    says nothing of the noise level, no time is shifted, and this is DDIM."""
    window, cutoff, var0 = _ts_options(run, window, cutoff, data_var)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        tau = shifted_time(run, x, s, t, window, cutoff, var0)
        x0 = run.x0(x, tau)
        x = first_order_step(run, x, x0, tau, t, run.eta)
        run.record(i, x, x0)
    return x


def ts_ddpm(run: Run, x: Tensor, window: int = TS_WINDOW, cutoff: int = TS_CUTOFF,
            data_var: float | None = None, variance: str = "small") -> Tensor:
    """TS-DDPM (Li et al. 2024, Alg. 1): ancestral sampling (``ddpm``) whose network is asked
    at the shifted time of ``ts_ddim``, the posterior step taken from there."""
    _check_variance(variance)
    window, cutoff, var0 = _ts_options(run, window, cutoff, data_var)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        tau = shifted_time(run, x, s, t, window, cutoff, var0)
        x0 = run.x0(x, tau)
        x = _ancestral_step(run, x, x0, tau, t, variance, _last(run, i))
        run.record(i, x, x0)
    return x
