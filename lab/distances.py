"""Distances between sample sets, and their noise floors: exact W2 (optimal transport), W2
between binned histograms (Deveney et al.'s measure), sliced W2, MMD; ``truth_and_floor``,
true samples and the distance between two true draws, below which no sampler can be told
from the truth at that sample size."""
from __future__ import annotations

import numpy as np
import torch

from lab import _check
from lab.fields import MixtureField, noised_samples

__all__ = ["w2", "w2_binned", "sliced_w2", "SLICED_ESTIMATORS", "mmd", "histogram", "w2_histograms", "truth_and_floor"]

MMD_MEDIAN_POINTS = 1000  # points the median heuristic looks at (its cost is quadratic)
MMD_BANDWIDTH = (1e-150, 1e150)  # mmd's bandwidth range: its square must be a positive float


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


def _same_dim(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b live in different dimensions: {a.shape[1]} and {b.shape[1]}")


def w2(a, b, max_points: int = 20_000) -> float:
    """Exact 2-Wasserstein distance between two sample sets (n, d) and (m, d) with uniform
    weights: sqrt of the optimal transport cost with squared Euclidean ground cost, solved
    exactly by POT's network simplex (``ot.emd2``). Cost grows as n^2 memory, n^3 time."""
    import ot

    a, b = _check.points(a, "a"), _check.points(b, "b")
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
    a, b = _check.points(a, "a"), _check.points(b, "b")
    if a.shape[1] != 2 or b.shape[1] != 2:
        raise ValueError("w2_binned works on 2-D points")
    return w2_histograms(histogram(a, bins, extent), histogram(b, bins, extent), extent)


def _bins_extent(bins, extent):
    return (_check.integer(bins, "bins", 2, 256, numpy_ok=True),
            _check.real(extent, "extent", 0.0, _check.MAX_COORD, low_open=True, numpy_ok=True))


def histogram(points, bins: int = 64, extent: float = 3.5) -> np.ndarray:
    """Counts (bins, bins) of 2-D points on a bins x bins grid over [-extent, extent]^2,
    points beyond it in the edge bins (as ``w2_binned`` bins them). Counts of chunks add up,
    so a sample set too large to hold is binned chunk by chunk."""
    bins, extent = _bins_extent(bins, extent)
    p = np.clip(_check.points(points, "points"), -extent, extent)
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


SLICED_ESTIMATORS = ("mc", "cv", "grid")


def sliced_w2(a, b, n_projections: int = 256, seed: int = 0, estimator: str = "mc") -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011): the root of the mean, over unit
    directions theta, of the squared 1-D W2 between the projected sets (exact in 1-D by
    sorting; unequal sizes are compared through their quantile functions on a common grid),
    estimated on ``n_projections`` directions by one of:

    - ``"mc"``: Monte Carlo, directions uniform on the sphere;
    - ``"cv"``: the same directions with Nguyen & Ho 2024's control variates ("Sliced
      Wasserstein Estimation with Control Variates"): with Gaussians fitted to both sets
      (means m_a, m_b, covariances S_a, S_b), the lower bound (theta'(m_a - m_b))^2 and the
      upper bound (theta'(m_a - m_b))^2 + theta'S_a theta + theta'S_b theta of their
      projections' W2^2 have the closed-form means |m_a - m_b|^2 / d and
      (|m_a - m_b|^2 + tr S_a + tr S_b) / d; each is subtracted, less its mean, with the
      least-squares coefficient fitted on the same directions (the paper's small bias);
    - ``"grid"`` (2-D only): evenly spaced angles pi k / L with one random offset, a
      quadrature of the one-angle integral; in two dimensions the best of the three at equal
      directions (tests/test_metrics.py measures all three against a fine quadrature)."""
    a, b = _check.points(a, "a"), _check.points(b, "b")
    _same_dim(a, b)
    n_projections = _check.integer(n_projections, "n_projections", 1, 100_000, numpy_ok=True)
    if estimator not in SLICED_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(SLICED_ESTIMATORS)}")
    rng = np.random.default_rng(_check.seed(seed, low=0, numpy_ok=True))
    d = a.shape[1]
    if estimator == "grid":
        if d != 2:
            raise ValueError(f"estimator='grid' spaces angles on the circle: 2-D points only, got d = {d}")
        angles = (rng.uniform() + np.arange(n_projections)) * np.pi / n_projections
        dirs = np.stack([np.cos(angles), np.sin(angles)], 1)
    else:
        dirs = rng.normal(size=(n_projections, d))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    sq = _projected_w2_squared(a, b, dirs)
    if estimator != "cv" or n_projections < 3:
        return float(np.sqrt(sq.mean()))
    delta = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a.T, bias=True)), np.atleast_2d(np.cov(b.T, bias=True))
    mean_term = (dirs @ delta) ** 2
    lower, lower_mean = mean_term, delta @ delta / d
    upper = mean_term + np.einsum("li,ij,lj->l", dirs, cov_a + cov_b, dirs)
    upper_mean = (delta @ delta + np.trace(cov_a) + np.trace(cov_b)) / d
    variates = np.stack([lower - lower_mean, upper - upper_mean], 1)          # (L, 2), mean 0 exactly
    centred = variates - variates.mean(0)
    gamma = np.linalg.lstsq(centred, sq - sq.mean(), rcond=None)[0]
    return float(np.sqrt(max((sq - variates @ gamma).mean(), 0.0)))


def _projected_w2_squared(a: np.ndarray, b: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The squared 1-D W2 between a and b projected on each direction (L,)."""
    pa, pb = np.sort(a @ dirs.T, axis=0), np.sort(b @ dirs.T, axis=0)
    if len(pa) != len(pb):
        q = (np.arange(max(len(pa), len(pb))) + 0.5) / max(len(pa), len(pb))
        pa = np.quantile(pa, q, axis=0, method="inverted_cdf")
        pb = np.quantile(pb, q, axis=0, method="inverted_cdf")
    return ((pa - pb) ** 2).mean(0)


def mmd(a, b, bandwidth: float | None = None, max_points: int = 10_000) -> float:
    """Maximum mean discrepancy with a Gaussian kernel k = exp(-|x-y|^2 / (2 h^2))
    (Gretton et al. 2012), unbiased U-statistic of MMD^2, returned as sqrt(max(., 0)).
    Bandwidth rule when ``bandwidth`` is None: h = median pairwise distance of the pooled
    sets (the median heuristic), taken over at most 1000 pooled points spread evenly over both sets.
    Memory grows as (n + m)^2: sets beyond ``max_points`` points are refused. A given
    bandwidth must lie in MMD_BANDWIDTH."""
    a, b = _check.points(a, "a"), _check.points(b, "b")
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
