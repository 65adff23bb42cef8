"""Distances against closed forms; likelihood and the Fokker-Planck residual against the
exact mixture."""
import math

import pytest
import torch

from lab.data import GaussianMixture, dataset_mixture
from lab.fields import MixtureField, NetworkField
from lab.metrics import fokker_planck_residual, mmd, nll, noised_samples, sliced_w2, w2
from lab.models import ScoreMLP
from lab.schedules import SCHEDULES


def test_w2_of_a_shift_is_the_shift_length(gen):
    a = torch.randn(500, 2, generator=gen, dtype=torch.float64)
    v = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert w2(a, a + v) == pytest.approx(5.0, rel=1e-9)
    assert w2(a, a) == pytest.approx(0.0, abs=1e-7)  # sqrt of a cost at float rounding


def test_w2_between_gaussians_matches_the_closed_form(gen):
    """W2^2(N(m1, I), N(m2, 4 I)) = |m1 - m2|^2 + 2 (2 - 1)^2 = 9 + 2 in 2-D."""
    a = torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    b = torch.tensor([3.0, 0.0], dtype=torch.float64) + 2 * torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    assert w2(a, b) == pytest.approx(math.sqrt(11.0), rel=0.03)


def test_sliced_w2_closed_forms(gen):
    a = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    v = torch.tensor([3.0, -4.0], dtype=torch.float64)
    # a shift v projects to u.v: E_u[(u.v)^2] = |v|^2 / 2 for uniform directions in 2-D
    assert sliced_w2(a, a + v, n_projections=2000) == pytest.approx(5.0 / math.sqrt(2), rel=0.03)
    # evenly spaced angles integrate (u.v)^2, a trigonometric polynomial, exactly; for a shift the
    # lower control variate is the integrand itself, so the variates remove all the error
    for estimator in ("grid", "cv"):
        assert sliced_w2(a, a + v, n_projections=8, estimator=estimator) == pytest.approx(5.0 / math.sqrt(2), rel=1e-9)
    # N(0, I) against N(0, 4 I): every projection is N(0,1) vs N(0,4), 1-D W2 = 1
    b = 2 * torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    assert sliced_w2(a, b) == pytest.approx(1.0, rel=0.05)
    assert sliced_w2(a[:1000], b) == pytest.approx(1.0, rel=0.08)  # unequal sizes


def test_mmd_matches_the_gaussian_closed_form(gen):
    """With k = exp(-|x-y|^2/2) (h = 1), N(0, I) vs N((1, 0), I) in 2-D:
    MMD^2 = 2/3 - 2/3 exp(-1/6)."""
    a = torch.randn(3000, 2, generator=gen, dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64) + torch.randn(3000, 2, generator=gen, dtype=torch.float64)
    expected = math.sqrt(2 / 3 * (1 - math.exp(-1 / 6)))
    assert mmd(a, b, bandwidth=1.0) == pytest.approx(expected, rel=0.05)
    same = torch.randn(3000, 2, generator=gen, dtype=torch.float64)
    assert mmd(a, same, bandwidth=1.0) < 0.05
    assert mmd(a, b) > 0.1  # median heuristic


def test_distances_refuse_bad_sets():
    for fn in (w2, sliced_w2, mmd):
        with pytest.raises(ValueError, match="dimensions"):
            fn(torch.zeros(5, 2), torch.zeros(5, 3))
        with pytest.raises(ValueError, match="NaN"):
            fn(torch.tensor([[0.0, float("nan")]] * 3), torch.zeros(3, 2))
        with pytest.raises(ValueError, match="non-empty"):
            fn(torch.zeros(0, 2), torch.zeros(3, 2))


def _mixture():
    return GaussianMixture([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], [0.3, 0.2, 0.25],
                           weights=[0.2, 0.5, 0.3])


@pytest.mark.parametrize("schedule", ["vp", "ve", "subvp", "cosine", "ou"])
def test_nll_through_the_exact_field_is_the_true_log_density(schedule, gen):
    """With the exact p_T as prior and tolerances 1e-7, the PF-ODE likelihood of the exact
    score equals -log p_{t_min}(x) to 1e-4 nats (measured: about 2e-6)."""
    field = MixtureField(_mixture(), schedule)
    s = field.schedule
    x = field.mixture.sample(100, generator=gen, dtype=torch.float64)
    got = nll(field, x, rtol=1e-7, atol=1e-7, log_prior=lambda xT: field.log_prob(xT, s.t_max))
    expected = -field.log_prob(x, s.t_min)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # the t_min cutoff is small against p_0 for this smooth mixture
    assert float((expected - (-field.mixture.log_prob(x))).abs().mean()) < 0.01


def test_nll_with_the_gaussian_prior_and_default_tolerances(gen):
    """The default: N(0, prior_std^2 I) at T and tolerances 1e-5. For VP the prior's
    mismatch with p_T (alpha_T = 0.0067) costs under 0.02 nats (measured 0.007)."""
    field = MixtureField(_mixture(), "vp")
    x = field.mixture.sample(100, generator=gen, dtype=torch.float64)
    got = nll(field, x)
    torch.testing.assert_close(got, -field.log_prob(x, field.schedule.t_min), rtol=0, atol=0.02)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_fokker_planck_residual_vanishes_for_the_exact_score(schedule, gen):
    field = MixtureField(_mixture(), schedule)
    s = field.schedule
    for t in (0.1 * s.t_max, 0.5 * s.t_max):
        x = noised_samples(field, t, 200, generator=gen, dtype=torch.float64)
        r = fokker_planck_residual(field, x, t)
        scale = float(field.score(x, t).abs().max())
        assert float(r.abs().max()) < 1e-8 * max(scale, 1.0) * 10, (t, float(r.abs().max()))


def test_fokker_planck_residual_graph_path_agrees_and_bad_times_are_refused(gen):
    field = MixtureField(_mixture(), "vp")
    x = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    plain = fokker_planck_residual(field, x, 0.3)
    graph = fokker_planck_residual(field, x, torch.full((50,), 0.3, dtype=torch.float64), create_graph=True)
    torch.testing.assert_close(graph.detach(), plain)
    with pytest.raises(ValueError, match="one time per point"):
        fokker_planck_residual(field, x, torch.full((3,), 0.3))


def test_fokker_planck_residual_is_large_for_an_untrained_network(gen):
    torch.manual_seed(0)
    net = NetworkField(ScoreMLP(hidden=32, depth=2).double(), "vp")
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    r = fokker_planck_residual(net, x, 0.3)
    assert float(r.norm(dim=1).mean()) > 1.0


def test_fokker_planck_norm_is_zero_for_the_exact_score_and_not_for_a_network(gen):
    """E|sigma^3 R|^2: zero (to rounding) for the exact score at every t, O(1) for an
    untrained network, and differentiable in the network's weights on the graph path."""
    from lab.metrics import fokker_planck_norm

    exact = MixtureField(_mixture(), "ou")
    x = noised_samples(exact, 0.5, 300, generator=gen, dtype=torch.float64)
    for t in (0.05, 0.5, 3.0):
        assert float(fokker_planck_norm(exact, x, t)) < 1e-12
    torch.manual_seed(0)
    net = NetworkField(ScoreMLP(hidden=32, depth=2), "ou")
    assert float(fokker_planck_norm(net, x, 0.5)) > 1e-3
    xs, ts = x.float(), torch.full((300,), 0.5)
    loss = fokker_planck_norm(net, xs, ts, create_graph=True)
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.model.parameters())


def test_truth_and_floor_draws_the_end_law_and_its_floor_shrinks_with_n():
    """The truth is p_{t_min}: its mean and covariance are the noised mixture's (closed
    form); the floor (w2 between two independent draws) falls about as 1/sqrt(n) and is
    reproducible by seed."""
    from lab.metrics import truth_and_floor

    field = MixtureField(_mixture(), "vp")
    s = field.schedule
    law = field.mixture.noised(float(s.alpha(s.t_min)), float(s.sigma(s.t_min)))
    truth, floor = truth_and_floor(field, 20_000, n_floor=500, seed=3)
    assert truth.shape == (20_000, 2)
    torch.testing.assert_close(truth.double().mean(0), law.mean().double(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(truth.double().T), law.cov().double(), atol=0.03, rtol=0)
    small = [truth_and_floor(field, 200, seed=k)[1] for k in range(4)]
    large = [truth_and_floor(field, 3200, seed=k)[1] for k in range(4)]
    assert sum(large) < 0.6 * sum(small)          # 1/sqrt(16) = 0.25 for the sampling noise
    assert truth_and_floor(field, 200, seed=1)[1] == truth_and_floor(field, 200, seed=1)[1] > 0
    with pytest.raises(ValueError, match="n_floor"):
        truth_and_floor(field, 100, n_floor=200)


# --- the solver race -----------------------------------------------------------------------
def test_solver_race_numbers_are_the_solvers_own():
    """Each cell is the W2 of ``sample`` (same starting points, seed, steps = budget / NFE
    per step) to the race's truth; a budget below one step's cost is None."""
    from lab.metrics import RaceResult, solver_race, truth_and_floor
    from lab.solvers import sample

    field = MixtureField(GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3), "vp")
    seen = []
    r = solver_race({"exact": field}, field, ["dpm++2m", "ode_rk4", "ddpm"], budgets=(2, 5), n=300, seed=4,
                    callback=lambda *a: seen.append(a))
    assert isinstance(r, RaceResult) and seen[-1][:2] == (3, 3) and r.n == 300
    truth, floor = truth_and_floor(field, 300, seed=4)
    assert r.floor == floor
    x_T = field.as_input(field.schedule.prior_sample(300, generator=torch.Generator().manual_seed(5)))
    for solver, budget, steps in (("dpm++2m", 5, 5), ("ode_rk4", 5, 1), ("ddpm", 2, 2)):
        own = w2(sample(field, x_T=x_T, solver=solver, steps=steps, seed=4).samples, truth)
        assert r.w2["exact"][solver][r.budgets.index(budget)] == pytest.approx(own, rel=1e-12)
    assert r.w2["exact"]["ode_rk4"][0] is None and r.nfe["ode_rk4"] == [None, 4]
    with pytest.raises(ValueError, match="unknown solver"):
        solver_race({"exact": field}, field, ["nope"])


def test_race_split_reads_which_error_dominates():
    from lab.metrics import RaceResult

    w2s = {"exact": {"a": [0.9, 0.2, 0.11]}, "learned": {"a": [1.0, 0.6, 0.12]}}
    r = RaceResult((5, 10, 20), 0.1, 100, w2s, {"a": [5, 10, 20]})
    assert r.split("a", 5)["dominant"] == "discretisation"      # 0.8 from the solver, 0.1 from the net
    split = r.split("a", 10)                                     # 0.1 from the solver, 0.4 from the net
    assert split["dominant"] == "learning" and split["learning"] == pytest.approx(0.4)
    assert r.split("a", 20)["dominant"] == "neither"             # within 1.5x the floor


def test_a_diverging_run_is_infinitely_far_and_the_race_goes_on():
    from lab.metrics import solver_race

    class Exploding(MixtureField):          # NaN below t = 0.5: every sampler fails there
        def eps(self, x, t):
            out = super().eps(x, t)
            return out * float("nan") if float(t) < 0.5 else out

    mix = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3)
    exact, bad = MixtureField(mix, "vp"), Exploding(mix, "vp")
    r = solver_race({"exact": exact, "learned": bad}, exact, ["ddim", "dpm++2m"], budgets=(5,), n=100)
    assert r.w2["learned"]["ddim"] == [math.inf] and math.isfinite(r.w2["exact"]["ddim"][0])
    assert r.split("ddim", 5)["dominant"] == "diverged" and "(diverged)" in r.markdown()


def test_a_race_of_the_exact_score_against_itself_has_no_learning_error():
    """Both sources start from the same points with the same noise (SDE samplers too), so a
    field raced against itself shows no learning error at all, not sampling noise."""
    from lab.metrics import solver_race

    field = MixtureField(GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3), "vp")
    r = solver_race({"exact": field, "learned": field}, field, ["ddim", "unipc", "ddpm"], budgets=(5, 10), n=150)
    for s in r.w2["exact"]:
        assert r.w2["learned"][s] == r.w2["exact"][s]
        assert all(r.split(s, b)["learning"] == 0 for b in r.budgets)


def _sliced_errors(x, y, directions, seeds=100):
    """The relative RMS error of each estimator's SW2^2 at ``directions``, over seeds,
    against a fine quadrature (4,096 angles: the integrand is smooth and periodic)."""
    ref = sliced_w2(x, y, 4096, estimator="grid") ** 2
    return {est: math.sqrt(sum((sliced_w2(x, y, directions, seed=s, estimator=est) ** 2 - ref) ** 2
                               for s in range(seeds)) / seeds) / ref for est in ("mc", "cv", "grid")}


def test_sliced_w2_control_variates_cut_the_error_of_gaussian_sets():
    """Nguyen & Ho 2024's variates are the projected W2^2 of the fitted Gaussians' bounds:
    for sets that are Gaussian they track the integrand closely (measured: 4x less error)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 2, generator=g, dtype=torch.float64) @ torch.tensor([[1.0, 0.3], [0.0, 0.5]], dtype=torch.float64)
    y = torch.randn(2000, 2, generator=g, dtype=torch.float64) * torch.tensor([0.7, 1.2], dtype=torch.float64) + 1.0
    err = _sliced_errors(x.numpy(), y.numpy(), 16)
    assert err["cv"] < 0.5 * err["mc"], err
    assert err["grid"] < 0.01 * err["cv"], err


def test_sliced_w2_estimators_on_the_lab_data_sets():
    """At equal directions (64) on the lab's data sets, each against itself blurred to
    t = 0.3: the control variates do no worse than Monte Carlo in all (their gain is small
    on multimodal sets, measured 3-37 %), and evenly spaced angles beat both many times over:
    the one-angle integral of 2-D is a smooth periodic function, what a uniform quadrature
    integrates best. The solver page uses them."""
    totals = {"mc": 0.0, "cv": 0.0}
    for name in ("two_moons", "ring", "swiss_roll", "gaussian_grid"):
        exact = MixtureField(dataset_mixture(name), "vp")
        g = torch.Generator().manual_seed(0)
        x, y = (noised_samples(exact, t, 2000, generator=g).numpy() for t in (1e-3, 0.3))
        err = _sliced_errors(x, y, 64, seeds=50)
        assert err["grid"] < 0.1 * min(err["mc"], err["cv"]), (name, err)
        for est in totals:
            totals[est] += err[est] ** 2
    assert totals["cv"] < totals["mc"], totals


def test_sliced_w2_estimator_is_checked():
    a = torch.randn(10, 2)
    with pytest.raises(ValueError, match="unknown estimator 'qmc'"):
        sliced_w2(a, a, estimator="qmc")
    with pytest.raises(ValueError, match="2-D points only"):
        sliced_w2(torch.randn(10, 3), torch.randn(10, 3), estimator="grid")
