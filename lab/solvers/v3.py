"""DPM-Solver-v3 (Zheng et al. 2023): a multistep solver on the parameterisation the
field's own empirical model statistics make best."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lab import _check
from lab.fields import LAMBDA_FLOOR, ScoreField, eps_to_x0
from lab.solvers.base import _cached, _check_flags, Run
from lab.solvers.dpm import dpmpp_2m
from lab.solvers.grids import time_grid

__all__ = ["dpm_v3", "EMS", "empirical_model_statistics"]

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


@torch.no_grad()
def _own_samples(field: ScoreField, n: int, seed: int) -> tuple[Tensor, int]:
    """n samples (float64, CPU) of the field itself, by DPM-Solver++(2M) at 100 logsnr steps
    from a prior draw made on the CPU (the same on every device, so the statistics are), and
    their NFE."""
    gen = torch.Generator().manual_seed(seed)
    x_T = field.as_input(field.schedule.prior_sample(n, generator=gen))
    run = Run(field, time_grid(field.schedule, 100, "logsnr"), 0.0, gen, None, "dpm++2m", keep_last=1)
    run.check_grid()
    return dpmpp_2m(run, x_T).detach().cpu().double(), run.nfe


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
        x0, nfe = _own_samples(field, samples, int(torch.randint(2**31, (), generator=gen)))
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


def _ems_for(run: Run, points: int, samples: int) -> EMS:
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


def dpm_v3(run: Run, x: Tensor, order: int = 2, corrector: bool = True, lower_order_final: bool = True,
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
