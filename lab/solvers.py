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
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        a_s, sg_s, _ = run.coef(s)
        a_t, sg_t, _ = run.coef(t)
        x0 = run.x0(x, s)
        a_ts = a_s / a_t                       # alpha_{s|t}
        var_ts = sg_s**2 - a_ts**2 * sg_t**2   # sigma_{s|t}^2
        mean = a_ts * sg_t**2 / sg_s**2 * x + a_t * var_ts / sg_s**2 * x0
        var = var_ts * sg_t**2 / sg_s**2 if variance == "small" else 0.0 if _last(run, i) else var_ts
        x = mean + math.sqrt(max(var, 0.0)) * run.noise(x)
        run.record(i, x, x0)
    return x


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
            ``corrector_steps`` (pc), ``order`` (deis), ``variance`` (ddpm: "small" or "large").

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
                      spacing: str = "logsnr") -> tuple[float, list[float]]:
    """Measured order of convergence of ``solver`` on the probability-flow ODE: sample from
    the same starting points ``x_T`` (n, 2) with each step count in ``steps``, take the mean
    distance of the samples to ``reference`` (n, 2) (a much finer solution from the same
    x_T), and fit error ~ steps^-order by least squares in log-log.

    Returns (order, errors). A method of order p gives p once the steps are small enough
    and the reference error is far below the others (Euler 1, Heun 2, DPM-Solver-3 3)."""
    if SOLVERS.get(solver) is None or SOLVERS[solver].order is None:
        raise ValueError(f"{solver!r} is not a solver of the probability-flow ODE with an order")
    steps = [int(k) for k in steps]
    if len(steps) < 2 or len(set(steps)) < len(steps):
        raise ValueError(f"need at least two different step counts, got {steps}")
    errors = [float((sample(field, x_T=x_T, solver=solver, steps=k, spacing=spacing, keep_last=1).samples
                     - reference).norm(dim=1).mean()) for k in steps]
    if not all(e > 0 and math.isfinite(e) for e in errors):
        raise ValueError(f"errors must be positive and finite to fit an order, got {errors}")
    logk = torch.log(torch.tensor(steps, dtype=torch.float64))
    loge = torch.log(torch.tensor(errors, dtype=torch.float64))
    slope = ((logk - logk.mean()) * (loge - loge.mean())).sum() / ((logk - logk.mean()) ** 2).sum()
    return -float(slope), errors
