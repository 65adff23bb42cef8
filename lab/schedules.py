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

import torch
from torch import Tensor

__all__ = ["Schedule", "VPSchedule", "CosineSchedule", "SubVPSchedule", "VESchedule",
           "LinearSchedule", "OUSchedule", "SCHEDULES", "get_schedule"]


def _t(t) -> Tensor:
    return t if isinstance(t, Tensor) else torch.as_tensor(t, dtype=torch.float64)


def _check_range(t_min, t_max, end: float, closed: bool = True):
    ok = isinstance(t_min, (int, float)) and isinstance(t_max, (int, float)) and 0 < t_min < t_max
    ok = ok and (t_max <= end if closed else t_max < end)
    if not ok:
        bound = f"<= {end}" if closed else f"< {end}"
        raise ValueError(f"need 0 < t_min < t_max {bound}, got t_min={t_min!r}, t_max={t_max!r}")
    return float(t_min), float(t_max)


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
        if not 0 <= beta0 < beta1:
            raise ValueError(f"VP schedule needs 0 <= beta0 < beta1, got {beta0} and {beta1}")
        self.beta0, self.beta1 = beta0, beta1
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0)

    def beta(self, t) -> Tensor:
        return self.beta0 + (self.beta1 - self.beta0) * _t(t)

    def log_alpha(self, t):
        t = _t(t)
        return -0.25 * (self.beta1 - self.beta0) * t**2 - 0.5 * self.beta0 * t

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

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
        self.s = s
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0, closed=False)
        self._log_cos0 = math.log(math.cos(s / (1 + s) * math.pi / 2))

    def _phi(self, t):
        return (_t(t) + self.s) / (1 + self.s) * math.pi / 2

    def log_alpha(self, t):
        return torch.log(torch.cos(self._phi(t))) - self._log_cos0

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def f(self, t):
        return -math.pi / (2 * (1 + self.s)) * torch.tan(self._phi(t))

    def g2(self, t):
        return -2 * self.f(t)

    def t_of_lambda(self, lam):
        log_a = -0.5 * torch.nn.functional.softplus(-2 * _t(lam))
        phi = torch.arccos(torch.exp(log_a + self._log_cos0))
        return phi * 2 * (1 + self.s) / math.pi - self.s


class VESchedule(Schedule):
    """Variance exploding (Song et al. 2021): alpha = 1,
    sigma = sigma_min (sigma_max/sigma_min)^t, f = 0, g^2 = 2 sigma^2 log(sigma_max/sigma_min).
    sigma_max defaults to 8, about the largest distance between two points of the lab's
    unit-scale data sets (Song & Ermon 2020, technique 1)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 8.0,
                 t_min: float = 1e-5, t_max: float = 1.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE schedule needs 0 < sigma_min < sigma_max, "
                             f"got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.t_min, self.t_max = _check_range(t_min, t_max, 1.0)
        self._log_ratio = math.log(sigma_max / sigma_min)

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

    def log_alpha(self, t):
        return -_t(t)

    def sigma(self, t):
        return torch.sqrt(-0.5 * torch.expm1(-2 * _t(t)))

    def f(self, t):
        return -torch.ones_like(_t(t))

    def g2(self, t):
        return torch.ones_like(_t(t))

    def t_of_lambda(self, lam):
        # e^(2 lambda) = 2 e^(-2t) / (1 - e^(-2t))  =>  e^(2t) = 1 + 2 e^(-2 lambda).
        return 0.5 * torch.log1p(2 * torch.exp(-2 * _t(lam)))


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
