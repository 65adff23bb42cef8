"""Stochastic interpolants (lab.interpolants) held to what must be true of them: their ends,
closed forms between Gaussians, Monte Carlo draws of (x0, x1, z), the transport equation, the
VP schedule after a change of time, and the lab's ODE solvers carrying the source to the target."""
import math

import pytest
import torch

from lab.curl import asymmetry, curl
from lab.data import GaussianMixture, dataset_mixture, end_law, make_dataset
from lab.fields import MixtureField
from lab.interpolants import (INTERPOLANTS, FlowScoreField, Interpolant, InterpolantField, VelocityField,
                              get_interpolant, score_from_velocity, straightness, velocity_error)
from lab.metrics import nll, w2
from lab.schedules import get_schedule
from lab.solvers import FLOW_SOLVERS, sample
from lab.train import TrainConfig, _sinkhorn_pairs, load, reflow, save, train

FAMILIES = [("linear", "zero"), ("linear", "brownian_bridge"), ("trig", "brownian_bridge"), ("gvp", "zero"),
            ("gvp", "sin2"), ("encoding_decoding", "sin2"), ("linear", "scaled")]


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", INTERPOLANTS)
def test_every_family_has_the_ends_of_an_interpolant(name):
    I = get_interpolant(name)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert I.alpha(ends).tolist() == pytest.approx([1, 0], abs=1e-12)
    assert I.beta(ends).tolist() == pytest.approx([0, 1], abs=1e-12)
    assert I.gamma(ends).tolist() == pytest.approx([0, 0], abs=1e-12)


@pytest.mark.parametrize("name, gamma", FAMILIES)
def test_derivatives_are_those_of_the_coefficients(name, gamma):
    """alpha', beta' and gamma gamma' against central differences of alpha, beta, gamma^2 / 2."""
    I = get_interpolant(name, gamma, a=2.0)
    t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    t = t[(t - 0.5).abs() > 0.02]          # the encoding-decoding family's kink at 1/2
    h = 1e-6
    for f, df in ((I.alpha, I.d_alpha), (I.beta, I.d_beta), (lambda u: I.gamma(u) ** 2 / 2, I.gamma_dgamma)):
        assert torch.allclose(df(t), (f(t + h) - f(t - h)) / (2 * h), atol=1e-6)


def test_interpolants_with_wrong_ends_or_settings_are_refused():
    one = torch.ones_like
    bad = Interpolant("backwards", lambda t: t, lambda t: 1 - t, torch.zeros_like, one, lambda t: -one(t),
                      torch.zeros_like)
    with pytest.raises(ValueError, match=r"alpha\(0\) = 0"):
        get_interpolant(bad)
    with pytest.raises(ValueError, match="unknown interpolant"):
        get_interpolant("straight")
    with pytest.raises(ValueError, match="unknown gamma"):
        get_interpolant("linear", "loud")
    with pytest.raises(ValueError, match="sin2"):
        get_interpolant("encoding_decoding", "zero")
    for gamma, a in (("sin2", 1.0), ("scaled", 4.0)):       # gamma reaches 1 inside: alpha' and beta' blow up
        with pytest.raises(ValueError, match="needs gamma < 1 inside"):
            get_interpolant("trig", gamma, a)
    assert get_interpolant("trig", "scaled", 3.9).a == 3.9
    with pytest.raises(ValueError, match="N\\(0, I\\)"):
        InterpolantField("two_moons", "circles", "one_sided")
    with pytest.raises(ValueError, match="unknown source"):
        InterpolantField("moons", "circles")
    f = InterpolantField("gaussian", "ring")
    with pytest.raises(ValueError, match=r"tau \(0: the source, 1: the target\) must lie in"):
        f.b(torch.zeros(3, 2), 1.5)
    with pytest.raises(ValueError, match="NaN"):
        f.b(torch.full((3, 2), float("nan")), 0.5)


def test_gaussian_to_gaussian_conditional_means_are_the_closed_form():
    """Source N(0, I), target N(m, s^2 I), linear interpolant with gamma = sqrt(tau (1 - tau)):
    x ~ N(tau m, v I), v = (1 - tau)^2 + tau^2 s^2 + tau (1 - tau), and each conditional mean is a
    linear regression on x - tau m: E[x1 | x] = m + tau s^2 (x - tau m) / v, E[x0 | x] =
    (1 - tau)(x - tau m) / v, E[z | x] = gamma (x - tau m) / v."""
    m, s = torch.tensor([1.5, -0.5], dtype=torch.float64), 0.4
    f = InterpolantField("gaussian", GaussianMixture(m[None], s), get_interpolant("linear", "brownian_bridge"))
    x = torch.randn(50, 2, generator=gen(0), dtype=torch.float64) * 2
    for tau in (0.0, 0.2, 0.5, 0.9, 1.0):
        v = (1 - tau) ** 2 + tau**2 * s**2 + tau * (1 - tau)
        r = (x - tau * m) / v
        g = math.sqrt(tau * (1 - tau))
        assert torch.allclose(f.target_mean(x, tau), m + tau * s**2 * r, atol=1e-12)
        assert torch.allclose(f.source_mean(x, tau), (1 - tau) * r, atol=1e-12)
        assert torch.allclose(f.noise_mean(x, tau), g * r, atol=1e-12)
        assert torch.allclose(f.s(x, tau), -r, atol=1e-12)
        ggd = (1 - 2 * tau) / 2
        assert torch.allclose(f.b(x, tau), -(1 - tau) * r + m + tau * s**2 * r + ggd * r, atol=1e-12)


def test_an_anisotropic_target_with_a_time_per_point_is_the_closed_form():
    """The general path (a 2 x 2 solve a pair: anisotropic components, or one tau per point):
    source N(0, I), target N(m, C) with C not a multiple of I, linear with gamma = sqrt(tau (1 -
    tau)): S = ((1 - tau)^2 + gamma^2) I + tau^2 C, r = S^-1 (x - tau m), E[x1 | x] = m + tau C r,
    E[x0 | x] = (1 - tau) r, E[z | x] = gamma r, s = -r, b = -E[x0 | x] + E[x1 | x] + gamma gamma' r."""
    m = torch.tensor([0.5, -1.0], dtype=torch.float64)
    C = torch.tensor([[0.3, 0.12], [0.12, 0.1]], dtype=torch.float64)
    f = InterpolantField("gaussian", GaussianMixture(m[None], C[None]), get_interpolant("linear", "brownian_bridge"))
    n = 60
    x = torch.randn(n, 2, generator=gen(10), dtype=torch.float64) * 1.5
    tau = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    t = tau[:, None, None]
    g2 = tau * (1 - tau)
    S = ((1 - t) ** 2 + g2[:, None, None]) * torch.eye(2, dtype=torch.float64) + t**2 * C
    r = torch.linalg.solve(S, x - tau[:, None] * m)
    target = m + tau[:, None] * r @ C.T
    assert torch.allclose(f.target_mean(x, tau), target, atol=1e-12)
    assert torch.allclose(f.source_mean(x, tau), (1 - tau)[:, None] * r, atol=1e-12)
    assert torch.allclose(f.noise_mean(x, tau), g2.sqrt()[:, None] * r, atol=1e-12)
    assert torch.allclose(f.s(x, tau), -r, atol=1e-12)
    ggd = (1 - 2 * tau)[:, None] / 2
    assert torch.allclose(f.b(x, tau), -(1 - tau)[:, None] * r + target + ggd * r, atol=1e-12)


@pytest.mark.parametrize("name, gamma", [("linear", "brownian_bridge"), ("trig", "brownian_bridge"),
                                         ("encoding_decoding", "sin2")])
def test_conditional_means_agree_with_monte_carlo_draws(name, gamma):
    """Draw (x0, x1, z) independently and x_tau from them: a conditional mean m(x_tau) of a
    quantity Y leaves Y - m(x_tau) uncorrelated with every function of x_tau (the tower
    property). Checked for x0, x1, z and the velocity's target alpha' x0 + beta' x1 + gamma' z
    against test functions of x_tau, each mean within 4.5 standard errors of zero; the same
    test catches a wrong mean (a 5 % error on b)."""
    I = get_interpolant(name, gamma)
    source, target = dataset_mixture("ring"), dataset_mixture("two_moons")
    f = InterpolantField(source, target, I)
    n, tau = 200_000, 0.35
    g = gen(1)
    x0, x1 = source.sample(n, generator=g), target.sample(n, generator=g)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.tensor(tau, dtype=torch.float64)
    a, b, gm = I.alpha(t), I.beta(t), I.gamma(t)
    xt = a * x0 + b * x1 + gm * z
    velocity_target = I.d_alpha(t) * x0 + I.d_beta(t) * x1 + (I.gamma_dgamma(t) / gm) * z
    tests = torch.stack([torch.ones(n, dtype=torch.float64), xt[:, 0], xt[:, 1], torch.tanh(xt[:, 0] * xt[:, 1]),
                         torch.sin(2 * xt[:, 0]), (xt**2).sum(1).neg().exp()], 1)

    def uncorrelated(y, m):
        prod = (y - m)[:, :, None] * tests[:, None, :]        # (n, 2, tests)
        mean, se = prod.mean(0), prod.std(0) / math.sqrt(n)
        return bool(((mean.abs() / se) < 4.5).all())

    for y, m in ((x0, f.source_mean(xt, tau)), (x1, f.target_mean(xt, tau)), (z, f.noise_mean(xt, tau)),
                 (velocity_target, f.b(xt, tau))):
        assert uncorrelated(y, m)
    assert not uncorrelated(velocity_target, 1.05 * f.b(xt, tau))


@pytest.mark.parametrize("name, gamma, target", [(*family, "two_moons") for family in FAMILIES]
                         + [("trig", "brownian_bridge", "pinwheel")])
def test_the_density_moves_by_the_velocity(name, gamma, target):
    """The transport equation d rho/dtau + div(rho b) = 0, by central differences on a grid
    (h = 1e-4 in tau and in x), between two of the lab's data sets (pinwheel's components are
    anisotropic: the general path): its residual is a small fraction of d rho/dtau's size."""
    f = InterpolantField(dataset_mixture("ring"), dataset_mixture(target), get_interpolant(name, gamma, a=2.0))
    u = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)
    x = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
    h = 1e-4
    for tau in (0.3, 0.7):
        drho = (f.log_prob(x, tau + h).exp() - f.log_prob(x, tau - h).exp()) / (2 * h)
        div = torch.zeros(x.shape[0], dtype=torch.float64)
        for k in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[k] = h
            flux = [f.log_prob(y, tau).exp() * f.b(y, tau)[:, k] for y in (x + e, x - e)]
            div += (flux[0] - flux[1]) / (2 * h)
        assert float((drho + div).abs().max()) < 1e-5 * float(drho.abs().max()) + 1e-9


def test_the_score_is_the_gradient_of_the_log_density_and_the_noise_mean_its_multiple():
    f = InterpolantField(dataset_mixture("ring"), dataset_mixture("circles"), get_interpolant("trig"))
    x = torch.randn(40, 2, generator=gen(2), dtype=torch.float64).requires_grad_(True)
    for tau in (0.2, 0.6):
        grad, = torch.autograd.grad(f.log_prob(x, tau).sum(), x)
        assert torch.allclose(f.s(x, tau), grad, atol=1e-10)
        gm = float(f.interpolant.gamma(torch.tensor(tau, dtype=torch.float64)))
        assert torch.allclose(f.noise_mean(x, tau), -gm * f.s(x, tau), atol=1e-12)


def test_the_vp_schedule_is_the_one_sided_trig_interpolant_after_a_change_of_time():
    """VP's x_t = alpha_t x + sigma_t eps with alpha^2 + sigma^2 = 1 is the one-sided interpolant
    cos(pi tau/2) z + sin(pi tau/2) x1 at tau(t) = (2/pi) arcsin(alpha_t): the same marginals,
    so the same probability flow, with the chain rule: v_VP(x, t) = tau'(t) b(tau(t), x), where
    tau'(t) = (2/pi) alpha_t' / sigma_t = (2/pi) f(t) alpha_t / sigma_t."""
    target = dataset_mixture("two_moons")
    vp = MixtureField(target, get_schedule("vp"))
    flow = InterpolantField("gaussian", target, "one_sided")
    x = torch.randn(200, 2, generator=gen(3), dtype=torch.float64) * 1.5
    for t in (0.05, 0.2, 0.5, 0.9):
        a, sg, f = (float(v(torch.tensor(t, dtype=torch.float64))) for v in (vp.schedule.alpha, vp.schedule.sigma,
                                                                              vp.schedule.f))
        tau, dtau = 2 / math.pi * math.asin(a), 2 / math.pi * f * a / sg
        assert torch.allclose(vp.velocity(x, t), dtau * flow.b(x, tau), atol=1e-9)
        assert torch.allclose(vp.score(x, t), flow.s(x, tau), atol=1e-9)
        assert torch.allclose(vp.x0(x, t), flow.target_mean(x, tau), atol=1e-9)


@pytest.mark.parametrize("source, target", [("gaussian", "two_moons"), ("two_moons", "circles")])
def test_rk4_on_the_exact_field_reaches_the_target_at_its_noise_floor(source, target):
    """``sample(field, solver="ode_rk4")`` from the source at t = 1 (tau = 0) ends on the
    target: exact W2 to target draws within 1.2x the floor (W2 between two target draws of the
    same size, averaged over three pairs)."""
    torch.manual_seed(0)
    f = InterpolantField(source, target, "linear")
    n = 1000
    traj = sample(f, n=n, solver="ode_rk4", steps=20, seed=0)
    assert traj.nfe == 80 and traj.ts[0] == 1.0 and traj.ts[-1] == 0.0
    g = gen(4)
    draws = [f.target.sample(n, generator=g) for _ in range(4)]
    floor = sum(float(w2(draws[0], d)) for d in draws[1:]) / 3
    dist = sum(float(w2(traj.samples.double(), d)) for d in draws[1:]) / 3
    assert dist <= 1.2 * floor, (dist, floor)
    # the trajectory starts on the source: the first state is a draw of it
    start = f.source.sample(n, generator=g)
    assert float(w2(traj.xs[0].double(), start)) <= 1.5 * float(w2(f.source.sample(n, generator=g), start))


def test_a_flow_takes_only_the_ode_solvers_and_time_grids():
    f = InterpolantField("gaussian", "ring")
    for solver in ("ddim", "dpm++2m", "euler_maruyama"):
        with pytest.raises(ValueError, match="a flow has neither"):
            sample(f, n=10, solver=solver)
    with pytest.raises(ValueError, match="noise level"):
        sample(f, n=10, solver="ode_euler", spacing="logsnr")
    with pytest.raises(ValueError, match="no x_t = alpha x0"):
        f.eps(torch.zeros(2, 2), 0.5)
    for solver in FLOW_SOLVERS:
        traj = sample(f, n=50, solver=solver, steps=10, seed=1)
        assert torch.isfinite(traj.samples).all()


@pytest.mark.parametrize("eps", [0.0, 0.5, 2.0])
def test_the_interpolants_sde_keeps_the_marginals_for_every_eps(eps):
    """dX = (b + eps s) dtau + sqrt(2 eps) dW with the exact fields: from N(0, I) to N(m, s^2 I)
    every eps ends on the target (its mean and std, to the Euler-Maruyama error of 1,000
    steps and the sampling error of 20,000 points)."""
    m, s = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5
    f = InterpolantField("gaussian", GaussianMixture(m[None], s), "linear")
    x = sample(f, n=20_000, solver="flow_sde", eta=eps, steps=1000, seed=2).samples.double()
    assert torch.allclose(x.mean(0), m, atol=0.03)
    assert x.std(0).tolist() == pytest.approx([s, s], abs=0.03)


def test_the_interpolants_sde_samples_a_flow_only():
    with pytest.raises(ValueError, match="flow_sde is the stochastic interpolant's own SDE"):
        sample(MixtureField(dataset_mixture("ring"), "vp"), n=10, solver="flow_sde")
    f = InterpolantField("gaussian", "ring")
    assert sample(f, n=10, solver="flow_sde", eta=0.0, steps=10, seed=0).nfe == 10   # no score calls at eps = 0
    assert sample(f, n=10, solver="flow_sde", eta=1.0, steps=10, seed=0).nfe == 20


@pytest.mark.parametrize("source, interpolant", [("gaussian", "linear"), ("ring", "trig")])
def test_the_nll_of_a_flow_is_the_targets_exact_log_density(source, interpolant):
    """lab.metrics.nll integrates the flow's velocity and its exact divergence from the target
    back to the source: with the exact field it returns -log rho_1(x), the target's own exact
    log-density (to the ODE's tolerance)."""
    f = InterpolantField(source, "two_moons", interpolant)
    x = f.target.sample(64, generator=gen(5)).double()
    got = nll(f, x, rtol=1e-7, atol=1e-7)
    assert torch.allclose(got, -f.target.log_prob_noised(x), atol=2e-3)
    assert torch.allclose(got, -f.log_prob(x, 1.0), atol=2e-3)


def test_an_interpolant_from_a_gaussian_is_a_diffusion_that_every_solver_samples():
    """From N(0, I) an interpolant is the diffusion beta x1 + sqrt(alpha^2 + gamma^2) eps: the
    linear one is the lab's linear schedule; as a score field its probability-flow velocity is
    the interpolant's (-b in the lab's time); DPM-Solver++ at 20 steps and DDPM on it reach the
    law they end at (the target at t_min = 1e-3, where the Brownian bridge's gamma is still 0.03)
    at its noise floor."""
    lin = InterpolantField("gaussian", "two_moons", "linear").as_diffusion().schedule
    ref = get_schedule("linear")
    t = torch.linspace(0.01, 0.99, 25, dtype=torch.float64)
    for name in ("alpha", "sigma", "f", "g2", "lambda_"):
        assert torch.allclose(getattr(lin, name)(t), getattr(ref, name)(t), atol=1e-10), name
    lam = ref.lambda_(t)
    assert torch.allclose(lin.t_of_lambda(lam), t, atol=1e-10)
    f = InterpolantField("gaussian", "two_moons", get_interpolant("trig", "brownian_bridge"))
    d = f.as_diffusion()
    x = torch.randn(100, 2, generator=gen(6), dtype=torch.float64)
    for tt in (0.1, 0.5, 0.9):
        assert torch.allclose(d.velocity(x, tt), f.velocity(x, tt), atol=1e-8)
        assert torch.allclose(d.score(x, tt), f.score(x, tt), atol=1e-8)
    g = gen(7)
    draws = [end_law(f.target, d.schedule).sample(1000, generator=g) for _ in range(4)]
    floor = sum(float(w2(draws[0], e)) for e in draws[1:]) / 3
    for solver, steps in (("dpm++2m", 20), ("ddpm", 500)):    # three seeds: one scatters by 30 %
        dist = [float(w2(sample(d, n=1000, solver=solver, steps=steps, seed=seed).samples.double(), e))
                for seed in range(3) for e in draws[1:]]
        assert sum(dist) / len(dist) <= 1.2 * floor, solver
    with pytest.raises(ValueError, match="only an interpolant from N\\(0, I\\)"):
        InterpolantField("ring", "two_moons").as_diffusion()


def test_the_velocity_from_a_gaussian_is_a_gradient_and_between_data_sets_it_is_not():
    """From N(0, I) the exact velocity is a x + c s(x), a combination of two gradients: no curl
    (to float64 round-off). Between two data sets under independent coupling it is not a
    gradient, so it is not the optimal transport's velocity (Benamou & Brenier: that one is):
    its Jacobian asymmetry on rho_tau is large (0.5 measured at tau = 1/2)."""
    def on_rho(f, tau, n=1000):
        g, I, tt = gen(8), f.interpolant, torch.tensor(tau, dtype=torch.float64)
        return (I.alpha(tt) * f.source.sample(n, generator=g) + I.beta(tt) * f.target.sample(n, generator=g)
                + I.gamma(tt) * torch.randn(n, 2, generator=g, dtype=torch.float64))

    for interpolant in ("linear", "trig"):
        f = InterpolantField("gaussian", "two_moons", interpolant)
        for tau in (0.25, 0.75):
            assert float(curl(f, on_rho(f, tau), 1 - tau, of="velocity").abs().max()) < 1e-12
    f = InterpolantField("two_moons", "circles", "linear")
    assert asymmetry(f, on_rho(f, 0.5), 0.5, of="velocity") > 0.2
    assert asymmetry(f, on_rho(f, 0.5), 0.5, of="score") < 1e-12      # its score is still a gradient


# --- training a velocity (TrainConfig(objective="velocity")) ---------------------------------------
@pytest.fixture(scope="module")
def moons():
    return make_dataset("two_moons", 20_000, seed=0)


def _on_rho(f, tau, n=2000, seed=8):
    g, I, tt = gen(seed), f.interpolant, torch.tensor(tau, dtype=torch.float64)
    return (I.alpha(tt) * f.source.sample(n, generator=g) + I.beta(tt) * f.target.sample(n, generator=g)
            + I.gamma(tt) * torch.randn(n, 2, generator=g, dtype=torch.float64))


def test_a_trained_velocity_approaches_the_exact_one_and_is_as_straight(moons):
    """Albergo et al.'s L_b from N(0, I) to two_moons (linear interpolant, 1,500 steps of 256):
    the learned b's error to the exact field's, relative to its size on rho_tau, is small at
    every tau, and the learned flow's straightness is the exact flow's (0.87 here: independent
    coupling's paths curve, and a well-trained flow curves as much)."""
    f, history = train(moons, TrainConfig(objective="velocity", steps=1500, batch_size=256))
    exact = InterpolantField("gaussian", "two_moons", "linear")
    assert isinstance(f, VelocityField) and history["loss"][-1] < history["loss"][0]
    for tau in (0.1, 0.5, 0.9):
        pts = _on_rho(exact, tau)
        truth = exact.b(pts, tau)
        err = float(((f.b(pts.float(), tau).double() - truth) ** 2).sum(1).mean() / (truth**2).sum(1).mean())
        assert err < 0.05, (tau, err)
    s_learned, s_exact = straightness(f), straightness(exact)
    assert abs(s_learned - s_exact) < 0.15 * s_exact, (s_learned, s_exact)


def test_minibatch_ot_straightens_the_flow_and_one_euler_step_nearly_suffices(moons):
    """Tong et al.'s OT-CFM claim, measured: pairing each batch by the exact assignment makes the
    flow's paths nearly straight (straightness 0.003 against 0.85 here; the target: at least
    halved), so one Euler step lands near the data (W2 1.9x the floor against 16x)."""
    common = dict(objective="velocity", steps=1000, batch_size=256)
    independent, _ = train(moons, TrainConfig(**common))
    ot, _ = train(moons, TrainConfig(**common, coupling="ot"))
    assert straightness(ot) < 0.5 * straightness(independent)
    truth = dataset_mixture("two_moons").sample(2000, generator=gen(9))
    one_step = {name: float(w2(sample(f, n=2000, solver="ode_euler", steps=1, seed=0).samples.double(), truth))
                for name, f in (("independent", independent), ("ot", ot))}
    assert one_step["ot"] < 0.5 * one_step["independent"], one_step


def test_velocity_training_takes_any_source_and_refuses_what_it_cannot_train(moons):
    f, _ = train(moons, TrainConfig(objective="velocity", steps=50, batch_size=64, interpolant="trig"),
                 source="circles")
    assert f.source.n_components == dataset_mixture("circles").n_components
    assert torch.isfinite(sample(f, n=20, solver="ode_rk4", steps=5, seed=0).samples).all()
    with pytest.raises(ValueError, match="does not follow from its velocity"):
        sample(f, n=20, solver="flow_sde", eta=1.0, steps=5)
    with pytest.raises(ValueError, match="objective='velocity'"):
        train(moons, TrainConfig(steps=5), source="gaussian")
    with pytest.raises(ValueError, match="needs a flow's objective"):
        TrainConfig(coupling="ot")
    with pytest.raises(ValueError, match="fp_weight=0"):
        TrainConfig(objective="velocity", fp_weight=1.0)
    with pytest.raises(ValueError, match="coupling"):
        TrainConfig(objective="velocity", coupling="sinkhorn!")
    with pytest.raises(ValueError, match="sin2"):
        TrainConfig(objective="velocity", interpolant="encoding_decoding", gamma="zero")


# --- the score of a flow: from b (a Gaussian source), or learned (L_s, L_eta) ---------------------
@pytest.mark.parametrize("name, gamma", [("linear", "zero"), ("linear", "brownian_bridge"), ("gvp", "zero"),
                                         ("trig", "brownian_bridge"), ("one_sided", "zero"),
                                         ("encoding_decoding", "sin2")])
def test_from_a_gaussian_the_score_follows_from_the_velocity(name, gamma):
    """score_from_velocity of the exact b is the exact score s at every tau in [0, 1), the
    source's own score -x at tau = 0 included."""
    f = InterpolantField("gaussian", "two_moons", get_interpolant(name, gamma))
    for tau in (0.0, 0.2, 0.3, 0.5, 0.8, 0.97):
        x = _on_rho(f, tau, n=500)
        got = score_from_velocity(f.interpolant, f.b(x, tau), x, tau)
        assert torch.allclose(got, f.s(x, tau), atol=1e-8, rtol=1e-6), (name, tau)


def test_velocity_error_is_the_relative_l2_error_on_rho_tau():
    """A field whose velocity is the exact one scaled by 1.1 (or its score by 0.8) has relative
    error 0.1 (0.2) at every tau."""
    exact = InterpolantField("gaussian", "two_moons", get_interpolant("linear", "brownian_bridge"))

    class Scaled:
        device = None

        def b(self, x, tau):
            return 1.1 * exact.b(x.double(), tau)

        def s(self, x, tau):
            return 0.8 * exact.s(x.double(), tau)

    assert velocity_error(Scaled(), exact, n=500) == pytest.approx(dict.fromkeys((0.1, 0.25, 0.5, 0.75, 0.9), 0.1), rel=1e-5)
    assert velocity_error(Scaled(), exact, taus=(0.5,), n=500, of="score")[0.5] == pytest.approx(0.2, rel=1e-5)


@pytest.fixture(scope="module")
def circles():
    return make_dataset("circles", 20_000, seed=0)


def test_a_learned_denoiser_gives_a_two_sided_flow_its_score_and_its_sde(circles):
    """two_moons -> circles, linear with a Brownian-bridge gamma: L_eta's denoiser gives the
    score within 20% of the exact one's on rho_tau inside, L_s's within 40% (its target z / gamma
    has more variance: why the paper prefers L_eta), and with the learned velocity the
    interpolant's SDE at eps = 0.5 lands on circles."""
    I = get_interpolant("linear", "brownian_bridge")
    exact = InterpolantField("two_moons", "circles", I)
    common = dict(steps=1000, batch_size=512, interpolant="linear", gamma="brownian_bridge")
    v, _ = train(circles, TrainConfig(objective="velocity", **common), source="two_moons")
    errors = {}
    for objective in ("denoiser", "score"):
        s, history = train(circles, TrainConfig(objective=objective, **common), source="two_moons")
        assert isinstance(s, FlowScoreField) and s.kind == objective
        errors[objective] = velocity_error(s, exact, taus=(0.25, 0.5, 0.75), n=2000, of="score")
    assert max(errors["denoiser"].values()) < 0.2, errors
    assert max(errors["score"].values()) < 0.4, errors
    assert torch.isfinite(s.s(torch.zeros(3, 2), 0.0)).all()          # the ends: the nearest trained tau
    f = v.with_score(train(circles, TrainConfig(objective="denoiser", **common), source="two_moons")[0])
    assert f.has_score and not v.has_score
    truth = dataset_mixture("circles").sample(2000, generator=gen(9))
    out = sample(f, n=2000, solver="flow_sde", eta=0.5, steps=200, seed=0).samples.double()
    floor = w2(dataset_mixture("circles").sample(2000, generator=gen(3)), truth)
    assert w2(out, truth) < 1.6 * floor


def test_score_losses_need_latent_noise_and_pairs_must_match():
    with pytest.raises(ValueError, match="gamma='brownian_bridge'"):
        TrainConfig(objective="denoiser", interpolant="linear")
    with pytest.raises(ValueError, match="gamma='brownian_bridge'"):
        TrainConfig(objective="score", interpolant="one_sided")
    x = make_dataset("two_moons", 100, seed=0)
    with pytest.raises(ValueError, match="source_points"):
        train(x, TrainConfig(objective="velocity", coupling="paired", steps=2))
    with pytest.raises(ValueError, match="source_points"):
        train(x, TrainConfig(objective="velocity", steps=2), source_points=x)
    with pytest.raises(ValueError, match="100 data and 99 source points"):
        train(x, TrainConfig(objective="velocity", coupling="paired", steps=2), source_points=x[:99])
    with pytest.raises(ValueError, match="equal batches"):
        _sinkhorn_pairs(x[:10], x[:12], 0.05, gen(0))
    ring = dataset_mixture("ring")
    velocity = VelocityField(torch.nn.Linear(2, 2), get_interpolant("linear"), ring)
    with pytest.raises(TypeError, match="FlowScoreField"):
        velocity.with_score(object())
    with pytest.raises(ValueError, match="marginals differ"):     # another gamma: other marginals
        velocity.with_score(FlowScoreField(torch.nn.Linear(2, 2), get_interpolant("linear", "brownian_bridge"), ring))


# --- couplings: Sinkhorn, the Gaussian-to-Gaussian OT map -----------------------------------------
def test_sinkhorn_pairs_tend_to_the_exact_assignment_and_to_independence():
    """Pairs drawn from the entropic plan: the share that are the exact assignment's
    (linear_sum_assignment) grows as the regularisation shrinks, past half at 0.001 (60% here),
    and at a large one the pairs are independent (1/64 would be chance)."""
    from scipy.optimize import linear_sum_assignment

    x0 = torch.randn(64, 2, generator=gen(0))
    x1 = torch.randn(64, 2, generator=gen(1)) + 1.0
    _, best = linear_sum_assignment(torch.cdist(x0, x1).pow(2).numpy())
    share = []
    for reg in (5.0, 0.05, 0.01, 0.001):
        i, j = _sinkhorn_pairs(x0, x1, reg, gen(2))
        share.append(float((torch.as_tensor(best)[i] == j).double().mean()))
    assert share == sorted(share) and share[-1] > 0.5 and share[0] < 0.1, share


def _gaussian_ot_map(m0, A, m1, B):
    """Brenier's map between N(m0, A) and N(m1, B): m1 + T (x - m0) with
    T = A^-1/2 (A^1/2 B A^1/2)^1/2 A^-1/2 (symmetric positive definite: a gradient)."""
    def sqrtm(M):
        e, V = torch.linalg.eigh(M)
        return V @ torch.diag(e.sqrt()) @ V.T
    Ah = sqrtm(A)
    Aih = torch.linalg.inv(Ah)
    T = Aih @ sqrtm(Ah @ B @ Ah) @ Aih
    return lambda x: m1 + (x - m0) @ T.T


B_COV = torch.tensor([[1.5, 0.7], [0.7, 0.6]], dtype=torch.float64)
M1 = torch.tensor([1.0, -0.5], dtype=torch.float64)


def test_the_exact_flow_from_n0i_to_a_gaussian_is_its_ot_map_and_from_an_anisotropic_one_it_is_not():
    """From N(0, I) every matrix of the linear flow is a function of B, so they commute and the
    flow map is B^1/2 x + m: the OT map (Benamou-Brenier: a gradient). From N(0, A) with A and
    B not commuting, independent coupling's flow is not OT (a mean gap of 0.44 here)."""
    tgt = GaussianMixture(M1[None], B_COV[None])
    for A, close in ((torch.eye(2, dtype=torch.float64), True),
                     (torch.tensor([[0.3, 0.0], [0.0, 2.0]], dtype=torch.float64), False)):
        src = GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), A[None])
        x = src.sample(1000, generator=gen(0))
        y = sample(InterpolantField(src, tgt, "linear"), x_T=x, solver="ode_rk4", steps=100).samples
        gap = float((y - _gaussian_ot_map(torch.zeros(2, dtype=torch.float64), A, M1, B_COV)(x)).norm(dim=1).mean())
        assert (gap < 1e-5) if close else (gap > 0.3), (A, gap)


@pytest.mark.slow
def test_minibatch_ot_learns_the_gaussian_ot_map_that_independent_coupling_misses():
    """Between two Gaussians whose covariances do not commute, a flow trained with minibatch OT
    carries each point to within 0.15 (mean) of Brenier's closed-form map; with independent
    coupling it lands 0.4 away, where the exact independent flow does."""
    A = torch.tensor([[0.3, 0.0], [0.0, 2.0]], dtype=torch.float64)
    src = GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), A[None])
    data = GaussianMixture(M1[None], B_COV[None]).sample(20_000, generator=gen(1)).float()
    T = _gaussian_ot_map(torch.zeros(2, dtype=torch.float64), A, M1, B_COV)
    x = src.sample(1000, generator=gen(0))
    gaps = {}
    for coupling in ("ot", "independent"):
        f, _ = train(data, TrainConfig(objective="velocity", steps=800, batch_size=256, coupling=coupling),
                     source=src)
        y = sample(f, x_T=x.float(), solver="ode_rk4", steps=50).samples.double()
        gaps[coupling] = float((y - T(x)).norm(dim=1).mean())
    assert gaps["ot"] < 0.15 and gaps["independent"] > 0.3, gaps


# --- reflow, and a flow's file ----------------------------------------------------------------------
@pytest.mark.slow
def test_one_reflow_straightens_the_flow_and_one_step_lands_near_the_data(moons):
    """Liu et al.'s reflow on a flow from N(0, I) to two_moons: the retrained flow's paths are
    at least 10x straighter and its 1-NFE W2 at least halved (1.38 -> 0.14 at 1,000 steps here)."""
    v, _ = train(moons, TrainConfig(objective="velocity", steps=1000, batch_size=512))
    r, history = reflow(v, n=10_000, ode_steps=50)
    assert r.config.coupling == "paired" and history["summary"]["steps_done"] == 1000
    truth = dataset_mixture("two_moons").sample(2000, generator=gen(9))
    one = {k: float(w2(sample(f, n=2000, solver="ode_euler", steps=1, seed=0).samples.double(), truth))
           for k, f in (("before", v), ("after", r))}
    assert one["after"] < 0.5 * one["before"], one
    assert straightness(r) < 0.1 * straightness(v)


def test_a_flow_saved_and_loaded_is_the_same_flow(tmp_path):
    x = make_dataset("circles", 500, seed=0)
    common = dict(steps=20, batch_size=64, interpolant="trig", gamma="scaled")
    v, _ = train(x, TrainConfig(objective="velocity", **common), source="two_moons")
    s, _ = train(x, TrainConfig(objective="denoiser", **common), source="two_moons")
    pts = torch.randn(7, 2, generator=gen(0))
    for f in (v, s):
        g = load(save(f, tmp_path / "flow.pt"), device="cpu")
        assert type(g) is type(f) and g.interpolant.gamma_name == "scaled" and g.config == f.config
        assert torch.equal(g.source.means, f.source.means) and torch.equal(g.source.weights, f.source.weights)
        got, want = (g.b, f.b) if f is v else (g.s, f.s)
        assert torch.equal(got(pts, 0.3), want(pts, 0.3))
    assert load(save(s, tmp_path / "s.pt"), device="cpu").kind == "denoiser"


# --- class-conditional flows ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_class_conditional_flow_carries_the_gaussian_to_each_class(tmp_path):
    """The 5x5 grid in its two chessboard classes (lab.guidance.grid_classes), a velocity from
    N(0, I) learned with labels: with_label(k) lands on class k's exact mixture (W2 within 1.3x
    the floor, 97 % of the samples nearest one of its modes; measured 98.5 % and 0.5 % for the
    other class), with_label(None) on the whole grid; a checkpoint keeps the classes."""
    from lab.guidance import class_mixture, grid_classes

    grid = dataset_mixture("gaussian_grid")
    classes = grid_classes(grid)
    x = make_dataset("gaussian_grid", 20_000, seed=0)
    of = torch.zeros(25, dtype=torch.long)
    of[classes[1]] = 1
    f, _ = train(x, TrainConfig(objective="velocity", n_classes=2),        # the default budget: 9 s
                 labels=of[torch.cdist(x.double(), grid.means).argmin(1)])
    f = load(save(f, tmp_path / "flow.pt"), device="cpu")
    for label, want in ((0, 1.0), (1, 0.0), (None, 13 / 25)):
        s = sample(f.with_label(label), n=2000, solver="ode_rk4", steps=50, seed=1).samples.double()
        share = float((of[torch.cdist(s, grid.means).argmin(1)] == 0).double().mean())
        assert abs(share - want) < 0.05, (label, share)
        law = grid if label is None else class_mixture(grid, classes[label])
        g = gen(3)
        truth, other = law.sample(2000, generator=g), law.sample(2000, generator=g)
        assert w2(s, truth) < 1.3 * w2(other, truth), label
    with pytest.raises(ValueError, match="coupling='independent'"):
        TrainConfig(objective="velocity", n_classes=2, coupling="ot")
    with pytest.raises(ValueError, match="not class-conditional"):
        train(x[:100], TrainConfig(objective="velocity", steps=2))[0].with_label(0)


def test_every_flow_solver_records_the_one_euler_step_to_the_end_as_its_x0():
    """A flow's x0 prediction at a kept state is x - t v (one Euler step to t = 0: for the linear
    interpolant without noise, the target's conditional mean), for RK4 and the adaptive solver alike."""
    f = InterpolantField("gaussian", "two_moons", "linear")
    for solver in ("ode_rk4", "ode_adaptive", "flow_sde"):
        traj = sample(f, n=50, solver=solver, steps=5, seed=0)
        for i in range(5):
            x, t = traj.xs[i], float(traj.ts[i])
            torch.testing.assert_close(traj.x0_preds[i], x - t * f.velocity(x, t))
            torch.testing.assert_close(traj.x0_preds[i], f.target_mean(x, 1 - t))   # linear, gamma 0
