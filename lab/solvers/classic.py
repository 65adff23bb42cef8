"""The classic samplers: the reverse SDE (Euler-Maruyama on the eta family), DDPM's
ancestral sampler, DDIM, the probability-flow ODE by Euler, Heun, RK4 and dopri5, and the
predictor-corrector sampler (Song et al. 2021)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lab import _check
from lab.fields import eps_to_score, eps_to_x0
from lab.solvers.base import NonFiniteError, _em_step, first_order_step, _last, Run

__all__ = ["euler_maruyama", "ddpm", "ddim", "ode_euler", "ode_heun", "ode_rk4", "ode_adaptive", "pc"]

PC_SNR = 0.16             # Song et al. 2021's Langevin corrector signal-to-noise ratio
ADAPTIVE_RTOL = 1e-5      # ode_adaptive's default tolerances (dopri5)
ADAPTIVE_ATOL = 1e-5


def euler_maruyama(run: Run, x: Tensor) -> Tensor:
    """Euler-Maruyama on the eta family; eta = 1 is the reverse SDE (Song et al. 2021).

    The last step adds no noise, as Song et al.'s samplers and Deveney et al.'s do: its
    noise, of variance eta^2 g^2 dt whatever the noise level, would never be taken out by a
    later step (0.11 in std at 800 steps over OU's [0, 10], twice the ODE's bias)."""
    for i in range(len(run.ts) - 1):
        x, x0 = _em_step(run, x, float(run.ts[i]), float(run.ts[i + 1]), run.eta, noise=not _last(run, i))
        run.record(i, x, x0)
    return x


def ddpm(run: Run, x: Tensor, variance: str = "small") -> Tensor:
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


def _ancestral_step(run: Run, x, x0, s, t, variance, last):
    """One draw of ``ddpm``'s posterior step from s to t, given the x0 prediction."""
    a_s, sg_s, _ = run.coef(s)
    a_t, sg_t, _ = run.coef(t)
    a_ts = a_s / a_t                       # alpha_{s|t}
    var_ts = sg_s**2 - a_ts**2 * sg_t**2   # sigma_{s|t}^2
    mean = a_ts * sg_t**2 / sg_s**2 * x + a_t * var_ts / sg_s**2 * x0
    var = var_ts * sg_t**2 / sg_s**2 if variance == "small" else 0.0 if last else var_ts
    return mean + math.sqrt(max(var, 0.0)) * run.noise(x)


def ddim(run: Run, x: Tensor) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021); eta = 0 deterministic, 1 ancestral, between: the family.

    For 0 < eta < 1 the step is the exact first-order step of the eta family (module doc),
    whose noise differs from DDIM's own eta at second order in the step."""
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        x0 = run.x0(x, s)
        x = first_order_step(run, x, x0, s, t, run.eta)
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


def _velocity(run: Run, x, t):
    """PF-ODE drift f x + g^2/(2 sigma) eps, and the x0 prediction at (x, t). A flow's drift is
    its own velocity (``lab.interpolants``), and its x0 prediction the one Euler step to the
    end, x - t v (for the linear interpolant without noise, exactly E[x1 | x_t])."""
    if run.is_flow:
        v = run.velocity(x, t)
        return v, x - float(t) * v
    e = run.eps(x, t)
    a, sg, _ = run.coef(t)
    return (float(run.schedule.f(t)) * x - float(run.schedule.g2(t)) / 2 * eps_to_score(e, sg),
            eps_to_x0(x, e, a, sg))


def _ode_solver(tableau: str, doc: str):
    stepper = _ode_stepper(tableau)

    def solver(run: Run, x: Tensor) -> Tensor:
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


def ode_adaptive(run: Run, x: Tensor, rtol: float = ADAPTIVE_RTOL, atol: float = ADAPTIVE_ATOL) -> Tensor:
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
        # x0 predictions for display, at the kept states: not part of the solve, not counted (a
        # flow's: the one Euler step to the end, as the other solvers record it)
        t = float(ts[i])
        x0 = ys[i] - t * run.field.velocity(ys[i], t) if run.is_flow else run.field.x0(ys[i], t)
        if not torch.isfinite(x0).all():
            raise NonFiniteError(f"the field returned non-finite values at t={float(ts[i]):.4g} "
                                 f"(step {i + 1} of solver 'ode_adaptive')")
        run.record(i, ys[i + 1], x0)
    return ys[-1]


def pc(run: Run, x: Tensor, snr: float = PC_SNR, corrector_steps: int = 1) -> Tensor:
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
