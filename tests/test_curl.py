"""Curl, circulation, path dependence and the Helmholtz split, against closed forms."""
import math

import numpy as np
import pytest
import torch

from lab.curl import (asymmetry, circulation, curl, divergence, grid_points, helmholtz, jacobian,
                      line_integral, path_dependence)
from lab.data import GaussianMixture, dataset_mixture
from lab.fields import MixtureField, NetworkField, ScoreField, score_to_eps
from lab.metrics import noised_samples
from lab.models import PotentialMLP, ScoreMLP
from lab.schedules import get_schedule

TIMES = (0.01, 0.05, 0.2, 0.5, 0.9)


class Rotation(ScoreField):
    """The field (-y, x): curl 2 everywhere, circulation 2 pi r^2 around any circle."""

    def __init__(self):
        self.schedule = get_schedule("vp")

    def eps(self, x, t):
        return score_to_eps(torch.stack([-x[:, 1], x[:, 0]], 1), self.schedule.sigma(t))


def _mixture_field():
    cov = torch.tensor([[[0.05, 0.02], [0.02, 0.03]], [[0.01, 0.0], [0.0, 0.04]]], dtype=torch.float64)
    return MixtureField(GaussianMixture([[-0.5, 0.0], [0.5, 0.3]], cov), "vp")


@pytest.mark.parametrize("t", TIMES)
def test_exact_field_is_conservative_at_every_t(t, gen):
    field = _mixture_field()
    x = noised_samples(field, t, 500, generator=gen, dtype=torch.float64)
    J = jacobian(field, x, t)
    scale = float(J.abs().max())
    assert float(curl(field, x, t).abs().max()) < 1e-12 * scale
    assert asymmetry(field, x, t) < 1e-12
    circ = circulation(field, t, [[0.0, 0.0], [0.3, -0.2], [1.0, 1.0]], [0.5, 0.2, 0.8], n_points=1024)
    assert float(circ.abs().max()) < 1e-10


def test_rotation_field_has_curl_two_and_circulation_two_pi_r_squared(gen):
    field = Rotation()
    x = torch.randn(100, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(curl(field, x, 0.5), torch.full((100,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(divergence(field, x, 0.5), torch.zeros(100, dtype=torch.float64))
    radii = torch.tensor([0.1, 1.0, 2.5], dtype=torch.float64)
    circ = circulation(field, 0.5, [[0.0, 0.0], [1.0, -1.0], [3.0, 0.5]], radii)
    torch.testing.assert_close(circ, 2 * math.pi * radii**2)


def test_potential_network_has_zero_curl_untrained(gen):
    torch.manual_seed(0)
    field = NetworkField(PotentialMLP(hidden=32, depth=2).double(), "vp")
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    for t in TIMES:
        J = jacobian(field, x, t)
        assert float(curl(field, x, t).abs().max()) < 1e-10 * float(J.abs().max())
    free = NetworkField(ScoreMLP(hidden=32, depth=2).double(), "vp")
    assert float(curl(free, x, 0.5).abs().mean()) > 1e-3


def test_stokes_circulation_equals_the_integral_of_the_curl():
    torch.manual_seed(1)
    field = NetworkField(ScoreMLP(hidden=32, depth=2).double(), "vp")
    c, r = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.7
    # Gauss-Legendre in the radius, uniform in the angle (polar coordinates: dA = rho drho dtheta)
    nodes, weights = (torch.as_tensor(v) for v in np.polynomial.legendre.leggauss(48))
    rho, w_rho = r * (nodes + 1) / 2, r / 2 * weights
    theta = torch.arange(128, dtype=torch.float64) * 2 * math.pi / 128
    pts = c + rho[:, None, None] * torch.stack([theta.cos(), theta.sin()], 1)
    cu = curl(field, pts.reshape(-1, 2), 0.3).reshape(48, 128)
    disc = float(((cu.sum(1) * 2 * math.pi / 128) * rho * w_rho).sum())
    circ = float(circulation(field, 0.3, c, r))
    assert abs(disc) > 1e-3
    assert circ == pytest.approx(disc, rel=1e-6)


def test_line_integrals_of_the_exact_score_are_log_density_differences():
    field = _mixture_field()
    t = 0.2
    a, b = torch.tensor([-1.0, -0.5], dtype=torch.float64), torch.tensor([1.0, 0.8], dtype=torch.float64)
    u = torch.linspace(0, 1, 801, dtype=torch.float64)[:, None]
    straight = a + u * (b - a)
    bent = straight + torch.sin(math.pi * u) * torch.tensor([0.6, -0.9], dtype=torch.float64)
    logp = field.log_prob(torch.stack([a, b]), t)
    assert line_integral(field, straight, t) == pytest.approx(float(logp[1] - logp[0]), abs=1e-4)
    assert abs(path_dependence(field, straight, bent, t)) < 1e-4
    torch.manual_seed(2)
    net = NetworkField(ScoreMLP(hidden=32, depth=2).double(), "vp")
    assert abs(path_dependence(net, straight, bent, t)) > 1e-3
    with pytest.raises(ValueError, match="same points"):
        path_dependence(field, straight, bent[:-1], t)


def _grid(n=96, extent=2.0):
    xs = np.linspace(-extent, extent, n)
    X, Y = np.meshgrid(xs, xs)  # y along axis 0
    return X, Y, xs[1] - xs[0]


def test_helmholtz_recovers_a_known_split():
    """F = grad(phi0) + R0 with R0 = rot(psi) divergence-free and tangent at the boundary:
    the gradient part must be grad(phi0) and the remainder R0."""
    X, Y, h = _grid()
    phi0 = np.exp(-((X - 0.3) ** 2 + Y**2))                 # grad(phi0) by hand:
    g0 = (-2 * (X - 0.3) * phi0, -2 * Y * phi0)
    psi = np.exp(-2 * (X**2 + (Y + 0.2) ** 2))               # R0 = (d psi/dy, -d psi/dx)
    r0 = (-4 * (Y + 0.2) * psi, 4 * X * psi)
    out = helmholtz(g0[0] + r0[0], g0[1] + r0[1], h)
    err = np.sqrt(((out["grad"][0] - g0[0]) ** 2 + (out["grad"][1] - g0[1]) ** 2).mean())
    size = np.sqrt((g0[0] ** 2 + g0[1] ** 2).mean())
    assert err < 0.006 * size  # discretisation error, measured 0.27%
    e0 = (g0[0] ** 2 + g0[1] ** 2).sum()
    er = (r0[0] ** 2 + r0[1] ** 2).sum()
    assert out["grad_share"] == pytest.approx(e0 / (e0 + er), abs=0.02)
    assert out["rest_share"] == pytest.approx(er / (e0 + er), abs=0.02)


def test_helmholtz_solves_the_least_squares_problem():
    """phi satisfies the normal equations D^T (D phi - f) = 0 of the face least-squares
    problem, so the face parts are orthogonal and their energy shares add to one."""
    X, Y, h = _grid(64)
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=X.shape), rng.normal(size=X.shape)
    out = helmholtz(u, v, h)
    phi = out["phi"]
    rx = np.diff(phi, axis=1) / h - (u[:, 1:] + u[:, :-1]) / 2   # face residuals D phi - f
    ry = np.diff(phi, axis=0) / h - (v[1:, :] + v[:-1, :]) / 2
    normal = np.zeros_like(phi)                                 # D^T of the residuals
    normal[:, :-1] -= rx / h
    normal[:, 1:] += rx / h
    normal[:-1, :] -= ry / h
    normal[1:, :] += ry / h
    assert np.abs(normal).max() < 1e-10 * np.abs(u).max() / h
    assert out["grad_share"] + out["rest_share"] == pytest.approx(1.0, abs=1e-12)
    assert 0 < out["grad_share"] < 1


def test_helmholtz_gives_back_an_exact_face_gradient():
    X, Y, h = _grid(48)
    phi0 = np.sin(X) * np.cos(0.7 * Y) + 0.3 * X * Y
    # a cell field whose face averages are exactly the face differences of phi0
    fx, fy = np.diff(phi0, axis=1) / h, np.diff(phi0, axis=0) / h
    u, v = np.zeros_like(phi0), np.zeros_like(phi0)
    u[:, 0] = fx[:, 0]
    for j in range(1, u.shape[1]):  # u_j = 2 f_{j-1/2} - u_{j-1}: face averages are exact
        u[:, j] = 2 * fx[:, j - 1] - u[:, j - 1]
    v[0, :] = fy[0, :]
    for i in range(1, v.shape[0]):
        v[i, :] = 2 * fy[i - 1, :] - v[i - 1, :]
    out = helmholtz(u, v, h)
    np.testing.assert_allclose(out["phi"] - out["phi"].mean(), phi0 - phi0.mean(), atol=1e-9)
    assert out["rest_share"] < 1e-20


def test_helmholtz_and_loops_refuse_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        helmholtz(np.full((5, 5), np.nan), np.zeros((5, 5)), 0.1)
    with pytest.raises(ValueError, match="spacing"):
        helmholtz(np.zeros((5, 5)), np.zeros((5, 5)), 0.0)
    field = Rotation()
    for kw in ({"n_points": 0}, {"radii": float("nan")}, {"centers": [1.0, 2.0, 3.0]}):
        args = {"centers": [0.0, 0.0], "radii": 1.0, **kw}
        with pytest.raises(ValueError):
            circulation(field, 0.5, **args)
    with pytest.raises(ValueError, match="polyline"):
        path_dependence(field, torch.zeros(0, 2), torch.zeros(0, 2), 0.5)


@pytest.mark.slow
def test_trained_network_has_curl_well_above_the_exact_field(ring_model):
    field, _ = ring_model
    exact = MixtureField(dataset_mixture("ring"), "vp")
    g = torch.Generator().manual_seed(0)
    for t in (0.05, 0.2, 0.5):
        x = noised_samples(exact, t, 1000, generator=g)
        learned = asymmetry(field, x, t)
        truth = asymmetry(exact, x.double(), t)
        assert truth < 1e-10 and learned > 1e-3, (t, learned, truth)


def test_grid_points_layout():
    xs, pts = grid_points(2.0, 5)
    assert pts.shape == (25, 2)
    img = pts[:, 0].reshape(5, 5)
    assert torch.equal(img[0], xs) and torch.equal(pts[:, 1].reshape(5, 5)[:, 0], xs)
    with pytest.raises(ValueError, match="grid size"):
        grid_points(2.0, 1)


def test_field_helmholtz_of_an_exact_score_is_all_gradient():
    from lab.curl import field_helmholtz
    from lab.data import GaussianMixture
    from lab.fields import MixtureField

    blob = MixtureField(GaussianMixture([[0.3, -0.2], [-0.5, 0.4]], [0.6, 0.8]), "vp")
    split = field_helmholtz(blob, 0.3, extent=2.5, size=64)
    assert split["grad_share"] > 0.999 and split["rest_share"] < 1e-3
