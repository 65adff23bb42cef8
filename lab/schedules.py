"""Noise processes x_t = alpha(t) x_0 + sigma(t) eps, and their forward SDEs.

Each schedule gives, as functions of t (a float or a tensor):

- ``alpha``, ``sigma`` and ``lambda_`` = log(alpha / sigma), the half log-SNR that
  DPM-Solver (Lu et al. 2022) steps in, with its inverse ``t_of_lambda``;
- ``f`` and ``g2``, the drift coefficient and squared diffusion of the forward SDE
  dx = f(t) x dt + g(t) dW (Song et al. 2021, "Score-Based Generative Modeling through
  SDEs"), which satisfy f = d log(alpha)/dt and g^2 = d(sigma^2)/dt - 2 f sigma^2;
- ``t_min`` (where sampling stops), ``t_max`` (where it starts) and ``prior_sample``.

Coefficients are computed in float64 when ``t`` is a Python float, and in the dtype of
``t`` when it is a tensor.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from lab import _check

__all__ = ["Schedule", "VPSchedule", "CosineSchedule", "SubVPSchedule", "VESchedule",
           "LinearSchedule", "OUSchedule", "SCHEDULES", "get_schedule"]


def _t(t) -> Tensor:
    return t if isinstance(t, Tensor) else torch.as_tensor(t, dtype=torch.float64)


T_SLACK = 1 + 1e-6  # check_t lets t exceed t_max by this factor: t_max rounded to float32


def _check_range(t_min, t_max, end: float, closed: bool = True):
    t_min = _check.real(t_min, "t_min", 0.0, low_open=True)
    t_max = _check.real(t_max, "t_max", 0.0, end, low_open=True, high_open=not closed)
    if not t_min < t_max:
        raise ValueError(f"need t_min < t_max, got t_min={t_min!r}, t_max={t_max!r}")
    return t_min, t_max


class Schedule:
    """Base class: subclasses define ``log_alpha``, ``sigma``, ``f``, ``g2`` and
    ``t_of_lambda`` in closed form; everything else is derived here."""

    name: str = ""
    t_min: float = 1e-3  # sampling stops here (no final jump to t = 0)
    t_max: float = 1.0   # sampling starts here, from the prior

    def log_alpha(self, t) -> Tensor:
        raise NotImplementedError

    def sigma(self, t) -> Tensor:
        raise NotImplementedError

    def f(self, t) -> Tensor:
        """Drift coefficient of the forward SDE, f(t) = d log alpha / dt."""
        raise NotImplementedError

    def g2(self, t) -> Tensor:
        """Squared diffusion of the forward SDE, g(t)^2 = d sigma^2/dt - 2 f sigma^2."""
        raise NotImplementedError

    def t_of_lambda(self, lam) -> Tensor:
        """Inverse of ``lambda_``: the time at which log(alpha / sigma) equals ``lam``."""
        raise NotImplementedError

    def alpha(self, t) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def lambda_(self, t) -> Tensor:
        """Half log signal-to-noise ratio, log(alpha / sigma) (Lu et al. 2022)."""
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def check_t(self, t, name: str = "t"):
        """``t`` unchanged when every time in it lies in [0, t_max] (t_max rounded to float32
        passes too); else a ValueError naming ``name``. A float, an int, a NumPy number, an
        array or a tensor; tensors off the CPU are not looked into (that would wait for
        the device)."""
        hi = self.t_max * T_SLACK
        if isinstance(t, float):  # the solvers' case: keep it quick
            if 0.0 <= t <= hi:
                return t
        elif isinstance(t, Tensor):
            if t.dtype == torch.bool or t.is_complex():
                raise ValueError(f"{name} must hold real times, got a {t.dtype} tensor")
            if t.device.type != "cpu" or t.numel() == 0:
                return t
            lo_t, hi_t = torch.aminmax(t.detach())
            if float(lo_t) >= 0.0 and float(hi_t) <= hi:
                return t
        elif isinstance(t, (bool, np.bool_)) or isinstance(t, (str, bytes)) or t is None:
            raise ValueError(f"{name} must be a time (a number or a tensor of numbers), got {_check.show(t)}")
        elif isinstance(t, numbers.Real):
            try:
                if 0.0 <= float(t) <= hi:
                    return t
            except OverflowError:  # an int beyond float64's range: far outside
                pass
        else:
            try:
                tt = torch.as_tensor(t, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError, OverflowError):
                raise ValueError(f"{name} must be a time (a number or a tensor of numbers), "
                                 f"got {_check.show(t)}") from None
            self.check_t(tt, name)
            return t
        raise ValueError(f"{name} must be a time in [0, t_max = {self.t_max:g}] of the {self.name} "
                         f"schedule, got {_check.show(t) if not isinstance(t, Tensor) else _tensor_range(t)}")

    def _check_usable(self):
        """Refuse arguments that leave alpha or sigma zero, infinite or NaN (in float64) at
        t_min or t_max, or lambda not decreasing between them: no sampler could use them."""
        args = ", ".join(f"{k}={v:g}" for k, v in self.config().items())
        for which in ("t_min", "t_max"):
            t = getattr(self, which)
            a, sg = float(self.alpha(t)), float(self.sigma(t))
            if not (0 < a < math.inf and 0 < sg < math.inf):
                raise ValueError(f"{self.name} schedule with {args}: alpha({which}) = {a:g} and "
                                 f"sigma({which}) = {sg:g}, both must be positive and finite; "
                                 f"change {which} or the other arguments")
        if not float(self.lambda_(self.t_min)) > float(self.lambda_(self.t_max)):
            raise ValueError(f"{self.name} schedule with {args}: the log-SNR lambda does not decrease "
                             "from t_min to t_max")

    @property
    def prior_std(self) -> float:
        """Std of the prior N(0, (alpha_T^2 + sigma_T^2) I): the exact marginal at t_max of
        data with identity covariance (the lab's data sets are scaled to about that)."""
        a, s = self.alpha(self.t_max), self.sigma(self.t_max)
        return float(torch.sqrt(a**2 + s**2))

    def prior_sample(self, n: int, generator: torch.Generator | None = None,
                     device=None, dtype=torch.float32) -> Tensor:
        """Draw ``n`` points (n, 2) from the prior at ``t_max``."""
        if generator is not None and device is None:
            device = generator.device
        z = torch.randn(n, 2, generator=generator, device=device, dtype=dtype)
        return self.prior_std * z

    def config(self) -> dict:
        """The constructor arguments that rebuild this schedule (for checkpoints)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class VPSchedule(Schedule):
    """Variance preserving, linear beta(t) = beta0 + (beta1 - beta0) t (Song et al. 2021;
    DDPM's continuous limit): log alpha = -(beta1 - beta0) t^2/4 - beta0 t/2,
    sigma^2 = 1 - alpha^2, f = -beta/2, g^2 = beta."""

    name = "vp"

    def __init__(self, beta0: float = 0.1, beta1: float = 20.0,
                 t_min: float = 1e-3, t_max: float = 1.0):
        beta0, beta1 = _check.real(beta0, "beta0"), _check.real(beta1, "beta1")
        if not 0 <= beta0 < beta1:
            raise ValueError(f"{self.name} schedule needs 0 <= beta0 < beta1, got {beta0} and {beta1}")
        self.beta0, self.beta1 = beta0, beta1
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0)
        self._check_usable()

    def beta(self, t) -> Tensor:
        return self.beta0 + (self.beta1 - self.beta0) * _t(t)

    def log_alpha(self, t):
        t = _t(t)
        return -0.25 * (self.beta1 - self.beta0) * t**2 - 0.5 * self.beta0 * t

    def sigma(self, t):
        if self.beta0 > 0:  # -2 log alpha >= beta0 t cannot underflow at a usable t
            return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))
        # beta0 = 0: x = -2 log alpha = beta1 t^2 / 2 underflows for t < 1e-154, where sigma
        # ~ t sqrt(beta1 / 2) does not: sigma = sqrt(t^2 beta1 / 2) sqrt(-expm1(-x) / x)
        t = _t(t)
        x = (0.5 * self.beta1 * t**2).clamp_min(1e-300)  # below it, -expm1(-x) / x is 1
        return torch.sqrt(t) * torch.sqrt(t * (0.5 * self.beta1) * (-torch.expm1(-x) / x))

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def t_of_lambda(self, lam):
        # L = -2 log alpha = log(1 + e^(-2 lambda)); solve (b1 - b0)/2 t^2 + b0 t = L.
        L = torch.nn.functional.softplus(-2 * _t(lam))
        b0, db = self.beta0, self.beta1 - self.beta0
        return 2 * L / (torch.sqrt(b0**2 + 2 * db * L) + b0)


class SubVPSchedule(VPSchedule):
    """sub-VP (Song et al. 2021): alpha as VP, sigma = 1 - alpha^2,
    g^2 = beta (1 - alpha^4)."""

    name = "subvp"

    def sigma(self, t):
        return -torch.expm1(2 * self.log_alpha(t))

    def g2(self, t):
        return self.beta(t) * -torch.expm1(4 * self.log_alpha(t))

    def t_of_lambda(self, lam):
        # alpha / (1 - alpha^2) = e^lambda with alpha = e^(-L/2) gives 2 sinh(L/2) = e^-lambda
        L = 2 * torch.asinh(0.5 * torch.exp(-_t(lam)))
        b0, db = self.beta0, self.beta1 - self.beta0
        return 2 * L / (torch.sqrt(b0**2 + 2 * db * L) + b0)


class CosineSchedule(Schedule):
    """Cosine schedule (Nichol & Dhariwal 2021), alpha^2 = cos^2(phi(t)) / cos^2(phi(0)),
    phi(t) = (t + s)/(1 + s) pi/2, sigma^2 = 1 - alpha^2; f = -pi/(2(1+s)) tan(phi),
    g^2 = -2 f. Stops at t_max = 0.9946 as DPM-Solver's code does (alpha -> 0 at 1)."""

    name = "cosine"

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946):
        self.s = _check.real(s, "s", 0.0)
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0, closed=False)
        # in c = pi/2 - phi, c(t) = c0 (1 - t): alpha = sin(c0 (1 - t)) / sin(c0)
        self._c0 = math.pi / 2 / (1 + self.s)
        self._sin0, self._cot0 = math.sin(self._c0), 1 / math.tan(self._c0)
        self._check_usable()

    def log_alpha(self, t):
        # log(cos(c0 t) - cot(c0) sin(c0 t)) as log1p: exact at t = 0 (where log(cos phi) -
        # log(cos phi0) rounded to a tiny positive number and sigma to NaN)
        d = self._c0 * _t(t)
        return torch.log1p(-2 * torch.sin(d / 2) ** 2 - self._cot0 * torch.sin(d))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def f(self, t):
        return -self._c0 / torch.tan(self._c0 * (1 - _t(t)))

    def g2(self, t):
        return -2 * self.f(t)

    def t_of_lambda(self, lam):
        # c0 t = c0 - asin(alpha sin c0) = asin(sin c0 sigma^2 / (sqrt(1 - alpha^2 sin^2 c0)
        # + alpha cos c0)), with sigma^2 = 1 - alpha^2: no cancellation as t -> 0
        log_a2 = -torch.nn.functional.softplus(-2 * _t(lam))
        a, sigma2 = torch.exp(0.5 * log_a2), -torch.expm1(log_a2)
        den = torch.sqrt(1 - (a * self._sin0) ** 2) + a * math.cos(self._c0)
        return torch.asin(self._sin0 * sigma2 / den) / self._c0


class VESchedule(Schedule):
    """Variance exploding (Song et al. 2021): alpha = 1,
    sigma = sigma_min (sigma_max/sigma_min)^t, f = 0, g^2 = 2 sigma^2 log(sigma_max/sigma_min).
    sigma_max defaults to 8, about the largest distance between two points of the lab's
    unit-scale data sets (Song & Ermon 2020, technique 1)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 8.0,
                 t_min: float = 1e-5, t_max: float = 1.0):
        sigma_min, sigma_max = _check.real(sigma_min, "sigma_min"), _check.real(sigma_max, "sigma_max")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE schedule needs 0 < sigma_min < sigma_max, "
                             f"got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0)
        self._log_ratio = math.log(sigma_max / sigma_min)  # inf if the ratio overflows: refused below
        self._check_usable()

    def log_alpha(self, t):
        return torch.zeros_like(_t(t))

    def sigma(self, t):
        return self.sigma_min * torch.exp(self._log_ratio * _t(t))

    def f(self, t):
        return torch.zeros_like(_t(t))

    def g2(self, t):
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def t_of_lambda(self, lam):
        return (-_t(lam) - math.log(self.sigma_min)) / self._log_ratio


class LinearSchedule(Schedule):
    """Linear interpolant of flow matching / rectified flow (Lipman et al. 2023; Liu et al.
    2023): alpha = 1 - t, sigma = t; f = -1/(1 - t), g^2 = 2 t/(1 - t). Stops at
    t_max = 0.999, where f is still finite."""

    name = "linear"

    def __init__(self, t_min: float = 1e-3, t_max: float = 0.999):
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0, closed=False)
        self._check_usable()

    def log_alpha(self, t):
        return torch.log1p(-_t(t))

    def sigma(self, t):
        return _t(t) * 1.0

    def f(self, t):
        return -1 / (1 - _t(t))

    def g2(self, t):
        t = _t(t)
        return 2 * t / (1 - t)

    def t_of_lambda(self, lam):
        return torch.sigmoid(-_t(lam))


class OUSchedule(Schedule):
    """Ornstein-Uhlenbeck forward process dx = -x dt + dW, as in Deveney et al. ("Closing
    the ODE-SDE gap ... through the Fokker-Planck equation"): alpha = e^-t,
    sigma^2 = (1 - e^(-2t))/2, f = -1, g^2 = 1, t in [1e-5, 10], prior N(0, I/2)."""

    name = "ou"

    def __init__(self, t_min: float = 1e-5, t_max: float = 10.0):
        self.t_min, self.t_max = _check_range(t_min, t_max, math.inf)
        self._check_usable()

    def log_alpha(self, t):
        return -_t(t)

    def sigma(self, t):
        return torch.sqrt(-0.5 * torch.expm1(-2 * _t(t)))

    def f(self, t):
        return -torch.ones_like(_t(t))

    def g2(self, t):
        return torch.ones_like(_t(t))

    def t_of_lambda(self, lam):
        # e^(2 lambda) = 2 e^(-2t) / (1 - e^(-2t))  =>  e^(2t) = 1 + 2 e^(-2 lambda), so
        # t = softplus(z)/2 with z = log 2 - 2 lambda, taken apart so e^z cannot overflow
        z = math.log(2) - 2 * _t(lam)
        return 0.5 * (z.clamp_min(0) + torch.log1p(torch.exp(-z.abs())))


def _tensor_range(t: Tensor) -> str:
    lo, hi = torch.aminmax(t.detach().double())
    return f"times from {float(lo):g} to {float(hi):g}" if t.numel() > 1 else f"{float(lo):g}"


SCHEDULES: dict[str, type[Schedule]] = {
    "vp": VPSchedule,
    "cosine": CosineSchedule,
    "subvp": SubVPSchedule,
    "ve": VESchedule,
    "linear": LinearSchedule,
    "ou": OUSchedule,
}


def get_schedule(name: str | Schedule, **kwargs) -> Schedule:
    """The schedule called ``name`` (one of ``SCHEDULES``), built with ``kwargs``."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[name](**kwargs)
    except TypeError as e:  # an argument this schedule does not take
        raise ValueError(f"schedule {name!r}: {e}") from None
