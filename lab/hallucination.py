"""Mode interpolation: samples between the modes of a mixture, and how to catch them.

Aithal et al. 2024, "Understanding Hallucinations in Diffusion Models through Mode
Interpolation" (code: locuslab/diffusion-model-hallucination): a network's score is a
smooth approximation of the true score, which jumps between modes; so a diffusion model
puts samples between modes that the data never had. The true score does not. Such
samples' predicted x0 wavers at the end of sampling: the variance of x0 over the last
reverse steps flags them, and filtering on it removes most of them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lab import _check
from lab.data import GaussianMixture, end_law  # end_law: re-exported from its old home
from lab.solvers import sample
from lab.train import TrainConfig, train

__all__ = ["IN_SUPPORT", "BETWEEN_MODES", "OUTSIDE", "LABEL_NAMES", "support_labels",
           "hallucination_rate", "trajectory_variance", "roc_auc", "roc_curve", "filter_report",
           "FilterReport", "filter_samples", "recursive_training", "Generation", "end_law",
           "OperatingPoints", "operating_points", "ScoredSamples", "score_samples",
           "PAPER_DETECTION", "PAPER_RETENTION", "PAPER_PROTOCOL", "LABEL_STDS", "PAPER_EXTRAS",
           "mode_distance", "operating_floor", "kept_share", "kept_by_cut"]

IN_SUPPORT, BETWEEN_MODES, OUTSIDE = 0, 1, 2
LABEL_NAMES = {IN_SUPPORT: "in support", BETWEEN_MODES: "between modes", OUTSIDE: "outside"}
# Aithal et al. 2024's figures and protocol: the filter removes > 95 % of hallucinations
# while keeping 96 % of in-support samples; ancestral sampling with T = 1000 time-uniform
# steps, detector = x0 variance over the last 10; the recursive filter draws N + 2.5 % or
# N + 5 % and keeps the N lowest. Labels: within k std of a mode, for k in LABEL_STDS.
PAPER_DETECTION = 0.95
PAPER_RETENTION = 0.96
PAPER_PROTOCOL = dict(solver="ddpm", steps=1000, spacing="time_uniform")
PAPER_LAST_K = 10
PAPER_EXTRAS = (0.025, 0.05)
LABEL_STDS = (3.0, 6.0, 10.0)
SCORE_CHUNK = 10_000      # samples per chunk in score_samples (a 1000-step chunk: ~160 MB)


def _mahalanobis(x: Tensor, mixture: GaussianMixture) -> Tensor:
    """Distance (n, K) of each point to each component mean, in that component's std:
    sqrt((x - m_k)^T C_k^-1 (x - m_k))."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 2)
    d = x[:, None, :] - mixture.means[None]                      # (n, K, 2)
    inv = torch.linalg.inv(mixture.covs)                         # (K, 2, 2)
    return torch.einsum("nki,kij,nkj->nk", d, inv, d).clamp_min(0).sqrt()


def mode_distance(samples, mixture: GaussianMixture) -> Tensor:
    """Distance (n,) of each sample to the nearest component, in that component's standard
    deviations (Mahalanobis). Blur sits a few std from a mode; a sample between two modes
    of the 5x5 grid, about 20 (neighbours are 40 std apart)."""
    if mixture.singular:
        raise ValueError("distances in std need components with positive-definite covariances")
    x = torch.as_tensor(samples, dtype=torch.float64).detach().cpu().reshape(-1, 2)
    return _mahalanobis(x, mixture).min(1).values


def support_labels(samples, mixture: GaussianMixture, k: float = 3.0) -> Tensor:
    """Label each sample (n, 2): ``IN_SUPPORT`` (0) if within k component standard deviations
    of some component mean (Mahalanobis distance <= k); else ``BETWEEN_MODES`` (1) if inside
    the convex hull of the means (where mode interpolation puts samples); else ``OUTSIDE``
    (2). Returns an int64 tensor (n,)."""
    if mixture.singular:
        raise ValueError("support needs components with positive-definite covariances")
    k = _check.real(k, "k", 0.0, low_open=True, numpy_ok=True)
    x = torch.as_tensor(samples, dtype=torch.float64).detach().cpu().reshape(-1, 2)
    inside = mode_distance(x, mixture) <= k
    labels = torch.full((x.shape[0],), OUTSIDE, dtype=torch.int64)
    labels[inside] = IN_SUPPORT
    rest = ~inside
    if rest.any():
        labels[rest] = torch.where(torch.as_tensor(_in_hull(x[rest].numpy(), mixture.means.numpy())),
                                   BETWEEN_MODES, OUTSIDE)
    return labels


def _in_hull(points: np.ndarray, hull_points: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay, QhullError

    try:
        return Delaunay(hull_points).find_simplex(points) >= 0
    except QhullError:  # fewer than 3 means, or all on a line: no area between them
        return np.zeros(len(points), dtype=bool)


def hallucination_rate(samples, mixture: GaussianMixture, k: float = 3.0) -> float:
    """Share of samples out of support (between modes or outside)."""
    return float((support_labels(samples, mixture, k) != IN_SUPPORT).double().mean())


def trajectory_variance(trajectory, last_k: int = 10) -> Tensor:
    """Aithal et al.'s detector: the population variance of the predicted x0 over the last
    ``last_k`` reverse steps, averaged over the two coordinates; shape (n,)."""
    x0 = trajectory.x0_preds
    if isinstance(last_k, bool) or not isinstance(last_k, int) or not 2 <= last_k <= x0.shape[0]:
        raise ValueError(f"last_k must be between 2 and the trajectory's {x0.shape[0]} steps, got {last_k}")
    return x0[-last_k:].double().var(dim=0, unbiased=False).mean(-1).cpu()


def roc_auc(scores, positives) -> float:
    """Area under the ROC curve of ``scores`` (higher = more likely positive) for the boolean
    labels ``positives``: the probability that a random positive outscores a random negative
    (ties count half; Mann-Whitney)."""
    from scipy.stats import rankdata

    s = np.asarray(torch.as_tensor(scores, dtype=torch.float64).cpu())
    pos = np.asarray(torch.as_tensor(positives).cpu()).astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, positives, max_points: int | None = 512):
    """The ROC curve of ``scores`` (higher = more likely positive) for boolean ``positives``:
    arrays ``(fpr, tpr, thresholds)``, where flagging every score >= thresholds[i] flags
    a share tpr[i] of positives and fpr[i] of negatives; from (0, 0) to (1, 1). With
    ``max_points``, thinned to about that many points (for drawing)."""
    s = np.asarray(torch.as_tensor(scores, dtype=torch.float64).cpu())
    pos = np.asarray(torch.as_tensor(positives).cpu()).astype(bool)
    if s.shape != pos.shape or s.ndim != 1 or s.size == 0:
        raise ValueError("scores and positives must be two non-empty vectors of the same length")
    if not pos.any() or pos.all():
        raise ValueError("the ROC curve needs both positives and negatives")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]   # the last index of each distinct score
    tpr = np.r_[0.0, np.cumsum(pos)[last] / pos.sum()]
    fpr = np.r_[0.0, np.cumsum(~pos)[last] / (~pos).sum()]
    thresholds = np.r_[np.inf, s[last]]
    if max_points is not None and thresholds.size > max_points:
        keep = np.unique(np.r_[np.linspace(0, thresholds.size - 1, max_points).round().astype(int)])
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return fpr, tpr, thresholds


@dataclass
class OperatingPoints:
    """The detector's two operating points in Aithal et al.'s terms. A sample is removed
    when its score is at or over a threshold; ``detection`` is the share of hallucinations
    (out of support) removed, ``retention`` the share of in-support samples kept."""

    n: int                          # samples scored
    rate: float                     # share out of support
    auc: float                      # ROC AUC of the score for out-of-support vs in-support
    detection_target: float         # e.g. 0.95
    retention_at_detection: float   # retention of the highest threshold removing >= that share
    threshold_at_detection: float
    retention_target: float         # e.g. 0.96
    detection_at_retention: float   # detection of the lowest threshold keeping >= that share
    threshold_at_retention: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _scores_and_labels(scores, labels) -> tuple[Tensor, Tensor]:
    """Detector scores (n,) as float64 and their labels (n,), on the CPU, checked."""
    scores = torch.as_tensor(scores, dtype=torch.float64).cpu()
    labels = torch.as_tensor(labels).cpu()
    if scores.shape != labels.shape or scores.ndim != 1 or scores.numel() == 0:
        raise ValueError("scores and labels must be two non-empty vectors of the same length")
    if not torch.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    return scores, labels


def operating_points(scores, labels, detection: float = PAPER_DETECTION,
                     retention: float = PAPER_RETENTION) -> OperatingPoints:
    """Retention at a detection target and detection at a retention target, for the
    ``scores`` (n,) of samples with ``labels`` (n,) from ``support_labels`` (Aithal et al.
    2024: > 95 % detection at 96 % retention). Ties are resolved against the filter: a
    threshold removes every sample whose score equals it."""
    detection = _check.real(detection, "detection", 0.0, 1.0, low_open=True)
    retention = _check.real(retention, "retention", 0.0, 1.0, low_open=True)
    scores, labels = _scores_and_labels(scores, labels)
    bad = labels != IN_SUPPORT
    pos, neg = torch.sort(scores[bad]).values, torch.sort(scores[~bad]).values
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("operating points need samples both in and out of support")
    # remove scores >= thr: the highest thr removing at least ceil(detection P) positives
    need = math.ceil(detection * pos.numel() - 1e-9)
    thr_d = float(pos[pos.numel() - need])
    # keep scores < thr: the lowest thr keeping at least ceil(retention N) negatives
    keep = math.ceil(retention * neg.numel() - 1e-9)
    thr_r = float(torch.nextafter(neg[keep - 1], torch.tensor(math.inf, dtype=torch.float64)))
    return OperatingPoints(
        n=int(scores.numel()), rate=float(bad.double().mean()), auc=roc_auc(scores, bad),
        detection_target=detection, retention_at_detection=kept_share(neg, thr_d),
        threshold_at_detection=thr_d,
        retention_target=retention, detection_at_retention=1.0 - kept_share(pos, thr_r),
        threshold_at_retention=thr_r)


def kept_by_cut(scores: Tensor, threshold: float) -> Tensor:
    """The lab's one tie rule for a cut on the detector's score: a cut at ``threshold`` keeps
    the samples scoring below it and removes those at or above it (a score equal to the cut
    is removed). Boolean (n,). ``operating_points``, ``kept_share`` and ``filter_report``
    all cut with it."""
    return scores < threshold


def kept_share(scores, threshold: float) -> float:
    """Share of samples that a cut at ``threshold`` keeps (``kept_by_cut``). Applied to the
    exact score's samples at a model's cut, it is what that cut costs samples which never
    leave the modes: the sampler's own false alarms, which no training removes."""
    scores = torch.as_tensor(scores, dtype=torch.float64).cpu().reshape(-1)
    if scores.numel() == 0 or not torch.isfinite(scores).all():
        raise ValueError("scores must be a non-empty vector of finite values")
    threshold = _check.real(threshold, "threshold", numpy_ok=True)
    return float(kept_by_cut(scores, threshold).double().mean())


def operating_floor(scores, labels, reps: int = 100, seed: int = 0, **targets) -> dict:
    """The noise floor of ``operating_points``: the standard deviation of each figure
    (``rate``, ``auc``, ``retention_at_detection``, ``detection_at_retention``) over
    ``reps`` bootstrap resamples of the samples (resamples without both labels are
    skipped; NaN if none is left). ``targets``: as ``operating_points``."""
    reps = _check.integer(reps, "reps", 1, 100_000)
    scores, labels = _scores_and_labels(scores, labels)
    keys = ("rate", "auc", "retention_at_detection", "detection_at_retention")
    g = np.random.default_rng(_check.seed(seed))
    draws = []
    for _ in range(reps):
        i = torch.as_tensor(g.integers(0, len(labels), len(labels)))
        bad = labels[i] != IN_SUPPORT
        if bad.all() or not bad.any():
            continue
        op = operating_points(scores[i], labels[i], **targets)
        draws.append([getattr(op, k) for k in keys])
    std = np.std(draws, axis=0) if draws else np.full(len(keys), np.nan)
    return dict(zip(keys, map(float, std)))


@dataclass
class ScoredSamples:
    """Samples (n, 2) and their detector scores (n,) (x0 variance over the last k steps)."""

    samples: Tensor
    scores: Tensor


def score_samples(field, n: int, last_k: int = PAPER_LAST_K, seed: int = 0,
                  chunk: int = SCORE_CHUNK, callback=None, **protocol) -> ScoredSamples:
    """Draw ``n`` samples with ``protocol`` (``lab.solvers.sample`` options; default the
    paper's: ancestral, 1000 time-uniform steps) in chunks of ``chunk`` samples, keeping
    only each sample and its trajectory variance: a 100k-sample, 1000-step trajectory
    (1.6 GB) never sits in memory whole. Chunk i is seeded from ``seed`` and i, so a run
    is reproducible. ``callback(done, n)`` reports progress after each chunk."""
    n = _check.integer(n, "n", 1, 100_000_000)
    chunk = _check.integer(chunk, "chunk", 1, 10_000_000)
    seed = _check.seed(seed)
    opts = PAPER_PROTOCOL | protocol
    seeds = torch.randint(0, 2**62, (math.ceil(n / chunk),),
                          generator=torch.Generator().manual_seed(seed % 2**63)).tolist()
    samples, scores = [], []
    for i, chunk_seed in enumerate(seeds):
        m = min(chunk, n - i * chunk)
        traj = sample(field, n=m, seed=chunk_seed, keep_last=last_k, **opts)
        samples.append(traj.samples.detach().cpu())
        scores.append(trajectory_variance(traj, last_k))
        del traj
        if callback is not None:
            callback(i * chunk + m, n)
    return ScoredSamples(torch.cat(samples), torch.cat(scores))


@dataclass
class FilterReport:
    """What filtering on the trajectory variance did. ``detection``: share of hallucinations
    removed; ``retention``: share of in-support samples kept; ``auc``: ROC AUC of the
    variance score for hallucinated vs in-support; rates before and after."""

    n_drawn: int
    n_kept: int
    threshold: float
    detection: float
    retention: float
    auc: float
    rate_before: float
    rate_after: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def filter_report(scores, labels, keep: int | None = None, threshold: float | None = None) -> FilterReport:
    """Filter samples on their variance ``scores`` (n,) and score the filter against the true
    ``labels`` (n,) from ``support_labels``. Either keep exactly the ``keep`` lowest scores
    (Aithal et al.: draw N + extra, keep N; ties at the N-th broken by position), reported
    with the cut just above the N-th lowest score; or cut at ``threshold`` (``kept_by_cut``:
    a score equal to it is removed). Exactly one of the two."""
    scores, labels = _scores_and_labels(scores, labels)
    if (keep is None) == (threshold is None):
        raise ValueError("give exactly one of keep and threshold")
    if threshold is not None:
        threshold = _check.real(threshold, "threshold", numpy_ok=True)
    if keep is not None:
        keep = _check.integer(keep, "keep", 1, len(scores), numpy_ok=True)
        order = torch.sort(scores, stable=True)
        kept = torch.zeros(len(scores), dtype=torch.bool)
        kept[order.indices[:keep]] = True
        threshold = float(torch.nextafter(order.values[keep - 1], torch.tensor(math.inf, dtype=order.values.dtype)))
    else:
        kept = kept_by_cut(scores, threshold)
    bad = labels != IN_SUPPORT
    good = ~bad
    return FilterReport(
        n_drawn=len(scores), n_kept=int(kept.sum()), threshold=float(threshold),
        detection=float((bad & ~kept).sum() / bad.sum()) if bad.any() else float("nan"),
        retention=float((good & kept).sum() / good.sum()) if good.any() else float("nan"),
        auc=roc_auc(scores, bad),
        rate_before=float(bad.double().mean()),
        rate_after=float((bad & kept).sum() / kept.sum()) if kept.any() else float("nan"))


def filter_samples(trajectory, n_keep: int, last_k: int = 10) -> Tensor:
    """The ``n_keep`` samples (n_keep, 2) of a trajectory with the lowest x0 variance."""
    order = torch.argsort(trajectory_variance(trajectory, last_k))
    return trajectory.samples[order[:n_keep].to(trajectory.samples.device)]


@dataclass
class Generation:
    """One generation of recursive training."""

    generation: int
    filtered: bool
    hallucination_rate: float   # of the samples this generation's model draws (before filtering)
    training_rate: float        # of the points this generation was trained on


def recursive_training(data, mixture: GaussianMixture, generations: int = 3, n_samples: int = 5000,
                       filtered: bool = False, extra: float = PAPER_EXTRAS[0], config=None,
                       solver: str = "ddpm", steps: int = 250, spacing: str = "logsnr",
                       last_k: int = 10, k: float = 3.0,
                       seed: int = 0, callback=None) -> list[Generation]:
    """Train generation 0 on ``data``; every later generation on ``n_samples`` samples of the
    previous one — with ``filtered``, drawn as n_samples*(1+extra) and filtered down to
    n_samples on the trajectory variance (Aithal et al. 2024, Sec. 6: extra 2.5 % or 5 %). Returns the
    hallucination rate of each generation's samples. ``callback(Generation)`` reports."""
    generations = _check.integer(generations, "generations", 1, 1000)
    extra = _check.real(extra, "extra", 0.0, 100.0)
    seed = _check.seed(seed)
    config = config or TrainConfig()
    train_on = torch.as_tensor(data, dtype=torch.float32)
    out = []
    for g in range(generations):
        field, _ = train(train_on, dataclasses.replace(config, seed=config.seed + g))
        n_draw = int(round(n_samples * (1 + extra))) if filtered else n_samples
        traj = sample(field, n=n_draw, solver=solver, steps=steps, spacing=spacing, seed=seed + g,
                      keep_last=last_k)
        gen = Generation(g, filtered, hallucination_rate(traj.samples, mixture, k),
                         hallucination_rate(train_on, mixture, k))
        out.append(gen)
        if callback is not None:
            callback(gen)
        train_on = (filter_samples(traj, n_samples, last_k) if filtered else traj.samples).detach().cpu().float()
    return out
