"""Stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023, "Stochastic Interpolants: A
Unifying Framework for Flows and Diffusions"): any two laws bridged by

    x_tau = alpha(tau) x0 + beta(tau) x1 + gamma(tau) z,     z ~ N(0, I),

with alpha(0) = beta(1) = 1, alpha(1) = beta(0) = 0, gamma(0) = gamma(1) = 0. Its velocity
b(tau, x) = E[alpha' x0 + beta' x1 + gamma' z | x_tau = x] carries the source's law rho_0 to
the target's rho_1 (d rho/d tau + div(rho b) = 0), and its score s = -E[z | x_tau = x] / gamma.

Between two Gaussian mixtures under independent coupling every one of these is exact: a pair
of components (i, j) makes (x0, x1, z, x_tau) jointly Gaussian, so x_tau is a mixture of
K0 K1 Gaussians N(alpha m_i + beta n_j, alpha^2 A_i + beta^2 B_j + gamma^2 I) and each
conditional mean is a posterior-weighted linear regression (``InterpolantField``).

Conventions (said once, here):

- **Time.** An interpolant runs tau from the source (0) to the target (1). The lab's
  samplers run t from the prior (t_max) down to the data (t_min). A flow meets them by
  t = 1 - tau: an ``InterpolantField``'s ScoreField methods (``velocity``, ``score``,
  ``x0``) take the lab's t, its own methods (``b``, ``s``, the conditional means) take tau.
  So ``velocity(x, t) = -b(x, 1 - t)`` (dx/dt = -dx/dtau) and ``sample(field, solver=
  "ode_rk4")`` starts from the source at t = 1 and ends on the target at t = 0.
- **Names.** The interpolant's x0 is its *source* and x1 its *target*; ``ScoreField.x0``
  is the data denoiser, which for a flow is the target's conditional mean. The three
  conditional means are named ``source_mean``, ``target_mean`` and ``noise_mean``.
- **Solvers.** A flow has no Gaussian prior and no x_t = alpha x0 + sigma eps form: only the
  ODE solvers (``ode_euler``, ``ode_heun``, ``ode_rk4``, ``ode_adaptive``, on a
  ``time_uniform``, ``time_quadratic`` or ``refined_end`` grid) and the interpolant's own SDE
  (``flow_sde``) apply; ``sample`` refuses the others with an error that says why. An
  interpolant from N(0, I) is the diffusion case: ``InterpolantField.as_diffusion()`` is its
  exact score field on an ``InterpolantSchedule`` (data coefficient beta(1 - t), noise
  sqrt(alpha^2 + gamma^2)(1 - t)), which every solver samples.
- **gamma.** sqrt(tau (1 - tau)) has an infinite derivative at both ends, so the velocity is
  written with gamma gamma' (finite): the grid's end points give no NaN.
- **Cost.** The exact field of K0 and K1 components has K0 K1 pairs, and its cost grows with
  them: an RK4 run of 4,000 points and 100 steps takes about 1 s from N(0, I) to a 200-point
  KDE and tens of seconds between two data sets (docs/flows.md), so points given as an end are
  reduced to a KDE of at most ``MAX_POINT_COMPONENTS`` components.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from lab import _check
from lab.data import DATASETS, GaussianMixture, dataset_mixture
from lab.fields import MixtureField, OnModel, broadcast_t
from lab.schedules import Schedule
from lab.solvers import sample

__all__ = ["Interpolant", "INTERPOLANTS", "GAMMAS", "get_interpolant", "InterpolantField", "FlowTime",
           "InterpolantSchedule", "VelocityField", "FlowScoreField", "score_from_velocity", "velocity_error",
           "interpolate", "straightness", "as_mixture", "is_standard_gaussian", "MAX_POINT_COMPONENTS",
           "MAX_PAIRS", "TAU_EDGE"]

MAX_POINT_COMPONENTS = 200   # components of the KDE made of points given as an end
MAX_PAIRS = 40_000           # K0 K1 above this is refused (memory and time of the exact field)
TAU_EDGE = 1e-3              # a noisy interpolant's networks are trained on [TAU_EDGE, 1 - TAU_EDGE]
_CHUNK_ENTRIES = 2_000_000   # points x pairs evaluated at once
_CHUNK_ENTRIES_FAST = 131_072   # the isotropic path's: its (points, pairs) arrays stay in cache


@dataclass(frozen=True)
class Interpolant:
    """alpha, beta, gamma of tau (tensors in, tensors out) with their derivatives (flow_matching's
    scheduler shape). ``gamma_dgamma`` is gamma gamma', finite where gamma' is not."""

    name: str
    alpha: Callable[[Tensor], Tensor]
    beta: Callable[[Tensor], Tensor]
    gamma: Callable[[Tensor], Tensor]
    d_alpha: Callable[[Tensor], Tensor]
    d_beta: Callable[[Tensor], Tensor]
    gamma_dgamma: Callable[[Tensor], Tensor]
    gaussian_source: bool = False      # one-sided: the source must be N(0, I)
    gamma_name: str = "zero"           # which of GAMMAS gamma is (get_interpolant's arguments, to rebuild it)
    a: float = 1.0                     # the "scaled" gamma's factor

    def check(self) -> "Interpolant":
        """Refuse an interpolant whose ends are not alpha(0) = beta(1) = 1, alpha(1) = beta(0) =
        gamma(0) = gamma(1) = 0, or whose coefficients are not finite inside."""
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        a, b, g = self.alpha(ends), self.beta(ends), self.gamma(ends)
        want = {"alpha(0)": (a[0], 1.0), "alpha(1)": (a[1], 0.0), "beta(0)": (b[0], 0.0),
                "beta(1)": (b[1], 1.0), "gamma(0)": (g[0], 0.0), "gamma(1)": (g[1], 0.0)}
        for name, (got, value) in want.items():
            if not abs(float(got) - value) < 1e-9:
                raise ValueError(f"interpolant {self.name!r}: {name} = {float(got):.6g}, an interpolant "
                                 f"needs {value:g} (x_0 the source at tau = 0, x_1 the target at tau = 1)")
        inside = torch.linspace(0, 1, 101, dtype=torch.float64)
        for fn in (self.alpha, self.beta, self.gamma, self.d_alpha, self.d_beta, self.gamma_dgamma):
            if not torch.isfinite(fn(inside)).all():
                raise ValueError(f"interpolant {self.name!r}: a coefficient is not finite on [0, 1]")
        return self


# --- gamma: the latent noise's size --------------------------------------------------------------
def _gamma_zero():
    zero = torch.zeros_like
    return zero, zero


def _gamma_scaled(a: float):
    """gamma = sqrt(a tau (1 - tau)); gamma gamma' = a (1 - 2 tau) / 2."""
    return (lambda t: torch.sqrt((a * t * (1 - t)).clamp_min(0)), lambda t: a * (1 - 2 * t) / 2)


def _gamma_sin2():
    """gamma = sin^2(pi tau); gamma gamma' = 2 pi sin^3(pi tau) cos(pi tau)."""
    return (lambda t: torch.sin(math.pi * t) ** 2,
            lambda t: 2 * math.pi * torch.sin(math.pi * t) ** 3 * torch.cos(math.pi * t))


GAMMAS = {"zero": lambda a: _gamma_zero(), "brownian_bridge": lambda a: _gamma_scaled(1.0),
          "scaled": _gamma_scaled, "sin2": lambda a: _gamma_sin2()}


def _family(name: str, gamma: str, a: float) -> Interpolant:
    return dataclasses.replace(_coefficients(name, gamma, a), gamma_name=gamma, a=a)


def _coefficients(name: str, gamma: str, a: float) -> Interpolant:
    g, ggd = GAMMAS[gamma](a)
    half_pi = math.pi / 2
    if name == "linear":           # rectified flow / CondOT (Liu et al. 2023; Lipman et al. 2023)
        return Interpolant(name, lambda t: 1 - t, lambda t: t, g, lambda t: -torch.ones_like(t),
                           torch.ones_like, ggd)
    if name in ("gvp", "one_sided"):   # alpha^2 + beta^2 = 1 (SiT's GVP; one-sided: VP's path)
        return Interpolant(name, lambda t: torch.cos(half_pi * t), lambda t: torch.sin(half_pi * t), g,
                           lambda t: -half_pi * torch.sin(half_pi * t), lambda t: half_pi * torch.cos(half_pi * t),
                           ggd, gaussian_source=name == "one_sided")
    if name == "trig":             # Albergo et al.'s trig: alpha^2 + beta^2 + gamma^2 = 1
        def c(t):
            return torch.sqrt((1 - g(t) ** 2).clamp_min(0))

        def dc(t):                 # (sqrt(1 - gamma^2))' = -gamma gamma' / sqrt(1 - gamma^2)
            return -ggd(t) / c(t)
        return Interpolant(name, lambda t: c(t) * torch.cos(half_pi * t), lambda t: c(t) * torch.sin(half_pi * t), g,
                           lambda t: dc(t) * torch.cos(half_pi * t) - c(t) * half_pi * torch.sin(half_pi * t),
                           lambda t: dc(t) * torch.sin(half_pi * t) + c(t) * half_pi * torch.cos(half_pi * t), ggd)
    if name == "encoding_decoding":   # Albergo et al.: through pure noise at tau = 1/2
        def cos2(t):
            return torch.cos(math.pi * t) ** 2

        def dcos2(t):
            return -math.pi * torch.sin(2 * math.pi * t)
        return Interpolant(name, lambda t: torch.where(t < 0.5, cos2(t), torch.zeros_like(t)),
                           lambda t: torch.where(t > 0.5, cos2(t), torch.zeros_like(t)), g,
                           lambda t: torch.where(t < 0.5, dcos2(t), torch.zeros_like(t)),
                           lambda t: torch.where(t > 0.5, dcos2(t), torch.zeros_like(t)), ggd)
    raise AssertionError(name)


INTERPOLANTS = ("linear", "trig", "gvp", "encoding_decoding", "one_sided")
_DEFAULT_GAMMA = {"linear": "zero", "trig": "brownian_bridge", "gvp": "zero", "encoding_decoding": "sin2",
                  "one_sided": "zero"}


def get_interpolant(name: str | Interpolant, gamma: str | None = None, a: float = 1.0) -> Interpolant:
    """The interpolant ``name`` (one of INTERPOLANTS) with latent noise ``gamma`` (one of GAMMAS:
    "zero", "brownian_bridge" sqrt(tau (1 - tau)), "scaled" sqrt(a tau (1 - tau)), "sin2"
    sin^2(pi tau); default: the family's own, the encoding-decoding one needs "sin2" to pass
    through noise). An ``Interpolant`` is checked and returned."""
    if isinstance(name, Interpolant):
        return name.check()
    if name not in INTERPOLANTS:
        raise ValueError(f"unknown interpolant {name!r}; choose one of {', '.join(INTERPOLANTS)}")
    gamma = _DEFAULT_GAMMA[name] if gamma is None else gamma
    if gamma not in GAMMAS:
        raise ValueError(f"unknown gamma {gamma!r}; choose one of {', '.join(GAMMAS)}")
    a = _check.real(a, "a (the scaled gamma's factor)", 0.0, 100.0, low_open=True)
    if name == "encoding_decoding" and gamma != "sin2":
        raise ValueError("the encoding-decoding interpolant passes through pure noise at tau = 1/2: "
                         "it needs gamma = 'sin2'")
    if name == "one_sided" and gamma != "zero":
        raise ValueError("a one-sided interpolant's noise is its Gaussian source: gamma must be 'zero'")
    if name == "trig" and (gamma == "sin2" or (gamma == "scaled" and a >= 4)):
        raise ValueError("the trig interpolant needs gamma < 1 inside (alpha^2 + beta^2 + gamma^2 = 1, and "
                         "gamma = 1 leaves alpha and beta no derivative): 'brownian_bridge', or 'scaled' with a < 4")
    return _family(name, gamma, a).check()


# --- the ends --------------------------------------------------------------------------------------
def as_mixture(end, name: str = "end") -> GaussianMixture:
    """An end of an interpolant as a GaussianMixture: a mixture as is, a data set's name
    (``lab.data.DATASETS``: its exact mixture), "gaussian" (N(0, I)), or points (n, 2),
    reduced to a Gaussian KDE of at most MAX_POINT_COMPONENTS components."""
    if isinstance(end, GaussianMixture):
        return end
    if isinstance(end, str):
        if end == "gaussian":
            return GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), 1.0)
        if end not in DATASETS:
            raise ValueError(f"unknown {name} {end!r}: a data set ({', '.join(DATASETS)}), 'gaussian', "
                             "a GaussianMixture or points (n, 2)")
        return dataset_mixture(end)
    return GaussianMixture.kde(end, max_components=MAX_POINT_COMPONENTS)


def is_standard_gaussian(m: GaussianMixture) -> bool:
    """Whether ``m`` is N(0, I): a one-sided interpolant's source, and a diffusion's prior."""
    return (m.n_components == 1 and float(m.means.abs().max()) == 0.0
            and bool(torch.allclose(m.covs[0], torch.eye(2, dtype=m.covs.dtype))))


def check_unit_time(t, what: str):
    """``t`` (a number or a tensor) unchanged when it lies in [0, 1], else a ValueError saying
    ``what`` it is; a tensor off the CPU is not looked into (that would wait for the device)."""
    tt = t.detach() if isinstance(t, Tensor) else torch.as_tensor(t, dtype=torch.float64)
    if tt.device.type == "cpu" and tt.numel() and not (float(tt.min()) >= 0.0 and float(tt.max()) <= 1.0):
        raise ValueError(f"{what} must lie in [0, 1], got {_check.show(t) if not isinstance(t, Tensor) else t}")
    return t


def interpolate(interpolant: Interpolant, x0: Tensor, x1: Tensor, tau, z: Tensor | None = None) -> Tensor:
    """x_tau = alpha x0 + beta x1 + gamma z (z: N(0, I) draws, needed where gamma > 0)."""
    tt = broadcast_t(tau, x0)
    xt = interpolant.alpha(tt) * x0 + interpolant.beta(tt) * x1
    return xt if z is None else xt + interpolant.gamma(tt) * z


def score_from_velocity(interpolant: Interpolant, b: Tensor, x: Tensor, tau) -> Tensor:
    """The score of a flow from N(0, I), read off its velocity (Albergo et al. 2023: one-sided
    interpolants need no second network). The source x0 and the latent z are both Gaussian, so
    the noise n = alpha x0 + gamma z (variance sigma^2 = alpha^2 + gamma^2) carries all of
    x_tau but beta x1: with E[x0 | x] = alpha E[n | x] / sigma^2, E[z | x] = gamma E[n | x] / sigma^2,

        x = E[n | x] + beta E[x1 | x],   b = (alpha alpha' + gamma gamma') E[n | x] / sigma^2 + beta' E[x1 | x],

    so E[n | x] = sigma^2 (beta b - beta' x) / (beta (alpha alpha' + gamma gamma') - beta' sigma^2) and
    s = -E[n | x] / sigma^2. Finite on [0, 1) (at tau = 0 it is the source's score -x); at
    tau = 1 the target's score is not in b. Where beta = 0 (the encoding-decoding interpolant's
    first half) x is all noise and s = -x / sigma^2."""
    I = interpolant
    tt = broadcast_t(tau, x)
    a, be, g = I.alpha(tt), I.beta(tt), I.gamma(tt)
    sigma2 = a * a + g * g
    denom = be * (a * I.d_alpha(tt) + I.gamma_dgamma(tt)) - I.d_beta(tt) * sigma2
    pure_noise = (be == 0) & (I.d_beta(tt) == 0)
    safe = torch.where(pure_noise, torch.ones_like(denom), denom)
    return torch.where(pure_noise, -x / sigma2, -(be * b - I.d_beta(tt) * x) / safe)


class FlowTime:
    """The clock a flow gives the lab's samplers: t = 1 - tau on [t_min, t_max] = [0, 1]; its
    "prior" at t = 1 is the interpolant's source. Not a noise schedule: it has no alpha,
    sigma or lambda (``sample`` uses only ``time_uniform`` and ``time_quadratic`` grids)."""

    name = "flow"
    t_min = 0.0
    t_max = 1.0
    is_flow = True

    def __init__(self, source: GaussianMixture):
        self.source = source

    def check_t(self, t, name: str = "t"):
        """``t`` unchanged when it lies in [0, 1]; else a ValueError naming ``name``."""
        return check_unit_time(t, f"{name} (t = 1 - tau of the flow)")

    def prior_sample(self, n: int, generator: torch.Generator | None = None, device=None,
                     dtype=torch.float32) -> Tensor:
        """``n`` draws of the source (the flow's start, t = 1)."""
        return self.source.sample(n, generator=generator).to(dtype=dtype, device=device)

    def config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return "FlowTime()"


class InterpolantSchedule(Schedule):
    """The noise schedule of an interpolant from N(0, I): x_tau = alpha z0 + beta x1 + gamma z
    is beta x1 + sqrt(alpha^2 + gamma^2) eps, so in the lab's time t = 1 - tau its data
    coefficient is beta(1 - t) and its sigma sqrt(alpha^2 + gamma^2)(1 - t); f = d log
    alpha_t / dt, g^2 = d sigma^2/dt - 2 f sigma^2, and lambda's inverse by bisection. The linear
    interpolant gives the lab's ``linear`` schedule, the one-sided trig one VP's path (after a
    change of time). It stops short of the ends, on [t_min, t_max] = [1e-3, 0.999], as
    ``linear`` does (alpha or sigma vanish there)."""

    def __init__(self, interpolant: Interpolant, t_min: float = 1e-3, t_max: float = 0.999):
        self.interpolant = interpolant
        self.name = f"interpolant:{interpolant.name}"
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._check_usable()

    @staticmethod
    def _tau(t):          # a tensor keeps its dtype and device (as the lab's schedules do)
        return 1 - (t if isinstance(t, Tensor) else torch.as_tensor(t, dtype=torch.float64))

    def log_alpha(self, t):
        return torch.log(self.interpolant.beta(self._tau(t)))

    def sigma(self, t):
        tau, I = self._tau(t), self.interpolant
        return torch.sqrt(I.alpha(tau) ** 2 + I.gamma(tau) ** 2)

    def f(self, t):
        tau, I = self._tau(t), self.interpolant
        return -I.d_beta(tau) / I.beta(tau)

    def g2(self, t):
        tau, I = self._tau(t), self.interpolant
        d_sigma2 = -2 * (I.alpha(tau) * I.d_alpha(tau) + I.gamma_dgamma(tau))   # d/dt = -d/dtau
        return d_sigma2 - 2 * self.f(t) * self.sigma(t) ** 2

    def t_of_lambda(self, lam):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.full_like(lam, self.t_min)      # lambda decreases in t: lam(lo) >= lam >= lam(hi)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self.lambda_(mid) > lam
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def config(self) -> dict:
        return {"t_min": self.t_min, "t_max": self.t_max}


class InterpolantField:
    """The exact fields of the interpolant between ``source`` and ``target`` (each a
    GaussianMixture, a data set's name, "gaussian", or points; ``as_mixture``) under
    independent coupling: the velocity ``b``, the score ``s`` and the three conditional means,
    in the interpolant's time tau; and the lab's ScoreField methods in t = 1 - tau (module doc)
    so that ``sample(field, solver="ode_rk4")`` carries the source to the target.

    For pair (i, j) of components, x_tau ~ N(mu_ij, S_ij) with mu_ij = alpha m_i + beta n_j and
    S_ij = alpha^2 A_i + beta^2 B_j + gamma^2 I; with r_ij(x) the pair's posterior weight and
    d_ij = S_ij^-1 (x - mu_ij):

        E[x0 | x] = sum r_ij (m_i + alpha A_i d_ij),   E[x1 | x] = sum r_ij (n_j + beta B_j d_ij),
        E[z | x] = gamma sum r_ij d_ij,   s(x) = -sum r_ij d_ij,
        b = alpha' E[x0 | x] + beta' E[x1 | x] + gamma gamma' sum r_ij d_ij.
    """

    def __init__(self, source="gaussian", target="two_moons", interpolant: str | Interpolant = "linear"):
        self.interpolant = get_interpolant(interpolant)
        self.source, self.target = as_mixture(source, "source"), as_mixture(target, "target")
        if self.interpolant.gaussian_source and not is_standard_gaussian(self.source):
            raise ValueError(f"the {self.interpolant.name} interpolant's source must be N(0, I) ('gaussian')")
        pairs = self.source.n_components * self.target.n_components
        if pairs > MAX_PAIRS:
            raise ValueError(f"{self.source.n_components} x {self.target.n_components} = {pairs:,} component pairs: "
                             f"the exact field holds at most {MAX_PAIRS:,} (give fewer points, or a smaller mixture)")
        self.schedule = FlowTime(self.source)
        k0, k1 = self.source.n_components, self.target.n_components
        self._i = torch.arange(k0).repeat_interleave(k1)       # pair -> source component
        self._j = torch.arange(k1).repeat(k0)                  # pair -> target component
        self._log_w = (self.source.weights[self._i] * self.target.weights[self._j]).log()
        self._cast = {}
        self._isotropic = all(bool((c[:, 0, 1] == 0).all() and (c[:, 1, 0] == 0).all()
                                   and (c[:, 0, 0] == c[:, 1, 1]).all())
                              for c in (self.source.covs, self.target.covs))

    device = None                 # exact: computes wherever its input is
    dtype = torch.float64
    is_flow = True

    def as_input(self, x) -> Tensor:
        return torch.as_tensor(x, dtype=self.dtype)

    def as_diffusion(self) -> MixtureField:
        """The diffusion an interpolant from N(0, I) is: the target's exact score field on the
        interpolant's ``InterpolantSchedule``, which every solver of ``lab.solvers`` samples.
        Its velocity is this field's (``velocity``) and its x0 the target mean."""
        if not is_standard_gaussian(self.source):
            raise ValueError("only an interpolant from N(0, I) (source 'gaussian') is a diffusion: this one's "
                             "source is another law; sample it with the ODE solvers or flow_sde")
        return MixtureField(self.target, InterpolantSchedule(self.interpolant))

    @property
    def pairs(self) -> int:
        """Components of x_tau's mixture: K0 K1."""
        return int(self._i.numel())

    # --- the pair mixture -----------------------------------------------------------------------
    def _params(self, like: Tensor):
        key = (like.dtype, like.device)
        if key not in self._cast:
            cast = lambda v: v.to(dtype=like.dtype, device=like.device)   # noqa: E731
            self._cast[key] = (cast(self.source.means[self._i]), cast(self.source.covs[self._i]),
                               cast(self.target.means[self._j]), cast(self.target.covs[self._j]),
                               cast(self._log_w))
        return self._cast[key]

    def _coefficients(self, tau, x: Tensor):
        I = self.interpolant
        tt = broadcast_t(tau, x)
        if tt.ndim == 0:
            tt = tt.reshape(1, 1)
        return tuple(fn(tt) for fn in (I.alpha, I.beta, I.gamma, I.d_alpha, I.d_beta, I.gamma_dgamma))

    def _moments(self, x: Tensor, tau, want: tuple[str, ...]) -> dict:
        """The posterior-weighted sums the fields need, chunked over points: 'd' (sum r d),
        'source', 'target' (the conditional means), 'log_prob'."""
        x = self._checked(x)
        coefs = self._coefficients(tau, x)
        if self._isotropic and coefs[0].shape[0] == 1:
            return self._moments_isotropic(x, coefs, want)
        m0, A, m1, B, log_w = self._params(x)
        n, k = x.shape[0], self.pairs
        step = max(1, _CHUNK_ENTRIES // k)
        parts = {w: [] for w in want}
        for lo in range(0, max(n, 1), step):
            rows = slice(lo, lo + step)
            xc = x[rows]
            a, b, g = (c if c.shape[0] == 1 else c[rows] for c in coefs[:3])
            a3, b3, g3 = (v.reshape(-1, 1, 1, 1) for v in (a, b, g))     # (n|1, 1, 1, 1)
            eye = torch.eye(2, dtype=x.dtype, device=x.device)
            S = a3**2 * A + b3**2 * B + g3**2 * eye                          # (n|1, K, 2, 2)
            mu = a.reshape(-1, 1, 1) * m0 + b.reshape(-1, 1, 1) * m1         # (n|1, K, 2)
            diff = xc[:, None, :] - mu                                        # (nc, K, 2)
            det = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
            inv = torch.stack([torch.stack([S[..., 1, 1], -S[..., 0, 1]], -1),
                               torch.stack([-S[..., 1, 0], S[..., 0, 0]], -1)], -2) / det[..., None, None]
            d = torch.einsum("nkij,nkj->nki", inv.expand(diff.shape[0], -1, -1, -1), diff)
            logp = log_w - 0.5 * (diff * d).sum(-1) - 0.5 * torch.log(det) - math.log(2 * math.pi)
            r = torch.softmax(logp, dim=1)                                    # (nc, K)
            if "log_prob" in parts:
                parts["log_prob"].append(logp.logsumexp(1))
            if "d" in parts:
                parts["d"].append(torch.einsum("nk,nki->ni", r, d))
            if "source" in parts:
                ad = torch.einsum("kij,nkj->nki", A, d) * a.reshape(-1, 1, 1)
                parts["source"].append(torch.einsum("nk,nki->ni", r, m0 + ad))
            if "target" in parts:
                bd = torch.einsum("kij,nkj->nki", B, d) * b.reshape(-1, 1, 1)
                parts["target"].append(torch.einsum("nk,nki->ni", r, m1 + bd))
        out = {w: torch.cat(v) for w, v in parts.items()}
        out["coefs"] = coefs
        return out

    def _moments_isotropic(self, x: Tensor, coefs, want: tuple[str, ...]) -> dict:
        """``_moments`` where every component is isotropic (the lab's data sets, KDEs, the
        Gaussian) and tau is one time: S_ij = v_ij I with v_ij = alpha^2 a_i^2 + beta^2 b_j^2 +
        gamma^2, so each sum over pairs is a weighted sum of x - mu_ij, taken as x sum w -
        sum w mu (matrix products: a few operations a pair instead of a 2 x 2 solve)."""
        m0, A, m1, B, log_w = self._params(x)
        a, b, g = (float(c.reshape(-1)[0]) for c in coefs[:3])
        var0, var1 = A[:, 0, 0], B[:, 0, 0]
        v = a * a * var0 + b * b * var1 + g * g                 # (K,)
        mu = a * m0 + b * m1                                    # (K, 2)
        mu2 = (mu * mu).sum(1)
        const = log_w - torch.log(v) - math.log(2 * math.pi)
        # sum_k r_k c_k (x - mu_k) = x (r @ c) - r @ (c mu), for the pair weights c of the sums:
        # d (1/v), source (alpha a_i^2 / v), target (beta b_j^2 / v). One product r @ P gives them
        # all, with the components' means: P = [m0, m1, c mu (3 x 2), c (3)], (K, 13)
        scale = torch.stack([1 / v, a * var0 / v, b * var1 / v], 1)                  # (K, 3)
        P = torch.cat([m0, m1, (scale[:, :, None] * mu[:, None, :]).reshape(-1, 6), scale], 1)
        mu_t2 = -2 * mu.T
        n, k = x.shape[0], self.pairs
        step = max(1, _CHUNK_ENTRIES_FAST // k)
        parts = {w: [] for w in want}
        for lo in range(0, max(n, 1), step):
            xc = x[lo:lo + step]
            q = torch.addmm(mu2, xc, mu_t2).add_((xc * xc).sum(1, keepdim=True)).div_(v)   # |x - mu|^2 / v
            logp = q.mul_(-0.5).add_(const)
            if "log_prob" in parts:
                parts["log_prob"].append(logp.logsumexp(1))
            rp = torch.softmax(logp, dim=1) @ P                                        # (nc, 13)
            sums = xc[:, None, :] * rp[:, 10:, None] - rp[:, 4:10].reshape(-1, 3, 2)    # (nc, 3, 2)
            if "d" in parts:
                parts["d"].append(sums[:, 0])
            if "source" in parts:
                parts["source"].append(rp[:, 0:2] + sums[:, 1])
            if "target" in parts:
                parts["target"].append(rp[:, 2:4] + sums[:, 2])
        out = {w: torch.cat(v) for w, v in parts.items()}
        out["coefs"] = coefs
        return out

    def _checked(self, x: Tensor) -> Tensor:
        broadcast_t(0.0, x)            # refuses what is not points (n, 2)
        if not _check.all_finite(x):
            raise ValueError("x holds NaN or infinite values")
        return x

    @staticmethod
    def _check_tau(tau):
        return check_unit_time(tau, "tau (0: the source, 1: the target)")

    # --- in the interpolant's time tau ----------------------------------------------------------------
    def b(self, x: Tensor, tau) -> Tensor:
        """The velocity b(tau, x) = E[alpha' x0 + beta' x1 + gamma' z | x_tau = x], (n, 2)."""
        out = self._moments(x, self._check_tau(tau), ("d", "source", "target"))
        _, _, _, da, db, ggd = out["coefs"]
        return da * out["source"] + db * out["target"] + ggd * out["d"]

    def s(self, x: Tensor, tau) -> Tensor:
        """The score grad log rho_tau(x), (n, 2)."""
        return -self._moments(x, self._check_tau(tau), ("d",))["d"]

    def source_mean(self, x: Tensor, tau) -> Tensor:
        """E[x0 | x_tau = x]: where the source point of x most likely was."""
        return self._moments(x, self._check_tau(tau), ("source",))["source"]

    def target_mean(self, x: Tensor, tau) -> Tensor:
        """E[x1 | x_tau = x]: the target's denoiser."""
        return self._moments(x, self._check_tau(tau), ("target",))["target"]

    def noise_mean(self, x: Tensor, tau) -> Tensor:
        """E[z | x_tau = x] (the paper's eta_z), zero where gamma is."""
        out = self._moments(x, self._check_tau(tau), ("d",))
        return out["coefs"][2] * out["d"]

    def sample_at(self, tau, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (float64) of x_tau = alpha x0 + beta x1 + gamma z, x0 and x1 independent."""
        tau = float(self._check_tau(tau))
        x0 = self.source.sample(n, generator=generator)
        x1 = self.target.sample(n, generator=generator)
        z = torch.randn(n, 2, generator=generator, dtype=x0.dtype)
        return interpolate(self.interpolant, x0, x1, tau, z)

    def log_prob(self, x: Tensor, tau) -> Tensor:
        """log rho_tau(x), (n,)."""
        return self._moments(x, self._check_tau(tau), ("log_prob",))["log_prob"]

    # --- the lab's ScoreField methods, in t = 1 - tau --------------------------------------------------
    def _tau(self, t):
        self.schedule.check_t(t)
        return 1 - t

    def velocity(self, x: Tensor, t) -> Tensor:
        """dx/dt in the lab's time: -b(x, 1 - t)."""
        return -self.b(x, self._tau(t))

    def score(self, x: Tensor, t) -> Tensor:
        return self.s(x, self._tau(t))

    def x0(self, x: Tensor, t) -> Tensor:
        """The data denoiser of the lab's fields: for a flow, the target's conditional mean."""
        return self.target_mean(x, self._tau(t))

    def eps(self, x: Tensor, t) -> Tensor:
        raise ValueError("a flow has no x_t = alpha x0 + sigma eps form, so no noise prediction eps: "
                         "use its velocity (the ODE solvers) or its score")

    def __repr__(self) -> str:
        return (f"InterpolantField({self.source.n_components} -> {self.target.n_components} components, "
                f"{self.interpolant.name})")


class _FlowNetwork(OnModel):
    """A network of a flow, ``model(x, c)`` with c = 2 tau - 1 (the network's noise-level input,
    in [-1, 1]), on the flow's clock (``FlowTime``); ``config``, ``summary`` and ``meta`` as a
    ``NetworkField``'s. A class-conditional one (``TrainConfig(n_classes=K)``) is the flow to
    one class's data by ``with_label(k)``, and to all of it by ``with_label(None)`` (the
    default: label dropout's "no class")."""

    is_flow = True

    def __init__(self, model: torch.nn.Module, interpolant: Interpolant, source: GaussianMixture):
        self.model, self.interpolant, self.source = model, interpolant, source
        self.schedule = FlowTime(source)
        self.config = None    # the TrainConfig it was trained with
        self.summary = None
        self.meta = {}

    @property
    def coupling(self) -> str:
        """How its training paired source and target points (its TrainConfig's; "independent"
        when it has none)."""
        return getattr(self.config, "coupling", "independent")

    def _net(self, x: Tensor, tau, labels: Tensor | None = None) -> Tensor:
        tt = broadcast_t(tau, x)
        if self.n_classes and labels is None:
            labels = torch.full((1,), self.n_classes if self.label is None else self.label,
                                dtype=torch.long, device=x.device)
        return self.model(x, (2 * tt - 1).reshape(-1), *(() if labels is None else (labels,)))

    def eps(self, x: Tensor, t) -> Tensor:
        raise ValueError("a flow has no noise prediction eps: use its velocity (the ODE solvers)")


class FlowScoreField(_FlowNetwork):
    """A network as a flow's score (``lab.train`` with ``objective="score"`` or ``"denoiser"``):
    Albergo et al.'s L_s trains s(tau, x) = grad log rho_tau itself, L_eta the noise's denoiser
    eta(tau, x) = E[z | x_tau = x], whose score is s = -eta / gamma. Either needs gamma > 0
    inside, and is trained on tau in [TAU_EDGE, 1 - TAU_EDGE], where gamma is not 0: nearer the
    ends (where s = -eta / gamma would divide by 0) it answers for the nearest trained tau. It has
    no velocity: give it to ``VelocityField.with_score`` for ``flow_sde``."""

    def __init__(self, model, interpolant, source, kind: str = "denoiser"):
        super().__init__(model, interpolant, source)
        if kind not in ("score", "denoiser"):
            raise ValueError(f"a flow's score network is a 'score' or a 'denoiser', got {kind!r}")
        self.kind = kind

    def _trained(self, x: Tensor, tau) -> Tensor:
        return broadcast_t(check_unit_time(tau, "tau"), x).clamp(TAU_EDGE, 1 - TAU_EDGE)

    def s(self, x: Tensor, tau, labels: Tensor | None = None) -> Tensor:
        """The learned score grad log rho_tau(x), (n, 2) (``labels``: a class per point)."""
        tau = self._trained(x, tau)
        out = self._net(x, tau, labels)
        if self.kind == "score":
            return out
        return -out / self.interpolant.gamma(tau)

    def noise_mean(self, x: Tensor, tau) -> Tensor:
        """The learned E[z | x_tau = x]."""
        tau = self._trained(x, tau)
        out = self._net(x, tau)
        return out if self.kind == "denoiser" else -self.interpolant.gamma(tau) * out

    def score(self, x: Tensor, t) -> Tensor:
        self.schedule.check_t(t)
        return self.s(x, 1 - broadcast_t(t, x))

    def velocity(self, x: Tensor, t) -> Tensor:
        raise ValueError("a flow's score network has no velocity: pair it with one "
                         "(VelocityField.with_score) to sample")

    def __repr__(self) -> str:
        return f"FlowScoreField({self.interpolant.name}, {self.kind})"


class VelocityField(_FlowNetwork):
    """A network as a flow's velocity (``lab.train`` with ``objective="velocity"``): ``model(x,
    c)`` is b(tau, x), trained by Albergo et al.'s quadratic loss to be E[alpha' x0 + beta' x1 +
    gamma' z | x_tau = x]. The lab's methods in t = 1 - tau as ``InterpolantField``'s; ``x0`` is
    the one Euler step to the end, x + (1 - tau) b (the target mean itself for the linear
    interpolant without noise). Its score, which ``flow_sde`` with eps > 0 needs, follows from b
    when the source is N(0, I) and independent of the target (``score_from_velocity``; an OT or
    reflow coupling makes x0 depend on x1, and Tweedie's formula fails); otherwise it is a
    second network's (``with_score``), else ``score`` refuses."""

    score_field: FlowScoreField | None = None

    def b(self, x: Tensor, tau, labels: Tensor | None = None) -> Tensor:
        """The learned velocity b(tau, x), (n, 2) (``labels``: a class per point)."""
        return self._net(x, tau, labels)

    def with_score(self, score_field: FlowScoreField | None) -> "VelocityField":
        """This velocity with ``score_field``'s score (None: none), a new field sharing the network."""
        if score_field is not None:
            if not isinstance(score_field, FlowScoreField):
                raise TypeError(f"with_score takes a FlowScoreField, got {type(score_field).__name__}")
            def setting(f):
                I = f.interpolant
                return f"the {I.name} interpolant with gamma {I.gamma_name!r} (a = {I.a:g}), {f.coupling} coupling"
            if setting(score_field) != setting(self):
                raise ValueError(f"the score was learned on {setting(score_field)}, the velocity on {setting(self)}: "
                                 "their marginals differ")
        out = copy.copy(self)
        out.score_field = score_field
        return out

    @property
    def has_score(self) -> bool:
        """Whether ``s`` is defined: a score network, or an independent source N(0, I)."""
        return self.score_field is not None or (is_standard_gaussian(self.source) and self.coupling == "independent")

    def s(self, x: Tensor, tau) -> Tensor:
        """The score: the score network's, else from b (an independent source N(0, I)), else a
        ValueError that says why."""
        if self.score_field is not None:
            return (self.score_field if self.label is None else self.score_field.with_label(self.label)).s(x, tau)
        if self.has_score:
            return score_from_velocity(self.interpolant, self.b(x, tau), x, tau)
        why = ("this flow's source is not N(0, I)" if not is_standard_gaussian(self.source) else
               f"under its {self.coupling!r} coupling x0 depends on x1")
        raise ValueError(f"{why}, so its score does not follow from its velocity: train one "
                         "(TrainConfig(objective='denoiser'), gamma > 0) and pair it by with_score, "
                         "or sample with eps = 0")

    def velocity(self, x: Tensor, t) -> Tensor:
        self.schedule.check_t(t)
        return -self.b(x, 1 - broadcast_t(t, x))

    def x0(self, x: Tensor, t) -> Tensor:
        return x - broadcast_t(t, x) * self.velocity(x, t)

    def score(self, x: Tensor, t) -> Tensor:
        self.schedule.check_t(t)
        return self.s(x, 1 - broadcast_t(t, x))

    def __repr__(self) -> str:
        return f"VelocityField({self.interpolant.name}{', with a score' if self.score_field else ''})"


@torch.no_grad()
def velocity_error(field, exact: "InterpolantField", taus=(0.1, 0.25, 0.5, 0.75, 0.9), n: int = 4000,
                   seed: int = 0, of: str = "velocity") -> dict[float, float]:
    """Relative L2(rho_tau) error of a learned flow's velocity (or, ``of="score"``, its score) to
    the exact field's at each tau in ``taus``, on ``n`` points x_tau drawn from the interpolant
    itself (the norm its quadratic loss minimises):

        err(tau) = sqrt( E |b_theta(tau, x) - b(tau, x)|^2 / E |b(tau, x)|^2 ).
    """
    if of not in ("velocity", "score"):
        raise ValueError(f"of must be 'velocity' or 'score', got {of!r}")
    out = {}
    for tau in taus:
        x = exact.sample_at(tau, n, generator=torch.Generator().manual_seed(seed))
        tau = float(tau)
        true = exact.b(x, tau) if of == "velocity" else exact.s(x, tau)
        xf = x.to(dtype=torch.float32, device=field.device)
        got = (field.b(xf, tau) if of == "velocity" else field.s(xf, tau)).double().cpu()
        out[tau] = float(((got - true) ** 2).sum(1).mean().sqrt() / (true ** 2).sum(1).mean().sqrt())
    return out


@torch.no_grad()
def straightness(field, n: int = 1000, steps: int = 100, seed: int = 0) -> float:
    """Rectified flow's straightness (Liu et al. 2023) along the flow's own paths:
    S = int_0^1 E |(x1 - x0) - b(tau, x_tau)|^2 dtau, with x_tau the RK4 path from a source draw
    x0 to its end x1 (``steps`` steps, the trapezoid rule in tau). 0: every path is a straight
    line run at constant speed, so one Euler step is exact."""
    traj = sample(field, n=n, solver="ode_rk4", steps=steps, seed=seed)
    xs, ts = traj.xs, traj.ts
    chord = xs[-1] - xs[0]
    values = torch.stack([((chord - field.b(xs[i], 1 - float(ts[i]))) ** 2).sum(1).mean()
                          for i in range(len(ts))]).double()
    return float(torch.trapezoid(values, 1 - ts.to(values.dtype)))

