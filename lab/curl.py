"""Is a field a gradient? Jacobians, curl, divergence, circulation, Helmholtz split.

A true score s = grad log p_t is conservative: its Jacobian is symmetric (a Hessian), its
curl d s_y/dx - d s_x/dy is zero, its circulation around every closed loop is zero and its
line integrals do not depend on the path. Trained networks break all four and still sample
well (Vuong et al. 2025, "Are We Really Learning the Score Function?").

Every function takes any ``ScoreField`` and a time t, and works on the score
(grad log p_t). Derivatives are exact (autograd), batched over points: the lab's fields act
point by point, so two backward passes give the whole 2x2 Jacobian of every point at once.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from lab import _check
from lab.fields import ScoreField

__all__ = ["grid_points", "jacobian", "curl", "divergence", "asymmetry", "circulation",
           "line_integral", "path_dependence", "helmholtz", "field_helmholtz", "MAX_EXTENT"]

MAX_EXTENT = 1e6  # circulation refuses centres and radii beyond this (far out, scores overflow)


def grid_points(extent: float = 3.0, size: int = 128, dtype=torch.float32, device=None):
    """A size x size grid on [-extent, extent]^2: returns (xs (size,), points (size^2, 2)),
    points in row-major order (y rows, x columns), so ``values.reshape(size, size)`` is an
    image with y along axis 0."""
    size = _check.integer(size, "grid size", 2, 4096, numpy_ok=True)
    extent = _check.real(extent, "grid extent", 0.0, MAX_EXTENT, low_open=True, numpy_ok=True)
    xs = torch.linspace(-extent, extent, size, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    return xs, torch.stack([gx.flatten(), gy.flatten()], 1)


def _points(field, x):
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x.to(field.device) if field.device is not None else x


FIELD_PARTS = ("score", "velocity")


def jacobian(field: ScoreField, x: Tensor, t, of: str = "score") -> Tensor:
    """Jacobian of the score (``of="velocity"``: of the probability-flow or flow velocity,
    ``field.velocity``) at points x (n, 2): J[:, i, j] = d s_i / d x_j, shape (n, 2, 2)."""
    if of not in FIELD_PARTS:
        raise ValueError(f"of must be one of {', '.join(FIELD_PARTS)}, got {of!r}")
    x = _points(field, x)
    if not torch.isfinite(x).all():
        raise ValueError("x holds NaN or infinite values: the points must be finite")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = field.score(x, t) if of == "score" else field.velocity(x, t)
        rows = [torch.autograd.grad(s[:, i].sum(), x, retain_graph=i == 0)[0] for i in range(2)]
    return torch.stack(rows, 1).detach()


def curl(field: ScoreField, x: Tensor, t, of: str = "score") -> Tensor:
    """Scalar curl d s_y/dx - d s_x/dy of the score (or ``of="velocity"``) at points x (n, 2),
    shape (n,). A flow's velocity that is a gradient (as an optimal transport's is,
    Benamou & Brenier 2000) has none."""
    J = jacobian(field, x, t, of)
    return J[:, 1, 0] - J[:, 0, 1]


def divergence(field: ScoreField, x: Tensor, t) -> Tensor:
    """Divergence d s_x/dx + d s_y/dy of the score at points x (n, 2), shape (n,)."""
    J = jacobian(field, x, t)
    return J[:, 0, 0] + J[:, 1, 1]


def asymmetry(field: ScoreField, x: Tensor, t, of: str = "score") -> float:
    """Normalised Jacobian asymmetry ||J - J^T||_F / ||J||_F, averaged over the points x
    (n, 2) — draw them from p_t (``lab.metrics.noised_samples``). Zero for a gradient.
    ``of``: the score's Jacobian, or the velocity's."""
    J = jacobian(field, x, t, of)
    num = torch.linalg.matrix_norm(J - J.transpose(1, 2))
    return float((num / torch.linalg.matrix_norm(J).clamp_min(1e-30)).mean())


def circulation(field: ScoreField, t, centers, radii, n_points: int = 256, of: str = "score") -> Tensor:
    """Line integral of the score (or ``of="velocity"``) counter-clockwise around circles, shape (m,).

    centers (m, 2) or (2,); radii (m,) or a float. The periodic trapezoid rule with the exact
    tangent converges faster than any power of 1/n_points for a smooth field, so Stokes'
    theorem (circulation = integral of the curl over the disc) holds to quadrature accuracy.
    Centres and radii must lie within ``MAX_EXTENT``; no centres give an empty result.
    """
    centers = _numbers(centers, "centres")
    if centers.shape[-1:] != (2,) or centers.ndim > 2:
        raise ValueError(f"centres must have shape (m, 2) or (2,), got {tuple(centers.shape)}")
    centers = centers.reshape(-1, 2)
    if not (torch.isfinite(centers).all() and (centers.abs() <= MAX_EXTENT).all()):
        raise ValueError(f"centres must be finite and lie within {MAX_EXTENT:g} of the origin")
    if isinstance(radii, (int, float, np.number, bool, str)) or radii is None:
        radii = torch.tensor([_check.real(radii, "radius", 0, MAX_EXTENT, low_open=True, numpy_ok=True)],
                             dtype=torch.float64)
    radii = _numbers(radii, "radii").reshape(-1)
    if radii.numel() == 1:
        radii = radii.expand(centers.shape[0])
    if radii.shape[0] != centers.shape[0] or not torch.all((radii > 0) & (radii <= MAX_EXTENT)):
        raise ValueError(f"need one radius per centre, each in (0, {MAX_EXTENT:g}]")
    n_points = _check.integer(n_points, "n_points", 3, 1_000_000)
    theta = torch.arange(n_points, dtype=torch.float64) * (2 * math.pi / n_points)
    ring = torch.stack([theta.cos(), theta.sin()], 1)                   # (k, 2)
    tangent = torch.stack([-theta.sin(), theta.cos()], 1)
    pts = centers[:, None, :] + radii[:, None, None] * ring              # (m, k, 2)
    s = _score_at(field, pts.reshape(-1, 2), t, of).reshape(pts.shape)
    circ = (s * tangent).sum(-1).sum(1) * radii * (2 * math.pi / n_points)
    if not torch.isfinite(circ).all():
        i = int(torch.nonzero(~torch.isfinite(circ))[0])
        raise ValueError(f"the {of} is not finite on the circle of centre {centers[i].tolist()} and "
                         f"radius {float(radii[i]):g} at t={_check.show(t)}")
    return circ


def _numbers(v, name: str) -> Tensor:
    """v as a float64 tensor, or a ValueError naming it."""
    try:
        return torch.as_tensor(v, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise ValueError(f"{name} must be numbers, got {_check.show(v)}") from None


def _score_at(field, pts64: Tensor, t, of: str = "score") -> Tensor:
    """The score (``of="velocity"``: the velocity) at float64 points, evaluated in the field's
    own precision."""
    if of not in ("score", "velocity"):
        raise ValueError(f"of must be 'score' or 'velocity', got {of!r}")
    with torch.no_grad():
        fn = field.score if of == "score" else field.velocity
        return fn(field.as_input(pts64), t).double().cpu()


def _path(path) -> Tensor:
    path = torch.as_tensor(path, dtype=torch.float64)
    if path.ndim != 2 or path.shape[1] != 2 or path.shape[0] < 2:
        raise ValueError("a path is a polyline of at least two points (k, 2)")
    if not torch.isfinite(path).all():
        raise ValueError("a path must hold finite points")
    return path


def line_integral(field: ScoreField, path, t) -> float:
    """Integral of score . dl along a polyline path (k, 2), by the midpoint rule (second
    order in the segment length: use a few hundred points for a smooth path)."""
    path = _path(path)
    mid = (path[1:] + path[:-1]) / 2
    return float((_score_at(field, mid, t) * path.diff(dim=0)).sum())


def path_dependence(field: ScoreField, path_a, path_b, t) -> float:
    """Difference of the line integrals along two paths with the same ends; zero for a
    gradient field (the integral is then log p_t(end) - log p_t(start))."""
    a, b = _path(path_a), _path(path_b)
    if not (torch.allclose(a[0], b[0]) and torch.allclose(a[-1], b[-1])):
        raise ValueError("the two paths must start and end at the same points")
    return line_integral(field, a, t) - line_integral(field, b, t)


def helmholtz(u, v, spacing: float) -> dict:
    """Split a gridded 2-D field (u, v) (each (ny, nx), y along axis 0, grid step
    ``spacing``) into a gradient part grad(phi) and a remainder (rotational + harmonic).

    phi is the least-squares potential: it minimises sum over interior cell faces of
    |face difference of phi / spacing - face average of the field|^2, whose normal equations
    are the Neumann 5-point Poisson problem, solved exactly by a cosine transform. The parts
    are reported at the grid points, grad(phi) by central differences (so its discrete curl,
    taken with the same differences, vanishes to rounding).

    Returns dict: ``phi`` (ny, nx), ``grad`` and ``rest`` (each a (u, v) pair of arrays),
    ``grad_share`` and ``rest_share``: the two parts' shares of the field's energy, measured
    on the cell faces where the least-squares split is exactly orthogonal (they add to 1).
    """
    from scipy.fft import dctn, idctn

    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    if u.shape != v.shape or u.ndim != 2 or min(u.shape) < 3:
        raise ValueError("u and v must be arrays of the same shape (ny, nx), at least 3 x 3")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise ValueError("the field holds NaN or infinite values")
    h = float(spacing)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"spacing must be a positive number, got {spacing!r}")
    ny, nx = u.shape
    fx = (u[:, 1:] + u[:, :-1]) / 2  # face values of the field, interior faces only
    fy = (v[1:, :] + v[:-1, :]) / 2
    dtf = np.zeros_like(u)  # D^T f, D the face difference / h: minus the divergence
    dtf[:, :-1] -= fx / h
    dtf[:, 1:] += fx / h
    dtf[:-1, :] -= fy / h
    dtf[1:, :] += fy / h
    ky = 2 * np.cos(np.pi * np.arange(ny) / ny) - 2
    kx = 2 * np.cos(np.pi * np.arange(nx) / nx) - 2
    eig = (ky[:, None] + kx[None, :]) / h**2   # eigenvalues of the Neumann Laplacian
    eig[0, 0] = 1.0
    coef = dctn(-dtf, type=2, norm="ortho") / eig  # normal equations D^T D phi = D^T f, L = -D^T D
    coef[0, 0] = 0.0
    phi = idctn(coef, type=2, norm="ortho")
    gy, gx = np.gradient(phi, h, h)
    face_gx, face_gy = np.diff(phi, axis=1) / h, np.diff(phi, axis=0) / h
    energy = float((fx**2).sum() + (fy**2).sum())
    grad_energy = float((face_gx**2).sum() + (face_gy**2).sum())
    rest_energy = float(((fx - face_gx) ** 2).sum() + ((fy - face_gy) ** 2).sum())
    return {"phi": phi, "grad": (gx, gy), "rest": (u - gx, v - gy),
            "grad_share": grad_energy / energy if energy else 0.0,
            "rest_share": rest_energy / energy if energy else 0.0}


def field_helmholtz(field: ScoreField, t, extent: float = 3.0, size: int = 96, of: str = "score") -> dict:
    """``helmholtz`` of a field's score (or ``of="velocity"``) at time t on a size x size grid
    over [-extent, extent]^2: how much of it is a gradient (``grad_share``) and how much is not."""
    _, pts = grid_points(extent, size, dtype=torch.float64)
    s = _score_at(field, pts, t, of).detach().cpu().numpy()
    return helmholtz(s[:, 0].reshape(size, size), s[:, 1].reshape(size, size), 2 * extent / (size - 1))


def score_and_divergence(field: ScoreField, x: Tensor, t, create_graph: bool = True):
    """Score (n, 2) and its exact divergence (n,): two backward passes (2-D)."""
    s = field.score(x, t)
    div = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0][:, i]
              for i in range(2))
    return s, div
