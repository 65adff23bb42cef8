"""The DPM-Solver family (Lu et al. 2022, 2022b): singlestep DPM-Solver-1/2/3 in eps form,
multistep DPM-Solver++(2M) in data-prediction form and its SDE variant; and DEIS's tAB
(Zhang & Chen 2023)."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from lab.fields import eps_to_x0
from lab.solvers.base import first_order_step, _last, Run

__all__ = ["dpm1", "dpm2", "dpm3", "dpmpp_2m", "dpmpp_2m_sde", "deis"]


def dpm1(run: Run, x: Tensor) -> Tensor:
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


def dpm2(run: Run, x: Tensor) -> Tensor:
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


def dpm3(run: Run, x: Tensor) -> Tensor:
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


def _dpmpp_2m(run: Run, x: Tensor, eta: float) -> Tensor:
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
        x = first_order_step(run, x, d, s, t, eta)
        prev_x0, prev_h = x0, h
        run.record(i, x, x0)
    return x


def dpmpp_2m(run: Run, x: Tensor) -> Tensor:
    """DPM-Solver++(2M), multistep data prediction (Lu et al. 2022b, Alg. 2)."""
    return _dpmpp_2m(run, x, 0.0)


def dpmpp_2m_sde(run: Run, x: Tensor) -> Tensor:
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
    return tuple(torch.tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(points))


def _deis_coefficients(run: Run, order: int, quad_points: int = 64) -> list[list[float]]:
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


def deis(run: Run, x: Tensor, order: int = 3) -> Tensor:
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
