"""The Fokker-Planck residuals of a field: how far it is from being the score of one family
p_t under its own forward SDE (Lai et al. 2023; Deveney et al.), in the vector form of any
field and the scalar form of a log-density; the penalty ``train`` adds and the gap page
shows."""
from __future__ import annotations

import torch
from torch import Tensor

from lab import _check
from lab.curl import score_and_divergence
from lab.fields import MixtureField, ScoreField

__all__ = ["fokker_planck_residual", "fokker_planck_norm", "log_density_residual"]


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
    x = field.as_input(_check.points(x, "x"))
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
    score, div_s = score_and_divergence(field, x, t)
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
    x = field.as_input(_check.points(x, "x"))
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
