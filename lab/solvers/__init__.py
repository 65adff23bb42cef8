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

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from lab import _check
from lab.fields import ScoreField
from lab.solvers.base import NonFiniteError, Run, first_order_step
from lab.solvers.classic import ddim, ddpm, euler_maruyama, ode_adaptive, ode_euler, ode_heun, ode_rk4, pc
from lab.solvers.dpm import deis, dpm1, dpm2, dpm3, dpmpp_2m, dpmpp_2m_sde
from lab.solvers.flow import flow_sde
from lab.solvers.grids import SPACINGS, time_grid
from lab.solvers.time_shift import TS_CUTOFF, TS_WINDOW, shifted_time, ts_ddim, ts_ddpm
from lab.solvers.unipc import dc_ratios, dc_solver, unipc
from lab.solvers.v3 import EMS, dpm_v3, empirical_model_statistics

__all__ = ["Trajectory", "Solver", "SOLVERS", "SPACINGS", "sample", "time_grid",
           "NonFiniteError", "MAX_STEPS", "convergence_order", "dc_ratios", "empirical_model_statistics",
           "EMS", "TS_WINDOW", "TS_CUTOFF", "Run", "first_order_step", "shifted_time", "FLOW_SOLVERS",
           "FLOW_SPACINGS", "FLOW_ONLY"]

MAX_STEPS = 10_000        # more steps than this are refused
FLOW_SOLVERS = ("ode_euler", "ode_heun", "ode_rk4", "ode_adaptive", "flow_sde")   # what a flow takes
FLOW_SPACINGS = ("time_uniform", "time_quadratic", "refined_end")


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
# solvers of flows alone (lab.interpolants); SOLVERS' ODE solvers take flows too (FLOW_SOLVERS)
FLOW_ONLY: dict[str, Solver] = {
    # the interpolant's own SDE: eta is its eps, and a step calls the score too when eta > 0
    "flow_sde": Solver(flow_sde, nfe_per_step=2, eta_default=1.0, takes_eta=True, order=None),
}


@torch.no_grad()
def sample(field: ScoreField, n: int | None = None, x_T: Tensor | None = None,
           solver: str = "dpm++2m", steps: int = 20, spacing: str | None = None,
           eta: float | None = None, seed: int | None = None,
           callback: Callable[[dict], None] | None = None, keep_last: int | None = None,
           **options) -> Trajectory:
    """Sample from ``field`` with any solver of ``SOLVERS``.

    Args:
        field: any ScoreField (network, exact mixture, empirical), or a flow
            (``lab.interpolants``: ``InterpolantField``, ``VelocityField``).
        n: number of samples, drawn from the schedule's prior (float32) — or give ``x_T``
            (n, 2), the starting points at t_max (its dtype and device are kept).
        solver: a name in ``SOLVERS`` (or ``FLOW_ONLY``, for a flow); ``steps``: time steps
            (1..MAX_STEPS), so the NFE is steps x the solver's evaluations per step
            (``Trajectory.nfe`` says exactly).
        spacing: a name in ``SPACINGS`` (time grid from t_max to t_min); None: "logsnr", or
            "time_uniform" for a flow (``lab.interpolants``: t = 1 - tau, no noise level).
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
    spec = SOLVERS.get(solver) or FLOW_ONLY.get(solver)
    if spec is None:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join([*SOLVERS, *FLOW_ONLY])}")
    steps = _check.integer(steps, "steps", 1, MAX_STEPS)
    if eta is None:
        eta = spec.eta_default
    eta = _check.real(eta, "eta", 0.0, 10.0)
    if not spec.takes_eta and eta != spec.eta_default:
        kind = "integrates the probability-flow ODE (eta = 0)" if spec.eta_default == 0 else \
            "is the ancestral sampler (eta = 1)"
        raise ValueError(f"solver {solver!r} {kind}; for another eta use euler_maruyama, "
                         "ddim, dpm++2m_sde or pc")
    flow = bool(getattr(field, "is_flow", False))
    if spacing is None:
        spacing = "time_uniform" if flow else "logsnr"
    if flow and solver not in FLOW_SOLVERS:
        raise ValueError(f"solver {solver!r} needs a diffusion (a Gaussian prior and x_t = alpha x0 + sigma eps); "
                         f"a flow has neither, only a velocity: use one of {', '.join(FLOW_SOLVERS)}")
    if flow and spacing not in FLOW_SPACINGS:
        raise ValueError(f"spacing {spacing!r} is a grid in the noise level, which a flow does not have: "
                         f"use one of {', '.join(FLOW_SPACINGS)}")
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
    run = Run(field, ts, eta, gen, callback, solver, keep_last)
    if not flow:
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
