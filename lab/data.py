"""Two-dimensional data sets, each an exact Gaussian mixture.

Every data set in ``DATASETS`` *is* a :class:`GaussianMixture` (curves and squares are
covered by small overlapping components), so every data set has an exact density and an
exact noised score at every noise level: the lab can always show the truth beside what a
network learned. All data sets are centred and scaled to unit variance per coordinate
(on average over the two), as the mode-interpolation paper scales its grid, except the
two of the ODE-SDE gap paper (``PAPER_UNITS``), kept in Deveney et al.'s own units.

``gaussian_grid`` is the 5x5 grid of Aithal et al. 2024 ("Understanding Hallucinations in
Diffusion Models through Mode Interpolation"): means 2*{-2..2}^2, std 0.05, equal weights,
everything divided by sqrt(0.05^2 + 8) (spacing about 0.707, std about 0.0177).

``gap_circles`` and ``gap_checker`` are Deveney et al.'s ("Closing the ODE-SDE gap in
score-based diffusion models through the Fokker-Planck equation"; teojd/ODESDEGap's
data_dists.py, ``circles2`` and ``checker``) in their units: two rings of radius 1.3 and 2.8
with radial std 0.2, half the mass on each; 8 squares of side 1.5 in [-3, 3]^2, a checkerboard
with every other square filled.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from lab import _check

__all__ = ["GaussianMixture", "end_law", "DATASETS", "make_dataset", "dataset_mixture", "load_points", "standardize",
           "points_from_drawing",
           "MIN_POINTS", "MAX_POINTS", "PAPER_UNITS"]

MIN_POINTS = 8             # fewer user points than this cannot make a data set
MAX_POINTS = 2_000_000     # more than this is refused (memory; a served lab's safety)
MAX_CSV_BYTES = 64 << 20   # a CSV file larger than 64 MiB is refused before reading
KDE_COMPONENTS = 1000      # kernels of GaussianMixture.kde (cost of its exact score ~ n x this)
MAX_GRID_K = 1000          # GaussianMixture.grid: at most a 1000 x 1000 grid of components
MAX_STD = 1e150            # a component's std beyond this has a variance that overflows
_LOG_2PI = math.log(2 * math.pi)
_CHUNK = 1 << 22           # points x components evaluated at once (memory bound)


class GaussianMixture:
    """A mixture of 2-D Gaussians sum_k w_k N(m_k, C_k), with exact density and score.

    Args:
        means: (K, 2) component means.
        covs: (K, 2, 2) covariances, or (K,) / scalar standard deviations (isotropic).
            Positive semi-definite; zero covariances (point masses) are allowed, which
            is how the empirical distribution of a training set is written.
        weights: (K,) non-negative weights, normalised here; equal if omitted.

    Parameters are kept in float64; evaluations run in the dtype of their input.
    """

    def __init__(self, means, covs=0.05, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2 or means.shape[1] != 2 or means.shape[0] == 0:
            raise ValueError(f"means must have shape (K, 2) with K >= 1, got {tuple(means.shape)}")
        K = means.shape[0]
        covs = torch.as_tensor(covs, dtype=torch.float64)
        for name, v in (("means", means), ("covs", covs)):
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} must be finite")
        if covs.ndim <= 1:  # standard deviations
            if covs.ndim == 1 and covs.shape[0] not in (1, K):
                raise ValueError(f"need 1 or {K} standard deviations, got {covs.shape[0]}")
            std = covs.expand(K)
            if torch.any(std < 0):
                raise ValueError("standard deviations must be non-negative")
            covs = std[:, None, None] ** 2 * torch.eye(2, dtype=torch.float64)
        if covs.shape != (K, 2, 2):
            raise ValueError(f"covs must have shape ({K}, 2, 2), got {tuple(covs.shape)}")
        if not torch.allclose(covs, covs.transpose(1, 2)):
            raise ValueError("covariances must be symmetric")
        if torch.linalg.eigvalsh(covs).min() < -1e-12:
            raise ValueError("covariances must be positive semi-definite")
        if weights is None:
            weights = torch.ones(K, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or torch.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum")
        if not torch.isfinite(weights).all():
            raise ValueError("weights must be finite")
        self.means, self.covs = means, covs
        self.singular = bool((torch.linalg.det(covs) <= 0).any())  # point masses, flat parts
        self.weights = weights / weights.sum()
        self._cast: dict = {}

    # --- constructors -------------------------------------------------------------
    @classmethod
    def grid(cls, k: int = 5, spacing: float = 1.0, std: float = 0.05) -> "GaussianMixture":
        """A k x k grid of equal isotropic components, centred at 0: spacing*{-(k-1)/2..}^2.

        k: an int in [1, MAX_GRID_K]; spacing: any finite number (0 stacks the components,
        a negative one mirrors the grid); std: a finite number in [0, MAX_STD]."""
        k = _check.integer(k, "k", 1, MAX_GRID_K, numpy_ok=True)
        spacing = _check.real(spacing, "spacing", numpy_ok=True)
        std = _check.real(std, "std", 0.0, MAX_STD, numpy_ok=True)
        c = (torch.arange(k, dtype=torch.float64) - (k - 1) / 2) * spacing
        if not torch.isfinite(c).all():
            raise ValueError(f"spacing={spacing:g} is too large for a {k} x {k} grid: "
                             "its means overflow")
        gx, gy = torch.meshgrid(c, c, indexing="xy")
        return cls(torch.stack([gx.flatten(), gy.flatten()], 1), std)

    @classmethod
    def ring(cls, k: int = 8, radius: float = 1.0, std: float = 0.05) -> "GaussianMixture":
        """k equal isotropic components evenly spaced on a circle of the given radius."""
        k = _check.integer(k, "k", 1, MAX_POINTS, numpy_ok=True)
        radius = _check.real(radius, "radius", numpy_ok=True)
        std = _check.real(std, "std", 0.0, MAX_STD, numpy_ok=True)
        a = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        return cls(radius * torch.stack([a.cos(), a.sin()], 1), std)

    @classmethod
    def kde(cls, points, max_components: int = KDE_COMPONENTS, bandwidth: float | None = None,
            seed: int = 0) -> "GaussianMixture":
        """A Gaussian kernel density estimate of points (n, 2): equal isotropic components at
        the points (a random subset of ``max_components`` when there are more).

        bandwidth: the kernels' std; default half of Silverman's rule for two dimensions,
        h = std * m^(-1/6) with m the components kept and std the points' mean std (the rule
        assumes one Gaussian blob and blurs the shapes of multi-modal data, hence the half).
        """
        x = load_points(points).double()
        m = _check_count(max_components, "max_components", 1, MAX_POINTS)
        seed = _check.seed(seed, numpy_ok=True)
        if x.shape[0] > m:
            x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:m]]
        if bandwidth is None:
            std = float(x.var(0).mean().sqrt())
            if not std > 0:
                raise ValueError("cannot estimate a density of points that are all equal")
            bandwidth = 0.5 * std * x.shape[0] ** (-1 / 6)
        return cls(x, _check.real(bandwidth, "bandwidth", 0.0, MAX_STD, low_open=True, numpy_ok=True))

    # --- moments and transforms ----------------------------------------------------
    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mean(self) -> Tensor:
        """Mixture mean (2,)."""
        return self.weights @ self.means

    def cov(self) -> Tensor:
        """Mixture covariance (2, 2): sum_k w_k (C_k + m_k m_k^T) - mu mu^T."""
        mu = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs
                              + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(mu, mu)

    def affine(self, scale: float, shift=(0.0, 0.0)) -> "GaussianMixture":
        """The mixture of scale * x + shift."""
        shift = torch.as_tensor(shift, dtype=torch.float64)
        return GaussianMixture(self.means * scale + shift, self.covs * scale**2, self.weights)

    def noised(self, alpha: float, sigma: float) -> "GaussianMixture":
        """The law of alpha x0 + sigma eps: components N(alpha m_k, alpha^2 C_k + sigma^2 I)."""
        eye = torch.eye(2, dtype=torch.float64)
        return GaussianMixture(alpha * self.means, alpha**2 * self.covs + sigma**2 * eye, self.weights)

    def standardized(self) -> "GaussianMixture":
        """Centred, and scaled (one factor for both axes) to unit mean variance."""
        scale = 1.0 / math.sqrt(float(torch.trace(self.cov())) / 2)
        return self.affine(scale, -self.mean() * scale)

    # --- sampling and densities ----------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype=torch.float32, device=None) -> Tensor:
        """Draw n points (n, 2). Reproducible given a seeded ``generator`` (CPU)."""
        n = _check_count(n, "n")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        evals, evecs = torch.linalg.eigh(self.covs)
        root = evecs * evals.clamp_min(0).sqrt()[:, None, :]  # C = root root^T
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = self.means[k] + torch.einsum("nij,nj->ni", root[k], z)
        return x.to(dtype=dtype, device=device)

    def _params(self, like: Tensor):
        key = (like.dtype, like.device)
        if key not in self._cast:
            self._cast[key] = tuple(p.to(dtype=like.dtype, device=like.device)
                                    for p in (self.means, self.covs, self.weights.log()))
        return self._cast[key]

    def _noised_terms(self, x, alpha, sigma):
        """Per component log-density terms of the noised mixture, and what the score needs.

        Component k of the law of alpha x0 + sigma eps is N(alpha m_k, alpha^2 C_k + sigma^2 I).
        Shapes: x (n, 2); alpha, sigma broadcastable to (n, 1). Returns log(w_k N_k) (n, K)
        and Sigma_k^-1 (x - alpha m_k) as two (n, K) tensors.
        """
        means, covs, log_w = self._params(x)
        a2, s2 = alpha**2, sigma**2
        A = a2 * covs[:, 0, 0] + s2   # (n, K): entries of the noised covariance
        B = a2 * covs[:, 0, 1]
        C = a2 * covs[:, 1, 1] + s2
        dx = x[:, :1] - alpha * means[:, 0]
        dy = x[:, 1:] - alpha * means[:, 1]
        det = A * C - B * B
        px = (C * dx - B * dy) / det  # Sigma^-1 (x - mu)
        py = (A * dy - B * dx) / det
        logp = log_w - 0.5 * (dx * px + dy * py) - 0.5 * torch.log(det) - _LOG_2PI
        return logp, px, py

    def _chunks(self, x, alpha, sigma):
        if self.singular and float(torch.as_tensor(sigma).min()) == 0:
            raise ValueError("this mixture has singular components (e.g. point masses): it has "
                             "a density and a score only for sigma > 0")
        n = x.shape[0]
        step = max(1, _CHUNK // self.n_components)
        alpha, sigma = (_as_column(v, x) for v in (alpha, sigma))
        for i in range(0, max(n, 1), step):  # no points: one empty chunk
            j = slice(i, i + step)
            yield self._noised_terms(x[j], _rows(alpha, j), _rows(sigma, j))

    def log_prob_noised(self, x: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
        """log density (n,) at x (n, 2) of alpha x0 + sigma eps, x0 from this mixture."""
        return torch.cat([logp.logsumexp(1) for logp, _, _ in self._chunks(x, alpha, sigma)])

    def score_noised(self, x: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
        """Exact score grad_x log p (n, 2) of alpha x0 + sigma eps: the posterior-weighted
        sum over components of -Sigma_k^-1 (x - alpha m_k)."""
        out = []
        for logp, px, py in self._chunks(x, alpha, sigma):
            r = torch.softmax(logp, dim=1)
            out.append(-torch.stack([(r * px).sum(1), (r * py).sum(1)], 1))
        score = torch.cat(out)
        if not _check.all_finite(score):
            score = self._score_far_away(x, alpha, sigma, score)
        return score

    def _score_far_away(self, x: Tensor, alpha, sigma, score: Tensor) -> Tensor:
        """The score where the softmax over components failed: at points so far from the
        data (|x| ~ 1e17 in float32, 1e150 in float64) that every component's log-density
        overflows. There the posterior sits on the components nearest in Mahalanobis
        distance, which the distances divided by |x - alpha m_k| still rank."""
        if not torch.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
        bad = ~torch.isfinite(score).all(1)
        if not bad.any():  # the check's sum overflowed, not a value
            return score
        alpha, sigma = (_as_column(v, x) for v in (alpha, sigma))
        a, s = _rows(alpha, bad), _rows(sigma, bad)
        means, covs, _ = self._params(x)
        A = a**2 * covs[:, 0, 0] + s**2
        B = a**2 * covs[:, 0, 1]
        C = a**2 * covs[:, 1, 1] + s**2
        dx = x[bad, :1] - a * means[:, 0]
        dy = x[bad, 1:] - a * means[:, 1]
        det = A * C - B * B
        px, py = (C * dx - B * dy) / det, (A * dy - B * dx) / det
        scale = torch.maximum(dx.abs(), dy.abs()).amax(1, keepdim=True)
        ux, uy = dx / scale, dy / scale
        q = (ux * (C * ux - B * uy) + uy * (A * uy - B * ux)) / det  # Mahalanobis^2 / scale^2
        r = (q == q.amin(1, keepdim=True)).to(x.dtype)
        r = r / r.sum(1, keepdim=True)
        score = score.clone()
        score[bad] = -torch.stack([(r * px).sum(1), (r * py).sum(1)], 1)
        return score

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density (n,) of the mixture at x (n, 2)."""
        return self.log_prob_noised(x, 1.0, 0.0)

    def score(self, x: Tensor) -> Tensor:
        """Exact score (n, 2) of the mixture at x (n, 2)."""
        return self.score_noised(x, 1.0, 0.0)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components})"


def _as_column(v, x: Tensor) -> Tensor:
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.reshape(-1, 1) if v.ndim >= 1 else v


def _rows(v: Tensor, j: slice) -> Tensor:
    return v[j] if v.ndim >= 1 and v.shape[0] > 1 else v


def _check_count(n, name: str, low: int = 1, high: int = MAX_POINTS) -> int:
    return _check.integer(n, name, low, high, numpy_ok=True)


# --- the data sets, as mixtures ----------------------------------------------------
def _along(points: np.ndarray, std: float, weights=None) -> GaussianMixture:
    return GaussianMixture(torch.as_tensor(points), std, weights)


def _arclength_points(curve: Callable, t0: float, t1: float, k: int) -> np.ndarray:
    """k points evenly spaced by arc length along curve(t), t in [t0, t1]."""
    t = np.linspace(t0, t1, 4000)
    p = curve(t)
    s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    return curve(np.interp(np.linspace(0, s[-1], k), s, t))


def _gaussian_grid() -> GaussianMixture:
    scale = 1 / math.sqrt(0.05**2 + 8)  # Aithal et al. 2024: data / sqrt(std^2 + 8)
    return GaussianMixture.grid(k=5, spacing=2 * scale, std=0.05 * scale)


def _ring() -> GaussianMixture:
    return GaussianMixture.ring(k=8, radius=1.0, std=0.05).standardized()


def _two_moons() -> GaussianMixture:
    upper = _arclength_points(lambda t: np.stack([np.cos(t), np.sin(t)], 1), 0, np.pi, 40)
    lower = _arclength_points(lambda t: np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1), 0, np.pi, 40)
    return _along(np.concatenate([upper, lower]), 0.08).standardized()


def _swiss_roll() -> GaussianMixture:
    pts = _arclength_points(lambda t: np.stack([t * np.cos(t), t * np.sin(t)], 1),
                            1.5 * np.pi, 4.5 * np.pi, 120)
    return _along(pts, 0.45).standardized()


def _checkerboard() -> GaussianMixture:
    c = (np.arange(4) + 0.5) / 4  # 4 x 4 components inside each unit square
    sub = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)
    corners = [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
    pts = np.concatenate([sub + np.array(ij) for ij in corners])
    return _along(pts, 0.09).standardized()


def _circles() -> GaussianMixture:
    outer = _arclength_points(lambda t: np.stack([np.cos(t), np.sin(t)], 1), 0, 2 * np.pi, 49)[:-1]
    inner = _arclength_points(lambda t: 0.5 * np.stack([np.cos(t), np.sin(t)], 1), 0, 2 * np.pi, 25)[:-1]
    w = np.concatenate([np.full(48, 1 / 48), np.full(24, 1 / 24)])  # half the mass on each
    return _along(np.concatenate([outer, inner]), 0.06, w).standardized()


def _pinwheel(arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.05,
              rate: float = 0.25) -> GaussianMixture:
    """Johnson et al. 2016's pinwheel: along each arm r ~ N(1, 0.3), turned by rate*exp(r)."""
    r = np.linspace(0.2, 1.9, 14)
    gap = r[1] - r[0]
    w_r = np.exp(-0.5 * ((r - 1) / radial_std) ** 2)
    means, covs, weights = [], [], []
    for a in range(arms):
        theta = 2 * np.pi * a / arms + rate * np.exp(r)
        pos = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
        tangent = np.gradient(pos, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        for p, u, v, w in zip(pos, tangent, normal, w_r):
            means.append(p)
            covs.append((0.7 * gap) ** 2 * np.outer(u, u) + tangential_std**2 * np.outer(v, v))
            weights.append(w)
    return GaussianMixture(np.array(means), np.array(covs), np.array(weights)).standardized()


def _spiral() -> GaussianMixture:
    arm = _arclength_points(lambda t: np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi),
                            0.5 * np.pi, 3 * np.pi, 60)
    return _along(np.concatenate([arm, -arm]), 0.045).standardized()


def _gap_circles(radii=(1.3, 2.8), std: float = 0.2, spacing: float = 0.15) -> GaussianMixture:
    """Deveney et al.'s circles2 (twice their unit rings at 0.65 and 1.4, std 0.1): each
    ring is isotropic components of std 0.2 every 0.15 along it, which smooth it to a ring
    of radial std 0.2 (the tangential ripple is of order exp(-2 pi^2 (std/spacing)^2))."""
    means, weights = [], []
    for r in radii:
        k = math.ceil(2 * math.pi * r / spacing)
        a = np.arange(k) * 2 * math.pi / k
        means.append(r * np.stack([np.cos(a), np.sin(a)], 1))
        weights.append(np.full(k, 0.5 / k))   # half the mass on each ring
    return _along(np.concatenate(means), std, np.concatenate(weights))


def _gap_checker(side: float = 1.5, per_side: int = 8) -> GaussianMixture:
    """Deveney et al.'s checker: squares of side 1.5 with lower-left corners at
    (-3,-3), (0,-3), (-1.5,-1.5), (1.5,-1.5), (-3,0), (0,0), (-1.5,1.5), (1.5,1.5), equal
    mass; each square is 8 x 8 isotropic components, std half their spacing (0.094), so
    about 8 % of the mass blurs over the squares' edges (theirs are uniform, sharp)."""
    c = (np.arange(per_side) + 0.5) / per_side * side
    sub = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)
    corners = [(i * side - 3, j * side - 3) for j in range(4) for i in range(4) if (i + j) % 2 == 0]
    return _along(np.concatenate([sub + np.array(ij) for ij in corners]), 0.5 * side / per_side)


DATASETS: dict[str, Callable[[], GaussianMixture]] = {
    "gaussian_grid": _gaussian_grid,
    "ring": _ring,
    "two_moons": _two_moons,
    "swiss_roll": _swiss_roll,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "pinwheel": _pinwheel,
    "spiral": _spiral,
    "gap_circles": _gap_circles,
    "gap_checker": _gap_checker,
}
PAPER_UNITS = frozenset({"gap_circles", "gap_checker"})   # not standardised: their paper's units


def dataset_mixture(name: str) -> GaussianMixture:
    """The exact Gaussian mixture that data set ``name`` is drawn from."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]()


def make_dataset(name: str, n: int = 10_000, seed: int = 0) -> Tensor:
    """n points (n, 2), float32, drawn from data set ``name``; the same seed gives the
    same points. seed: an integer in [-2**63, 2**64), as torch.Generator takes."""
    n = _check_count(n, "n")
    g = torch.Generator().manual_seed(_check.seed(seed, numpy_ok=True))
    return dataset_mixture(name).sample(n, generator=g)


def load_points(source) -> Tensor:
    """User points as a float32 tensor (n, 2), from an array-like or a CSV file path.

    A CSV holds two numeric columns, comma (or whitespace) separated, with an optional
    header line. Raises ValueError naming the problem: wrong shape, non-numeric or
    non-finite values, fewer than ``MIN_POINTS`` or more than ``MAX_POINTS`` points.
    """
    if isinstance(source, (str, os.PathLike)):
        arr = _read_csv(os.fspath(source))
    else:
        arr = _check.real_array(source, "points")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2): two columns x, y; got shape {arr.shape}")
    if arr.shape[0] < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} points, got {arr.shape[0]}")
    if arr.shape[0] > MAX_POINTS:
        raise ValueError(f"at most {MAX_POINTS:,} points are accepted, got {arr.shape[0]:,}")
    with np.errstate(over="ignore"):  # float32 is what the lab trains in
        bad = ~np.isfinite(arr.astype(np.float32)).all(1)
    if bad.any():
        raise ValueError(f"points must be finite: {bad.sum()} row(s) hold NaN, infinity or "
                         "values beyond float32's range, "
                         f"the first is row {int(np.argmax(bad))}")
    return torch.as_tensor(arr, dtype=torch.float32)


def points_from_drawing(strokes=(), dots=(), n: int = 4000, width: float = 0.04, seed: int = 0) -> Tensor:
    """A data set (n, 2) from a drawing: ``strokes`` are polylines, each a pair (xs, ys) of
    equal-length sequences (one point is a dot); ``dots`` are points (x, y). Each point of
    the data set is a place on the drawing plus Gaussian noise of std ``width`` (the pen's
    width, in the drawing's units): places uniform by length along the strokes, a dot
    counting as a stroke of length 4 * width. Raises ValueError for an empty drawing or
    non-finite coordinates."""
    n = _check.integer(n, "n", MIN_POINTS, MAX_POINTS)
    width = _check.real(width, "width", 1e-6, 1e6)
    pieces, lengths = [], []                     # segments (a, b) and their lengths
    for k, stroke in enumerate(strokes):
        if len(stroke) != 2:
            raise ValueError(f"stroke {k} must be a pair (xs, ys)")
        xs, ys = (np.asarray(v, dtype=np.float64).reshape(-1) for v in stroke)
        if xs.shape != ys.shape or not xs.size:
            raise ValueError(f"stroke {k} needs as many x as y coordinates, and at least one")
        pts = np.stack([xs, ys], 1)
        if not np.isfinite(pts).all():
            raise ValueError(f"stroke {k} holds a non-finite coordinate")
        if len(pts) == 1:
            dots = [*dots, pts[0]]
            continue
        pieces.append(np.stack([pts[:-1], pts[1:]], 1))
        lengths.append(np.linalg.norm(pts[1:] - pts[:-1], axis=1))
    dots = np.asarray(list(dots), dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(dots).all():
        raise ValueError("a dot holds a non-finite coordinate")
    if dots.size:
        pieces.append(np.stack([dots, dots], 1))
        lengths.append(np.full(len(dots), 4 * width))
    if not pieces:
        raise ValueError("the drawing is empty: draw a stroke or put a point first")
    segments, lengths = np.concatenate(pieces), np.concatenate(lengths)
    if not lengths.sum() > 0:
        raise ValueError("the drawing has no length: draw a stroke or put a point first")
    rng = np.random.default_rng(_check.seed(seed))
    which = rng.choice(len(segments), size=n, p=lengths / lengths.sum())
    u = rng.random((n, 1))
    places = segments[which, 0] + u * (segments[which, 1] - segments[which, 0])
    return torch.as_tensor(places + width * rng.standard_normal((n, 2)), dtype=torch.float32)


def standardize(x: Tensor) -> Tensor:
    """Points (n, 2) centred and scaled, one factor for both axes, to unit mean variance:
    the scale the lab's schedules and data sets assume."""
    x = torch.as_tensor(x)
    std = float(x.var(0).mean().sqrt())
    if not std > 0:
        raise ValueError("cannot standardise points that are all equal")
    return (x - x.mean(0)) / std


def _read_csv(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {path}")
    if os.path.getsize(path) > MAX_CSV_BYTES:
        raise ValueError(f"{path} is larger than {MAX_CSV_BYTES >> 20} MiB")
    with open(path, "r", errors="replace") as fh:
        lines = fh.read().splitlines()
    rows = [(i + 1, ln) for i, ln in enumerate(lines)
            if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"{path} holds no data")

    def fields(line):
        return line.replace(",", " ").replace(";", " ").split()

    def is_number(v):
        try:
            float(v)
            return True
        except ValueError:
            return False
    if not any(is_number(v) for v in fields(rows[0][1])):
        rows = rows[1:]  # a header line: no field of it is a number
    if len(rows) > MAX_POINTS:  # counted before any parsing: a huge file is refused at once
        raise ValueError(f"{path}: {len(rows):,} rows, more than {MAX_POINTS:,} points")
    tokens = [fields(line) for _, line in rows]
    if all(len(vals) == 2 for vals in tokens):
        try:
            return np.array(tokens, dtype=np.float64).reshape(-1, 2)
        except ValueError:
            pass  # some field is not a number: the loop below names its line
    data = []
    for (lineno, line), vals in zip(rows, tokens):
        if not all(is_number(v) for v in vals):
            raise ValueError(f"{path}: line {lineno} is not numeric: {line[:60]!r}")
        if len(vals) != 2:
            raise ValueError(f"{path}: line {lineno} has {len(vals)} values, "
                             "expected two columns x, y")
        data.append([float(v) for v in vals])
    return np.asarray(data, dtype=np.float64).reshape(-1, 2)


def end_law(mixture: GaussianMixture, schedule) -> GaussianMixture:
    """The law a sampler of ``schedule`` ends at: the mixture noised to t_min (samples are
    judged against it, not against the noiseless mixture)."""
    t = schedule.t_min
    return mixture.noised(float(schedule.alpha(t)), float(schedule.sigma(t)))
