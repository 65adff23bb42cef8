"""What every sampler shares: one run's bookkeeping (the field, the grid, NFE counting,
finiteness checks, the recorded states, the callback, the noise), the exact first-order step
of the eta family (the package doc), one Euler-Maruyama step, and a per-field cache for
the statistics some samplers precompute."""
from __future__ import annotations

import collections
import math
import weakref

import torch
from torch import Tensor

from lab import _check
from lab.fields import eps_to_score, eps_to_x0, fingerprint

__all__ = ["NonFiniteError", "Run", "first_order_step"]


class NonFiniteError(ValueError):
    """The field or the solver produced NaN or infinity."""


class Run:
    """One sampling run, what every solver function takes: the field, the grid, NFE counting,
    finiteness checks, recording of states and x0 predictions, the callback and the noise
    generator. A solver is a function ``solver(run, x) -> x`` at t_min (k-diffusion's shape)."""

    def __init__(self, field, ts, eta, generator, callback, solver, keep_last=None):
        self.field, self.ts, self.eta = field, ts, eta
        self.schedule = field.schedule
        self.generator, self.callback, self.solver = generator, callback, solver
        self.nfe = 0
        # the recorded states and x0 predictions: all, or the last keep_last (memory)
        self.xs = collections.deque(maxlen=None if keep_last is None else keep_last + 1)
        self.x0s = collections.deque(maxlen=keep_last)
        self.step = 0
        self._coefs = {}
        self.is_flow = bool(getattr(field, "is_flow", False))   # a flow (lab.interpolants): no alpha, sigma

    def coef(self, t):
        """alpha, sigma, lambda at scalar time t, as Python floats (float64 arithmetic);
        each time of the grid is computed once."""
        t = float(t)
        if t not in self._coefs:
            s = self.schedule
            self._coefs[t] = float(s.alpha(t)), float(s.sigma(t)), float(s.lambda_(t))
        return self._coefs[t]

    def check_grid(self):
        """Refuse a grid on which the schedule is not finite or lambda does not increase
        step by step (it rounds to the same value: too many steps for a schedule of so
        narrow a range), before any step divides by a step in lambda. Fills the cache."""
        ts = self.ts.tolist()
        coefs = [self.coef(t) for t in ts]
        for i, (t, (a, sg, lam)) in enumerate(zip(ts, coefs)):
            if not (0 < a < math.inf and 0 < sg < math.inf and math.isfinite(lam)):
                raise ValueError(f"the {self.schedule.name} schedule has alpha = {a:g}, sigma = {sg:g} at "
                                 f"t = {t:.6g} of the time grid: not usable for sampling")
            if i and not lam > coefs[i - 1][2]:
                raise ValueError(f"steps={len(self.ts) - 1} is too many for this {self.schedule.name} schedule: "
                                 f"lambda = log(alpha/sigma) does not increase from t = "
                                 f"{ts[i - 1]:.17g} to t = {t:.17g} (step {i}); use fewer steps")

    def _evaluate(self, out: Tensor, t, problem: str) -> Tensor:
        """One field evaluation, counted; refused with ``problem`` when not finite."""
        self.nfe += 1
        if not _check.all_finite(out):
            raise NonFiniteError(f"{problem} at t={float(t):.4g} (step {self.step + 1} of solver {self.solver!r})")
        return out

    def eps(self, x, t) -> Tensor:
        return self._evaluate(self.field.eps(x, float(t)), t, "the field returned non-finite values")

    def velocity(self, x, t) -> Tensor:
        """A flow's velocity dx/dt at (x, t), counted and checked as ``eps`` is."""
        return self._evaluate(self.field.velocity(x, float(t)), t, "the flow's velocity is not finite")

    def x0(self, x, t, eps=None) -> Tensor:
        a, s, _ = self.coef(t)
        return eps_to_x0(x, self.eps(x, t) if eps is None else eps, a, s)

    def noise(self, x) -> Tensor:
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def record(self, i, x_new, x0_pred):
        if not _check.all_finite(x_new):
            raise NonFiniteError(f"the solver {self.solver!r} produced non-finite values at step "
                                 f"{i + 1} (t={float(self.ts[i + 1]):.4g}); try more steps")
        self.xs.append(x_new)
        self.x0s.append(x0_pred)
        self.step = i + 1
        if self.callback is not None:
            self.callback({"i": i, "t": float(self.ts[i + 1]), "x": x_new, "x0": x0_pred,
                           "nfe": self.nfe})


def first_order_step(run: Run, x, x0, s, t, eta, z=None):
    """The exact-linear-part step of the eta family (module doc), data prediction x0."""
    a_t, sg_t, l_t = run.coef(t)
    _, sg_s, l_s = run.coef(s)
    h = l_t - l_s
    out = (sg_t / sg_s) * math.exp(-eta**2 * h) * x + a_t * -math.expm1(-(1 + eta**2) * h) * x0
    if eta > 0:
        out = out + sg_t * math.sqrt(-math.expm1(-2 * eta**2 * h)) * (run.noise(x) if z is None else z)
    return out


def _em_step(run: Run, x: Tensor, s: float, t: float, eta: float, noise: bool = True):
    """One Euler-Maruyama step of the eta family from s to t < s; returns (x_t, x0 at s).
    ``noise=False``: the drift only (the last step: see ``euler_maruyama``)."""
    e = run.eps(x, s)
    _, sg, _ = run.coef(s)
    g2 = float(run.schedule.g2(s))
    drift = float(run.schedule.f(s)) * x - (1 + eta**2) / 2 * g2 * eps_to_score(e, sg)
    out = x + drift * (t - s)
    if eta > 0 and noise:
        out = out + eta * math.sqrt(g2 * (s - t)) * run.noise(x)
    return out, run.x0(x, s, e)


def _last(run: Run, i: int) -> bool:
    return i == len(run.ts) - 2


def _cached(field, key, compute):
    """compute(), kept per field object (while it lives) under ``key`` and the fingerprint of
    its network's weights (a model trained further in place, as ``train``'s callbacks see it,
    is another field to the statistics)."""
    if getattr(field, "model", None) is not None:
        key = (*key, fingerprint(field))
    try:
        per_field = _PER_FIELD.setdefault(field, {})
    except TypeError:                                          # a field that takes no weak reference
        per_field = {}
    if key not in per_field:
        per_field[key] = compute()
    return per_field[key]


_PER_FIELD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # statistics, ratios


def _check_flags(**flags):
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")
