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
    v = s.f(t) * x - 0.5 * s.g2(t) * field.score(x, t)
    torch.testing.assert_close(field.velocity(x, t), v)


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
