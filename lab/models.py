"""Small networks for 2-D score models.

``ScoreMLP`` predicts eps (Ho et al. 2020's parameterisation); ``PotentialMLP`` outputs a
scalar energy whose x-gradient is eps, so the score it defines is a gradient field at every
t: conservative by construction (zero curl), as in Salimans & Ho 2021 ("Should EBMs model
the energy or the score?"). ``LogDensityMLP`` is Deveney et al.'s network ("Closing the
ODE-SDE gap in score-based diffusion models through the Fokker-Planck equation"): a scalar
u(t, x) ~ log p_t(x) on raw (t, x, y), score = grad_x u, with no preconditioning at all.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lab import _check

__all__ = ["ScoreMLP", "PotentialMLP", "LogDensityMLP", "TimeEmbedding", "MODELS", "build_model"]


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the noise level c (EDM's c_noise = -lambda/4, about [-3, 3]):
    sin and cos of 100 c at geometric frequencies 1 .. 1e-4, the transformer position code
    that DDPM uses (Vaswani et al. 2017; Ho et al. 2020)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        dim = _check.integer(dim, "t_dim", 2, 4096)
        if dim % 2:
            raise ValueError(f"the time embedding needs an even dimension >= 2, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        arg = 100.0 * t[:, None] * self.freqs
        return torch.cat([arg.sin(), arg.cos()], 1)


class _MLP(nn.Module):
    """x (n, 2) and noise level c (n,) -> (n, out): its features enter every hidden layer.
    c may also be (1,): one level for every point, broadcast (what sampling passes).

    With ``n_classes`` > 0 the network is class-conditional (classifier-free guidance, Ho &
    Salimans 2022): a learned embedding of the label (n,) or (1,) is added to the noise-level
    features; label ``n_classes`` (or None) is "no class", the unconditional model that label
    dropout trains (``TrainConfig.label_dropout``)."""

    def __init__(self, out: int, hidden: int, depth: int, t_dim: int, n_classes: int = 0):
        super().__init__()
        hidden, depth = _check.integer(hidden, "hidden", 1, 4096), _check.integer(depth, "depth", 1, 64)
        self.n_classes = _check.integer(n_classes, "n_classes", 0, 100_000)
        if self.n_classes:
            self.label_embed = nn.Embedding(self.n_classes + 1, t_dim)
        self.embed = TimeEmbedding(t_dim)
        self.inp = nn.Linear(2, hidden)
        self.t_proj = nn.Linear(t_dim, hidden * depth)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, out)
        self.depth = depth

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        features = self.embed(t)
        if self.n_classes:
            if labels is None:
                labels = torch.full((1,), self.n_classes, dtype=torch.long, device=x.device)
            if labels.device.type == "cpu":
                features = features + self.label_embed(labels)
            else:   # the same lookup as a product with one-hot rows: its backward never waits
                # for the device (an embedding's sorts its indices), so a CUDA graph can hold it
                rows = torch.arange(self.n_classes + 1, device=labels.device)
                features = features + (labels[:, None] == rows).to(features.dtype) @ self.label_embed.weight
        elif labels is not None:
            raise ValueError("this network has no classes (train with TrainConfig(n_classes=K))")
        h = self.inp(x)
        temb = self.t_proj(features).chunk(self.depth, dim=1)
        for layer, te in zip(self.layers, temb):
            h = h + layer(nn.functional.silu(h + te))  # residual block
        return self.out(nn.functional.silu(h))


class ScoreMLP(_MLP):
    """eps network: (x (n, 2), c (n,)) -> eps (n, 2). Residual MLP with noise-level features."""

    conservative = False

    def __init__(self, hidden: int = 64, depth: int = 3, t_dim: int = 32, n_classes: int = 0):
        super().__init__(2, hidden, depth, t_dim, n_classes)
        self.kwargs = dict(hidden=hidden, depth=depth, t_dim=t_dim) | ({"n_classes": n_classes} if n_classes else {})


class PotentialMLP(_MLP):
    """Energy network: (x (n, 2), c (n,)) -> E (n,); ``NetworkField`` takes eps = grad_x E,
    so score = -grad_x (E / sigma): conservative for every t, trained or not."""

    conservative = True

    def __init__(self, hidden: int = 64, depth: int = 3, t_dim: int = 32, n_classes: int = 0):
        super().__init__(1, hidden, depth, t_dim, n_classes)
        self.kwargs = dict(hidden=hidden, depth=depth, t_dim=t_dim) | ({"n_classes": n_classes} if n_classes else {})

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        return super().forward(x, t, labels).squeeze(1)


class LogDensityMLP(nn.Module):
    """Deveney et al.'s network (teojd/ODESDEGap, models.Net): u(t, x) (n,), an unnormalised
    log p_t(x), from the raw time and point (t, x, y) through ``depth`` layers of ``hidden``
    units with Softplus(beta) activations (theirs: 3 x 80, beta = 100) and a linear output.
    ``NetworkField`` takes score = grad_x u (so eps = -sigma grad_x u), on x and t as they
    are: no input scaling, no noise-level features, unlike the lab's own networks. Being a
    log-density, it has the scalar Fokker-Planck residual of ``lab.metrics.log_density_residual``.
    """

    conservative = True
    log_density = True   # NetworkField: the output is log p_t on raw (x, t), not an eps energy

    def __init__(self, hidden: int = 80, depth: int = 3, beta: float = 100.0):
        super().__init__()
        hidden, depth = _check.integer(hidden, "hidden", 1, 4096), _check.integer(depth, "depth", 1, 64)
        beta = _check.real(beta, "beta", 0.0, 1e6, low_open=True)
        sizes = [3] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden, 1)
        self.act = nn.Softplus(beta)
        self.kwargs = dict(hidden=hidden, depth=depth, beta=beta)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """u(t, x): x (n, 2), t (n,) or (1,) (one time for every point)."""
        h = torch.cat([t.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1), x], 1)
        for layer in self.layers:
            h = self.act(layer(h))
        return self.out(h).squeeze(1)


MODELS = {"score_mlp": ScoreMLP, "potential_mlp": PotentialMLP, "log_density_mlp": LogDensityMLP}


def build_model(kind: str, **kwargs) -> nn.Module:
    """The model called ``kind`` (one of ``MODELS``)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    return MODELS[kind](**kwargs)
