"""Guidance and composition: what adding or scaling scores samples, and what it should.

Three ways of building a sampler from score models, each a weighted sum of scores
s = sum_i beta_i grad log q_i,t, all of one noise process (Skreta et al. 2025, "Feynman-Kac
Correctors in Diffusion: Annealing, Guidance, and Product of Experts", arXiv 2503.02819):

- classifier-free guidance (Ho & Salimans 2022): eps = (1 + w) eps_cond - w eps_uncond, whose
  intended target is p_cond^(1+w) p_uncond^(-w) (betas 1 + w and -w);
- a product of experts: scores added, intended target p_a p_b (betas 1 and 1);
- annealing: the score times beta, intended target p^beta.

The naive sampler runs the reverse SDE (or any solver) on the combined score. Its marginals
are not the intended prod_i q_i,t^beta_i at intermediate t (a sum of noised scores is not the
score of the noised product), so it ends somewhere else. FKC (the paper's weighted SDEs) keeps the
SDE and carries importance weights that correct it. Written here in the lab's notation
(forward dx = f x dt + g dW, tau = T - t the sampling time, s_i = grad log q_i,t): the target
path pi_tau ∝ exp(l), l = sum_i beta_i log q_i,t, and the SDE dx = [-f x + g^2 s] dtau + g dW
with s = grad l. The weighted density w rho satisfies its Fokker-Planck equation plus a
source term G when

    G = d_tau l + div u + u . grad l - g^2/2 (lap l + |grad l|^2),     u = -f x + g^2 s,

and with d_tau log q_i = d f + f x . s_i - g^2/2 (div s_i + |s_i|^2) (the forward
Fokker-Planck equation, reversed) the divergences cancel and what remains is

    d log w = g^2 / 2 (|sum_i beta_i s_i|^2 - sum_i beta_i |s_i|^2) dtau    (+ terms free of x)

that is g^2 <s_a, s_b> for a product, g^2 beta (beta - 1)/2 |s|^2 for annealing and
g^2 w (1 + w)/2 |s_cond - s_uncond|^2 for guidance: the paper's weights, and no divergence
is needed. Particles resampled when the effective sample size falls below a threshold
(sequential Monte Carlo) then sample the target; ``fkc_sample`` does it, and
``exact_target`` gives the target itself (exact for products of Gaussian mixtures, on a fine
grid otherwise), so the lab can show the naive sampler's error and FKC's correction.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lab import _check
from lab.data import GaussianMixture, dataset_mixture, end_law
from lab.fields import MixtureField, ScoreField, broadcast_t
from lab.schedules import Schedule, get_schedule
from lab.solvers import MAX_STEPS, time_grid

__all__ = ["KINDS", "CombinedField", "guided_field", "product_field", "annealed_field", "class_mixture",
           "grid_classes", "combination", "exact_target", "ExactTarget", "GridTarget", "fkc_sample",
           "FKCResult", "RESAMPLERS", "resample_indices", "Example", "example"]

KINDS = ("cfg", "product", "anneal")
GRID_CELLS = 1024          # cells per side of a GridTarget (error bounded in tests/test_guidance.py)
GRID_STDS = 8.0            # its box: every component's mean +- this many of its (tempered) stds


# --- the combined fields (the naive samplers) -------------------------------------------------
class CombinedField(ScoreField):
    """sum_i beta_i eps_i of fields on one noise process: a ScoreField like any other, so
    every solver samples it (the naive guided / composed sampler). Its score is
    sum_i beta_i score_i, since eps = -sigma score is linear in the score."""

    def __init__(self, fields, betas):
        fields, betas = list(fields), [float(b) for b in betas]
        if not fields or len(fields) != len(betas):
            raise ValueError(f"need one beta per field, got {len(fields)} fields and {len(betas)} betas")
        for b in betas:
            if not math.isfinite(b):
                raise ValueError(f"the weights must be finite numbers, got {betas}")
        self.schedule = _common_schedule(fields)
        self.fields, self.betas = fields, betas

    @property
    def device(self):
        return next((f.device for f in self.fields if f.device is not None), None)

    @property
    def dtype(self) -> torch.dtype:
        return min((f.dtype for f in self.fields), key=lambda d: torch.finfo(d).bits)

    def eps(self, x: Tensor, t) -> Tensor:
        out = None
        for f, b in zip(self.fields, self.betas):
            e = b * f.eps(x, t)
            out = e if out is None else out + e
        return out

    def __repr__(self) -> str:
        terms = " + ".join(f"{b:g} x {f!r}" for f, b in zip(self.fields, self.betas))
        return f"CombinedField({terms})"


def _common_schedule(fields) -> Schedule:
    first = fields[0].schedule
    for f in fields[1:]:
        if f.schedule.name != first.name or f.schedule.config() != first.config():
            raise ValueError("the fields must share one noise process: "
                             f"{first.name} {first.config()} vs {f.schedule.name} {f.schedule.config()}")
    return first


def guided_field(cond: ScoreField, uncond: ScoreField, w: float) -> CombinedField:
    """Classifier-free guidance (Ho & Salimans 2022): eps = (1 + w) eps_cond - w eps_uncond.
    w = 0 is the conditional field itself."""
    w = _check.real(w, "w", -1e6, 1e6)
    return CombinedField([cond, uncond], [1.0 + w, -w])


def product_field(a: ScoreField, b: ScoreField) -> CombinedField:
    """The scores added: the naive sampler of the product p_a p_b."""
    return CombinedField([a, b], [1.0, 1.0])


def annealed_field(field: ScoreField, beta: float) -> CombinedField:
    """The score times beta: the naive sampler of p^beta."""
    beta = _check.real(beta, "beta", 0.0, 1e6, low_open=True)
    return CombinedField([field], [beta])


# --- classes of a mixture (exact conditional fields) -------------------------------------------
def class_mixture(mixture: GaussianMixture, components) -> GaussianMixture:
    """The mixture restricted to some of its components, weights renormalised: the exact law
    of one class when a data set's classes are groups of its components."""
    idx = torch.as_tensor(list(components), dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("a class needs at least one component")
    if idx.min() < 0 or idx.max() >= mixture.n_components or idx.unique().numel() != idx.numel():
        raise ValueError(f"components must be distinct indices in 0..{mixture.n_components - 1}, "
                         f"got {idx.tolist()}")
    return GaussianMixture(mixture.means[idx], mixture.covs[idx], mixture.weights[idx])


def grid_classes(mixture: GaussianMixture) -> tuple[list[int], list[int]]:
    """The grid's components in two classes, as a chessboard's colours (13 and 12 of the 5x5
    grid): every mode of one class has its nearest neighbours in the other."""
    m = mixture.means
    spacing = float(torch.cdist(m, m).add(torch.eye(len(m), dtype=m.dtype) * 1e9).min())
    cell = torch.round((m - m.min(0).values) / spacing).long()
    even = ((cell[:, 0] + cell[:, 1]) % 2 == 0).tolist()
    return [i for i, e in enumerate(even) if e], [i for i, e in enumerate(even) if not e]


# --- the kinds, as weighted sums --------------------------------------------------------------
def combination(kind: str, **parts) -> tuple[list, list[float]]:
    """The items (fields or mixtures) and betas of a kind: "cfg" (cond, uncond, w) ->
    [cond, uncond], [1 + w, -w]; "product" (a, b) -> [a, b], [1, 1]; "anneal"
    (field or mixture, beta) -> [it], [beta]."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "cfg":
        _require(kind, parts, "cond", "uncond", "w")
        w = _check.real(parts["w"], "w", -1e6, 1e6)
        return [parts["cond"], parts["uncond"]], [1.0 + w, -w]
    if kind == "product":
        _require(kind, parts, "a", "b")
        return [parts["a"], parts["b"]], [1.0, 1.0]
    item = parts.get("field", parts.get("mixture"))
    if item is None:
        raise ValueError("kind 'anneal' needs field= (or mixture=) and beta=")
    _require(kind, parts, "beta")
    return [item], [_check.real(parts["beta"], "beta", 0.0, 1e6, low_open=True)]


def _require(kind, parts, *names):
    missing = [n for n in names if parts.get(n) is None]
    if missing:
        raise ValueError(f"kind {kind!r} needs {', '.join(n + '=' for n in missing)}")


# --- the exact targets ------------------------------------------------------------------------
class ExactTarget(abc.ABC):
    """A target density with a normalised ``log_prob(x)`` and exact ``sample(n)``."""

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Normalised log-density at points x (n, 2) -> (n,)."""

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n independent samples (n, 2)."""


class MixtureTarget(ExactTarget):
    """A target that is itself a Gaussian mixture (a product of mixtures is one)."""

    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture

    def log_prob(self, x: Tensor) -> Tensor:
        return self.mixture.log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.mixture.sample(_check.integer(n, "n", 1, 100_000_000), generator=generator)

    def __repr__(self) -> str:
        return f"MixtureTarget({self.mixture!r})"


def mixture_product(a: GaussianMixture, b: GaussianMixture) -> GaussianMixture:
    """p_a p_b, normalised: N(x; m1, C1) N(x; m2, C2) = N(m1; m2, C1 + C2) N(x; m, C) with
    C = (C1^-1 + C2^-1)^-1 and m = C (C1^-1 m1 + C2^-1 m2), so the product of a K1- and a
    K2-component mixture is a K1 K2-component one with weights w1 w2 N(m1; m2, C1 + C2)."""
    if a.singular or b.singular:
        raise ValueError("a product needs mixtures with non-singular covariances")
    P1, P2 = torch.linalg.inv(a.covs), torch.linalg.inv(b.covs)                 # (K1,2,2), (K2,2,2)
    C = torch.linalg.inv(P1[:, None] + P2[None, :])                             # (K1,K2,2,2)
    rhs = (P1 @ a.means[..., None])[:, None] + (P2 @ b.means[..., None])[None, :]
    m = (C @ rhs)[..., 0]                                                       # (K1,K2,2)
    S = a.covs[:, None] + b.covs[None, :]
    d = a.means[:, None] - b.means[None, :]
    logn = (-0.5 * (d[..., None, :] @ torch.linalg.solve(S, d[..., None]))[..., 0, 0]
            - 0.5 * torch.logdet(S) - math.log(2 * math.pi))
    logw = a.weights.log()[:, None] + b.weights.log()[None, :] + logn
    return GaussianMixture(m.reshape(-1, 2), C.reshape(-1, 2, 2), torch.softmax(logw.reshape(-1), 0))


class GridTarget(ExactTarget):
    """exp(l(x)) / Z for an unnormalised log-density l known exactly at every point (a
    geometric combination of mixtures), with Z by a Riemann sum on a cells x cells grid over
    a box that holds the mass, and sampling by picking a cell with its mass and a uniform
    point in it. Its errors, measured in tests: log Z to 1e-6 against closed forms, and the
    sampling's blur of at most a cell (cell width / sqrt(12) in std per axis)."""

    def __init__(self, log_density, box: tuple[float, float, float, float], cells: int = GRID_CELLS):
        self.log_density = log_density
        x0, x1, y0, y1 = box
        self.cells = _check.integer(cells, "cells", 16, 8192)
        self.hx, self.hy = (x1 - x0) / cells, (y1 - y0) / cells
        self.box = box
        rows = torch.arange(cells * cells).split(65_536)
        logd = torch.cat([log_density(self._centres(r)) for r in rows])
        self.log_z = float(torch.logsumexp(logd, 0)) + math.log(self.hx * self.hy)
        self._cell_p = torch.softmax(logd, 0).float()     # what sampling needs (4 MB at 1024^2)

    def _centres(self, index: Tensor) -> Tensor:
        """Centres of the cells numbered ``index`` (row-major, x fastest)."""
        x0, _, y0, _ = self.box
        i, j = index % self.cells, index // self.cells
        return torch.stack([x0 + self.hx * (i.double() + 0.5), y0 + self.hy * (j.double() + 0.5)], 1)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.log_density(x) - self.log_z

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        n = _check.integer(n, "n", 1, 100_000_000)
        idx = torch.multinomial(self._cell_p, n, replacement=True, generator=generator)
        jitter = torch.rand(n, 2, dtype=torch.float64, generator=generator) - 0.5
        return self._centres(idx) + jitter * torch.tensor([self.hx, self.hy], dtype=torch.float64)

    def __repr__(self) -> str:
        return f"GridTarget({self.cells}x{self.cells} over {self.box})"


def _box(mixtures, betas, log_density) -> tuple[float, float, float, float]:
    """A box holding the target's mass: each component's mean +- GRID_STDS of its std
    (widened by 1/sqrt(beta) where a positive beta below 1 flattens it), then grown on any
    side where the density at the edge is within e^-30 of its peak (guidance moves mass
    away from the unconditional law, past the conditional one's components)."""
    lo, hi = [], []
    for mix, b in zip(mixtures, betas):
        if b <= 0:
            continue         # a negative power reweights where the others put mass
        std = torch.linalg.eigvalsh(mix.covs).max(-1).values.clamp_min(0).sqrt() / math.sqrt(min(b, 1.0))
        lo.append((mix.means - GRID_STDS * std[:, None]).min(0).values)
        hi.append((mix.means + GRID_STDS * std[:, None]).max(0).values)
    lo, hi = torch.stack(lo).min(0).values.clone(), torch.stack(hi).max(0).values.clone()
    k = 256
    for _ in range(8):
        u = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        xs, ys = lo[0] + (hi[0] - lo[0]) * u, lo[1] + (hi[1] - lo[1]) * u
        logd = log_density(torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)).reshape(k, k)
        peak = float(logd.max())
        edges = {"left": logd[:, 0], "right": logd[:, -1], "bottom": logd[0, :], "top": logd[-1, :]}
        grow = [side for side, v in edges.items() if float(v.max()) > peak - 30.0]
        if not grow:
            break
        width = hi - lo
        for side in grow:
            if side == "left":
                lo[0] -= width[0] / 2
            elif side == "right":
                hi[0] += width[0] / 2
            elif side == "bottom":
                lo[1] -= width[1] / 2
            else:
                hi[1] += width[1] / 2
    else:
        raise ValueError("the target's mass does not fit in a bounded box: is it normalisable? "
                         "(guidance needs the condition to be part of the unconditional law)")
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def exact_target(kind: str, cells: int = GRID_CELLS, **parts) -> ExactTarget:
    """The distribution a guided or composed sampler is meant to sample, from Gaussian
    mixtures (e.g. ``lab.hallucination.end_law`` of the data, the law at the samplers' end):

    - ``exact_target("cfg", cond=, uncond=, w=)``: ∝ p_cond^(1+w) p_uncond^(-w), on a grid;
    - ``exact_target("product", a=, b=)``: p_a p_b, exactly (``mixture_product``);
    - ``exact_target("anneal", mixture=, beta=)``: ∝ p^beta, on a grid.

    Each has a normalised ``log_prob(x)`` and ``sample(n, generator)``."""
    items, betas = combination(kind, **parts)
    for m in items:
        if not isinstance(m, GaussianMixture):
            raise ValueError(f"exact_target needs GaussianMixture parts, got {type(m).__name__}")
    if kind == "product":
        return MixtureTarget(mixture_product(*items))

    def log_density(x: Tensor) -> Tensor:
        out = 0.0
        for m, b in zip(items, betas):
            out = out + b * m.log_prob(x)
        return out
    return GridTarget(log_density, _box(items, betas, log_density), cells)


# --- Feynman-Kac correctors -------------------------------------------------------------------
RESAMPLERS = ("systematic", "multinomial")


@dataclass
class FKCResult:
    """``samples`` (n, 2): the particles at the end, resampled to equal weights;
    ``particles`` and ``log_weights`` (n,): before that last resampling; ``ess`` (steps,):
    the effective sample size (a fraction of n) after each step's reweighting;
    ``resampled`` (steps,): whether the step resampled; ``ts`` the time grid; ``nfe``
    network (field) evaluations."""

    samples: Tensor
    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    ts: Tensor
    nfe: int


def resample_indices(log_w: Tensor, how: str, generator) -> Tensor:
    """Indices of n particles drawn with probabilities softmax(log_w)."""
    n = log_w.shape[0]
    p = torch.softmax(log_w.double(), 0)
    if how == "multinomial":
        return torch.multinomial(p, n, replacement=True, generator=generator)
    u = (torch.rand(1, dtype=torch.float64, generator=generator, device=log_w.device)
         + torch.arange(n, dtype=torch.float64, device=log_w.device)) / n
    cdf = torch.cumsum(p, 0)
    cdf[-1] = 1.0
    return torch.searchsorted(cdf, u).clamp_max(n - 1)


def _ess(log_w: Tensor) -> float:
    """(sum w)^2 / sum w^2 / n: 1 with equal weights, 1/n with one particle holding all."""
    lw = log_w.double()
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.shape[0])


@torch.no_grad()
def fkc_sample(kind: str, n: int = 2000, steps: int = 500, seed: int = 0, resample: str = "systematic",
               ess_threshold: float = 0.5, spacing: str = "time_uniform", **parts) -> FKCResult:
    """Sample the target of ``kind`` (``combination``: "cfg" with cond=, uncond=, w=;
    "product" with a=, b=; "anneal" with field=, beta=; fields on one noise process) with
    Skreta et al.'s Feynman-Kac corrector: the reverse SDE on the combined score,
    Euler-Maruyama over ``steps`` steps of ``spacing`` (the last without noise), importance
    weights d log w = g^2/2 (|sum beta_i s_i|^2 - sum beta_i |s_i|^2) dtau (module doc; its
    integral over a step by the trapezoid rule, so the end point's scores are evaluated too:
    (steps + 1) evaluations of each field), and
    ``resample`` ("systematic" or "multinomial") whenever the effective sample size falls
    below ``ess_threshold`` (a fraction of n; 0 never, 1 every step); at the end the
    particles are resampled once more to equal weights.

    It starts from the target's prior: at t_max every q_i is N(0, sigma^2) (to alpha^2 of the
    data), so prod q_i^beta_i is N(0, sigma^2 / sum beta_i)."""
    fields, betas = combination(kind, **parts)
    for f in fields:
        if not isinstance(f, ScoreField):
            raise ValueError(f"fkc_sample needs score fields, got {type(f).__name__}")
    n = _check.integer(n, "n", 1, 10_000_000)
    steps = _check.integer(steps, "steps", 1, MAX_STEPS)
    ess_threshold = _check.real(ess_threshold, "ess_threshold", 0.0, 1.0)
    if resample not in RESAMPLERS:
        raise ValueError(f"unknown resampler {resample!r}; choose one of {', '.join(RESAMPLERS)}")
    total = sum(betas)
    if total <= 0:
        raise ValueError(f"the betas must have a positive sum (the prior's precision), got {total:g}")
    combined = CombinedField(fields, betas)
    schedule = combined.schedule
    # the particles live where the fields compute (a network's device; exact fields: the CPU),
    # and so does the generator: seeded runs repeat on one device, not across devices
    device = combined.device if combined.device is not None else torch.device("cpu")
    g = torch.Generator(device=device).manual_seed(_check.seed(seed))
    dtype = combined.dtype
    ts = time_grid(schedule, steps, spacing)
    t_top = ts[:1].to(dtype)
    sigma_top = float(schedule.sigma(t_top))
    x = torch.randn(n, 2, generator=g, dtype=torch.float64, device=device).to(dtype) * (sigma_top / math.sqrt(total))
    log_w = torch.zeros(n, dtype=torch.float64, device=device)
    ess, resampled = torch.empty(steps, dtype=torch.float64), torch.zeros(steps, dtype=torch.bool)

    def at(x, t):
        """The combined score and the weight's rate G at time t."""
        tt = broadcast_t(t, x)
        scores = [f.score(x, t) for f in fields]
        s = sum(b * si for b, si in zip(betas, scores))
        sq = (s * s).sum(1) - sum(b * (si * si).sum(1) for b, si in zip(betas, scores))
        return s, (0.5 * float(schedule.g2(tt)) * sq).double()

    s, rate = at(x, float(ts[0]))
    for i in range(steps):
        t, t_next = float(ts[i]), float(ts[i + 1])
        h = t - t_next
        tt = broadcast_t(t, x)
        g2 = float(schedule.g2(tt))
        x = x + (-float(schedule.f(tt)) * x + g2 * s) * h          # Euler-Maruyama, in tau = T - t
        if i < steps - 1:
            x = x + math.sqrt(g2 * h) * torch.randn(n, 2, generator=g, dtype=torch.float64, device=device).to(dtype)
        s_next, rate_next = at(x, t_next)
        log_w += 0.5 * h * (rate + rate_next)     # the weight's integral, by the trapezoid rule
        s, rate = s_next, rate_next
        if not torch.isfinite(x).all() or not torch.isfinite(log_w).all():
            raise ValueError(f"FKC sampling diverged at step {i + 1} of {steps} (t = {t_next:.4g}): "
                             "try more steps")
        ess[i] = _ess(log_w)
        if i < steps - 1 and ess[i] < ess_threshold:
            idx = resample_indices(log_w, resample, g)
            x, s, rate, log_w = x[idx], s[idx], rate[idx], torch.zeros_like(log_w)
            resampled[i] = True
    idx = resample_indices(log_w, resample, g)
    return FKCResult(samples=x[idx], particles=x, log_weights=log_w, ess=ess, resampled=resampled,
                     ts=ts, nfe=(steps + 1) * len(fields))


# --- the lab's examples (the guidance page and lesson 6) ----------------------------------------
@dataclass
class Example:
    """One guided or composed sampler on exact fields: ``parts`` for ``fkc_sample``,
    ``target_parts`` for ``exact_target`` (the laws at the samplers' end, t_min), the naive
    combined ``field``, and a ``title``."""

    kind: str
    parts: dict
    target_parts: dict
    field: CombinedField
    title: str


def example(kind: str, weight: float | None = None, schedule: Schedule | str = "vp") -> Example:
    """The lab's example of each kind, on exact mixture fields of ``schedule``:

    - "cfg" (weight w, default 3): the right one of two overlapping blobs as the condition,
      both as the unconditional law (FKC's weights stay healthy here; between far-apart
      classes they degenerate, see docs/guidance.md);
    - "product": the ring's eight modes times a broad blob over two of them;
    - "anneal" (weight beta, default 0.5): the two moons to the power beta.
    """
    schedule = get_schedule(schedule)
    if kind == "cfg":
        w = 3.0 if weight is None else _check.real(weight, "w", 0.0, 1e3)
        whole = GaussianMixture([[0.6, 0.0], [-0.6, 0.0]], 0.4)
        cond = class_mixture(whole, [0])
        fc, fu = MixtureField(cond, schedule), MixtureField(whole, schedule)
        return Example(kind, dict(cond=fc, uncond=fu, w=w),
                       dict(cond=end_law(cond, schedule), uncond=end_law(whole, schedule), w=w),
                       guided_field(fc, fu, w), f"guidance w = {w:g} toward the right of two blobs")
    if kind == "product":
        ring, blob = dataset_mixture("ring"), GaussianMixture([[0.6, 0.6]], 0.5)
        fa, fb = MixtureField(ring, schedule), MixtureField(blob, schedule)
        return Example(kind, dict(a=fa, b=fb), dict(a=end_law(ring, schedule), b=end_law(blob, schedule)),
                       product_field(fa, fb), "the ring times a blob")
    if kind == "anneal":
        beta = 0.5 if weight is None else _check.real(weight, "beta", 0.0, 1e3, low_open=True)
        moons = dataset_mixture("two_moons")
        f = MixtureField(moons, schedule)
        return Example(kind, dict(field=f, beta=beta), dict(mixture=end_law(moons, schedule), beta=beta),
                       annealed_field(f, beta), f"the two moons to the power {beta:g}")
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
