"""The stochastic interpolant's own SDE (Albergo, Boffi & Vanden-Eijnden 2023): from the
source at tau = 0 to the target at tau = 1,

    dX = [b(tau, X) + eps s(tau, X)] dtau + sqrt(2 eps) dW,

every eps >= 0 with the same marginals rho_tau as the flow's ODE (eps = 0). Stepped by
Euler-Maruyama in the lab's time t = 1 - tau (``lab.interpolants``), the last step without
noise (its noise would never be taken out, as in ``euler_maruyama``). ``sample``'s ``eta``
is eps."""
from __future__ import annotations

import math

from torch import Tensor

from lab import _check
from lab.solvers.base import NonFiniteError, Run, _last

__all__ = ["flow_sde"]


def flow_sde(run: Run, x: Tensor) -> Tensor:
    """Euler-Maruyama on the interpolant's SDE dX = (b + eps s) dtau + sqrt(2 eps) dW, eps = eta."""
    if not run.is_flow:
        raise ValueError("flow_sde is the stochastic interpolant's own SDE: it samples a flow "
                         "(lab.interpolants); a diffusion's SDE is euler_maruyama")
    eps = run.eta
    for i in range(len(run.ts) - 1):
        s, t = float(run.ts[i]), float(run.ts[i + 1])
        v = run.velocity(x, s)                  # dx/dt = -b
        drift = v
        if eps > 0:
            run.nfe += 1
            score = run.field.score(x, s)
            if not _check.all_finite(score):
                raise NonFiniteError(f"the flow's score is not finite at t={s:.4g} (step {i + 1} of solver "
                                     "'flow_sde')")
            drift = v - eps * score             # dx/dt = -(b + eps s)
        x_new = x + (t - s) * drift
        if eps > 0 and not _last(run, i):
            x_new = x_new + math.sqrt(2 * eps * (s - t)) * run.noise(x)
        run.record(i, x_new, x - s * v)
        x = x_new
    return x
