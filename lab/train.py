"""Denoising score matching (Vincent 2011; Ho et al. 2020's eps form), EMA, checkpoints.

    loss = E_{t, x0, eps} w(t) |eps_theta(alpha_t x0 + sigma_t eps, t) - eps|^2

with t stratified-uniform on [t_min, t_max], or uniform in lambda = log(alpha/sigma) instead
(``t_sampling``), drawn by Kingma et al. 2021's low-discrepancy sampler.
Weightings ``w``: ``"eps"`` (w = 1, DDPM's simple loss), ``"min_snr"`` (Hang et al. 2023,
w = min(SNR, 5) / SNR with SNR = alpha^2 / sigma^2), ``"likelihood"`` (Song et al. 2021b,
w proportional to g^2 / sigma^2, which makes the loss a bound on the negative log-likelihood).

w(t) is a weight on the eps error; ``"score"`` (w = 1 / sigma^2) is unit weight on the
score error |s_theta - grad log p(x_t | x0)|^2, Deveney et al.'s loss.
Times: ``t_sampling`` ``"uniform"`` (in t), ``"logsnr"`` (uniform in lambda) or ``"beta"``
(t = t_lo + (t_hi - t_lo) B with B ~ Beta(1, 2), density 2 (1 - B): Deveney et al.'s
t = 1e-5 + 10 Beta(1, 2), which puts more steps at low noise).

Optional Fokker-Planck regulariser (Deveney et al., "Closing the ODE-SDE gap in score-based
diffusion models through the Fokker-Planck equation"), at collocation points x uniform in a
square. ``fp_form="score"``: fp_weight * E|sigma_t^3 R|^2 with R the score residual
(``lab.metrics.fokker_planck_residual``), t drawn as the training times; works for any
network. ``fp_form="log_density"``: their own fp_weight * E R^2 with R the scalar residual of
u = log p_t (``lab.metrics.log_density_residual``), t uniform on [t_lo, t_max]; needs
model="log_density_mlp". A field with R = 0 is the score of one family p_t, so its ODE and
SDE samples agree.

``objective="velocity"`` trains a flow instead (Albergo, Boffi & Vanden-Eijnden 2023's L_b;
flow matching at the linear interpolant, Lipman et al. 2023): from the source (``train(...,
source=)``, default N(0, I)) to the data along ``interpolant``,

    loss = E_{tau, x0, x1, z} |b_theta(tau, x_tau) - (alpha' x0 + beta' x1 + gamma' z)|^2,

tau stratified-uniform on [0, 1] (on [1e-3, 1 - 1e-3] when gamma > 0, whose derivative is
infinite at the ends). x0 and x1 are paired independently; or, ``coupling="ot"``, by the exact
optimal assignment within each batch (minibatch OT, Tong et al. 2024; Pooladian et al. 2023);
or, ``"sinkhorn"``, drawn from the batch's entropic OT plan (Sinkhorn's iterations, POT; the
cost scaled to [0, 1], ``sinkhorn_reg`` its regularisation; Tong et al.'s OT-CFM does the same);
or, ``"paired"``, given (``train(..., source_points=)``: x0[i] goes with data[i], as rectified
flow's reflow pairs them, ``reflow``). The returned field is a ``lab.interpolants.VelocityField``.

Albergo et al.'s other two losses learn a flow's score, which its SDE needs (``flow_sde`` with
eps > 0; a flow from N(0, I) reads its score off b and needs neither), both from the latent noise
z and so with gamma > 0:

    objective="score":     L_s   = E |s_theta(tau, x_tau)|^2 + 2 z . s_theta(tau, x_tau) / gamma,
    objective="denoiser":  L_eta = E |eta_theta(tau, x_tau) - z|^2,   s = -eta_theta / gamma.

L_s has the gradient of E |s_theta + z / gamma|^2, whose target blows up where gamma vanishes;
L_eta's does not, which is why the paper prefers it. Either returns a
``lab.interpolants.FlowScoreField``: pair it with the velocity by ``VelocityField.with_score``.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import numbers
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

import lab
from lab import _check, checkpoints
from lab.data import GaussianMixture, load_points
from lab.fields import LAMBDA_FLOOR, NetworkField
from lab.fokker_planck import fokker_planck_norm, log_density_residual
from lab.interpolants import (INTERPOLANTS, TAU_EDGE, FlowScoreField, VelocityField, as_mixture, get_interpolant,
                              is_standard_gaussian)
from lab.models import MODELS, build_model
from lab.schedules import SCHEDULES, Schedule, get_schedule

__all__ = ["TrainConfig", "progress_bar", "Progress", "train", "TrainingRun", "save", "load", "resolve_device",
           "WEIGHTINGS", "T_SAMPLINGS", "FP_FORMS",
           "CHECKPOINT_FORMAT", "STATE_EVERY_S", "read_state", "loss_weight_fn", "time_sampler",
           "OBJECTIVES", "COUPLINGS", "reflow"]

WEIGHTINGS = ("eps", "min_snr", "likelihood", "score")
T_SAMPLINGS = ("uniform", "logsnr", "beta")
FP_FORMS = ("score", "log_density")
OBJECTIVES = ("eps", "velocity", "score", "denoiser")
FLOW_OBJECTIVES = ("velocity", "score", "denoiser")
COUPLINGS = ("independent", "ot", "sinkhorn", "paired")
SOURCE_POOL = 100_000     # points drawn once from a non-Gaussian source (batches index them, as the data)
FLOW_TAU_EDGE = TAU_EDGE  # training tau stays this far from 0 and 1 when gamma > 0
MIN_SNR_GAMMA = 5.0       # Hang et al. 2023's truncation of the SNR in "min_snr"
EMA_WARMUP = 10           # EMA decay is min(ema, (1 + step) / (EMA_WARMUP + step))
LIKELIHOOD_GRID = 512     # times used to normalise the "likelihood" weight
CHECKPOINT_FORMAT = "score-lab-checkpoint"
CHECKPOINT_VERSION = checkpoints.VERSION
STATE_FORMAT = "score-lab-train-state"   # a resumable run's state file (not a checkpoint)
STATE_EVERY_S = 180.0     # a run with a state file writes it this often (seconds), and when it stops


@dataclass
class TrainConfig:
    """Every knob of a training run, with its default."""

    schedule: str = "vp"            # noise process, a name in lab.schedules.SCHEDULES
    schedule_args: dict = dataclasses.field(default_factory=dict)  # its arguments, e.g. {"beta1": 200.0}
    model: str = "score_mlp"        # "score_mlp" (eps network) or "potential_mlp" (conservative)
    hidden: int = 64                # width of the hidden layers (64: see benchmarks/train_speed.py)
    depth: int = 3                  # residual blocks
    steps: int = 2000               # optimiser steps
    batch_size: int = 1024          # points per step
    lr: float = 1e-2                # peak learning rate (Adam)
    warmup: int = 100               # steps of linear warm-up, then cosine decay
    lr_final: float = 0.05          # final learning rate, as a fraction of lr
    weighting: str = "eps"          # "eps", "min_snr", "likelihood" or "score" (see module doc)
    t_sampling: str = "logsnr"      # training times uniform in lambda ("logsnr"), in t ("uniform"), or "beta"
    ema: float = 0.995              # decay of the weight average that train() returns
    grad_clip: float | None = 1.0   # max gradient norm; None: no clipping
    t_min: float | None = None      # smallest training t; None: the schedule's t_min
    fp_weight: float = 0.0          # w of the Fokker-Planck penalty (module doc); 0: off
    fp_region: float = 3.5          # collocation x uniform in [-fp_region, fp_region]^2
    fp_points: int = 256            # collocation points per step
    fp_form: str = "score"          # the residual penalised: "score" (vector) or "log_density" (scalar)
    n_classes: int = 0              # > 0: a class-conditional network (train(..., labels=)), 0: none
    label_dropout: float = 0.1      # share of a conditional batch trained as "no class" (Ho & Salimans 2022)
    log_every: int = 50             # call back (and check the loss is finite) every k steps
    seed: int = 0                   # seeds the weights, batches, times and noise; in [-2**63, 2**64)
    device: str | None = None       # None: lab.pick_device() (cuda, then mps, then cpu)
    cuda_graph: bool = True         # on CUDA, replay each step as one captured CUDA graph (docs/gpu.md)
    objective: str = "eps"          # "eps" (denoising score matching); a flow's "velocity", "score", "denoiser"
    interpolant: str = "linear"     # a flow's: a name in lab.interpolants.INTERPOLANTS
    gamma: str | None = None        # its gamma (lab.interpolants.GAMMAS; None: the family's own)
    coupling: str = "independent"   # a flow's: "independent", "ot", "sinkhorn" or "paired" (module doc)
    sinkhorn_reg: float = 0.05      # coupling="sinkhorn": entropic regularisation, on the cost scaled to [0, 1]

    def __post_init__(self):
        _choice(self.schedule, SCHEDULES, "schedule")
        if not isinstance(self.schedule_args, dict):
            raise ValueError(f"TrainConfig.schedule_args must be a dict, got {self.schedule_args!r}")
        get_schedule(self.schedule, **self.schedule_args)  # a ValueError names a bad argument
        _choice(self.model, MODELS, "model")
        _choice(self.weighting, WEIGHTINGS, "weighting")
        _choice(self.t_sampling, T_SAMPLINGS, "t_sampling")
        _choice(self.fp_form, FP_FORMS, "fp_form")
        _choice(self.objective, OBJECTIVES, "objective")
        _choice(self.coupling, COUPLINGS, "coupling")
        if self.objective in FLOW_OBJECTIVES:
            _choice(self.interpolant, INTERPOLANTS, "interpolant")
            interpolant = get_interpolant(self.interpolant, self.gamma)     # a ValueError names a bad pair
            if self.model != "score_mlp" or self.fp_weight:
                raise ValueError(f"objective={self.objective!r} trains a flow's network: model='score_mlp' "
                                 "and no Fokker-Planck penalty (fp_weight=0)")
            if self.n_classes and self.coupling != "independent":
                raise ValueError("a class-conditional flow pairs each class's points with independent source "
                                 f"draws: coupling='independent', not {self.coupling!r}")
            if self.objective != "velocity" and not _noisy(interpolant):
                raise ValueError(f"objective={self.objective!r} learns a flow's score from its latent noise z, "
                                 f"and the {self.interpolant} interpolant with gamma={interpolant.gamma_name!r} "
                                 "has none: choose gamma='brownian_bridge' (a flow from N(0, I) reads its score "
                                 "off the velocity and needs no score network)")
        elif self.coupling != "independent":
            raise ValueError(f"coupling={self.coupling!r} pairs a flow's source and data points: "
                             "it needs a flow's objective (velocity, score, denoiser)")
        _check.real(self.sinkhorn_reg, "TrainConfig.sinkhorn_reg", 1e-4, 10.0)
        if self.fp_form == "log_density" and not getattr(MODELS[self.model], "log_density", False):
            raise ValueError(f"fp_form='log_density' penalises the residual of a log-density; "
                             f"model={self.model!r} gives eps, use model='log_density_mlp' or fp_form='score'")
        for name, low, high in (("hidden", 1, 4096), ("depth", 1, 64), ("steps", 1, 10_000_000),
                                ("batch_size", 1, 1_000_000), ("warmup", 0, 10_000_000),
                                ("log_every", 1, 10_000_000), ("fp_points", 1, 1_000_000),
                                ("n_classes", 0, 100_000)):
            _check.integer(getattr(self, name), f"TrainConfig.{name}", low, high)
        for name, low, high, low_open, high_open in (
                ("lr", 0, 10, True, False), ("lr_final", 0, 1, False, False), ("ema", 0, 1, False, True),
                ("fp_weight", 0, 1e6, False, False), ("fp_region", 1e-3, 1e3, False, False),
                ("label_dropout", 0, 1, False, True)):
            _check.real(getattr(self, name), f"TrainConfig.{name}", low, high,
                        low_open=low_open, high_open=high_open)
        if self.n_classes and getattr(MODELS[self.model], "log_density", False):
            raise ValueError(f"model={self.model!r} has no classes; a class-conditional model is "
                             "'score_mlp' or 'potential_mlp'")
        if self.grad_clip is not None:
            _check.real(self.grad_clip, "TrainConfig.grad_clip (a positive number or None)", 0, low_open=True)
        if self.t_min is not None:
            _check.real(self.t_min, "TrainConfig.t_min (a positive number or None)", 0, low_open=True)
        _check.seed(self.seed, "TrainConfig.seed")
        if self.device is not None:
            resolve_device(self.device)


def resolve_device(name) -> torch.device:
    """``name`` as a torch.device, or ValueError when it is malformed or not present here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no usable CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asked for, but MPS is not available here")
    return device


def _noisy(interpolant) -> bool:
    """Whether the interpolant has latent noise (gamma > 0 inside)."""
    return float(interpolant.gamma(torch.tensor(0.5, dtype=torch.float64))) > 0


def _choice(value, options, what):
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(options)}")


@dataclass
class Progress:
    """What the callback receives every ``log_every`` steps."""

    step: int               # optimiser steps done
    steps: int              # steps asked for
    loss: float             # mean training loss over the last log_every steps
    samples_per_s: float    # training points per second over those steps
    seconds: float          # training time so far (the callbacks' own time left out)
    lr: float               # current learning rate
    field: NetworkField     # the EMA model as it is now; read it inside the callback only
    raw_field: NetworkField | None = None  # the optimiser's own (not averaged) weights, likewise


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def loss_weight_fn(schedule: Schedule, weighting: str, t_lo: float) -> Callable[[Tensor], Tensor]:
    """w(t) for the eps loss (see the module doc)."""
    if weighting == "eps":
        return torch.ones_like
    if weighting == "min_snr":
        def w(t):
            snr = (schedule.alpha(t) / schedule.sigma(t)) ** 2
            return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
        return w
    if weighting == "score":   # |eps error|^2 / sigma^2 = |score error|^2
        return lambda t: schedule.sigma(t) ** -2
    # likelihood: g^2 / sigma^2, divided by its mean over [t_lo, t_max] so the loss keeps
    # the scale of the eps loss (Adam is scale-free; the printed numbers are not).
    grid = torch.linspace(t_lo, schedule.t_max, LIKELIHOOD_GRID, dtype=torch.float64)
    norm = float((schedule.g2(grid) / schedule.sigma(grid) ** 2).mean())
    return lambda t: schedule.g2(t) / schedule.sigma(t) ** 2 / norm


def time_sampler(schedule: Schedule, kind: str, t_lo: float, device) -> Callable[[Tensor], Tensor]:
    """Map u in [0, 1) to a training time in [t_lo, t_hi]: uniform in t, or uniform in
    lambda = log(alpha/sigma) (as many steps on every octave of the noise level; Kingma et al.
    2021). t_hi is t_max, or earlier where lambda falls below LAMBDA_FLOOR (pure noise)."""
    lo = max(float(schedule.lambda_(schedule.t_max)), LAMBDA_FLOOR)
    t_hi = min(schedule.t_max, float(schedule.t_of_lambda(lo)))
    if kind == "uniform":
        return lambda u: t_lo + (t_hi - t_lo) * u
    if kind == "beta":   # Beta(1, 2) by its inverse CDF: 1 - sqrt(1 - u)
        return lambda u: t_lo + (t_hi - t_lo) * (1 - torch.sqrt(1 - u))
    hi = float(schedule.lambda_(t_lo))
    return lambda u: schedule.t_of_lambda(lo + (hi - lo) * u.double()).float().to(device)


def _fp_penalty(field: NetworkField, cfg: TrainConfig, to_time, t_lo: float, xc: Tensor, u: Tensor) -> Tensor:
    """The Fokker-Planck penalty at fp_points collocation points x uniform in the square
    [-fp_region, fp_region]^2, from uniform draws ``xc`` (n, 2) and ``u`` (n,) in [0, 1).
    "log_density": Deveney et al.'s mean R^2 of the scalar residual, t uniform on
    [t_lo, t_max]. "score": mean |sigma_t^3 R|^2 of the vector residual, t drawn as the
    training times; R grows like sigma^-3 at small t, and the factor sigma^3 lets every noise
    level count alike (this form serves networks that give only the score)."""
    xc = (2 * xc - 1) * cfg.fp_region
    if cfg.fp_form == "log_density":
        tc = t_lo + (field.schedule.t_max - t_lo) * u
        return (log_density_residual(field, xc, tc, create_graph=True) ** 2).mean()
    return fokker_planck_norm(field, xc, to_time(u), create_graph=True)


class _Draws:
    """A step's random draws, in buffers that every step refills from the run's generator in
    one fixed order (so a resumed run draws what an uninterrupted one would): batch indices,
    the stratification offset, the noise, the label-dropout coins, the collocation points.
    Fixed buffers are what a captured CUDA graph reads its inputs from."""

    def __init__(self, cfg: TrainConfig, n_data: int, labels: bool, device, n_source: int = 0,
                 flow_noise: bool = False):
        b, f = cfg.batch_size, cfg.fp_points
        self.n_data, self.n_source = n_data, n_source
        self.idx = torch.empty(b, dtype=torch.long, device=device)
        self.u = torch.empty((), device=device)
        self.eps = torch.empty(b, 2, device=device)
        self.drop = torch.empty(b, device=device) if labels else None
        self.xc = torch.empty(f, 2, device=device) if cfg.fp_weight > 0 else None
        self.uc = torch.empty(f, device=device) if cfg.fp_weight > 0 else None
        # a flow's: the source points' indices (a pooled source), a second noise (gamma > 0)
        self.idx0 = torch.empty(b, dtype=torch.long, device=device) if n_source else None
        self.z = torch.empty(b, 2, device=device) if flow_noise else None

    def fill(self, gen: torch.Generator) -> None:
        torch.randint(self.n_data, self.idx.shape, generator=gen, out=self.idx)
        torch.rand((), generator=gen, out=self.u)
        torch.randn(self.eps.shape, generator=gen, out=self.eps)
        if self.drop is not None:
            torch.rand(self.drop.shape, generator=gen, out=self.drop)
        if self.xc is not None:
            torch.rand(self.xc.shape, generator=gen, out=self.xc)
            torch.rand(self.uc.shape, generator=gen, out=self.uc)
        if self.idx0 is not None:
            torch.randint(self.n_source, self.idx0.shape, generator=gen, out=self.idx0)
        if self.z is not None:
            torch.randn(self.z.shape, generator=gen, out=self.z)


class _Knobs:
    """The two numbers that change from step to step, the learning rate and the EMA's
    weight: Python floats for an eager step, or device tensors refilled before each replay
    of a captured one (a graph bakes in the floats it saw)."""

    def __init__(self, opt, device, tensors: bool):
        self.opt, self.tensors = opt, tensors
        if tensors:
            self.lr = torch.zeros((), device=device)
            self.ema_w = torch.zeros((), device=device)
            for group in opt.param_groups:
                group["lr"] = self.lr
        else:
            self.lr = self.ema_w = 0.0

    def set(self, lr: float, ema_w: float) -> None:
        if self.tensors:
            self.lr.fill_(lr)
            self.ema_w.fill_(ema_w)
        else:
            self.lr, self.ema_w = lr, ema_w
            for group in self.opt.param_groups:
                group["lr"] = lr


def train(data, config: TrainConfig | None = None,
          callback: Callable[[Progress], bool | None] | None = None,
          cancel: threading.Event | None = None, state=None, resume: bool = False,
          state_every: float = STATE_EVERY_S, labels=None, source=None,
          source_points=None) -> tuple[NetworkField, dict]:
    """Train a score model on 2-D points by denoising score matching (or, with a flow's
    ``config.objective``, a flow's velocity or score from ``source``: module doc).

    Args:
        data: (n, 2) points (tensor, array or CSV path; validated by ``load_points``).
        config: every knob; ``TrainConfig()`` if omitted.
        callback: called with a :class:`Progress` every ``config.log_every`` steps; return
            True to stop training early (the model trained so far is returned).
        cancel: a ``threading.Event``; setting it (from another thread) stops training.
        state: path of a resumable state file (weights, average, optimiser, random
            generator, history), written every ``state_every`` seconds and when training
            stops or ends; long runs survive being killed (at most ``state_every`` seconds
            of work is lost).
        resume: continue from ``state`` when that file exists: the same data and config
            (``steps`` may grow) give the same weights, bit for bit on one device and thread
            count, as one uninterrupted run. A finished state returns its model at once.
        labels: with ``config.n_classes`` = K > 0, each point's class (n,) in 0..K-1: the
            network learns eps(x, t, class), and a ``config.label_dropout`` share of each
            batch is shown as "no class", so one network is both the conditional and the
            unconditional model of classifier-free guidance (``field.with_label``).
        source: a flow's start: "gaussian" (default, N(0, I)), a data set's name, a
            GaussianMixture or points (as ``lab.interpolants.as_mixture`` reads them). The data
            is the target.
        source_points: with ``coupling="paired"``, the source point (n, 2) of each data point
            (``source`` then is only the law the flow samples from).

    Returns:
        ``(field, history)``: a :class:`NetworkField` holding the EMA weights (eval mode, on
        the training device), and a dict of lists ``step``, ``loss``, ``samples_per_s``,
        ``seconds``, ``lr`` with ``summary`` (steps done, wall time, device, why it stopped).
        A non-finite loss stops training and keeps the last model whose loss was finite.
    """
    cfg = config or TrainConfig()
    flow = cfg.objective in FLOW_OBJECTIVES
    if source is not None and not flow:
        raise ValueError("source= is the start of a flow: it needs a flow's objective "
                         "(TrainConfig(objective='velocity'))")
    if (source_points is not None) != (cfg.coupling == "paired"):
        raise ValueError("coupling='paired' takes the pairs' source points (source_points=), "
                         "and source_points= needs coupling='paired'")
    x = load_points(data)
    device = resolve_device(cfg.device) if cfg.device else lab.pick_device()
    x = x.to(device)
    schedule = get_schedule(cfg.schedule, **cfg.schedule_args)
    t_lo = schedule.t_min if cfg.t_min is None else cfg.t_min
    if not schedule.t_min * 1e-3 <= t_lo < schedule.t_max:
        raise ValueError(f"TrainConfig.t_min must lie in [{schedule.t_min * 1e-3:g}, "
                         f"{schedule.t_max}), got {t_lo}")
    data_std = float(x.var(0).mean().sqrt())
    if not data_std > 0:
        raise ValueError("the data points are all equal: nothing to learn")
    if not 0.1 < data_std < 10:
        warnings.warn(f"the data's scale (std {data_std:.3g}) is far from 1, which the schedules "
                      "assume; lab.data.standardize(x) centres and scales points", stacklevel=2)
    state_every = _check.real(state_every, "state_every", 0.0)
    y = _labels(labels, cfg.n_classes, x.shape[0], device)
    paired = None
    if source_points is not None:
        paired = load_points(source_points).to(device)
        if paired.shape[0] != x.shape[0]:
            raise ValueError(f"coupling='paired' pairs each data point with one source point: "
                             f"{x.shape[0]} data and {paired.shape[0]} source points")

    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, hidden=cfg.hidden, depth=cfg.depth,
                            **({"n_classes": cfg.n_classes} if cfg.n_classes else {})).to(device)
    ema_model = copy.deepcopy(model).requires_grad_(False).eval()
    if flow:
        interpolant = get_interpolant(cfg.interpolant, cfg.gamma)
        src = as_mixture("gaussian" if source is None else source, "source")
        pool = None if is_standard_gaussian(src) or paired is not None else src.sample(
            SOURCE_POOL, generator=torch.Generator().manual_seed(cfg.seed)).to(device, x.dtype)
        noisy = _noisy(interpolant)
        if cfg.objective == "velocity":
            field, ema_field = VelocityField(model, interpolant, src), VelocityField(ema_model, interpolant, src)
        else:
            field, ema_field = (FlowScoreField(m, interpolant, src, cfg.objective) for m in (model, ema_model))
    else:
        field = NetworkField(model, schedule, data_std)
        ema_field = NetworkField(ema_model, schedule, data_std)
    # one fused kernel for every parameter: the per-tensor Python loop of the default holds the
    # GIL for a tenth of a small model's step, which a served page's other sessions wait on
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    weight = loss_weight_fn(schedule, cfg.weighting, t_lo)
    to_time = time_sampler(schedule, cfg.t_sampling, t_lo, device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    params, ema_params = list(model.parameters()), list(ema_model.parameters())
    history = {"step": [], "loss": [], "samples_per_s": [], "seconds": [], "lr": []}
    loss_sum = torch.zeros((), device=device)
    run = _RunState(model, ema_model, opt, gen, history, loss_sum,
                    _fingerprint(torch.cat([x, *([] if y is None else [y[:, None].to(x.dtype)]),
                                            *([] if paired is None else [paired])], 1)), cfg)
    if state is not None and resume and os.path.isfile(os.fspath(state)):
        run.restore(os.fspath(state))
    else:
        run.remember_good(0)

    # minibatch OT solves an assignment (or Sinkhorn's iterations) on the host each step: no
    # graph can hold it
    captured = cfg.cuda_graph and device.type == "cuda" and cfg.coupling in ("independent", "paired")
    draws = _Draws(cfg, x.shape[0], y is not None, device,
                   n_source=SOURCE_POOL if flow and pool is not None else 0,
                   flow_noise=flow and pool is None and paired is None and noisy)
    knobs = _Knobs(opt, device, tensors=captured)
    offsets = torch.arange(cfg.batch_size, device=device) / cfg.batch_size
    detached = [p.detach() for p in params]

    def flow_loss() -> Tensor:
        """Albergo et al.'s L_b, L_s or L_eta on one batch (module doc)."""
        edge = FLOW_TAU_EDGE if noisy else 0.0
        tau = (edge + (1 - 2 * edge) * ((draws.u + offsets) % 1.0))[:, None]
        x1 = x[draws.idx]
        if paired is not None:
            x0, z = paired[draws.idx], draws.eps
        else:
            x0, z = (draws.eps, draws.z) if pool is None else (pool[draws.idx0], draws.eps)
        if cfg.coupling == "ot":
            x1 = x1[_ot_pairs(x0, x1)]
        elif cfg.coupling == "sinkhorn":
            i, j = _sinkhorn_pairs(x0, x1, cfg.sinkhorn_reg, gen)
            x0, x1 = x0[i], x1[j]
        I = interpolant
        xt = I.alpha(tau) * x0 + I.beta(tau) * x1
        g = I.gamma(tau)
        if noisy:
            xt = xt + g * z
        yb = None
        if y is not None:   # label dropout: "no class" (index n_classes) for a share of the batch
            yb = torch.where(draws.drop < cfg.label_dropout, cfg.n_classes, y[draws.idx])
        if cfg.objective == "denoiser":
            return ((field._net(xt, tau, yb) - z) ** 2).sum(1).mean()
        if cfg.objective == "score":
            s_theta = field.s(xt, tau, yb)
            return ((s_theta ** 2).sum(1) + 2 * (z * s_theta).sum(1) / g[:, 0]).mean()
        target = I.d_alpha(tau) * x0 + I.d_beta(tau) * x1
        if noisy:
            target = target + I.gamma_dgamma(tau) / g * z
        return ((field.b(xt, tau, yb) - target) ** 2).sum(1).mean()

    def eps_loss() -> Tensor:
        """Denoising score matching on one batch, with the Fokker-Planck penalty (module doc)."""
        t = to_time((draws.u + offsets) % 1.0)      # stratified: one offset, evenly spaced
        tc = t[:, None]
        xt = schedule.alpha(tc) * x[draws.idx] + schedule.sigma(tc) * draws.eps
        yb = None
        if y is not None:   # label dropout: "no class" (index n_classes) for a share of the batch
            yb = torch.where(draws.drop < cfg.label_dropout, cfg.n_classes, y[draws.idx])
        err = ((field.eps(xt, t, labels=yb) - draws.eps) ** 2).sum(1)
        loss = (weight(t) * err).mean()
        if cfg.fp_weight > 0:
            loss = loss + cfg.fp_weight * _fp_penalty(field, cfg, to_time, t_lo, draws.xc, draws.uc)
        return loss

    def compute() -> None:
        """One step from the draws, with no host sync (but minibatch OT's): what a CUDA graph
        captures."""
        loss = flow_loss() if flow else eps_loss()
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, detached,
                                 [knobs.ema_w] * len(detached) if knobs.tensors else knobs.ema_w)
            loss_sum.add_(loss.detach())

    stepper = _Stepper(compute, opt, captured, device)
    stopped, step = None, run.step
    start = last = last_save = time.perf_counter()
    callback_s = 0.0
    model.train()
    for step in range(run.step + 1, cfg.steps + 1):
        lr = cfg.lr * _lr_factor(step - 1, cfg)
        decay = min(cfg.ema, (1 + step) / (EMA_WARMUP + step))  # short warm-up of the average
        knobs.set(lr, 1 - decay)
        draws.fill(gen)
        stepper()
        run.step = step

        if step % cfg.log_every == 0 or step == cfg.steps:
            k = step - (history["step"][-1] if history["step"] else 0)
            rate = (step - max(run.first_step, history["step"][-1] if history["step"] else 0)) * cfg.batch_size
            mean_loss = float(loss_sum) / k
            loss_sum.zero_()
            now = time.perf_counter()
            if not math.isfinite(mean_loss):
                step = run.restore_good()
                stopped = (f"the loss became non-finite between steps {step} and {run.step}; "
                           f"kept the model from step {step}")
                state = None   # the file keeps the last good state
                break
            run.remember_good(step)
            prog = Progress(step, cfg.steps, mean_loss, rate / (now - last),
                            run.seconds + now - start - callback_s, lr, ema_field, field)
            for key in history:
                history[key].append(getattr(prog, key))
            asked_to_stop = callback(prog) if callback is not None else False
            if state is not None and time.perf_counter() - last_save >= state_every:
                run.seconds_now = run.seconds + time.perf_counter() - start - callback_s
                run.save(state)
                last_save = time.perf_counter()
            last = time.perf_counter()
            callback_s += last - now
            if asked_to_stop:
                stopped = f"stopped by the callback at step {step}"
                break
        if cancel is not None and cancel.is_set():
            stopped = f"cancelled at step {step}"
            break

    wall = run.seconds + time.perf_counter() - start - callback_s
    if state is not None:
        run.seconds_now = wall
        run.save(state)
    history["summary"] = {
        "steps_done": step, "steps": cfg.steps, "train_s": round(wall, 3), "device": str(device),
        "final_loss": history["loss"][-1] if history["loss"] else None, "stopped": stopped,
        "n_data": int(x.shape[0]), "data_std": data_std,
        "cuda_graph": stepper.status, "capture_s": round(stepper.capture_s, 3),
    }
    ema_field.config, ema_field.summary = cfg, history["summary"]
    return ema_field, history


def _ot_pairs(x0: Tensor, x1: Tensor) -> Tensor:
    """The permutation of x1 that pairs it with x0 by the exact optimal assignment of squared
    distances (minibatch OT with equal weights: an assignment problem; Hungarian method)."""
    from scipy.optimize import linear_sum_assignment

    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"an OT coupling pairs equal batches: {x0.shape[0]} source and {x1.shape[0]} data points")
    cost = torch.cdist(x0.detach().double(), x1.detach().double()).pow(2).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    return torch.as_tensor(cols[rows.argsort()], device=x1.device)


def _sinkhorn_pairs(x0: Tensor, x1: Tensor, reg: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices (i, j) of as many pairs as x0 has points, drawn with replacement from the
    entropic OT plan between the two batches (equal weights; squared distances scaled to
    [0, 1]; POT's Sinkhorn iterations, ``reg`` the regularisation)."""
    import ot

    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"a Sinkhorn coupling pairs equal batches: {x0.shape[0]} source and "
                         f"{x1.shape[0]} data points")
    n = x0.shape[0]
    cost = torch.cdist(x0.detach().double(), x1.detach().double()).pow(2).cpu()
    cost = cost / cost.max().clamp_min(1e-12)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # POT warns when it stops at numItermax; the plan is still a coupling
        plan = torch.as_tensor(ot.sinkhorn(w.numpy(), w.numpy(), cost.numpy(), reg))
    if not torch.isfinite(plan).all() or not plan.sum() > 0:
        raise ValueError(f"Sinkhorn's iterations failed at sinkhorn_reg={reg:g}: raise it")
    flat = torch.multinomial(plan.flatten().to(gen.device, torch.float32), n, replacement=True, generator=gen)
    return (flat // n).to(x0.device), (flat % n).to(x0.device)


def reflow(field: VelocityField, config: TrainConfig | None = None, n: int = 20_000, ode_steps: int = 100,
           seed: int = 0, **kwargs) -> tuple[VelocityField, dict]:
    """Rectified flow's reflow (Liu et al. 2023, "Flow Straight and Fast"): draw ``n`` source
    points x0, carry each by the flow's own ODE (``ode_rk4``, ``ode_steps`` steps) to x1, and
    train a new velocity on the pairs (x0, x1) (``coupling="paired"``): the new flow's paths
    cross less, so they are straighter and few-step sampling is closer. ``config``: the new
    run's (default: the field's own), with the coupling "paired" and without latent noise
    (gamma "zero", but for the encoding-decoding interpolant, which needs its own): the pairs are
    coupled already, and noise would bend the paths that reflow straightens (with gamma > 0, b at
    tau = 0 holds gamma gamma' times the source's score, so no Euler step is exact). ``kwargs``
    go to ``train`` (callback, cancel, state, ...)."""
    from lab.solvers import sample

    if not isinstance(field, VelocityField):
        raise TypeError(f"reflow retrains a learned flow (a VelocityField), got {type(field).__name__}")
    n = _check.integer(n, "n (reflow's pairs)", 2, 10_000_000)
    cfg = config or field.config or TrainConfig(objective="velocity", interpolant=field.interpolant.name)
    cfg = dataclasses.replace(cfg, objective="velocity", coupling="paired",
                              gamma=cfg.gamma if cfg.interpolant == "encoding_decoding" else "zero")
    gen = torch.Generator().manual_seed(_check.seed(seed))
    x0 = field.source.sample(n, generator=gen).to(field.dtype)
    x1 = sample(field, x_T=x0.to(field.device), solver="ode_rk4", steps=ode_steps, keep_last=1).samples
    return train(x1, cfg, source=field.source, source_points=x0, **kwargs)


class _Stepper:
    """Runs a training step: ``compute`` eagerly, or, on CUDA with ``captured``, replayed
    from one CUDA graph. A step of the lab's small networks costs far more in kernel
    launches and Python than in arithmetic; a graph launches all of its kernels (forward,
    backward, clipping, Adam, EMA) at once. The first WARMUP steps run eagerly on a side
    stream (they create Adam's state and the libraries' workspaces, as capture requires,
    and are real steps), then the next is captured and every later one replayed. A capture
    that fails warns and the run goes on eagerly. ``status`` says which happened.

    Captures are one at a time in a process (a served lab's trainings may start together),
    each on a stream of its own, on the run's device."""

    WARMUP = 3
    _capturing = threading.Lock()

    def __init__(self, compute: Callable[[], None], opt, captured: bool, device: torch.device):
        self.compute, self.opt, self.captured, self.device = compute, opt, captured, device
        self.graph, self.warm, self.capture_s = None, 0, 0.0
        self.status = "off"
        self.side = torch.cuda.Stream(device) if captured else None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.captured:
            self.opt.zero_grad(set_to_none=True)
            self.compute()
        else:
            with torch.cuda.device(self.device):
                if self.warm < self.WARMUP:
                    self._warm_up()
                else:
                    self._capture()

    def _warm_up(self) -> None:
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            self.opt.zero_grad(set_to_none=True)
            self.compute()
        torch.cuda.current_stream().wait_stream(self.side)
        self.warm += 1

    def _capture(self) -> None:
        t0 = time.perf_counter()
        before = torch.cuda.current_stream()
        try:
            with self._capturing:
                for group in self.opt.param_groups:
                    group["capturable"] = True
                self.opt.zero_grad(set_to_none=True)   # the graph's backward writes the gradients
                graph = torch.cuda.CUDAGraph()
                # thread_local: a served lab's other threads may use the GPU while this one captures
                with torch.cuda.graph(graph, stream=self.side, capture_error_mode="thread_local"):
                    self.compute()
        except Exception as e:   # noqa: BLE001 - any failure to capture falls back to eager steps
            torch.cuda.set_stream(before)     # a failed capture_end can leave the capture stream current
            torch.cuda.synchronize(self.device)
            warnings.warn(f"could not capture the training step as a CUDA graph ({type(e).__name__}: {e}); "
                          "training goes on without (TrainConfig.cuda_graph=False avoids trying)", stacklevel=3)
            for group in self.opt.param_groups:
                group["capturable"] = False
            self.captured, self.status = False, f"failed: {type(e).__name__}: {str(e)[:200]}"
            self.opt.zero_grad(set_to_none=True)
            self.compute()
            return
        self.capture_s = time.perf_counter() - t0
        self.graph, self.status = graph, f"captured after {self.WARMUP} eager steps"
        graph.replay()


def _labels(labels, n_classes: int, n: int, device) -> Tensor | None:
    """Checked class labels (n,) as a long tensor on ``device``, or None."""
    if not n_classes:
        if labels is not None:
            raise ValueError("labels were given but TrainConfig.n_classes is 0: set it to the number of classes")
        return None
    if labels is None:
        raise ValueError(f"TrainConfig.n_classes = {n_classes}: train() needs labels=, one class per point")
    y = torch.as_tensor(labels)
    if y.shape != (n,) or y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(f"labels must be {n} whole numbers (one per point), got shape {tuple(y.shape)}")
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {int(y.min())}..{int(y.max())}")
    return y.to(device)


def _fingerprint(x: Tensor) -> list[float]:
    """A cheap identity of a data set (n, sums of coordinates and their squares): a state
    must be resumed on the data it was trained on."""
    x = x.double()
    return [float(x.shape[0]), *x.sum(0).tolist(), *(x ** 2).sum(0).tolist()]


class _LastGood(NamedTuple):
    """The last weights (and their average) whose loss was finite, and their step."""
    weights: list
    ema_weights: list
    step: int


class _RunState:
    """What a training run carries from step to step, as one resumable state: the model,
    its average, the optimiser, the random generator, the history, the loss summed since
    the last log, and the last weights whose loss was finite."""

    _IGNORED = ("steps", "device", "log_every", "cuda_graph")   # may change between a state and its resumption

    def __init__(self, model, ema_model, opt, gen, history, loss_sum, fingerprint, cfg):
        self.model, self.ema_model, self.opt, self.gen = model, ema_model, opt, gen
        self.history, self.loss_sum, self.fingerprint, self.cfg = history, loss_sum, fingerprint, cfg
        self.step = self.first_step = 0   # steps done; the step this process started after
        self.seconds = self.seconds_now = 0.0   # training time before this process; up to now
        self.good = None

    def remember_good(self, step: int) -> None:
        self.good = _LastGood([p.detach().clone() for p in self.model.parameters()],
                              [p.detach().clone() for p in self.ema_model.parameters()], step)

    def restore_good(self) -> int:
        with torch.no_grad():
            for p, q in zip([*self.model.parameters(), *self.ema_model.parameters()],
                            self.good.weights + self.good.ema_weights):
                p.copy_(q)
        return self.good.step

    def save(self, path) -> None:
        """Write the state atomically (a run killed mid-write keeps the previous one)."""
        blob = {
            "format": STATE_FORMAT, "version": CHECKPOINT_VERSION, "step": self.step,
            "config": dataclasses.asdict(self.cfg), "fingerprint": self.fingerprint,
            "model": _cpu(self.model.state_dict()), "ema": _cpu(self.ema_model.state_dict()),
            "opt": self.opt.state_dict(), "generator": self.gen.get_state(),
            "history": self.history, "loss_sum": float(self.loss_sum),
            "good": ([q.cpu() for q in self.good.weights], [q.cpu() for q in self.good.ema_weights], self.good.step),
            "seconds": self.seconds_now,
        }
        checkpoints.write(blob, path, "training state")

    def restore(self, path: str) -> None:
        blob = read_state(path)
        mine, theirs = dataclasses.asdict(self.cfg), blob["config"]
        defaults = dataclasses.asdict(TrainConfig())   # a knob added since the state was written
        differ = sorted(k for k in mine if k not in self._IGNORED and mine[k] != theirs.get(k, defaults[k]))
        if differ:
            raise ValueError(f"{path} was trained with another config ({', '.join(differ)} differ): "
                             "resume with the same settings, or start afresh without resume")
        if blob["fingerprint"] != self.fingerprint:
            raise ValueError(f"{path} was trained on other data: resume on the same points")
        device = next(self.model.parameters()).device
        self.model.load_state_dict(blob["model"])
        self.ema_model.load_state_dict(blob["ema"])
        self.opt.load_state_dict(blob["opt"])
        for group in self.opt.param_groups:   # this device's settings, not the saving one's
            group.update(fused=device.type in ("cpu", "cuda"), capturable=False)
        for p, st in self.opt.state.items():  # fused Adam keeps its step count beside the weights
            if isinstance(st.get("step"), Tensor):
                st["step"] = st["step"].to(p.device, torch.float32)
        self.gen.set_state(blob["generator"])
        for key in self.history:
            self.history[key].extend(blob["history"][key])
        self.loss_sum.fill_(blob["loss_sum"])
        weights, ema_weights, step = blob["good"]
        self.good = _LastGood([q.to(device) for q in weights], [q.to(device) for q in ema_weights], step)
        self.step = self.first_step = blob["step"]
        self.seconds = self.seconds_now = float(blob["seconds"])


def read_state(path) -> dict:
    """A training state file written by ``train(..., state=path)`` (``weights_only``)."""
    return checkpoints.read(path, STATE_FORMAT, "training state")


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state_dict.items()}


class TrainingRun:
    """One ``train`` call on a background thread, and what a page or a notebook draws of it,
    without Panel: the thread appends to ``steps`` / ``losses`` (any thread may read a
    prefix of them), keeps ``step``, the measured ``rate`` (steps/s) and ``time_left``, and
    every ``preview_every`` reports calls ``preview(field)`` (e.g. to sample the model as it
    is) and keeps its result in ``preview``. ``stop`` cancels (the model trained so far is
    kept); ``join`` waits. When ``done``: ``result`` (the field), ``stopped`` (why it ended
    early, or "") or ``error`` (what went wrong: a thread never dies silently)::

        run = TrainingRun(x, TrainConfig(steps=2000)).start()
        run.join(); field = run.result

    ``threads``: torch's intra-op threads for this run's thread only (OpenMP's setting is
    per thread; the rest of the process keeps its own). One by default: the lab's small
    batches train no faster on more (600 default steps on a 2-core CPU: 4.5 s on one
    thread, 5.3 s and twice the CPU on two), and on a served lab a training page then
    leaves the other cores to everyone else. None: torch's default for a new thread.

    ``fit``: what runs, ``train`` by default, called as ``fit(data, config, callback=,
    cancel=, **train_kwargs)`` and returning (field, history) as ``train`` does (a flow's
    ``source=``, or ``reflow``); ``total``: the steps its progress counts to (default
    ``config.steps``).
    """

    def __init__(self, data, config: TrainConfig | None = None, preview: Callable | None = None,
                 preview_every: int = 4, name: str = "score-lab-train", threads: int | None = 1,
                 fit: Callable | None = None, total: int | None = None, **train_kwargs):
        self.data, self.config = data, config or TrainConfig()
        self.threads = None if threads is None else _check.integer(threads, "threads", 1, 1024)
        self.total = self.config.steps if total is None else _check.integer(total, "total", 1, 10**9)
        self._fit, self._train_kwargs = fit or train, train_kwargs
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.step = 0
        self.rate = float("nan")          # steps per second of wall time so far, previews included
        self.preview, self.preview_step = None, 0
        self.result, self.error, self.stopped, self.done = None, "", "", False
        self._preview, self._preview_every = preview, _check.integer(preview_every, "preview_every", 1, 10**6)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "TrainingRun":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop at its next step; the model trained so far becomes ``result``."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:     # started
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def time_left(self) -> float:
        """Seconds to the last step at the rate so far (nan before the first report)."""
        return (self.total - self.step) / self.rate if self.rate > 0 else float("nan")

    def _run(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)      # this thread's OpenMP setting only
        reports, start = 0, time.perf_counter()

        def callback(p: Progress):
            nonlocal reports
            self.steps.append(p.step)        # list.append is atomic: readers see a prefix
            self.losses.append(p.loss)
            self.step = p.step
            self.rate = p.step / max(time.perf_counter() - start, 1e-9)
            reports += 1
            if self._preview is not None and (reports - 1) % self._preview_every == 0:   # reports 1, 1 + k, ...
                self.preview, self.preview_step = self._preview(p.field), p.step
            return None

        try:
            field, history = self._fit(self.data, self.config, callback=callback, cancel=self._cancel,
                                       **self._train_kwargs)
            self.stopped = history["summary"]["stopped"] or ""
            self.result = field
        except Exception as e:   # shown by whoever watches the run
            self.error = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        finally:
            self.done = True


# --- checkpoints ---------------------------------------------------------------------
@contextlib.contextmanager
def progress_bar(total: int, disable: bool = False):
    """A tqdm progress bar (a widget in Jupyter, text in a terminal) and the ``train``
    callback that moves it, with the loss and samples/s::

        with progress_bar(cfg.steps) as report:
            field, history = train(x, cfg, callback=report)
    """
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="step", disable=disable) as bar:
        def report(p: Progress):
            bar.update(p.step - bar.n)
            bar.set_postfix(loss=f"{p.loss:.4f}", samples_s=f"{p.samples_per_s:,.0f}")
        yield report


def save(field: NetworkField | VelocityField | FlowScoreField, path, meta: dict | None = None) -> str:
    """Write one file holding the model's config and weights (``torch.save`` of plain
    types and tensors only, so ``load`` can use ``weights_only=True``). The write is
    atomic: a failed save leaves any earlier file at ``path`` intact. Returns the path.
    A flow's file holds its interpolant and source law too (a velocity's paired score network,
    ``with_score``, is a file of its own)."""
    flow = isinstance(field, (VelocityField, FlowScoreField))
    if not isinstance(field, NetworkField) and not flow:
        raise TypeError(f"only a NetworkField or a learned flow can be saved, got {type(field).__name__}")
    model = field.model
    kind = next((k for k, cls in MODELS.items() if type(model) is cls), None)
    if kind is None:
        raise TypeError(f"cannot save a {type(model).__name__}; models: {', '.join(MODELS)}")
    cfg = field.config
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "model": kind, "model_kwargs": dict(model.kwargs),
        "schedule": "flow" if flow else field.schedule.name,
        "schedule_kwargs": {} if flow else field.schedule.config(),
        "data_std": (field.summary or {}).get("data_std", 1.0) if flow else field.data_std,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dataclasses.asdict(cfg) if cfg is not None else None,
        "summary": field.summary,
        "meta": _plain(meta if meta is not None else field.meta),
    }
    if flow:
        I, src = field.interpolant, field.source
        ckpt["flow"] = {"kind": "velocity" if isinstance(field, VelocityField) else field.kind,
                        "interpolant": I.name, "gamma": I.gamma_name, "a": float(I.a),
                        "source_means": src.means.clone(), "source_covs": src.covs.clone(),
                        "source_weights": src.weights.clone()}
    return checkpoints.write(ckpt, path, "checkpoint")


def _plain(meta: dict) -> dict:
    """Metadata as str keys and str / int / float / bool / None values, which a
    weights_only load accepts; anything else is kept as its str()."""
    out = {}
    for k, v in dict(meta).items():
        if isinstance(v, (bool, str)) or v is None:
            out[str(k)] = v
        elif isinstance(v, numbers.Integral):  # numpy integers too
            out[str(k)] = int(v)
        elif isinstance(v, numbers.Real):
            out[str(k)] = float(v)
        else:
            out[str(k)] = str(v)
    return out


def load(path, device=None) -> NetworkField | VelocityField | FlowScoreField:
    """Read a checkpoint written by :func:`save` (``weights_only=True``: nothing in the file
    is executed): a NetworkField, or the learned flow (``VelocityField``, ``FlowScoreField``)
    that was saved. The field has ``config``, ``summary`` and ``meta`` attributes. Raises
    ValueError when the file is not a score-lab checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no such checkpoint file: {path}")
    ckpt = checkpoints.read(path, CHECKPOINT_FORMAT, "checkpoint")
    try:
        model = build_model(ckpt["model"], **ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"])
        flow = ckpt.get("flow")
        if flow is None:
            schedule = get_schedule(ckpt["schedule"], **ckpt["schedule_kwargs"])
        else:
            interpolant = get_interpolant(flow["interpolant"], flow["gamma"], flow["a"])
            source = GaussianMixture(flow["source_means"], flow["source_covs"], flow["source_weights"])
        cfg = TrainConfig(**ckpt["config"]) if ckpt.get("config") else None
        data_std = float(ckpt["data_std"])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path} is a damaged score-lab checkpoint: {e}") from None
    device = resolve_device(device) if device is not None else lab.pick_device()
    model = model.to(device).eval().requires_grad_(False)
    try:
        if flow is None:
            field = NetworkField(model, schedule, data_std)
        elif flow["kind"] == "velocity":
            field = VelocityField(model, interpolant, source)
        else:
            field = FlowScoreField(model, interpolant, source, flow["kind"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is a damaged score-lab checkpoint: {e}") from None
    field.config, field.summary, field.meta = cfg, ckpt.get("summary"), ckpt.get("meta") or {}
    return field
