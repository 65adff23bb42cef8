"""The ODE-SDE gap (Deveney et al., "Closing the ODE-SDE gap in score-based diffusion models
through the Fokker-Planck equation"): the same field sampled by its probability-flow ODE and
its reverse SDE, each compared with the truth and with the other, on their protocol."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lab import _check, checkpoints
from lab.distances import _bins_extent, histogram, w2, w2_histograms
from lab.fields import ScoreField, fingerprint
from lab.fokker_planck import fokker_planck_norm, log_density_residual
from lab.solvers import sample

__all__ = ["ode_sde_gap", "gap_binned", "residual_curve", "GAP_PROTOCOL", "GAP_CHUNK", "GAP_STATE_FORMAT",
           "RESIDUAL_TIMES", "RESIDUAL_POINTS"]

RESIDUAL_TIMES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)   # the gap page's residual curve
RESIDUAL_POINTS = 500

GAP_STATE_FORMAT = "score-lab-gap-state"   # gap_binned's counts so far (lab.checkpoints)


def ode_sde_gap(field: ScoreField, truth, n: int = 2000, steps: int = 800,
                spacing: str = "time_uniform", seed: int = 0, distance=None) -> dict:
    """Deveney et al.'s comparison: sample the same field with the probability-flow ODE
    (Euler) and the reverse SDE (Euler-Maruyama), ``steps`` each from the same prior draw,
    and return the squared W2 (exact OT on the samples) between ODE and truth, SDE and
    truth, and ODE and SDE, as {"ode_truth", "sde_truth", "ode_sde"}. ``distance``: the W2
    to use (default ``w2``, exact on the samples; ``w2_binned`` for large sets)."""
    common = dict(n=n, steps=steps, spacing=spacing, seed=seed)
    ode = sample(field, solver="ode_euler", keep_last=1, **common).samples
    sde = sample(field, solver="euler_maruyama", keep_last=1, **common).samples
    d = distance or w2
    return {"ode_truth": d(ode, truth) ** 2, "sde_truth": d(sde, truth) ** 2,
            "ode_sde": d(ode, sde) ** 2}


# Deveney et al.'s sampling protocol: Euler / Euler-Maruyama on their refined grid (790 + 100
# steps; the SDE's last step noise-free), W2^2 on a 64 x 64 binning of [-3.5, 3.5]^2.
GAP_PROTOCOL = dict(steps=890, spacing="refined_end", bins=64, extent=3.5)
GAP_CHUNK = 50_000   # samples drawn at once by gap_binned (memory: a chunk's trajectory is not kept)


def gap_binned(field: ScoreField, law, n: int = 300_000, chunk: int = GAP_CHUNK, seed: int = 0,
               steps: int = GAP_PROTOCOL["steps"], spacing: str = GAP_PROTOCOL["spacing"],
               bins: int = GAP_PROTOCOL["bins"], extent: float = GAP_PROTOCOL["extent"],
               callback=None, keep: int = 0, state=None) -> dict:
    """Deveney et al.'s ODE-SDE comparison on as many samples as it takes: n samples of the
    probability-flow ODE (Euler) and of the reverse SDE (Euler-Maruyama) from the same prior
    draws, made ``chunk`` at a time and binned (``histogram``), and 2n draws of ``law``
    (a GaussianMixture: what the sampler should end at, e.g. the data noised to t_min).

    Returns squared W2 (``w2_histograms``) "ode_truth", "sde_truth", "ode_sde" and "floor":
    the W2^2 between two independent true sets of n, the size of the sampling noise in the
    others; plus "n", "nfe" (per sampler), "hist" {"ode", "sde", "truth"} (counts) and
    "samples" {"ode", "sde", "truth"}: the first ``keep`` points of each (to draw them).
    ``callback(done, n)`` is called after each chunk.

    ``state``: a file where the counts so far are saved after each chunk (with the random
    generator's state), and from which a run with the same arguments continues: 300k samples
    of the paper's network take hours on a CPU. The result is that of one uninterrupted run."""
    n = _check.integer(n, "n", 1, 100_000_000)
    chunk = _check.integer(chunk, "chunk", 1, 10_000_000)
    bins, extent = _bins_extent(bins, extent)
    g = torch.Generator().manual_seed(_check.seed(seed))
    hist = {k: np.zeros((bins, bins)) for k in ("ode", "sde", "truth", "truth2")}
    keep = _check.integer(keep, "keep", 0, n)
    kept = {k: [] for k in ("ode", "sde", "truth")}
    done, nfe = 0, 0
    settings = dict(n=n, chunk=chunk, seed=seed, steps=steps, spacing=spacing, bins=bins, extent=extent, keep=keep,
                    field=fingerprint(field), law=fingerprint(law))
    if state is not None and Path(state).is_file():
        saved = checkpoints.read(state, GAP_STATE_FORMAT, "gap protocol state",
                                 hint="a state written before 2026-12-04 (NumPy counts) cannot be read: delete it")
        if saved["settings"] != settings:
            raise ValueError(f"{state} holds a run with other settings ({saved['settings']}); "
                             "delete it or give another state file")
        done, nfe, kept = saved["done"], saved["nfe"], saved["kept"]
        hist = {k: v.numpy() for k, v in saved["hist"].items()}
        g.set_state(saved["generator"])
    while done < n:
        m = min(chunk, n - done)
        x_T = field.as_input(field.schedule.prior_sample(m, generator=g))
        for key, solver in (("ode", "ode_euler"), ("sde", "euler_maruyama")):
            traj = sample(field, x_T=x_T, solver=solver, steps=steps, spacing=spacing, keep_last=1,
                          seed=int(torch.randint(2**62, (), generator=g)))   # memory: no path
            x = traj.samples.detach().cpu().double()
            hist[key] += histogram(x.numpy(), bins, extent)
            kept[key].append(x[:max(0, keep - done)].clone())   # not a view of the whole chunk
            nfe = traj.nfe
        for key in ("truth", "truth2"):
            x = law.sample(m, generator=g, dtype=torch.float64)
            hist[key] += histogram(x.numpy(), bins, extent)
            if key == "truth":
                kept[key].append(x[:max(0, keep - done)].clone())
        done += m
        if state is not None:               # counts as tensors: read back with weights_only
            checkpoints.write(dict(format=GAP_STATE_FORMAT, version=checkpoints.VERSION, settings=settings,
                                   done=done, nfe=nfe, hist={k: torch.from_numpy(v) for k, v in hist.items()},
                                   kept=kept, generator=g.get_state()), state, "gap protocol state")
        if callback is not None:
            callback(done, n)
    d = {a + "_" + b: w2_histograms(hist[a], hist[b], extent) ** 2
         for a, b in (("ode", "truth"), ("sde", "truth"), ("ode", "sde"))}
    d["floor"] = w2_histograms(hist["truth"], hist["truth2"], extent) ** 2
    return d | {"n": n, "nfe": nfe, "hist": {k: hist[k] for k in ("ode", "sde", "truth")},
                "samples": {k: torch.cat(v) for k, v in kept.items()}}


def residual_curve(field: ScoreField, times=RESIDUAL_TIMES, scalar: bool = False, points: int = RESIDUAL_POINTS,
                   seed: int = 3) -> dict[float, float]:
    """The Fokker-Planck residual of ``field`` against time: t -> mean |sigma_t^3 R|^2 of the
    score residual (``fokker_planck_norm``: what the lab's penalty weighs), or with ``scalar``
    the mean R^2 of Deveney et al.'s residual of a log-density (``log_density_residual``),
    over ``points`` uniform points of their region [-3.5, 3.5]^2, at each of ``times`` inside
    the field's schedule. Zero for an exact score; the gap page and lesson 5 draw it."""
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.rand(points, 2, generator=g) - 1) * GAP_PROTOCOL["extent"]
    s = field.schedule
    out = {}
    for t in times:
        if s.t_min <= t <= s.t_max:
            if scalar:
                out[t] = float((log_density_residual(field, x, t).double() ** 2).mean())
            else:
                out[t] = float(fokker_planck_norm(field, x, t))
    return out
