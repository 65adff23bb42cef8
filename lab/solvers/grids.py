"""The time grids the samplers step on: steps+1 decreasing times from t_max to t_min,
uniform in t, in sqrt(t), in lambda = log(alpha/sigma) (Lu et al. 2022), Karras et al.
2022's rho-spacing, or Deveney et al.'s grid refined near t = 0."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from lab.fields import LAMBDA_FLOOR

__all__ = ["SPACINGS", "time_grid", "KARRAS_RHO", "REFINED_END"]

KARRAS_RHO = 7.0          # Karras et al. 2022's spacing exponent


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
