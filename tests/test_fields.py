"""Exact fields against autograd and Monte Carlo; conversions; the network wrapper."""
import pytest
import torch

from lab.data import GaussianMixture, dataset_mixture
from lab.fields import EmpiricalField, MixtureField, NetworkField, ScoreField
from lab.models import PotentialMLP, ScoreMLP
from lab.schedules import SCHEDULES


def _mixture():
    cov = torch.tensor([[[0.05, 0.02], [0.02, 0.03]], [[0.01, 0.0], [0.0, 0.04]],
                        [[0.02, -0.01], [-0.01, 0.02]]], dtype=torch.float64)
    return GaussianMixture([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], cov, weights=[0.2, 0.5, 0.3])


def _noised_log_density(mix, x, alpha, sigma):
    """log p_t from torch.distributions, independent of lab's own algebra."""
    a, s = alpha.reshape(-1, 1, 1), sigma.reshape(-1, 1, 1)  # (n, 1, 1) against K components
    comps = torch.distributions.MultivariateNormal(
        a * mix.means, a[..., None] ** 2 * mix.covs + s[..., None] ** 2 * torch.eye(2, dtype=torch.float64))
    return torch.logsumexp(comps.log_prob(x[:, None, :]) + mix.weights.log(), dim=1)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_mixture_score_is_the_gradient_of_the_noised_log_density(schedule, gen):
    mix = _mixture()
    field = MixtureField(mix, schedule)
    s = field.schedule
    t = s.t_min + (s.t_max - s.t_min) * torch.rand(64, generator=gen, dtype=torch.float64)
    x = 2 * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    alpha, sigma = s.alpha(t)[:, None], s.sigma(t)[:, None]
    xg = x.clone().requires_grad_(True)
    logp = _noised_log_density(mix, xg, alpha, sigma)
    (grad,) = torch.autograd.grad(logp.sum(), xg)
    torch.testing.assert_close(field.score(x, t), grad, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(field.log_prob(x, t), logp.detach(), rtol=1e-10, atol=1e-10)
    # eps and score differ by exactly -sigma, for every t given as a float too
    torch.testing.assert_close(field.eps(x, 0.3), -s.sigma(0.3) * field.score(x, 0.3))


@pytest.mark.parametrize("t", [0.05, 0.2, 0.5])
def test_tweedie_x0_matches_monte_carlo_posterior_mean(t, gen):
    """E[x0 | x_t] by Monte Carlo: draw (x0, x_t) pairs, keep x0 whose x_t falls near a
    query point, and average; compare with (x + sigma^2 score) / alpha."""
    mix = _mixture()
    field = MixtureField(mix, "vp")
    s = field.schedule
    alpha, sigma = float(s.alpha(t)), float(s.sigma(t))
    x0 = mix.sample(2_000_000, generator=gen, dtype=torch.float64)
    xt = alpha * x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    queries = alpha * mix.means + 0.5 * sigma
    for q in queries:
        near = (xt - q).norm(dim=1) < 0.1 * sigma
        assert near.sum() > 500
        mc = x0[near].mean(0)
        exact = field.x0(q[None], t)[0]
        tweedie = (q + sigma**2 * field.score(q[None], t)[0]) / alpha
        torch.testing.assert_close(exact, tweedie)
        se = x0[near].std(0) / near.sum().sqrt()
        assert torch.all((mc - exact).abs() < 5 * se + 0.02 * sigma / alpha), (mc, exact, se)


def test_empirical_field_denoises_to_the_nearest_training_point():
    data = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    field = EmpiricalField(data, "vp")
    t = 0.02  # sigma about 0.07: posterior mass sits on the nearest point
    x = data + 0.05
    torch.testing.assert_close(field.x0(x, t), data, atol=1e-6, rtol=0)
    # at large t the denoiser tends to the data mean (alpha -> 0)
    torch.testing.assert_close(field.x0(torch.zeros(1, 2, dtype=torch.float64), 0.999),
                               data.mean(0, keepdim=True), atol=0.05, rtol=0)


def test_fields_follow_the_protocol_and_handle_time_vectors(gen):
    mix = dataset_mixture("ring")
    fields = [MixtureField(mix, "vp"), EmpiricalField(mix.sample(50, generator=gen), "vp"),
              NetworkField(ScoreMLP(), "vp"), NetworkField(PotentialMLP(), "vp")]
    x = torch.randn(10, 2, generator=gen)
    for f in fields:
        assert isinstance(f, ScoreField)
        for t in (0.5, torch.full((10,), 0.5)):
            for out in (f.eps(x, t), f.score(x, t), f.x0(x, t), f.velocity(x, t)):
                assert out.shape == (10, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="one time per point"):
        fields[0].eps(x, torch.full((3,), 0.5))


def test_conversions_are_consistent(gen):
    field = MixtureField(_mixture(), "cosine")
    s, t = field.schedule, 0.4
    x = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    alpha, sigma = s.alpha(t), s.sigma(t)
    torch.testing.assert_close(alpha * field.x0(x, t) + sigma * field.eps(x, t), x)
    # (the velocity is held to ground truth by the continuity-equation test below)


def test_potential_network_eps_is_a_gradient(gen):
    """The Jacobian of a PotentialMLP's eps is symmetric (it is a Hessian), untrained."""
    torch.manual_seed(0)
    field = NetworkField(PotentialMLP(hidden=32, depth=2).double(), "vp")
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda p: field.eps(p[None], 0.3)[0], xi)
        torch.testing.assert_close(J, J.T, rtol=1e-8, atol=1e-10)
    free = NetworkField(ScoreMLP(hidden=32, depth=2).double(), "vp")
    J = torch.autograd.functional.jacobian(lambda p: free.eps(p[None], 0.3)[0], x[0])
    assert (J - J.T).abs().max() > 1e-4


def test_one_gaussian_denoiser_is_the_closed_form(gen):
    """For x0 ~ N(m, C): E[x0 | x_t] = m + alpha C (alpha^2 C + sigma^2 I)^-1 (x - alpha m)."""
    m = torch.tensor([0.3, -0.7], dtype=torch.float64)
    C = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    for schedule in SCHEDULES:
        field = MixtureField(GaussianMixture(m[None], C[None]), schedule)
        s = field.schedule
        for t in (s.t_min * 10, 0.3 * s.t_max, 0.9 * s.t_max):
            a, sg = s.alpha(t), s.sigma(t)
            x = torch.randn(16, 2, generator=gen, dtype=torch.float64)
            K = a * C @ torch.linalg.inv(a**2 * C + sg**2 * torch.eye(2, dtype=torch.float64))
            expected = m + (x - a * m) @ K.T
            torch.testing.assert_close(field.x0(x, t), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_probability_flow_transports_the_exact_density(schedule, gen):
    """Continuity equation of the PF-ODE, d/dt log p_t = -div v - v . grad log p_t, with
    log p_t the exact noised density: checks f, g^2, the score and velocity together."""
    field = MixtureField(_mixture(), schedule)
    s = field.schedule
    x = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    for t in (0.1 * s.t_max, 0.4 * s.t_max, 0.8 * s.t_max):
        h = 1e-5 * s.t_max
        dlogp = (field.log_prob(x, t + h) - field.log_prob(x, t - h)) / (2 * h)
        xg = x.clone().requires_grad_(True)
        v = field.velocity(xg, t)
        div = sum(torch.autograd.grad(v[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2))
        rhs = -div - (v * field.score(x, t)).sum(1)
        torch.testing.assert_close(dlogp, rhs.detach(), rtol=1e-5, atol=1e-5 * float(dlogp.abs().max()))


def test_fields_refuse_malformed_points():
    field = MixtureField(_mixture(), "vp")
    for bad in (torch.zeros(5, 3), torch.zeros(5, 2, dtype=torch.int64), [[0.0, 0.0]]):
        with pytest.raises(ValueError, match=r"points \(n, 2\)"):
            field.eps(bad, 0.5)


def test_point_masses_have_no_density_at_sigma_zero():
    mix = GaussianMixture(torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="sigma > 0"):
        mix.log_prob(torch.zeros(2, 2))


def test_swirl_field_has_known_curl_and_keeps_a_symmetric_law():
    import math

    from lab.curl import circulation, curl
    from lab.fields import SwirlField
    from lab.metrics import noised_samples, sliced_w2
    from lab.solvers import sample

    blob = MixtureField(GaussianMixture([[0.0, 0.0]], 0.5), "vp")    # radially symmetric p_t
    swirl = SwirlField(blob, 2.0)
    x = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(curl(swirl, x, 0.3), torch.full((50,), 4.0, dtype=torch.float64))
    assert float(circulation(swirl, 0.3, [0.2, -0.1], 0.6)) == pytest.approx(2 * 2.0 * math.pi * 0.36, rel=1e-9)
    g = torch.Generator().manual_seed(0)
    x_T = blob.schedule.prior_sample(4000, generator=g, dtype=torch.float64)
    plain = sample(blob, x_T=x_T, solver="ode_heun", steps=100).samples
    swirled = sample(swirl, x_T=x_T, solver="ode_heun", steps=100).samples
    truth = noised_samples(blob, blob.schedule.t_min, 4000, generator=g)
    floor = sliced_w2(plain, truth)
    assert float((swirled - plain).norm(dim=1).mean()) > 0.3      # every point is moved...
    assert sliced_w2(swirled, truth) < 2 * floor + 0.01           # ...the law is not
    moons = MixtureField(dataset_mixture("two_moons"), "vp")       # not symmetric: the law changes
    moved = sample(SwirlField(moons, 2.0), x_T=x_T, solver="ode_heun", steps=100).samples
    kept = sample(moons, x_T=x_T, solver="ode_heun", steps=100).samples
    assert sliced_w2(moved, kept) > 5 * floor
