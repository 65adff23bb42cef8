"""Score fields: one interface for every source of a score.

A trained network, a conservative (potential) network, the exact score of a Gaussian
mixture and the exact score of a finite training set all implement ``eps(x, t)``, the
noise prediction; everything else is derived here, once, from eps and the schedule
(x_t = alpha x0 + sigma eps):

    score    = -eps / sigma                       (Vincent 2011; Song & Ermon 2019)
    x0       = (x - sigma eps) / alpha            (Tweedie's formula, Efron 2011)
    velocity = f x - g^2 / 2 score                (probability-flow ODE, Song et al. 2021)
"""
from __future__ import annotations

import copy
import hashlib
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from lab import _check
from lab.data import GaussianMixture
from lab.schedules import Schedule, get_schedule

__all__ = ["LAMBDA_FLOOR", "ScoreField", "MixtureField", "EmpiricalField", "NetworkField", "SwirlField",
           "OnModel", "broadcast_t", "fingerprint", "noised_samples", "score_error",
           "eps_to_score", "score_to_eps", "eps_to_x0", "x0_to_eps"]


LAMBDA_FLOOR = -10.0  # log(alpha/sigma) below which a network sees one, "pure noise", level


def broadcast_t(t, x: Tensor) -> Tensor:
    """Time as a column (n, 1) or a scalar, in x's dtype and on x's device. Checks that x is
    a floating tensor of points (n, 2)."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != 2 or not x.is_floating_point():
        what = (f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                else type(x).__name__)
        raise ValueError(f"x must be a floating-point tensor of points (n, 2), got {what}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    if t.numel() not in (1, x.shape[0]):
        raise ValueError(f"t must be a scalar or hold one time per point ({x.shape[0]}), "
                         f"got shape {tuple(t.shape)}")
    return t.reshape(-1, 1)


def eps_to_score(eps: Tensor, sigma: Tensor) -> Tensor:
    return -eps / sigma


def score_to_eps(score: Tensor, sigma: Tensor) -> Tensor:
    return -sigma * score


def eps_to_x0(x: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (x - sigma * eps) / alpha


def x0_to_eps(x: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (x - alpha * x0) / sigma


@runtime_checkable
class ScoreField(Protocol):
    """A score source: implement ``eps(x, t)``; score, x0 and velocity come from here.

    ``x``: (n, 2); ``t``: a float or (n,) tensor in [schedule.t_min, schedule.t_max]. score,
    x0, velocity (and the fields' own eps) refuse a t outside [0, t_max], NaN included, with
    a ValueError (``Schedule.check_t``).
    """

    schedule: Schedule

    def eps(self, x: Tensor, t) -> Tensor:
        """Noise prediction eps(x_t, t), shape (n, 2)."""
        ...

    @property
    def device(self) -> torch.device | None:
        """Where the field computes; None: on whatever device its input is (exact fields)."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        """The precision the field computes in best (exact fields: float64)."""
        return torch.float64

    def as_input(self, x) -> Tensor:
        """Points (n, 2) as a tensor of the field's dtype on its device."""
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def _coeffs(self, x: Tensor, t):
        tt = broadcast_t(self.schedule.check_t(t), x)
        return tt, self.schedule.alpha(tt), self.schedule.sigma(tt)

    def score(self, x: Tensor, t) -> Tensor:
        """Score grad_x log p_t(x), shape (n, 2)."""
        tt, _, sigma = self._coeffs(x, t)
        return eps_to_score(self.eps(x, t), sigma)

    def x0(self, x: Tensor, t) -> Tensor:
        """Predicted clean point E[x0 | x_t = x] (the denoiser), shape (n, 2)."""
        tt, alpha, sigma = self._coeffs(x, t)
        return eps_to_x0(x, self.eps(x, t), alpha, sigma)

    def velocity(self, x: Tensor, t) -> Tensor:
        """Drift of the probability-flow ODE, f x - g^2/2 score, shape (n, 2)."""
        tt, _, sigma = self._coeffs(x, t)
        s = eps_to_score(self.eps(x, t), sigma)
        return self.schedule.f(tt) * x - 0.5 * self.schedule.g2(tt) * s


class MixtureField(ScoreField):
    """The exact score of a :class:`GaussianMixture` noised by ``schedule``: the noised
    mixture has components N(alpha m_k, alpha^2 C_k + sigma^2 I)."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule | str = "vp"):
        self.mixture = mixture
        self.schedule = get_schedule(schedule)

    def eps(self, x: Tensor, t) -> Tensor:
        tt, alpha, sigma = self._coeffs(x, t)
        return score_to_eps(self.mixture.score_noised(x, alpha, sigma), sigma)

    def score(self, x: Tensor, t) -> Tensor:
        tt, alpha, sigma = self._coeffs(x, t)
        return self.mixture.score_noised(x, alpha, sigma)

    def log_prob(self, x: Tensor, t) -> Tensor:
        """Exact log p_t(x), shape (n,)."""
        tt, alpha, sigma = self._coeffs(x, t)
        return self.mixture.log_prob_noised(x, alpha, sigma)

    def __repr__(self) -> str:
        return f"MixtureField({self.mixture!r}, {self.schedule.name})"


class EmpiricalField(MixtureField):
    """The exact optimal denoiser of a finite training set: the score of the empirical
    distribution (1/N) sum_i delta(x - x_i) noised by the schedule. A network that
    minimised the denoising loss on this set perfectly would equal it, and would only
    reproduce training points (memorisation)."""

    def __init__(self, data: Tensor, schedule: Schedule | str = "vp"):
        data = torch.as_tensor(data)
        if data.ndim != 2 or data.shape[1] != 2 or data.shape[0] == 0:
            raise ValueError(f"data must have shape (n, 2), got {tuple(data.shape)}")
        super().__init__(GaussianMixture(data, 0.0), schedule)

    def __repr__(self) -> str:
        return f"EmpiricalField(N={self.mixture.n_components}, {self.schedule.name})"


CPU_BLOCK_ROWS = 2048   # rows a CPU evaluates at once when sampling (see NetworkField)


class OnModel:
    """A field computed by a network ``self.model``: on its weights' device, in their dtype."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def as_input(self, x) -> Tensor:
        """Points (n, 2) as a tensor of the field's dtype on its device."""
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    label: int | None = None    # a class-conditional network's class (None: unconditional)

    @property
    def n_classes(self) -> int:
        """Classes of a class-conditional network (0: not conditional)."""
        return getattr(self.model, "n_classes", 0)

    def with_label(self, label: int | None):
        """The same network as the field of one class (``label`` in 0..n_classes-1), or of
        none (None: the unconditional field label dropout trained): the pair classifier-free
        guidance combines (``lab.guidance.guided_field``), or a flow to one class's data.
        Shares the weights."""
        if not self.n_classes:
            raise ValueError("this model is not class-conditional (train with TrainConfig(n_classes=K))")
        if label is not None:
            label = _check.integer(label, "label", 0, self.n_classes - 1)
        other = copy.copy(self)
        other.label = label
        return other


class NetworkField(OnModel, ScoreField):
    """A network as a field. ``model(x_in, t)`` returns eps (n, 2) for a ``ScoreMLP``; for
    a conservative model (``model.conservative``, e.g. ``PotentialMLP``) eps is the
    x-gradient of its scalar output, so the score is a gradient in x at every t.

    Input and conditioning as in EDM (Karras et al. 2022): the network sees x_in =
    x / sqrt(alpha^2 data_std^2 + sigma^2), of about unit variance at every t, and the noise
    level c_noise = log(sigma/alpha)/4 = -lambda/4 instead of t, so it resolves small noise
    levels as finely as large ones, whatever the schedule. Below lambda = LAMBDA_FLOOR the data
    is invisible in x_t (alpha/sigma < 5e-5), eps = x_in is all there is to learn, and the
    network sees the floor (train() does not sample times past it).
    """

    def __init__(self, model: torch.nn.Module, schedule: Schedule | str = "vp",
                 data_std: float = 1.0):
        self.model = model
        self.schedule = get_schedule(schedule)
        self.data_std = float(data_std)
        self.config = None   # the TrainConfig it was trained with, when known
        self.summary = None  # the training summary (steps, wall time, device, ...)
        self.meta = {}       # free-form facts kept in its checkpoint (e.g. the data set)
        self.label = None    # a class-conditional model's class (None: unconditional)

    def eps(self, x: Tensor, t, labels: Tensor | None = None) -> Tensor:
        """eps(x_t, t); ``labels`` (n,): a class-conditional network's class per point
        (training; n_classes means none), instead of the field's own ``label``."""
        tt, alpha, sigma = self._coeffs(x, t)
        if getattr(self.model, "log_density", False):   # Deveney et al.'s u(t, x): eps = -sigma grad u
            return -sigma * self._grad_x(lambda xg: self.model(xg, tt.reshape(-1)), x)
        lam = self.schedule.lambda_(tt)
        if labels is None and self.n_classes:
            labels = torch.full((1,), self.n_classes if self.label is None else self.label,
                                dtype=torch.long, device=x.device)
        out = self._network_eps(x, alpha, sigma, lam, labels)
        # Past the floor (a schedule such as VP with beta up to 200 reaches lambda = -50) the
        # field is eps = x / sigma, the exact one to O(alpha^2): its denoiser there is 0, the
        # data's mean, instead of the network's tiny eps error divided by alpha (e^-50),
        # which a sampler's long steps through pure noise multiply until x overflows.
        noise_only = (lam < LAMBDA_FLOOR).reshape(-1, 1)
        # off the CPU, always: asking whether any point is past the floor would wait for the
        # device on every call (and a captured CUDA graph cannot ask at all)
        if x.device.type != "cpu" or bool(noise_only.any()):
            out = torch.where(noise_only, x / sigma, out)
        return out

    def _network_eps(self, x: Tensor, alpha: Tensor, sigma: Tensor, lam: Tensor, labels=None) -> Tensor:
        c_in = torch.rsqrt(alpha**2 * self.data_std**2 + sigma**2)
        # the network sees the noise level, not the time: EDM's c_noise = log(sigma/alpha)/4
        # one time for all points (sampling): one row of noise-level features, broadcast
        # by the network, instead of n equal rows (a third of an evaluation's cost)
        c_noise = (-lam.clamp_min(LAMBDA_FLOOR) / 4).reshape(-1)
        extra = () if labels is None else (labels,)
        if not getattr(self.model, "conservative", False):
            x_in = x * c_in
            if (torch.is_grad_enabled() or x.device.type != "cpu" or x.shape[0] <= CPU_BLOCK_ROWS
                    or torch.get_num_threads() > 1):
                return self.model(x_in, c_noise, *extra)
            # sampling on one CPU thread: blocks of rows whose activations stay in cache (the
            # network's adds and SiLUs are memory-bound): 1.5x faster at 20,000 points. Not
            # with more threads: each block is another parallel region, and a served lab's
            # many sampling threads then spin in OpenMP's barriers (measured: slower under load)
            blocks = x_in.split(CPU_BLOCK_ROWS)

            def per_block(v):   # one value per point is split with the points; one for all is kept
                return v.split(CPU_BLOCK_ROWS) if v.shape[0] > 1 else [v] * len(blocks)
            per = [per_block(v) for v in (c_noise, *extra)]
            return torch.cat([self.model(xb, *rest) for xb, *rest in zip(blocks, *per)])
        return self._grad_x(lambda xg: self.model(xg * c_in, c_noise, *extra), x)

    def _grad_x(self, scalar, x: Tensor) -> Tensor:
        """grad_x of sum(scalar(x)). The graph is kept when the caller differentiates
        (training, Jacobians, residuals); not when sampling under no_grad."""
        create_graph = torch.is_grad_enabled() and (x.requires_grad or self.model.training)
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(scalar(xg).sum(), xg, create_graph=create_graph)
        return grad

    def log_density(self, x: Tensor, t) -> Tensor:
        """u(t, x) (n,): the log-density a ``LogDensityMLP`` models, up to a constant in x
        (only models with ``log_density``; a MixtureField's exact one is ``log_prob``)."""
        if not getattr(self.model, "log_density", False):
            raise ValueError(f"a {type(self.model).__name__} models eps, not a log-density; "
                             "train model='log_density_mlp' for one")
        tt = broadcast_t(self.schedule.check_t(t), x)
        return self.model(x, tt.reshape(-1))

    def __repr__(self) -> str:
        return f"NetworkField({type(self.model).__name__}, {self.schedule.name})"


class SwirlField(ScoreField):
    """Another field's score plus a rotation about the origin, c (-y, x): a field of known
    curl (2c everywhere) and circulation (2 c pi r^2 around a circle of radius r), for
    lessons and tests.

    The rotation is tangent to circles about the origin and divergence-free, so where p_t is
    radially symmetric div(p_t r) = 0 and the probability-flow ODE of this field moves
    probability exactly as the base field's does: same samples' law, non-zero curl (Vuong
    et al. 2025's point that curl alone does not mean wrong samples). Where p_t is not
    symmetric, it does change the samples."""

    def __init__(self, base: ScoreField, c: float):
        self.base, self.c, self.schedule = base, _check.real(c, "c (the swirl's strength)"), base.schedule

    @property
    def device(self):
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def eps(self, x: Tensor, t) -> Tensor:
        sigma = self.schedule.sigma(broadcast_t(t, x))
        return self.base.eps(x, t) - sigma * self.c * torch.stack([-x[:, 1], x[:, 0]], 1)

    def __repr__(self) -> str:
        return f"SwirlField({self.base!r}, c={self.c:g})"


def fingerprint(obj) -> str:
    """A short hash of all a field or mixture computes with: a network's weights, a mixture's
    means, covariances and weights, the schedule with its settings (a VP with other betas is
    another field), the data scaling (``data_std``), the class label (``with_label``), a flow's
    interpolant, ends and score network, a combined field's parts and weights. Two objects with
    the same fingerprint give the same samples: results may be shared under it
    (``lab.app.cache``)."""
    h = hashlib.sha1(type(obj).__name__.encode())
    schedule = getattr(obj, "schedule", None)
    if schedule is not None:
        config = schedule.config() if hasattr(schedule, "config") else {}
        h.update(repr((schedule.name, schedule.t_min, schedule.t_max, sorted(config.items()))).encode())
    for attr in ("data_std", "label", "kind", "c"):          # c: a SwirlField's strength
        value = getattr(obj, attr, None)
        if value is not None:
            h.update(repr((attr, value)).encode())
    interpolant = getattr(obj, "interpolant", None)
    if interpolant is not None:
        h.update(repr(("interpolant", interpolant.name, interpolant.gamma_name, interpolant.a)).encode())
    parts = [getattr(obj, name) for name in ("score_field", "base") if getattr(obj, name, None) is not None]
    parts += list(getattr(obj, "fields", ()))                      # a combined field's (lab.guidance)
    for part in parts:
        h.update(fingerprint(part).encode())
    if getattr(obj, "betas", None) is not None:
        h.update(repr(("betas", [float(b) for b in obj.betas])).encode())
    model = getattr(obj, "model", None)
    tensors = list(model.state_dict().values()) if model is not None else []
    for name in ("mixture", "source", "target", None):
        m = obj if name is None else getattr(obj, name, None)
        if m is not None and all(hasattr(m, k) for k in ("means", "covs", "weights")):
            tensors += [m.means, m.covs, m.weights]
    for v in tensors:
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def noised_samples(reference: MixtureField, t: float, n: int, generator=None,
                   dtype=torch.float32, device=None):
    """n points (n, 2) from p_t: alpha_t x0 + sigma_t eps with x0 from the mixture of
    ``reference`` (a MixtureField); of a flow's exact field (``lab.interpolants``), x_tau's draws
    at tau = 1 - t."""
    if getattr(reference, "is_flow", False):
        return reference.sample_at(1 - float(t), n, generator=generator).to(dtype=dtype, device=device)
    s = reference.schedule
    x0 = reference.mixture.sample(n, generator=generator, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (s.alpha(float(t)) * x0 + s.sigma(float(t)) * eps).to(dtype=dtype, device=device)


@torch.no_grad()
def score_error(field: ScoreField, reference: MixtureField, ts=(0.05, 0.1, 0.25, 0.5, 0.9),
                n: int = 4000, seed: int = 0) -> dict[float, float]:
    """Relative L2(p_t) error of ``field``'s eps (equivalently, its score: the factor sigma_t
    cancels) to the exact ``reference`` at each t in ``ts``, on ``n`` points drawn from p_t,
    the norm denoising score matching minimises (Vincent 2011):

        err(t) = sqrt( E_{x ~ p_t} |eps_theta(x, t) - eps*(x, t)|^2 / E_{x ~ p_t} |eps*(x, t)|^2 ).

    Returns {t: err}."""
    g = torch.Generator().manual_seed(_check.seed(seed))
    device = field.device
    out = {}
    for t in ts:
        x = noised_samples(reference, t, n, generator=g, device=device)
        e_ref = reference.eps(x, t)
        e = field.eps(x, t)
        out[float(t)] = float(((e - e_ref) ** 2).sum(1).mean().sqrt() / (e_ref**2).sum(1).mean().sqrt())
    return out
