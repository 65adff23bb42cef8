"""Distances between fields and between sample sets; likelihood; the Fokker-Planck residual.

``score_error`` measures how far a field is from an exact one, in the relative L2(p_t)
norm that denoising score matching minimises (Vincent 2011): at time t,

    err(t) = sqrt( E_{x ~ p_t} |eps_theta(x, t) - eps*(x, t)|^2 / E_{x ~ p_t} |eps*(x, t)|^2 ),

which equals the relative error of the score itself (the factor sigma_t cancels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lab import _check
from lab.fields import MixtureField, ScoreField, fingerprint

MMD_MEDIAN_POINTS = 1000  # points the median heuristic looks at (its cost is quadratic)
MAX_COORD = 1e150         # sample sets beyond this are refused: squared distances would overflow
MMD_BANDWIDTH = (1e-150, 1e150)  # mmd's bandwidth range: its square must be a positive float

__all__ = ["score_error", "noised_samples", "w2", "sliced_w2", "mmd", "nll", "fokker_planck_residual",
           "log_density_residual", "histogram", "w2_histograms", "gap_binned", "GAP_PROTOCOL",
           "ode_sde_gap", "w2_binned", "truth_and_floor", "fokker_planck_norm",
           "RACE_BUDGETS", "RaceResult", "solver_race", "fingerprint"]


def noised_samples(reference: MixtureField, t: float, n: int, generator=None,
                   dtype=torch.float32, device=None):
    """n points (n, 2) from p_t: alpha_t x0 + sigma_t eps with x0 from the mixture."""
    s = reference.schedule
    x0 = reference.mixture.sample(n, generator=generator, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (s.alpha(float(t)) * x0 + s.sigma(float(t)) * eps).to(dtype=dtype, device=device)


def truth_and_floor(reference: MixtureField, n: int, distance=None, n_floor: int | None = None,
                    seed: int = 0, t: float | None = None):
    """``n`` true samples of p_t (default t: the schedule's t_min, where samplers end) and
    the noise floor of ``distance`` (default ``w2``) at ``n_floor`` points (default n):
    its value between the first n_floor of them and n_floor more independent true samples.
    No sampler can be told from the truth below it at that sample size. Returns
    (truth, floor)."""
    n = _check.integer(n, "n", 1, 10_000_000)
    n_floor = n if n_floor is None else _check.integer(n_floor, "n_floor", 1, n)
    t = reference.schedule.t_min if t is None else t
    g = torch.Generator().manual_seed(_check.seed(seed))
    truth = noised_samples(reference, t, n, generator=g)
    other = noised_samples(reference, t, n_floor, generator=g)
    return truth, float((distance or w2)(other, truth[:n_floor]))


@torch.no_grad()
def score_error(field: ScoreField, reference: MixtureField, ts=(0.05, 0.1, 0.25, 0.5, 0.9),
                n: int = 4000, seed: int = 0) -> dict[float, float]:
    """Relative L2(p_t) error of ``field``'s eps (equivalently, its score) to the exact
    ``reference`` at each t in ``ts``, on ``n`` points drawn from p_t. Returns {t: err}."""
    g = torch.Generator().manual_seed(_check.seed(seed))
    device = field.device
    out = {}
    for t in ts:
        x = noised_samples(reference, t, n, generator=g, device=device)
        e_ref = reference.eps(x, t)
        e = field.eps(x, t)
        out[float(t)] = float(((e - e_ref) ** 2).sum(1).mean().sqrt() / (e_ref**2).sum(1).mean().sqrt())
    return out


def _same_dim(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b live in different dimensions: {a.shape[1]} and {b.shape[1]}")


def _as_points(x, name: str):
    arr = _check.real_array(x, name)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array of points (n, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if np.abs(arr).max(initial=0.0) > MAX_COORD:
        raise ValueError(f"{name} holds points beyond {MAX_COORD:g} from the origin, where "
                         "squared distances overflow")
    return arr


def w2(a, b, max_points: int = 20_000) -> float:
    """Exact 2-Wasserstein distance between two sample sets (n, d) and (m, d) with uniform
    weights: sqrt of the optimal transport cost with squared Euclidean ground cost, solved
    exactly by POT's network simplex (``ot.emd2``). Cost grows as n^2 memory, n^3 time."""
    import ot

    a, b = _as_points(a, "a"), _as_points(b, "b")
    _same_dim(a, b)
    if max(len(a), len(b)) > max_points:
        raise ValueError(f"exact W2 on more than {max_points:,} points is too costly; subsample")
    cost = ot.dist(a, b, metric="sqeuclidean")
    wa, wb = ot.unif(len(a)), ot.unif(len(b))
    return float(max(ot.emd2(wa, wb, cost, numItermax=10_000_000), 0.0) ** 0.5)


def w2_binned(a, b, bins: int = 64, extent: float = 3.5) -> float:
    """W2 between two sample sets after binning both on a bins x bins grid over
    [-extent, extent]^2 (points beyond it go to the edge bins): exact OT between the two
    histograms, squared distance between bin centres (as Deveney et al. measure, 64 x 64).
    Cheap for large sets; its floor is about the bin width."""
    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape[1] != 2 or b.shape[1] != 2:
        raise ValueError("w2_binned works on 2-D points")
    return w2_histograms(histogram(a, bins, extent), histogram(b, bins, extent), extent)


def _bins_extent(bins, extent):
    return (_check.integer(bins, "bins", 2, 256, numpy_ok=True),
            _check.real(extent, "extent", 0.0, MAX_COORD, low_open=True, numpy_ok=True))


def histogram(points, bins: int = 64, extent: float = 3.5) -> np.ndarray:
    """Counts (bins, bins) of 2-D points on a bins x bins grid over [-extent, extent]^2,
    points beyond it in the edge bins (as ``w2_binned`` bins them). Counts of chunks add up,
    so a sample set too large to hold is binned chunk by chunk."""
    bins, extent = _bins_extent(bins, extent)
    p = np.clip(_as_points(points, "points"), -extent, extent)
    if p.shape[1] != 2:
        raise ValueError("histogram works on 2-D points")
    edges = np.linspace(-extent, extent, bins + 1)
    return np.histogram2d(p[:, 0], p[:, 1], bins=[edges, edges])[0]


def w2_histograms(ha, hb, extent: float = 3.5) -> float:
    """W2 between two histograms (bins, bins) over [-extent, extent]^2 (counts or weights;
    each is normalised): exact OT between them, squared distance between bin centres."""
    import ot

    ha, hb = np.asarray(ha, dtype=np.float64), np.asarray(hb, dtype=np.float64)
    if ha.ndim != 2 or ha.shape[0] != ha.shape[1] or ha.shape != hb.shape:
        raise ValueError(f"need two square histograms of one shape, got {ha.shape} and {hb.shape}")
    if not (np.isfinite(ha).all() and np.isfinite(hb).all() and ha.min() >= 0 and hb.min() >= 0
            and ha.sum() > 0 and hb.sum() > 0):
        raise ValueError("histograms must hold finite non-negative counts, not all zero")
    bins, extent = _bins_extent(ha.shape[0], extent)
    edges = np.linspace(-extent, extent, bins + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    grid = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    ha, hb = ha.reshape(-1) / ha.sum(), hb.reshape(-1) / hb.sum()
    ia, ib = ha > 0, hb > 0
    cost = ot.dist(grid[ia], grid[ib], metric="sqeuclidean")
    return float(max(ot.emd2(ha[ia], hb[ib], cost, numItermax=10_000_000), 0.0) ** 0.5)


def sliced_w2(a, b, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011): the root mean square, over random
    unit directions, of the 1-D W2 between the projected sets (exact in 1-D by sorting;
    unequal sizes are compared through their quantile functions on a common grid)."""
    a, b = _as_points(a, "a"), _as_points(b, "b")
    _same_dim(a, b)
    n_projections = _check.integer(n_projections, "n_projections", 1, 100_000, numpy_ok=True)
    rng = np.random.default_rng(_check.seed(seed, low=0, numpy_ok=True))
    dirs = rng.normal(size=(n_projections, a.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pa, pb = np.sort(a @ dirs.T, axis=0), np.sort(b @ dirs.T, axis=0)
    if len(pa) != len(pb):
        q = (np.arange(max(len(pa), len(pb))) + 0.5) / max(len(pa), len(pb))
        pa = np.quantile(pa, q, axis=0, method="inverted_cdf")
        pb = np.quantile(pb, q, axis=0, method="inverted_cdf")
    return float(np.sqrt(((pa - pb) ** 2).mean()))


def mmd(a, b, bandwidth: float | None = None, max_points: int = 10_000) -> float:
    """Maximum mean discrepancy with a Gaussian kernel k = exp(-|x-y|^2 / (2 h^2))
    (Gretton et al. 2012), unbiased U-statistic of MMD^2, returned as sqrt(max(., 0)).
    Bandwidth rule when ``bandwidth`` is None: h = median pairwise distance of the pooled
    sets (the median heuristic), taken over at most 1000 pooled points spread evenly over both sets.
    Memory grows as (n + m)^2: sets beyond ``max_points`` points are refused. A given
    bandwidth must lie in MMD_BANDWIDTH."""
    a, b = _as_points(a, "a"), _as_points(b, "b")
    _same_dim(a, b)
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        raise ValueError(f"mmd needs at least two points in each set, got {n} in a and {m} in b")
    if max(n, m) > max_points:
        raise ValueError(f"mmd on more than {max_points:,} points per set is too costly; subsample")
    if bandwidth is not None:
        bandwidth = _check.real(bandwidth, "bandwidth", *MMD_BANDWIDTH, numpy_ok=True)
    x = torch.as_tensor(np.concatenate([a, b]))
    d2 = torch.cdist(x, x) ** 2
    if bandwidth is None:
        p = min(len(x), MMD_MEDIAN_POINTS)
        pick = torch.linspace(0, len(x) - 1, p).long()  # evenly over both sets
        sub = d2[pick][:, pick][torch.triu_indices(p, p, 1).unbind()]
        bandwidth = float(sub.sqrt().median())
        if not bandwidth > 0:
            raise ValueError("the median heuristic gives bandwidth 0 (most of the points are equal); "
                             "give a bandwidth")
    k = torch.exp(-d2 / (2 * bandwidth**2))
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    val = ((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
           + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1)) - 2 * kab.mean())
    return float(max(float(val), 0.0) ** 0.5)


def _div_score(field: ScoreField, x: Tensor, t, create_graph: bool = True):
    """Score (n, 2) and its exact divergence (n,): two backward passes (2-D)."""
    s = field.score(x, t)
    div = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0][:, i]
              for i in range(2))
    return s, div


def nll(field: ScoreField, x, rtol: float = 1e-5, atol: float = 1e-5, t_start: float | None = None,
        log_prior=None):
    """Negative log-likelihood (nats, shape (n,)) of points x (n, 2) under the model's
    probability-flow ODE (Song et al. 2021, appendix D; Chen et al. 2018's instantaneous
    change of variables): integrate dx/dt = v and d(log-det)/dt = div v from t_start
    (default the schedule's t_min) to t_max with dopri5 at (rtol, atol), then
    log p(x) = log N(x_T; 0, prior_std^2 I) + integral of div v.

    In 2-D div v = 2 f - g^2/2 div(score) is exact (two backward passes). What is returned
    is the density of p_{t_start}, the data noised to t_start, not of p_0. ``log_prior``
    (a function of x_T (n, 2)) replaces the Gaussian prior, e.g. by an exact p_T; the
    Gaussian's mismatch with the true p_T is of order alpha_T |x| (about 0.01 nats for VP).
    """
    from torchdiffeq import odeint

    s = field.schedule
    t0 = s.t_min if t_start is None else _check.real(t_start, "t_start", 0.0, s.t_max, high_open=True,
                                                     numpy_ok=True)
    x = field.as_input(_as_points(x, "x"))

    def rhs(t, state):
        y = state[:, :2].detach().requires_grad_(True)
        with torch.enable_grad():
            score, div_s = _div_score(field, y, float(t), create_graph=False)
        f, g2 = float(s.f(float(t))), float(s.g2(float(t)))
        v = f * y - 0.5 * g2 * score
        return torch.cat([v, (2 * f - 0.5 * g2 * div_s)[:, None]], 1).detach()

    state = torch.cat([x, torch.zeros_like(x[:, :1])], 1)
    ts = torch.tensor([t0, s.t_max], dtype=x.dtype, device=x.device)
    # step_t: land on t_max instead of stepping past it and interpolating back
    end = odeint(rhs, state, ts, method="dopri5", rtol=rtol, atol=atol,
                 options={"first_step": 0.01 * (s.t_max - t0), "step_t": ts})[-1]
    xT, delta = end[:, :2], end[:, 2]
    if log_prior is None:
        var = s.prior_std**2
        return -(-0.5 * (xT**2).sum(1) / var - math.log(2 * math.pi * var) + delta)
    return -(log_prior(xT) + delta)


def fokker_planck_residual(field: ScoreField, x, t, create_graph: bool = False) -> Tensor:
    """How far a field is from being the score of its own forward SDE dx = f x dt + g dW:

        R = d_t s - grad[ g^2/2 (div s + |s|^2) - f x . s ],   shape (n, 2),

    zero for s = grad log p_t (the score Fokker-Planck equation; Lai et al. 2023,
    Deveney et al.). All derivatives exact by autograd; x (n, 2), t a float or (n,).
    ``create_graph``: keep the graph, so R can be penalised in training (x and t must then
    be tensors on the field's device)."""
    if create_graph:
        if not isinstance(x, Tensor):
            raise ValueError("with create_graph, x must be a tensor on the field's device")
        t = _times_for(t, x)
        return _fp_residual(field, x.detach().requires_grad_(True), t.detach().requires_grad_(True))
    x = field.as_input(_as_points(x, "x"))
    tt = _times_for(t, x).clone()
    with torch.enable_grad():
        r = _fp_residual(field, x.requires_grad_(True), tt.requires_grad_(True))
    return r.detach()


def fokker_planck_norm(field: ScoreField, x, t, create_graph: bool = False) -> Tensor:
    """E |sigma_t^3 R|^2 over the points x (n, 2) at t (a float or (n,)): the size of the
    score residual (``fokker_planck_residual``) that training penalises with
    ``fp_form="score"`` (sigma^3 makes it O(1) across noise levels), and the gap page plots.
    Zero for the exact score. A 0-d tensor (with ``create_graph``, differentiable)."""
    r = fokker_planck_residual(field, x, t, create_graph=create_graph)
    sigma = field.schedule.sigma(_times_for(t, r))
    return ((sigma[:, None] ** 3 * r) ** 2).sum(1).mean()


def _times_for(t, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.numel() not in (1, x.shape[0]):
        raise ValueError(f"t must be a scalar or hold one time per point ({x.shape[0]}), "
                         f"got {t.numel()} values")
    return t.reshape(-1).expand(x.shape[0])


def _fp_residual(field: ScoreField, x: Tensor, t: Tensor) -> Tensor:
    sch = field.schedule
    score, div_s = _div_score(field, x, t)
    dt_s = torch.stack([torch.autograd.grad(score[:, i].sum(), t, create_graph=True)[0]
                        for i in range(2)], 1)
    phi = 0.5 * sch.g2(t) * (div_s + (score**2).sum(1)) - sch.f(t) * (x * score).sum(1)
    return dt_s - torch.autograd.grad(phi.sum(), x, create_graph=True)[0]


def log_density_residual(field: ScoreField, x, t, create_graph: bool = False) -> Tensor:
    """Deveney et al.'s scalar Fokker-Planck residual of a log-density u ~ log p_t, shape (n,):

        R = d_t u + d f + f x . grad u - g^2/2 (lap u + |grad u|^2)     (d = 2),

    zero when u = log p_t (+ a constant) for the forward SDE dx = f x dt + g dW: divide the
    Fokker-Planck equation d_t p = -div(f x p) + g^2/2 lap p by p. For OU (f = -1, g = 1) it
    is their R = u_t - 2 - x . grad u - |grad u|^2/2 - lap u/2. The field must give u: a
    ``MixtureField`` (its exact ``log_prob``) or a ``NetworkField`` of a ``LogDensityMLP``
    (``log_density``). All derivatives exact by autograd; ``create_graph`` as in
    ``fokker_planck_residual``."""
    u_of = field.log_prob if isinstance(field, MixtureField) else getattr(field, "log_density", None)
    if u_of is None:
        raise ValueError(f"{field!r} gives a score, not a log-density: the scalar residual needs "
                         "u = log p_t (an exact MixtureField or model='log_density_mlp'); "
                         "fokker_planck_residual works on any field")
    if create_graph:
        if not isinstance(x, Tensor):
            raise ValueError("with create_graph, x must be a tensor on the field's device")
        return _log_density_residual(field, u_of, x.detach().requires_grad_(True),
                                     _times_for(t, x).detach().requires_grad_(True))
    x = field.as_input(_as_points(x, "x"))
    tt = _times_for(t, x).clone()
    with torch.enable_grad():
        r = _log_density_residual(field, u_of, x.requires_grad_(True), tt.requires_grad_(True))
    return r.detach()


def _log_density_residual(field: ScoreField, u_of, x: Tensor, t: Tensor) -> Tensor:
    sch = field.schedule
    u = u_of(x, t)
    u_t, grad = torch.autograd.grad(u.sum(), (t, x), create_graph=True)
    lap = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(2))
    f, g2 = sch.f(t), sch.g2(t)
    return u_t + 2 * f + f * (x * grad).sum(1) - 0.5 * g2 * (lap + (grad ** 2).sum(1))


def ode_sde_gap(field: ScoreField, truth, n: int = 2000, steps: int = 800,
                spacing: str = "time_uniform", seed: int = 0, distance=None) -> dict:
    """Deveney et al.'s comparison: sample the same field with the probability-flow ODE
    (Euler) and the reverse SDE (Euler-Maruyama), ``steps`` each from the same prior draw,
    and return the squared W2 (exact OT on the samples) between ODE and truth, SDE and
    truth, and ODE and SDE, as {"ode_truth", "sde_truth", "ode_sde"}. ``distance``: the W2
    to use (default ``w2``, exact on the samples; ``w2_binned`` for large sets)."""
    from lab.solvers import sample

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
    from lab.solvers import sample

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
        saved = torch.load(state, weights_only=False)
        if saved["settings"] != settings:
            raise ValueError(f"{state} holds a run with other settings ({saved['settings']}); "
                             "delete it or give another state file")
        done, nfe, hist, kept = saved["done"], saved["nfe"], saved["hist"], saved["kept"]
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
        if state is not None:               # write, then rename: a run killed mid-write keeps the last
            tmp = Path(str(state) + ".tmp")
            torch.save(dict(settings=settings, done=done, nfe=nfe, hist=hist, kept=kept,
                            generator=g.get_state()), tmp)
            tmp.replace(state)
        if callback is not None:
            callback(done, n)
    d = {a + "_" + b: w2_histograms(hist[a], hist[b], extent) ** 2
         for a, b in (("ode", "truth"), ("sde", "truth"), ("ode", "sde"))}
    d["floor"] = w2_histograms(hist["truth"], hist["truth2"], extent) ** 2
    return d | {"n": n, "nfe": nfe, "hist": {k: hist[k] for k in ("ode", "sde", "truth")},
                "samples": {k: torch.cat(v) for k, v in kept.items()}}


# --- the solver race -----------------------------------------------------------------------
RACE_BUDGETS = (5, 10, 20, 50)   # NFE per run of the solver race


@dataclass
class RaceResult:
    """``solver_race``'s table: ``w2[source][solver]`` one W2 to the truth per budget (None
    where one step of the solver costs more than the budget, infinity where it diverged),
    ``nfe[solver]`` the NFE each run used, ``floor`` the W2 between two true sets of ``n``
    points."""

    budgets: tuple
    floor: float
    n: int
    w2: dict
    nfe: dict

    def split(self, solver: str, budget: int, learned: str = "learned", exact: str = "exact") -> dict | None:
        """The two errors of ``solver`` at ``budget``, read off the race: discretisation
        (the exact field's W2 above the floor: what the solver alone gets wrong) and learning
        (the learned field's W2 above the exact field's: what the network adds), and which
        dominates ("neither" when the learned run is within 1.5x the floor, "diverged" when
        either run did)."""
        k = self.budgets.index(budget)
        e, le = self.w2[exact][solver][k], self.w2[learned][solver][k]
        if e is None or le is None:
            return None
        disc = max(e - self.floor, 0.0)
        learn = max(le - e, 0.0) if math.isfinite(e) else math.nan   # unknown when the solver itself diverged
        dominant = ("diverged" if math.isinf(e) or math.isinf(le) else "neither" if le <= 1.5 * self.floor
                    else "discretisation" if disc >= learn else "learning")
        return {"discretisation": disc, "learning": learn, "dominant": dominant}

    def markdown(self, learned: str = "learned", exact: str = "exact") -> str:
        """A Markdown table: per solver and budget, W2 on the exact / learned field and which
        error dominates (D: discretisation, L: learning, blank: neither, near the floor)."""
        mark = {"discretisation": " D", "learning": " L", "neither": "", "diverged": " (diverged)"}
        rows = ["| solver | " + " | ".join(f"{b} NFE" for b in self.budgets) + " |",
                "|---" * (len(self.budgets) + 1) + "|"]
        for s in self.w2[exact]:
            cells = []
            for b, e, le in zip(self.budgets, self.w2[exact][s], self.w2[learned][s]):
                split = self.split(s, b, learned, exact)
                cells.append("—" if split is None else f"{e:.3f} / {le:.3f}{mark[split['dominant']]}")
            rows.append(f"| {s} | " + " | ".join(cells) + " |")
        return (f"{exact} / {learned} W2 to the truth, {self.n} points (floor {self.floor:.3f}; "
                "D: discretisation error dominates, L: the network's)\n\n" + "\n".join(rows))


def solver_race(fields: dict, reference: MixtureField, solvers=None, budgets=RACE_BUDGETS, n: int = 1000,
                seed: int = 0, callback=None) -> RaceResult:
    """Every solver (default: all of ``SOLVERS`` but ode_adaptive, whose NFE its tolerance
    sets) at each NFE budget on each field of ``fields`` (name -> field, e.g. {"learned":
    network, "exact": the mixture's}), from the same n starting points and noise, each run's
    exact W2 to one set of n true samples of ``reference`` at t_min, beside the floor.

    On the exact field only the solver's discretisation error is left; on the learned one
    the network's error adds to it: ``RaceResult.split`` reads off which dominates.
    ``callback(done, total, source, solver)`` after each run (progress)."""
    from lab.solvers import SOLVERS, NonFiniteError, sample

    solvers = [s for s in SOLVERS if s != "ode_adaptive"] if solvers is None else list(solvers)
    for s in solvers:
        if s not in SOLVERS:
            raise ValueError(f"unknown solver {s!r}; choose among {', '.join(SOLVERS)}")
    budgets = tuple(_check.integer(b, "budget", 1, 100_000) for b in budgets)
    if not budgets or not fields:
        raise ValueError("the race needs at least one budget and one field")
    n = _check.integer(n, "n", 2, 20_000)
    truth, floor = truth_and_floor(reference, n, seed=seed)
    x_T = reference.schedule.prior_sample(n, generator=torch.Generator().manual_seed((_check.seed(seed) + 1) % 2**63))
    out = RaceResult(budgets, floor, n, {}, {})
    total, done = len(fields) * len(solvers), 0
    for source, f in fields.items():
        out.w2[source] = {}
        for s in solvers:
            per = SOLVERS[s].nfe_per_step
            row, nfes = [], []
            for b in budgets:
                if b < per:
                    row.append(None)
                    nfes.append(None)
                    continue
                try:
                    traj = sample(f, x_T=f.as_input(x_T), solver=s, steps=b // per, seed=seed, keep_last=1)
                except NonFiniteError:          # a solver that diverges at this budget: infinitely far
                    row.append(math.inf)
                    nfes.append(per * (b // per))
                    continue
                row.append(float(w2(traj.samples, truth)))
                nfes.append(traj.nfe)
            out.w2[source][s], out.nfe[s] = row, nfes
            done += 1
            if callback is not None:
                callback(done, total, source, s)
    return out
