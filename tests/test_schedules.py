"""Schedules against their defining identities, by finite differences (float64)."""
import pytest
import torch

from lab.schedules import SCHEDULES, get_schedule

NAMES = list(SCHEDULES)


def _times(s, n=41):
    return torch.linspace(s.t_min + 1e-3, s.t_max - 1e-3, n, dtype=torch.float64)


def _ddt(fn, t, h=1e-6):
    return (fn(t + h) - fn(t - h)) / (2 * h)


@pytest.mark.parametrize("name", NAMES)
def test_t_of_lambda_inverts_lambda(name):
    s = get_schedule(name)
    t = _times(s)
    torch.testing.assert_close(s.t_of_lambda(s.lambda_(t)), t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_f_is_dlogalpha_dt(name):
    s = get_schedule(name)
    t = _times(s)
    torch.testing.assert_close(s.f(t), _ddt(s.log_alpha, t), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_g2_is_dsigma2_dt_minus_2f_sigma2(name):
    s = get_schedule(name)
    t = _times(s)
    expected = _ddt(lambda u: s.sigma(u) ** 2, t) - 2 * s.f(t) * s.sigma(t) ** 2
    torch.testing.assert_close(s.g2(t), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_lambda_is_decreasing_and_prior_matches_t_max(name):
    s = get_schedule(name)
    lam = s.lambda_(_times(s))
    assert torch.all(lam[1:] < lam[:-1])
    # the prior matches the spread of unit-scale data pushed forward to t_max
    from lab.data import make_dataset
    g = torch.Generator().manual_seed(0)
    x0 = make_dataset("two_moons", 20_000, seed=0).double()
    xT = s.alpha(s.t_max) * x0 + s.sigma(s.t_max) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    prior = s.prior_sample(20_000, generator=g)
    assert prior.shape == (20_000, 2)
    assert float(prior.std()) == pytest.approx(float(xT.std()), rel=0.03)


def test_vp_preserves_variance_and_matches_song_et_al():
    s = get_schedule("vp")
    t = _times(s)
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t))
    # Song et al. 2021: log alpha = -t^2 (beta1 - beta0)/4 - t beta0 / 2, beta0=0.1, beta1=20
    torch.testing.assert_close(s.log_alpha(t), -t**2 * 19.9 / 4 - t * 0.05)
    torch.testing.assert_close(s.g2(t), 0.1 + 19.9 * t)


def test_closed_forms_of_other_schedules():
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    lin = get_schedule("linear")
    torch.testing.assert_close(lin.alpha(t), 1 - t)
    torch.testing.assert_close(lin.sigma(t), t)
    ve = get_schedule("ve", sigma_min=0.01, sigma_max=8.0)
    torch.testing.assert_close(ve.sigma(torch.tensor([0.0, 1.0], dtype=torch.float64)),
                               torch.tensor([0.01, 8.0], dtype=torch.float64))
    sub = get_schedule("subvp")
    torch.testing.assert_close(sub.sigma(t), 1 - get_schedule("vp").alpha(t) ** 2)
    ou = get_schedule("ou")
    torch.testing.assert_close(ou.sigma(t) ** 2, (1 - torch.exp(-2 * t)) / 2)


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="vp, cosine"):
        get_schedule("nope")
    with pytest.raises(ValueError, match="sigma_min"):
        get_schedule("ve", sigma_min=1.0, sigma_max=0.5)


def test_float_input_gives_float64():
    s = get_schedule("vp")
    assert s.alpha(0.5).dtype == torch.float64
    assert s.alpha(torch.tensor([0.5])).dtype == torch.float32
