"""UniPC (Zhao et al. 2023), its predictor-corrector on the data prediction, and DC-Solver
(Zhao et al. 2024), UniPC with the misalignment of its predictor and corrector compensated."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lab import _check
from lab.solvers.base import _cached, _check_flags, Run
from lab.solvers.classic import _ode_stepper

__all__ = ["unipc", "dc_solver", "dc_ratios", "UNIPC_VARIANTS"]

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


def unipc(run: Run, x: Tensor, order: int = 2, variant: str = "bh2", corrector: bool = True,
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


def _unipc(run: Run, x: Tensor, order: int, variant: str, corrector: bool, lower_order_final: bool,
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
    fine = Run(field, sub, 0.0, None, None, "ode_rk4", keep_last=None)
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
        out = _unipc(Run(field, ts, 0.0, None, None, "dc_solver"), x, order, variant, True, True, rs)
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


def dc_solver(run: Run, x: Tensor, order: int = 2, variant: str = "bh2", ratios=None,
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
