"""Every sampler behind one signature, and the time grids they step on.

    traj = sample(field, n=4000, solver="dpm++2m", steps=20, spacing="logsnr", eta=None, seed=0)

Notation (Lu et al. 2022): x_t = alpha_t x0 + sigma_t eps, lambda = log(alpha/sigma),
h = lambda_t - lambda_s > 0 for a step from s to t < s.

The knob ``eta`` runs the family of reverse processes that share the marginals p_t
(Song et al. 2021; Karras et al. 2022):

    dx = [f x - (1 + eta^2)/2 g^2 score] dt + eta g dW,

eta = 0 the probability-flow ODE, eta = 1 the reverse SDE. Its exact first-order step in
data-prediction form, derived for this lab (DDIM's step at eta = 0 and 1 — SDE-DPM-Solver++1
at 1; between, DDIM's noise eta^2 sigma_t^2 (1 - e^(-2h)) agrees with this one to first
order in h, and k-diffusion's eta is this eta squared):

    x_t = (sigma_t/sigma_s) e^(-eta^2 h) x_s + alpha_t (1 - e^(-(1+eta^2) h)) x0_s
          + sigma_t sqrt(1 - e^(-2 eta^2 h)) z.

Samples end at the schedule's t_min: there is no final jump to t = 0.
"""
from __future__ import annotations

import collections
import functools
import math
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from lab import _check
from lab.fields import LAMBDA_FLOOR, ScoreField, eps_to_score, eps_to_x0

__all__ = ["Trajectory", "Solver", "SOLVERS", "SPACINGS", "sample", "time_grid",
           "NonFiniteError", "MAX_STEPS", "convergence_order"]

MAX_STEPS = 10_000        # more steps than this are refused
KARRAS_RHO = 7.0          # Karras et al. 2022's spacing exponent
PC_SNR = 0.16             # Song et al. 2021's Langevin corrector signal-to-noise ratio
ADAPTIVE_RTOL = 1e-5      # ode_adaptive's default tolerances (dopri5)
ADAPTIVE_ATOL = 1e-5


class NonFiniteError(ValueError):
    """The field or the solver produced NaN or infinity."""


@dataclass
class Trajectory:
    """A sampling run. ``samples`` (n, 2) at t_min; ``xs`` (steps+1, n, 2) the states on
    the time grid ``ts`` (steps+1,) from t_max down to t_min; ``x0_preds`` (steps, n, 2) the
    denoised prediction at the start of each step; ``nfe`` the field evaluations used."""

    samples: Tensor
    xs: Tensor
    ts: Tensor
    x0_preds: Tensor
    nfe: int
    solver: str = ""
    eta: float = 0.0


# --- time grids ------------------------------------------------------------------------
def _grid_time_uniform(schedule, steps):
    return _pin_ends(torch.linspace(schedule.t_max, schedule.t_min, steps + 1, dtype=torch.float64),
                     schedule)


def _grid_time_quadratic(schedule, steps):
    r = torch.linspace(math.sqrt(schedule.t_max), math.sqrt(schedule.t_min), steps + 1,
                       dtype=torch.float64)
    return _pin_ends(r**2, schedule)


REFINED_END = (10, 10)    # "refined_end": the last 10 uniform steps, each cut into 10


def _grid_refined_end(schedule, steps):
    """Deveney et al.'s sampler grid: uniform in t, its last REFINED_END[0] steps each cut
    into REFINED_END[1] (their 800: 790 steps of 10/800, then 100 of 10/8000, 890 in all),
    so the fast-changing score near t = 0 is followed closely. ``steps`` counts them all.
    With 100 steps or fewer, only the last coarse step is cut, into min(10, steps // 2)."""
    last, cut = REFINED_END
    if steps <= last * cut:
        last, cut = 1, max(1, min(cut, steps // 2))
    coarse = steps - last * (cut - 1)
    ts = torch.linspace(schedule.t_max, schedule.t_min, coarse + 1, dtype=torch.float64)
    fine = torch.linspace(float(ts[coarse - last]), schedule.t_min, last * cut + 1, dtype=torch.float64)
    return _pin_ends(torch.cat([ts[:coarse - last], fine]), schedule)


def _lambda_start(schedule) -> float:
    """Where noise-level grids start: lambda(t_max), or LAMBDA_FLOOR when the schedule
    reaches further into pure noise (e.g. VP with beta up to 200: lambda(1) = -50), where
    x_t holds no trace of the data and a step would be wasted. The grid still begins at
    t_max: its first step crosses that stretch at once."""
    return max(float(schedule.lambda_(schedule.t_max)), LAMBDA_FLOOR)


def _grid_logsnr(schedule, steps):
    lam = torch.linspace(_lambda_start(schedule), float(schedule.lambda_(schedule.t_min)), steps + 1,
                         dtype=torch.float64)
    return _pin_ends(schedule.t_of_lambda(lam), schedule)


def _grid_karras(schedule, steps):
    # Karras et al. 2022 eq. 5 on their sigma, which is sigma/alpha = e^-lambda here, in logs
    # (sigma^(1/rho) = e^u): sigma itself overflows where lambda(t_max) < -709.
    u_hi = -_lambda_start(schedule) / KARRAS_RHO
    u_lo = -float(schedule.lambda_(schedule.t_min)) / KARRAS_RHO
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    log_sig = KARRAS_RHO * (u_hi + torch.log1p(ramp * math.expm1(u_lo - u_hi)))
    return _pin_ends(schedule.t_of_lambda(-log_sig), schedule)


def _pin_ends(ts, schedule):
    ts[0], ts[-1] = schedule.t_max, schedule.t_min  # exact ends, whatever the round-off
    return ts


SPACINGS: dict[str, Callable] = {
    "time_uniform": _grid_time_uniform,
    "time_quadratic": _grid_time_quadratic,
    "logsnr": _grid_logsnr,
    "karras": _grid_karras,
    "refined_end": _grid_refined_end,
}


def time_grid(schedule, steps: int, spacing: str = "logsnr") -> Tensor:
    """steps+1 decreasing times (float64) from t_max to t_min."""
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return SPACINGS[spacing](schedule, steps)


# --- one run's bookkeeping -------------------------------------------------------------
class _Run:
    """What every solver shares: the field, the grid, NFE counting, finiteness checks,
    recording of states and x0 predictions, the callback and the noise generator."""

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

    def eps(self, x, t) -> Tensor:
        self.nfe += 1
        out = self.field.eps(x, float(t))
        if not _check.all_finite(out):
            raise NonFiniteError(f"the field returned non-finite values at t={float(t):.4g} "
                                 f"(step {self.step + 1} of solver {self.solver!r})")
        return out

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


def _first_order_step(run: _Run, x, x0, s, t, eta, z=None):
    """The exact-linear-part step of the eta family (module doc), data prediction x0."""
    a_t, sg_t, l_t = run.coef(t)
    _, sg_s, l_s = run.coef(s)
    h = l_t - l_s
    out = (sg_t / sg_s) * math.exp(-eta**2 * h) * x + a_t * -math.expm1(-(1 + eta**2) * h) * x0
    if eta > 0:
        out = out + sg_t * math.sqrt(-math.expm1(-2 * eta**2 * h)) * (run.noise(x) if z is None else z)
    return out


# --- the solvers -----------------------------------------------------------------------
def _em_step(run: _Run, x: Tensor, s: float, t: float, eta: float, noise: bool = True):
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


def _last(run: _Run, i: int) -> bool:
    return i == len(run.ts) - 2


def euler_maruyama(run: _Run, x: Tensor) -> Tensor:
    """Euler-Maruyama on the eta family; eta = 1 is the reverse SDE (Song et al. 2021).

    The last step adds no noise, as Song et al.'s samplers and Deveney et al.'s do: its
    noise, of variance eta^2 g^2 dt whatever the noise level, would never be taken out by a
    later step (0.11 in std at 800 steps over OU's [0, 10], twice the ODE's bias)."""
    for i in range(len(run.ts) - 1):
        x, x0 = _em_step(run, x, float(run.ts[i]), float(run.ts[i + 1]), run.eta, noise=not _last(run, i))
        run.record(i, x, x0)
    return x


def ddpm(run: _Run, x: Tensor, variance: str = "small") -> Tensor:
    """Ancestral sampling from the Gaussian posterior q(x_t | x_s, x0) (Ho et al. 2020, in
    the general form of Kingma et al. 2021): mean alpha_ts sigma_t^2/sigma_s^2 x_s +
    alpha_t sigma_ts^2/sigma_s^2 x0, variance sigma_ts^2 sigma_t^2/sigma_s^2.

    ``variance``: "small", the posterior's (Ho et al.'s sigma^2 = beta-tilde); or "large",
    sigma_ts^2 (their sigma^2 = beta, for VP the step's beta) with no noise on the last
    step, as DDPM's code and Aithal et al.'s ("fixed-large") sample."""
    _check_variance(variance)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        x0 = run.x0(x, s)
        x = _ancestral_step(run, x, x0, s, t, variance, _last(run, i))
        run.record(i, x, x0)
    return x


def _check_variance(variance):
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")


def _ancestral_step(run: _Run, x, x0, s, t, variance, last):
    """One draw of ``ddpm``'s posterior step from s to t, given the x0 prediction."""
    a_s, sg_s, _ = run.coef(s)
    a_t, sg_t, _ = run.coef(t)
    a_ts = a_s / a_t                       # alpha_{s|t}
    var_ts = sg_s**2 - a_ts**2 * sg_t**2   # sigma_{s|t}^2
    mean = a_ts * sg_t**2 / sg_s**2 * x + a_t * var_ts / sg_s**2 * x0
    var = var_ts * sg_t**2 / sg_s**2 if variance == "small" else 0.0 if last else var_ts
    return mean + math.sqrt(max(var, 0.0)) * run.noise(x)


def ddim(run: _Run, x: Tensor) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021); eta = 0 deterministic, 1 ancestral, between: the family.

    For 0 < eta < 1 the step is the exact first-order step of the eta family (module doc),
    whose noise differs from DDIM's own eta at second order in the step."""
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        x0 = run.x0(x, s)
        x = _first_order_step(run, x, x0, s, t, run.eta)
        run.record(i, x, x0)
    return x


# --- time-shifted sampling (Li et al. 2024) ----------------------------------------------
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


def _shifted_time(run: _Run, x: Tensor, s: float, t: float, window: int, cutoff: int, var0: float) -> float:
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
    v = float(x.detach().cpu().double().var(dim=0).mean())
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


def ts_ddim(run: _Run, x: Tensor, window: int = TS_WINDOW, cutoff: int = TS_CUTOFF,
            data_var: float | None = None) -> Tensor:
    """TS-DDIM (Li et al. 2024, "Alleviating exposure bias in diffusion models through sampling
    with shifted time steps", Alg. 2): DDIM whose network is asked at a shifted time, the one
    whose noise level the current samples' variance matches (``_shifted_time``), and which
    steps from there to the grid's next time. Exposure bias leaves the samples noisier than
    their time says; the shift asks the network about the noise they have.

    ``window``, ``cutoff``: in thousandths of the time range, as the paper's steps of a
    1000-step chain; ``data_var``: the data's variance per coordinate (default: the field's).
    With VP or OU and data of unit variance, alpha^2 + sigma^2 = 1 at every time: the variance
    says nothing of the noise level, no time is shifted, and this is DDIM."""
    window, cutoff, var0 = _ts_options(run, window, cutoff, data_var)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        tau = _shifted_time(run, x, s, t, window, cutoff, var0)
        x0 = run.x0(x, tau)
        x = _first_order_step(run, x, x0, tau, t, run.eta)
        run.record(i, x, x0)
    return x


def ts_ddpm(run: _Run, x: Tensor, window: int = TS_WINDOW, cutoff: int = TS_CUTOFF,
            data_var: float | None = None, variance: str = "small") -> Tensor:
    """TS-DDPM (Li et al. 2024, Alg. 1): ancestral sampling (``ddpm``) whose network is asked
    at the shifted time of ``ts_ddim``, the posterior step taken from there."""
    _check_variance(variance)
    window, cutoff, var0 = _ts_options(run, window, cutoff, data_var)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        tau = _shifted_time(run, x, s, t, window, cutoff, var0)
        x0 = run.x0(x, tau)
        x = _ancestral_step(run, x, x0, tau, t, variance, _last(run, i))
        run.record(i, x, x0)
    return x


def _ode_stepper(tableau: str):
    def step(run, x, s, t):
        h = t - s
        v = lambda y, u: _velocity(run, y, u)
        k1, x0 = v(x, s)
        if tableau == "euler":
            return x + h * k1, x0
        if tableau == "heun":
            k2, _ = v(x + h * k1, t)
            return x + h / 2 * (k1 + k2), x0
        k2, _ = v(x + h / 2 * k1, s + h / 2)
        k3, _ = v(x + h / 2 * k2, s + h / 2)
        k4, _ = v(x + h * k3, t)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), x0
    return step


def _velocity(run: _Run, x, t):
    """PF-ODE drift f x + g^2/(2 sigma) eps, and the x0 prediction at (x, t)."""
    e = run.eps(x, t)
    a, sg, _ = run.coef(t)
    return (float(run.schedule.f(t)) * x - float(run.schedule.g2(t)) / 2 * eps_to_score(e, sg),
            eps_to_x0(x, e, a, sg))


def _ode_solver(tableau: str, doc: str):
    stepper = _ode_stepper(tableau)

    def solver(run: _Run, x: Tensor) -> Tensor:
        for i in range(len(run.ts) - 1):
            x, x0 = stepper(run, x, float(run.ts[i]), float(run.ts[i + 1]))
            run.record(i, x, x0)
        return x
    solver.__doc__ = doc
    solver.__name__ = f"ode_{tableau}"
    return solver


ode_euler = _ode_solver("euler", "Euler's method on the probability-flow ODE in t (Song et al. 2021).")
ode_heun = _ode_solver("heun", "Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1).")
ode_rk4 = _ode_solver("rk4", "Classical fourth-order Runge-Kutta on the probability-flow ODE.")


def ode_adaptive(run: _Run, x: Tensor, rtol: float = ADAPTIVE_RTOL, atol: float = ADAPTIVE_ATOL) -> Tensor:
    """Adaptive Dormand-Prince 5(4) (Dormand & Prince 1980; torchdiffeq's dopri5) on the PF-ODE.

    As Song et al. 2021 sample and compute likelihoods; the grid only says where states are
    kept (x0 predictions there are for display and not counted in the NFE)."""
    _check.real(rtol, "rtol", 1e-12, 1.0)
    _check.real(atol, "atol", 1e-12, 1.0)
    from torchdiffeq import odeint

    def rhs(t, y):
        return _velocity(run, y, t)[0]

    ts = run.ts.to(dtype=x.dtype, device=x.device)
    # step_t: steps land on the grid, so none overshoots t_min (torchdiffeq would otherwise
    # evaluate past the last time and interpolate back); first_step: its own first guess
    # can leave [t_min, t_max] on long time ranges (OU's t_max = 10)
    first = 0.01 * float(ts[0] - ts[1])
    ys = odeint(rhs, x, ts, method="dopri5", rtol=rtol, atol=atol,
                options={"step_t": ts, "first_step": first})
    for i in range(len(ts) - 1):
        # x0 predictions for display, at the kept states: not part of the solve, not counted
        x0 = run.field.x0(ys[i], float(ts[i]))
        if not torch.isfinite(x0).all():
            raise NonFiniteError(f"the field returned non-finite values at t={float(ts[i]):.4g} "
                                 f"(step {i + 1} of solver 'ode_adaptive')")
        run.record(i, ys[i + 1], x0)
    return ys[-1]


def dpm1(run: _Run, x: Tensor) -> Tensor:
    """DPM-Solver-1 (Lu et al. 2022, eq. 3.7), eps form; equals DDIM with eta = 0."""
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        a_s, sg_s, l_s = run.coef(s)
        a_t, sg_t, l_t = run.coef(t)
        e = run.eps(x, s)
        x0 = eps_to_x0(x, e, a_s, sg_s)
        x = (a_t / a_s) * x - sg_t * math.expm1(l_t - l_s) * e
        run.record(i, x, x0)
    return x


def dpm2(run: _Run, x: Tensor) -> Tensor:
    """DPM-Solver-2, singlestep, r1 = 1/2 (Lu et al. 2022, Alg. 1), eps form."""
    r1 = 0.5
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        a_s, sg_s, l_s = run.coef(s)
        a_t, sg_t, l_t = run.coef(t)
        h = l_t - l_s
        s1 = float(run.schedule.t_of_lambda(l_s + r1 * h))
        a_1, sg_1, _ = run.coef(s1)
        e = run.eps(x, s)
        u = (a_1 / a_s) * x - sg_1 * math.expm1(r1 * h) * e
        e1 = run.eps(u, s1)
        x0 = eps_to_x0(x, e, a_s, sg_s)
        x = (a_t / a_s) * x - sg_t * math.expm1(h) * e - sg_t / (2 * r1) * math.expm1(h) * (e1 - e)
        run.record(i, x, x0)
    return x


def dpm3(run: _Run, x: Tensor) -> Tensor:
    """DPM-Solver-3, singlestep, r1 = 1/3, r2 = 2/3 (Lu et al. 2022, Alg. 2), eps form."""
    r1, r2 = 1 / 3, 2 / 3
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        a_s, sg_s, l_s = run.coef(s)
        a_t, sg_t, l_t = run.coef(t)
        h = l_t - l_s
        s1, s2 = (float(run.schedule.t_of_lambda(l_s + r * h)) for r in (r1, r2))
        a_1, sg_1, _ = run.coef(s1)
        a_2, sg_2, _ = run.coef(s2)
        e = run.eps(x, s)
        u1 = (a_1 / a_s) * x - sg_1 * math.expm1(r1 * h) * e
        d1 = run.eps(u1, s1) - e
        phi_2 = math.expm1(r2 * h) / (r2 * h) - 1
        u2 = (a_2 / a_s) * x - sg_2 * math.expm1(r2 * h) * e - (r2 / r1) * sg_2 * phi_2 * d1
        d2 = run.eps(u2, s2) - e
        x0 = eps_to_x0(x, e, a_s, sg_s)
        x = (a_t / a_s) * x - sg_t * math.expm1(h) * e - (sg_t / r2) * (math.expm1(h) / h - 1) * d2
        run.record(i, x, x0)
    return x


def _dpmpp_2m(run: _Run, x: Tensor, eta: float) -> Tensor:
    prev_x0, prev_h = None, None
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        _, _, l_s = run.coef(s)
        _, _, l_t = run.coef(t)
        h = l_t - l_s
        x0 = run.x0(x, s)
        d = x0
        if prev_x0 is not None and not (eta > 0 and _last(run, i)):
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * prev_x0
        x = _first_order_step(run, x, d, s, t, eta)
        prev_x0, prev_h = x0, h
        run.record(i, x, x0)
    return x


def dpmpp_2m(run: _Run, x: Tensor) -> Tensor:
    """DPM-Solver++(2M), multistep data prediction (Lu et al. 2022b, Alg. 2)."""
    return _dpmpp_2m(run, x, 0.0)


def dpmpp_2m_sde(run: _Run, x: Tensor) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Appendix), on the eta family (eta = 1: the SDE).

    The last step is first order (as DPM-Solver++'s code's ``lower_order_final``): there
    the step in lambda is often many times the previous one (a time-uniform grid's last
    step), and extrapolating x0 predictions of noisy states that far multiplies their
    noise (measured: the end variance 2.7x too wide at 800 OU steps)."""
    return _dpmpp_2m(run, x, run.eta)


@functools.lru_cache(maxsize=8)
def _gauss_legendre(points: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1], computed once per size: NumPy's
    eigen-solver wakes its own BLAS threads, which then spin beside torch's and slowed
    every DEIS run in the served lab about 2x on a 2-core CPU."""
    import numpy as np

    return tuple(torch.tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(points))


def _deis_coefficients(run: _Run, order: int, quad_points: int = 64) -> list[list[float]]:
    """C[i][j] = int_{t_i}^{t_i+1} (alpha_t/alpha_tau) g^2(tau)/(2 sigma_tau) l_j(tau) dtau for
    the Lagrange basis l_j through t_i, t_{i-1}, ... (Zhang & Chen 2022, tAB-DEIS), by
    Gauss-Legendre quadrature."""
    nodes, weights = _gauss_legendre(quad_points)   # shared: read, never written
    ts, sch = run.ts, run.schedule
    coeffs = []
    for i in range(len(ts) - 1):
        a, b = float(ts[i]), float(ts[i + 1])
        tau = (a + b) / 2 + (b - a) / 2 * nodes
        w = (b - a) / 2 * weights
        kernel = torch.exp(sch.log_alpha(b) - sch.log_alpha(tau)) * sch.g2(tau) / (2 * sch.sigma(tau))
        k = min(order, i)  # warm start: lower order until enough past evaluations exist
        pts = [float(ts[i - j]) for j in range(k + 1)]
        row = []
        for j in range(k + 1):
            lj = torch.ones_like(tau)
            for m in range(k + 1):
                if m != j:
                    lj = lj * (tau - pts[m]) / (pts[j] - pts[m])
            row.append(float((w * kernel * lj).sum()))
        coeffs.append(row)
    return coeffs


def deis(run: _Run, x: Tensor, order: int = 3) -> Tensor:
    """tAB-DEIS (Zhang & Chen 2022): exact linear part, eps extrapolated by a Lagrange
    polynomial in t through the last order+1 evaluations.

    ``order`` is the polynomial degree, as in Zhang & Chen's tAB3 (3 by default); the first
    steps use lower degrees until enough evaluations exist."""
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 4:
        raise ValueError(f"deis order (polynomial degree) must be an integer from 0 to 4, got {order!r}")
    coeffs = _deis_coefficients(run, order)
    history: list[Tensor] = []
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        e = run.eps(x, s)
        history.insert(0, e)
        history = history[: order + 1]
        a_s, sg_s, _ = run.coef(s)
        a_t, _, _ = run.coef(t)
        x0 = eps_to_x0(x, e, a_s, sg_s)
        x = (a_t / a_s) * x + sum(c * ej for c, ej in zip(coeffs[i], history))
        run.record(i, x, x0)
    return x


UNIPC_VARIANTS = ("bh1", "bh2")


def _unipc_rhos(rks: list[float], h: float, variant: str) -> tuple[float, list[float], list[float]]:
    """UniPC's coefficients for one step of size h in lambda (Zhao et al. 2023, Alg. 2-3, data
    prediction): ``rks`` the past points' r_k = (lambda_k - lambda_s)/h (negative), then 1 for
    the point the corrector adds. Returns B(h) (bh1: -h, bh2: e^-h - 1) and the predictor's
    and corrector's weights rho, solved from sum_k rho_k r_k^(j-1) = j! phi_(j+1)(-h) / B(h)
    for j = 1..p (phi_1 = (e^x - 1)/x, phi_(j+1) = (phi_j - 1/j!)/x): the conditions for
    order p of the predictor (its p-1 past points) and p+1 of the corrector (all p). Solved
    exactly, B(h) would cancel; UniPC sets a lone rho to its limit 1/2, and only there do
    bh1 and bh2 differ."""
    hh = -h
    b_h = hh if variant == "bh1" else math.expm1(hh)
    phi, factorial, b = math.expm1(hh) / hh - 1, 1, []
    for j in range(1, len(rks) + 1):
        b.append(phi * factorial / b_h)
        factorial *= j + 1
        phi = phi / hh - 1 / factorial
    r = torch.tensor(rks, dtype=torch.float64)
    mat = torch.stack([r**j for j in range(len(rks))])      # row j: r_k^j
    rhs = torch.tensor(b, dtype=torch.float64)
    def solve(k):   # a single unknown takes its h -> 0 limit 1/2, as UniPC's code: there B(h) matters
        return [] if k == 0 else [0.5] if k == 1 else torch.linalg.solve(mat[:k, :k], rhs[:k]).tolist()
    return b_h, solve(len(rks) - 1), solve(len(rks))


def unipc(run: _Run, x: Tensor, order: int = 2, variant: str = "bh2", corrector: bool = True,
          lower_order_final: bool = True) -> Tensor:
    """UniPC (Zhao et al. 2023): multistep predictor UniP-p on the x0 prediction, each state
    then corrected by UniC with the model output at it, which the next step reuses: no
    extra evaluation (NFE = steps), order p+1 instead of p.

    ``order`` p (1-3): past outputs the predictor uses (the first steps use fewer);
    ``variant``: B(h) = -h ("bh1", the paper's choice for few steps on unconditional models)
    or e^-h - 1 ("bh2"); ``corrector`` False: UniP alone; ``lower_order_final``: the last
    steps lower the order to the steps left (as diffusers' UniPC), which steadies very few
    steps. The last state is not corrected (that would cost one more evaluation)."""
    _unipc_options(order, variant, corrector=corrector, lower_order_final=lower_order_final)
    return _unipc(run, x, order, variant, corrector, lower_order_final)


def _unipc_options(order, variant, **flags):
    _check.integer(order, "order", 1, 3)
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unipc variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}")
    _check_flags(**flags)


def _check_flags(**flags):
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")


def _lagrange(points: list[tuple[float, Tensor]], at: float) -> Tensor:
    """The polynomial through (lambda_k, value_k), at lambda = ``at``."""
    out = 0
    for j, (l_j, v_j) in enumerate(points):
        w = 1.0
        for k, (l_k, _) in enumerate(points):
            if k != j:
                w *= (at - l_k) / (l_j - l_k)
        out = out + w * v_j
    return out


def _unipc(run: _Run, x: Tensor, order: int, variant: str, corrector: bool, lower_order_final: bool,
           ratios=None, stop: int | None = None) -> Tensor:
    """UniPC's loop; with ``ratios`` DC-Solver's compensation (``dc_solver``); ``stop``: end
    after that many steps (the ratio search)."""
    n = len(run.ts) - 1
    m = run.x0(x, float(run.ts[0]))
    past: list[tuple[float, Tensor]] = []      # (lambda, x0 prediction), most recent first
    for i in range(n if stop is None else stop):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        _, sg_s, l_s = run.coef(s)
        a_t, sg_t, l_t = run.coef(t)
        h = l_t - l_s
        m_here = m
        if ratios is not None and past and ratios[i] != 1.0:
            # DC: the output at the corrected state, read off the outputs' path in lambda at
            # lambda_prev + rho (lambda_s - lambda_prev); rho = 1 is UniPC's own
            pts = [(l_s, m)] + past[:DC_POINTS - 1]
            m = _lagrange(pts, past[0][0] + ratios[i] * (l_s - past[0][0]))
        p = min(order, i + 1, n - i if lower_order_final else order)
        used = past[:p - 1]
        rks = [(l_k - l_s) / h for l_k, _ in used] + [1.0]
        diffs = [(m_k - m) / r for (_, m_k), r in zip(used, rks)]
        b_h, rho_p, rho_c = _unipc_rhos(rks, h, variant)
        x_lin = (sg_t / sg_s) * x - a_t * math.expm1(-h) * m
        x_new = x_lin - a_t * b_h * sum((r * d for r, d in zip(rho_p, diffs)), torch.zeros_like(x))
        m_new = None
        if i < n - 1:
            m_new = run.x0(x_new, t)
            if corrector:
                corr = sum((r * d for r, d in zip(rho_c[:-1], diffs)), rho_c[-1] * (m_new - m))
                x_new = x_lin - a_t * b_h * corr
        run.record(i, x_new, m_here)
        past = [(l_s, m_here)] + past[:max(order, DC_POINTS) - 1]
        x, m = x_new, m_new
    return x


# --- DC-Solver (Zhao et al. 2024) -----------------------------------------------------------
DC_POINTS = 3             # outputs the compensation interpolates (a quadratic in lambda)
DC_RATIOS = torch.linspace(0.5, 1.5, 21).tolist()   # the ratios each step's search tries
DC_SEARCH_POINTS = 64     # reference trajectories the ratios are searched on
DC_REFERENCE_SUBSTEPS = 20  # RK4 steps per grid step of the reference
DC_MAX_SEARCH = 25        # steps beyond which no ratio is searched (all 1: UniPC)


def _reference_states(field, ts: Tensor, x: Tensor, substeps: int) -> list[Tensor]:
    """The probability-flow ODE's states at each time of ``ts`` from ``x``, by RK4 with
    ``substeps`` steps per interval (the "ground truth" DC-Solver's search aims at)."""
    sub = torch.cat([torch.linspace(float(a), float(b), substeps + 1, dtype=torch.float64)[:-1]
                     for a, b in zip(ts[:-1], ts[1:])] + [ts[-1:].double()])
    fine = _Run(field, sub, 0.0, None, None, "ode_rk4", keep_last=None)
    stepper, states, y = _ode_stepper("rk4"), [x], x
    for k in range(len(sub) - 1):
        y, _ = stepper(fine, y, float(sub[k]), float(sub[k + 1]))
        if (k + 1) % substeps == 0:
            states.append(y)
    return states


def dc_ratios(field, ts: Tensor, order: int = 2, variant: str = "bh2", points: int = DC_SEARCH_POINTS,
              substeps: int = DC_REFERENCE_SUBSTEPS, seed: int = 0) -> list[float]:
    """DC-Solver's compensation ratios for UniPC on the grid ``ts`` (Zhao et al. 2024, Sec.
    3.3), searched on ``points`` reference trajectories of the field's own ODE (RK4) for the
    end state nearest the reference's: one sweep of coordinate descent over the steps from
    rho = 1 (UniPC), each step's ratio the best of ``DC_RATIOS`` with the others fixed, a
    change kept only when it lowers the error (where they optimise all ratios at once by
    gradient descent). Beyond DC_MAX_SEARCH steps the misalignment is small and the search
    costly (it grows as steps^2): all ratios stay 1. Cost: len(DC_RATIOS) x steps^2
    evaluations of ``points`` points, plus the reference's 4 x substeps x steps."""
    n = len(ts) - 1
    ratios = [1.0] * n
    if n > DC_MAX_SEARCH or n < 2:
        return ratios
    g = torch.Generator().manual_seed(seed)
    x = field.as_input(field.schedule.prior_sample(points, generator=g))

    def error(rs):
        out = _unipc(_Run(field, ts, 0.0, None, None, "dc_solver"), x, order, variant, True, True, rs)
        return float((out - target).norm(dim=1).mean())

    with torch.no_grad():
        target = _reference_states(field, ts, x, substeps)[-1]
        best = error(ratios)
        for i in range(1, n):                  # the first step has no past to interpolate
            for r in DC_RATIOS:
                trial = ratios[:i] + [r] + ratios[i + 1:]
                e = error(trial)
                if e < best:
                    best, ratios = e, trial
    return ratios


def dc_solver(run: _Run, x: Tensor, order: int = 2, variant: str = "bh2", ratios=None,
              search_points: int = DC_SEARCH_POINTS) -> Tensor:
    """DC-Solver (Zhao et al. 2024): UniPC whose predictor uses, instead of the output
    evaluated before the correction moved the state, the outputs' interpolant in lambda
    (through the last DC_POINTS) at a compensated noise level lambda_prev + rho_i
    (lambda_s - lambda_prev): dynamic compensation of the predictor-corrector misalignment.

    Unlike DC-Solver's code, the history keeps the outputs as evaluated (theirs stores the
    compensated one) and compensation starts with two points (linear) at step 1: measured,
    1.71e-2 against 1.75e-2 with theirs at 10 steps (UniPC: 4.45e-2).

    ``ratios`` (one per step): given, or searched on the field's own reference trajectories
    (``dc_ratios``; cached per field and grid: a few seconds at 10 steps, none beyond 25).
    ``order``, ``variant``: UniPC's (``unipc``)."""
    _unipc_options(order, variant)
    n = len(run.ts) - 1
    if ratios is None:
        points = _check.integer(search_points, "search_points", 1, 100_000)
        ratios = _cached(run.field, ("dc", tuple(run.ts.tolist()), order, variant, points),
                         lambda: dc_ratios(run.field, run.ts, order, variant, points))
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__len__"):
        raise ValueError(f"dc_solver's ratios must be a sequence of numbers, one per step, got {ratios!r}")
    ratios = [_check.real(r, "ratio", -10.0, 10.0) for r in ratios]
    if len(ratios) != n:
        raise ValueError(f"dc_solver needs one ratio per step: {n}, got {len(ratios)}")
    return _unipc(run, x, order, variant, True, True, ratios)


def _cached(field, key, compute):
    """compute(), kept per field object (while it lives) under ``key`` and the version of its
    network's weights (a model trained further in place, as ``train``'s callbacks see it, is
    another field to the statistics)."""
    model = getattr(field, "model", None)
    if model is not None:
        key = (*key, tuple(p._version for p in model.parameters()))
    try:
        per_field = _PER_FIELD.setdefault(field, {})
    except TypeError:                                          # a field that takes no weak reference
        per_field = {}
    if key not in per_field:
        per_field[key] = compute()
    return per_field[key]


_PER_FIELD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # statistics, ratios


# --- DPM-Solver-v3 (Zheng et al. 2023) ---------------------------------------------------
EMS_POINTS = 200      # noise levels at which DPM-Solver-v3's statistics are taken, at least
EMS_SAMPLES = 500     # points per noise level
EMS_S_MAX = 10.0      # |s| at most this (a stiff field's f' / f can reach hundreds where f is ~0)


@dataclass
class EMS:
    """DPM-Solver-v3's empirical model statistics on a fine grid of lambda (K+1,) that holds
    the sampling grid (its points at ``index``): l, s, b (K+1, 2) per coordinate and their
    integrals from the start, L = int l, S = int s, B = int e^-S b, I = int e^(L+S),
    C = int e^(L+S) B (trapezoid rule). ``nfe``: the field evaluations they cost."""

    lam: Tensor
    index: list[int]
    l: Tensor
    s: Tensor
    b: Tensor
    L: Tensor
    S: Tensor
    B: Tensor
    I: Tensor
    C: Tensor
    nfe: int

    def on(self, device) -> "EMS":
        """The statistics on ``device`` (float64), copied there once."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        copies = self.__dict__.setdefault("_copies", {})
        if device not in copies:
            copies[device] = EMS(*(getattr(self, k).to(device) for k in ("lam",)), self.index,
                                 *(getattr(self, k).to(device) for k in ("l", "s", "b", "L", "S", "B", "I", "C")),
                                 self.nfe)
        return copies[device]


def _cumtrapz(y: Tensor, x: Tensor) -> Tensor:
    """int_x0^x y (K+1, ...) over x (K+1,), by the trapezoid rule (0 at the start)."""
    dx = (x[1:] - x[:-1]).reshape(-1, *([1] * (y.ndim - 1)))
    return torch.cat([torch.zeros_like(y[:1]), torch.cumsum(dx * (y[1:] + y[:-1]) / 2, 0)])


def empirical_model_statistics(field: ScoreField, ts: Tensor, points: int = EMS_POINTS,
                               samples: int = EMS_SAMPLES, seed: int = 0) -> EMS:
    """DPM-Solver-v3's EMS (Zheng et al. 2023, Sec. 3.2) of ``field`` for the sampling grid
    ``ts``, computed here by finite differences (2-D is cheap). On lambda points that split
    each step of ``ts`` evenly (``points`` in all, at least), with x_lambda = alpha x0 + sigma z
    for fixed draws x0 (the field's exact mixture, or its own samples) and z, per coordinate:

        l  = E[d(sigma eps_i)/dx_i]            (the linear part: argmin E|grad_x(sigma eps - l x)|^2)
        f  = (sigma eps - l x) / alpha         (what is left, in data units)
        s, b = argmin E|f' - s f - b|^2        (f' = df/dlambda along the probability-flow ODE)

    Cost: about 7 evaluations of ``samples`` points per lambda point (and the draws of x0
    for a field with no mixture: 100 more). Cached per field object and grid in ``sample``."""
    import numpy as np

    gen = torch.Generator().manual_seed(seed)
    sch = field.schedule
    lam_grid = sch.lambda_(ts).double()
    m = max(1, math.ceil(points / (len(ts) - 1)))
    ramp = torch.arange(m, dtype=torch.float64) / m
    lam = torch.cat([(lam_grid[:-1, None] + ramp * (lam_grid[1:] - lam_grid[:-1])[:, None]).reshape(-1),
                     lam_grid[-1:]])
    t = sch.t_of_lambda(lam).double()
    t[::m] = ts.double()                                      # the grid's own times, exactly
    mixture = getattr(field, "mixture", None)
    nfe = 0
    if mixture is not None:
        x0 = mixture.sample(samples, generator=gen, dtype=torch.float64)
    else:
        traj = sample(field, n=samples, solver="dpm++2m", steps=100, seed=int(torch.randint(2**31, (), generator=gen)))
        x0, nfe = traj.samples.detach().cpu().double(), traj.nfe
    z = torch.randn(samples, 2, generator=gen, dtype=torch.float64)
    alpha, sigma = sch.alpha(t).double(), sch.sigma(t).double()

    def eps(x, tk):   # the statistics live on the CPU in float64, whatever the field's device
        return field.eps(field.as_input(x), float(tk)).detach().cpu().double()

    ls, epss = [], []
    for k in range(len(lam)):                                  # pass 1: l, from the Jacobian's diagonal
        x = alpha[k] * x0 + sigma[k] * z
        d = 1e-3 * float(sigma[k])
        shifts = d * torch.tensor([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=torch.float64)
        e, e_x1, e_x0, e_y1, e_y0 = eps((x + shifts[:, None]).reshape(-1, 2), t[k]).split(len(x))  # one call
        diag = torch.stack([(e_x1[:, 0] - e_x0[:, 0]).mean(), (e_y1[:, 1] - e_y0[:, 1]).mean()]) / (2 * d)
        ls.append(sigma[k] * diag)
        epss.append(e)
        nfe += 5
    l = torch.stack(ls)
    noise = lam < LAMBDA_FLOOR    # past it a field is x / sigma, no trace of the data: l = 1 exactly
    l[noise] = 1.0
    dl = torch.from_numpy(np.gradient(l.numpy(), lam.numpy(), axis=0))      # l' on the grid
    ss, bs = [], []
    dlam = 1e-3
    for k in range(len(lam)):                                  # pass 2: s, b, by least squares
        x, e = alpha[k] * x0 + sigma[k] * z, epss[k]
        # central differences, one-sided at the grid's ends (a schedule may end there)
        lp, lm = min(float(lam[k]) + dlam, float(lam[-1])), max(float(lam[k]) - dlam, float(lam[0]))
        tp, tm = (float(t[-1]) if lj == float(lam[-1]) else float(t[0]) if lj == float(lam[0])
                  else float(sch.t_of_lambda(torch.tensor(lj, dtype=torch.float64))) for lj in (lp, lm))
        dlog_alpha = (float(sch.log_alpha(tp)) - float(sch.log_alpha(tm))) / (lp - lm)
        v = dlog_alpha * x - sigma[k] * e                      # dx/dlambda on the ODE
        de = (eps(x + (lp - lam[k]) * v, tp) - eps(x + (lm - lam[k]) * v, tm)) / (lp - lm)
        nfe += 2
        el = math.exp(-float(lam[k]))
        f = el * e - l[k] * x / alpha[k]
        df = el * (de - e) - dl[k] * x / alpha[k] + l[k] * el * e
        fc, dfc = f - f.mean(0), df - df.mean(0)
        var = (fc * fc).mean(0)       # f constant (a Gaussian's is 0): nothing to regress, s = 0
        s_k = torch.where(var > 1e-14, (fc * dfc).mean(0) / var.clamp_min(1e-14), torch.zeros_like(var))
        ss.append(s_k)
        bs.append(df.mean(0) - s_k * f.mean(0))
    s, b = torch.stack(ss).clamp(-EMS_S_MAX, EMS_S_MAX), torch.stack(bs)
    # and nothing is left there (f = 0); estimated, l's round-off divided by alpha (e^-50 on the
    # grid's schedule) would blow up
    s[noise], b[noise] = 0.0, 0.0
    L, S = _cumtrapz(l, lam), _cumtrapz(s, lam)
    B = _cumtrapz(torch.exp(-S) * b, lam)
    I = _cumtrapz(torch.exp(L + S), lam)
    C = _cumtrapz(torch.exp(L + S) * B, lam)
    return EMS(lam, list(range(0, len(lam), m)), l, s, b, L, S, B, I, C, nfe)


def _ems_for(run: _Run, points: int, samples: int) -> EMS:
    return _cached(run.field, ("ems", tuple(run.ts.tolist()), points, samples),
                   lambda: empirical_model_statistics(run.field, run.ts, points, samples))


def _v3_update(ems: EMS, x_s: Tensor, a_s: float, a_t: float, i: int, j: int, pts: list) -> Tensor:
    """One step of DPM-Solver-v3 (Zheng et al. 2023, eq. 14 and Alg. 1) from fine index i to j:
    ``pts`` [(fine index, alpha, sigma, x, eps)], the step's start first, then the points whose
    g = e^(S_i - S_k) f_k - e^S_i (B_k - B_i) the Taylor expansion of g in lambda is fitted to.
    In float64 on the points' device (the statistics copied there once), or on the CPU where
    the device has no float64 (MPS)."""
    device = x_s.device if x_s.device.type != "mps" else torch.device("cpu")
    on = ems.on(device)
    L, S, B, I, C, lam = on.L, on.S, on.B, on.I, on.C, on.lam

    def f64(v):
        return v.detach().to(device=device, dtype=torch.float64)
    g = []
    for k, a_k, sg_k, x_k, e_k in pts:
        if float(ems.lam[k]) < LAMBDA_FLOOR:    # pure noise: l = 1 and f = -x0 = 0 (the data's mean);
            f = torch.zeros(x_k.shape, dtype=torch.float64, device=device)   # computed, round-off / alpha (e^-50)
        else:
            f = (sg_k * f64(e_k) - on.l[k] * f64(x_k)) / a_k
        g.append(torch.exp(S[i] - S[k]) * f - torch.exp(S[i]) * (B[k] - B[i]))
    out = (a_t / a_s * torch.exp(L[i] - L[j]) * f64(x_s)
           - a_t * torch.exp(-L[j] - S[i]) * (I[j] - I[i]) * g[0]
           - a_t * torch.exp(-L[j]) * (C[j] - C[i] - B[i] * (I[j] - I[i])))
    n = len(pts) - 1
    if n:
        dl = torch.tensor([float(ems.lam[k] - ems.lam[i]) for k, *_ in pts[1:]], dtype=torch.float64)
        vander = torch.stack([dl**p for p in range(1, n + 1)], 1).to(device)          # (n, n)
        coef = torch.linalg.solve(vander, torch.stack([gk - g[0] for gk in g[1:]]).reshape(n, -1))
        seg = slice(i, j + 1)
        w = torch.exp(L[seg] + S[seg] - L[i] - S[i])
        dlam = (lam[seg] - lam[i])[:, None]
        for p in range(1, n + 1):        # coef[p-1] = g^(p) / p!: times int e^(L+S) (lam - lam_i)^p
            e_p = _cumtrapz(w * dlam**p, lam[seg])[-1]
            out = out - a_t * torch.exp(L[i] - L[j]) * e_p * coef[p - 1].reshape(x_s.shape)
    return out.to(device=x_s.device, dtype=x_s.dtype)


def dpm_v3(run: _Run, x: Tensor, order: int = 2, corrector: bool = True, lower_order_final: bool = True,
           ems_points: int = EMS_POINTS, ems_samples: int = EMS_SAMPLES) -> Tensor:
    """DPM-Solver-v3 (Zheng et al. 2023): multistep, on the parameterisation the field's own
    empirical model statistics make best (``empirical_model_statistics``): the linear part
    l x taken out of sigma eps, and of what is left the part s f + b that follows its own
    derivative, so the Taylor expansion is of the smallest remainder g.

    ``order`` (1-3): points of g's expansion (the first steps use fewer); ``corrector``: each
    state redone with the output at it, one order higher, the output's nonlinear part kept
    (their pseudo-corrector, no extra evaluation); ``lower_order_final`` as in ``unipc``.
    The statistics cost about 7 x ``ems_samples`` x ``ems_points`` point evaluations, once
    per field and grid (not counted in the NFE; ``empirical_model_statistics`` says how many).
    Their integrals are by the trapezoid rule on ceil(ems_points / steps) points a step: past
    about 100 steps that leaves an error floor (2e-5 at 320 steps on the tests' mixture; 2e-6
    with ems_points=1600), far below what a 2-D sample can show."""
    order = _check.integer(order, "dpm_v3 order", 1, 3)
    _check_flags(corrector=corrector, lower_order_final=lower_order_final)
    points = _check.integer(ems_points, "ems_points", 1, 100_000)
    samples = _check.integer(ems_samples, "ems_samples", 2, 1_000_000)
    ems = _ems_for(run, points, samples)
    n = len(run.ts) - 1
    hist: list = []                     # (fine index, alpha, sigma, x, eps), most recent first
    e = run.eps(x, float(run.ts[0]))
    for i in range(n):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        a_s, sg_s, _ = run.coef(s)
        a_t, sg_t, _ = run.coef(t)
        hist = [(ems.index[i], a_s, sg_s, x, e)] + hist[:order - 1]
        p = min(order, i + 1, n - i if lower_order_final else order)
        x0 = eps_to_x0(x, e, a_s, sg_s)
        x_new = _v3_update(ems, x, a_s, a_t, ems.index[i], ems.index[i + 1], hist[:p])
        e_new = None
        if i < n - 1:
            e_new = run.eps(x_new, t)
            if corrector:
                new = (ems.index[i + 1], a_t, sg_t, x_new, e_new)
                x_c = _v3_update(ems, x, a_s, a_t, ems.index[i], ems.index[i + 1], [hist[0], new] + hist[1:p])
                l_t = ems.l[ems.index[i + 1]].to(device=x.device, dtype=x.dtype)
                e_new = e_new + l_t * (x_c - x_new) / sg_t   # sigma eps - l x kept: eps moves with x
                x_new = x_c
        run.record(i, x_new, x0)
        x, e = x_new, e_new
    return x


def pc(run: _Run, x: Tensor, snr: float = PC_SNR, corrector_steps: int = 1) -> Tensor:
    """Predictor-corrector (Song et al. 2021, Alg. 2-3): per step, Langevin corrector with
    step 2 a (snr |z|/|score|)^2, then an Euler-Maruyama predictor on the eta family."""
    _check.real(snr, "snr", 1e-6, 10.0)
    _check.integer(corrector_steps, "corrector_steps", 0, 100)
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        _, sg, _ = run.coef(s)
        a = math.exp(2 * float(run.schedule.f(s)) * (s - t))  # 1 - beta_i of the VP chain; 1 for VE
        for _ in range(corrector_steps):
            score = eps_to_score(run.eps(x, s), sg)
            z = run.noise(x)
            ratio = (z.norm(dim=1).mean() / score.norm(dim=1).mean().clamp_min(1e-12))
            step = 2 * a * (snr * ratio) ** 2
            x = x + step * score + torch.sqrt(2 * step) * z
        x, x0 = _em_step(run, x, s, t, run.eta, noise=not _last(run, i))   # as euler_maruyama
        run.record(i, x, x0)
    return x


@dataclass(frozen=True)
class Solver:
    """A registry entry: the function, evaluations per step, whether it takes eta (and its
    default), and its order of convergence on the probability-flow ODE (None: an SDE)."""

    fn: Callable
    nfe_per_step: int
    eta_default: float
    takes_eta: bool
    order: int | None

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


SOLVERS: dict[str, Solver] = {
    "euler_maruyama": Solver(euler_maruyama, nfe_per_step=1, eta_default=1.0, takes_eta=True, order=None),
    "ddpm": Solver(ddpm, nfe_per_step=1, eta_default=1.0, takes_eta=False, order=None),
    "ddim": Solver(ddim, nfe_per_step=1, eta_default=0.0, takes_eta=True, order=1),
    "ode_euler": Solver(ode_euler, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=1),
    "ode_heun": Solver(ode_heun, nfe_per_step=2, eta_default=0.0, takes_eta=False, order=2),
    "ode_rk4": Solver(ode_rk4, nfe_per_step=4, eta_default=0.0, takes_eta=False, order=4),
    "ode_adaptive": Solver(ode_adaptive, nfe_per_step=0, eta_default=0.0, takes_eta=False, order=5),
    "dpm1": Solver(dpm1, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=1),
    "dpm2": Solver(dpm2, nfe_per_step=2, eta_default=0.0, takes_eta=False, order=2),
    "dpm3": Solver(dpm3, nfe_per_step=3, eta_default=0.0, takes_eta=False, order=3),
    "dpm++2m": Solver(dpmpp_2m, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=2),
    "dpm++2m_sde": Solver(dpmpp_2m_sde, nfe_per_step=1, eta_default=1.0, takes_eta=True, order=None),
    "deis": Solver(deis, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=3),
    "unipc": Solver(unipc, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=2),
    "dc_solver": Solver(dc_solver, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=2),
    "dpm_v3": Solver(dpm_v3, nfe_per_step=1, eta_default=0.0, takes_eta=False, order=2),
    "ts_ddpm": Solver(ts_ddpm, nfe_per_step=1, eta_default=1.0, takes_eta=False, order=None),
    "ts_ddim": Solver(ts_ddim, nfe_per_step=1, eta_default=0.0, takes_eta=True, order=None),
    "pc": Solver(pc, nfe_per_step=2, eta_default=1.0, takes_eta=True, order=None),
}


@torch.no_grad()
def sample(field: ScoreField, n: int | None = None, x_T: Tensor | None = None,
           solver: str = "dpm++2m", steps: int = 20, spacing: str = "logsnr",
           eta: float | None = None, seed: int | None = None,
           callback: Callable[[dict], None] | None = None, keep_last: int | None = None,
           **options) -> Trajectory:
    """Sample from ``field`` with any solver of ``SOLVERS``.

    Args:
        field: any ScoreField (network, exact mixture, empirical).
        n: number of samples, drawn from the schedule's prior (float32) — or give ``x_T``
            (n, 2), the starting points at t_max (its dtype and device are kept).
        solver: a name in ``SOLVERS``; ``steps``: time steps (1..MAX_STEPS), so the NFE is
            steps x the solver's evaluations per step (``Trajectory.nfe`` says exactly).
        spacing: a name in ``SPACINGS`` (time grid from t_max to t_min).
        eta: the ODE-SDE knob (module doc); None takes the solver's own default (1 for
            euler_maruyama, ddpm, dpm++2m_sde, pc; 0 for the rest). Solvers of the ODE only
            refuse eta != 0.
        seed: seeds the prior draw and the solver's noise (an int in [-2**63, 2**64));
            None: fresh randomness.
        callback: called after every step with {"i", "t", "x", "x0", "nfe"}.
        keep_last: record only the last ``keep_last`` steps: ``xs`` and ``ts`` then hold the
            last keep_last + 1 states and times, ``x0_preds`` the last keep_last predictions
            (memory: 20,000 samples x 1000 steps recorded whole take 320 MB). None: all.
        options: solver options: ``rtol``/``atol`` (ode_adaptive), ``snr`` and
            ``corrector_steps`` (pc), ``order`` (deis), ``variance`` (ddpm: "small" or "large"),
            ``order``/``variant``/``corrector``/``lower_order_final`` (unipc),
            ``order``/``variant``/``ratios``/``search_points`` (dc_solver),
            ``order``/``corrector``/``lower_order_final``/``ems_points``/``ems_samples`` (dpm_v3),
            ``window``/``cutoff``/``data_var`` (ts_ddim, ts_ddpm; ts_ddpm also ``variance``).

    Raises:
        ValueError: an unknown solver or spacing (the message lists the valid ones), a bad
            step count, NaN in x_T, a time grid on which the schedule's lambda does not
            increase (too many steps for its range), or a non-finite field output
            (``NonFiniteError``).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    spec = SOLVERS[solver]
    steps = _check.integer(steps, "steps", 1, MAX_STEPS)
    if eta is None:
        eta = spec.eta_default
    eta = _check.real(eta, "eta", 0.0, 10.0)
    if not spec.takes_eta and eta != spec.eta_default:
        kind = "integrates the probability-flow ODE (eta = 0)" if spec.eta_default == 0 else \
            "is the ancestral sampler (eta = 1)"
        raise ValueError(f"solver {solver!r} {kind}; for another eta use euler_maruyama, "
                         "ddim, dpm++2m_sde or pc")
    if seed is not None:
        seed = _check.seed(seed)
    device = field.device
    if x_T is None:
        if n is None:
            raise ValueError("give n (number of samples) or x_T (starting points)")
        n = _check.integer(n, "n", 1, 10_000_000)
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(seed) if seed is not None else gen.seed()
        x_T = field.schedule.prior_sample(n, generator=gen)
    else:
        if not isinstance(x_T, Tensor) or x_T.ndim != 2 or x_T.shape[1] != 2 or not x_T.is_floating_point():
            raise ValueError("x_T must be a floating-point tensor of shape (n, 2)")
        if n is not None and n != x_T.shape[0]:
            raise ValueError(f"n={n} disagrees with x_T's {x_T.shape[0]} points")
        if not torch.isfinite(x_T).all():
            raise ValueError("x_T holds NaN or infinite values")
        x_T = x_T.to(device) if device is not None else x_T
        gen = torch.Generator(device=x_T.device)
        gen.manual_seed(seed) if seed is not None else gen.seed()
    if keep_last is not None:
        keep_last = _check.integer(keep_last, "keep_last", 1, MAX_STEPS)
    ts = time_grid(field.schedule, steps, spacing)
    run = _Run(field, ts, eta, gen, callback, solver, keep_last)
    run.check_grid()
    run.xs.append(x_T)
    try:
        x = spec.fn(run, x_T, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ValueError(f"solver {solver!r} takes no option among {sorted(options)}") from None
        raise
    kept = len(run.xs)
    return Trajectory(samples=x, xs=torch.stack(list(run.xs)), ts=ts[len(ts) - kept:],
                      x0_preds=torch.stack(list(run.x0s)),
                      nfe=run.nfe, solver=solver, eta=float(eta))


def convergence_order(field: ScoreField, solver: str, steps, x_T: Tensor, reference: Tensor,
                      spacing: str = "logsnr", **options) -> tuple[float, list[float]]:
    """Measured order of convergence of ``solver`` on the probability-flow ODE: sample from
    the same starting points ``x_T`` (n, 2) with each step count in ``steps``, take the mean
    distance of the samples to ``reference`` (n, 2) (a much finer solution from the same
    x_T), and fit error ~ steps^-order by least squares in log-log. ``options`` go to the solver.

    Returns (order, errors). A method of order p gives p once the steps are small enough
    and the reference error is far below the others (Euler 1, Heun 2, DPM-Solver-3 3)."""
    if SOLVERS.get(solver) is None or SOLVERS[solver].order is None:
        raise ValueError(f"{solver!r} is not a solver of the probability-flow ODE with an order")
    steps = [int(k) for k in steps]
    if len(steps) < 2 or len(set(steps)) < len(steps):
        raise ValueError(f"need at least two different step counts, got {steps}")
    errors = [float((sample(field, x_T=x_T, solver=solver, steps=k, spacing=spacing, keep_last=1, **options).samples
                     - reference).norm(dim=1).mean()) for k in steps]
    if not all(e > 0 and math.isfinite(e) for e in errors):
        raise ValueError(f"errors must be positive and finite to fit an order, got {errors}")
    logk = torch.log(torch.tensor(steps, dtype=torch.float64))
    loge = torch.log(torch.tensor(errors, dtype=torch.float64))
    slope = ((logk - logk.mean()) * (loge - loge.mean())).sum() / ((logk - logk.mean()) ** 2).sum()
    return -float(slope), errors
