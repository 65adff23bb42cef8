"""Solvers against the exact mixture score, where only discretisation error remains."""
import re

import pytest
import torch

from lab.data import GaussianMixture, dataset_mixture
from lab.fields import MixtureField, NetworkField
from lab.metrics import noised_samples, w2
from lab.schedules import SCHEDULES
from lab.solvers import (SOLVERS, SPACINGS, NonFiniteError, Run, convergence_order, first_order_step, sample,
                         shifted_time, time_grid)


def smooth_field(schedule="vp"):
    """A three-component mixture wide enough that the ODE is not stiff near t_min."""
    mix = GaussianMixture([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], [0.3, 0.2, 0.25],
                          weights=[0.2, 0.5, 0.3])
    return MixtureField(mix, schedule)


def x_T(field, n=64, seed=0):
    return field.schedule.prior_sample(n, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64)


@pytest.fixture(scope="module")
def reference():
    field = smooth_field()
    x = x_T(field)
    return field, x, sample(field, x_T=x, solver="ode_rk4", steps=2000).samples


def test_dpm1_equals_ddim_to_float_precision():
    field = smooth_field()
    x = x_T(field, 256)
    for spacing in SPACINGS:
        a = sample(field, x_T=x, solver="dpm1", steps=17, spacing=spacing).samples
        b = sample(field, x_T=x, solver="ddim", steps=17, spacing=spacing, eta=0.0).samples
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ["vp", "ve", "cosine"])
def test_ddpm_posterior_equals_ddim_eta_one(schedule):
    """Two derivations of the ancestral step (Kingma et al.'s posterior; DDIM's eta = 1)
    give the same samples from the same noise."""
    field = smooth_field(schedule)
    x = x_T(field, 128)
    a = sample(field, x_T=x, solver="ddpm", steps=25, seed=3).samples
    b = sample(field, x_T=x, solver="ddim", steps=25, eta=1.0, seed=3).samples
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("solver, steps, low, high", [
    ("ode_euler", [20, 40, 80, 160], 0.85, 1.2),
    ("ode_heun", [10, 20, 40, 80], 1.7, 2.6),
    ("dpm2", [5, 10, 20, 40], 1.8, 2.5),
    ("dpm3", [5, 10, 20, 40], 2.6, 3.6),
    ("dpm++2m", [10, 20, 40, 80], 1.7, 2.3),
    ("deis", [10, 20, 40, 80], 2.0, 3.5),
])
def test_measured_convergence_order(reference, solver, steps, low, high):
    field, x, ref = reference
    order, errs = convergence_order(field, solver, steps, x, ref)
    assert low < order < high, (solver, errs, order)


def test_convergence_order_refuses_what_has_no_order(reference):
    field, x, ref = reference
    for solver, steps in (("euler_maruyama", [10, 20]), ("ode_euler", [10]), ("ode_euler", [10, 10])):
        with pytest.raises(ValueError):
            convergence_order(field, solver, steps, x, ref)


def test_adaptive_solver_agrees_with_the_fine_reference(reference):
    field, x, ref = reference
    traj = sample(field, x_T=x, solver="ode_adaptive", steps=4, rtol=1e-9, atol=1e-9)
    assert float((traj.samples - ref).norm(dim=1).max()) < 1e-6
    loose = sample(field, x_T=x, solver="ode_adaptive", steps=4, rtol=1e-3, atol=1e-3)
    assert 0 < loose.nfe < traj.nfe  # NFE is counted, and tighter tolerances cost more


def _steps_for(name):
    spec = SOLVERS[name]
    return 400 if spec.order is None else 200 if spec.order == 1 else 40


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_samples_approach_the_true_mixture(solver):
    """W2 to fresh true samples falls from a few steps to the sampling noise floor."""
    field = MixtureField(dataset_mixture("two_moons"), "vp")
    n, floors, many, few = 800, [], [], []
    for seed in range(3):
        g = torch.Generator().manual_seed(100 + seed)
        truth = noised_samples(field, field.schedule.t_min, n, generator=g)
        floors.append(w2(truth, noised_samples(field, field.schedule.t_min, n, generator=g)))
        many.append(w2(sample(field, n=n, solver=solver, steps=_steps_for(solver), seed=seed).samples, truth))
        if solver != "ode_adaptive":
            few.append(w2(sample(field, n=n, solver=solver, steps=1, seed=seed).samples, truth))
    floor = sum(floors) / 3
    assert sum(many) / 3 < 1.3 * floor, (many, floors)
    if few:
        assert sum(few) / 3 > 1.5 * floor, (few, floors)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_runs_on_every_schedule(solver, schedule):
    field = smooth_field(schedule)
    seen = []
    traj = sample(field, n=50, solver=solver, steps=6, seed=0, callback=seen.append)
    assert traj.samples.shape == (50, 2) and torch.isfinite(traj.samples).all()
    assert traj.xs.shape == (7, 50, 2) and traj.x0_preds.shape == (6, 50, 2)
    assert torch.equal(traj.xs[-1], traj.samples)
    assert [c["i"] for c in seen] == list(range(6)) and seen[-1]["nfe"] == traj.nfe
    spec = SOLVERS[solver]
    if solver != "ode_adaptive":
        assert traj.nfe == 6 * spec.nfe_per_step
    assert float(traj.ts[0]) == field.schedule.t_max and float(traj.ts[-1]) == field.schedule.t_min


@pytest.mark.parametrize("model", ["ScoreMLP", "PotentialMLP"])
def test_solvers_run_on_networks(model):
    import lab.models
    torch.manual_seed(0)
    field = NetworkField(getattr(lab.models, model)(hidden=16, depth=1), "vp")
    for solver in SOLVERS:
        traj = sample(field, n=20, solver=solver, steps=3, seed=0)
        assert traj.samples.dtype == torch.float32 and torch.isfinite(traj.samples).all()


def test_seed_reproduces_and_eta_family_interpolates():
    field = smooth_field()
    a = sample(field, n=100, solver="euler_maruyama", steps=10, seed=7)
    b = sample(field, n=100, solver="euler_maruyama", steps=10, seed=7)
    assert torch.equal(a.samples, b.samples)
    x = x_T(field, 100)
    ode = sample(field, x_T=x, solver="euler_maruyama", steps=10, eta=0.0)
    euler = sample(field, x_T=x, solver="ode_euler", steps=10)
    torch.testing.assert_close(ode.samples, euler.samples)  # eta = 0 is the PF-ODE
    mid = sample(field, x_T=x, solver="ddim", steps=10, eta=0.5, seed=1).samples
    assert not torch.allclose(mid, sample(field, x_T=x, solver="ddim", steps=10, eta=0.0).samples)


def test_keep_last_records_the_tail_of_the_same_run():
    """keep_last (memory) records the last k steps of the very run a full record holds."""
    field = smooth_field()
    full = sample(field, n=50, solver="ddpm", steps=12, seed=3)
    tail = sample(field, n=50, solver="ddpm", steps=12, seed=3, keep_last=4)
    assert torch.equal(tail.samples, full.samples) and tail.nfe == full.nfe
    assert tail.xs.shape == (5, 50, 2) and tail.x0_preds.shape == (4, 50, 2) and tail.ts.shape == (5,)
    assert torch.equal(tail.xs, full.xs[-5:]) and torch.equal(tail.x0_preds, full.x0_preds[-4:])
    assert torch.equal(tail.ts, full.ts[-5:]) and torch.equal(tail.xs[-1], tail.samples)
    with pytest.raises(ValueError, match="keep_last"):
        sample(field, n=5, steps=3, keep_last=0)


@pytest.mark.parametrize("solver", ["euler_maruyama", "ddim", "dpm++2m_sde", "pc"])
def test_intermediate_eta_keeps_the_marginals(solver):
    """Every eta gives the same marginals (the family's point): at eta = 0.5 the samples
    reach the noise floor too."""
    field = MixtureField(dataset_mixture("two_moons"), "vp")
    n, floors, got = 800, [], []
    for seed in range(3):
        g = torch.Generator().manual_seed(200 + seed)
        truth = noised_samples(field, field.schedule.t_min, n, generator=g)
        floors.append(w2(truth, noised_samples(field, field.schedule.t_min, n, generator=g)))
        got.append(w2(sample(field, n=n, solver=solver, steps=200, eta=0.5, seed=seed).samples, truth))
    assert sum(got) / 3 < 1.3 * sum(floors) / 3, (got, floors)


def test_one_small_step_has_the_family_noise():
    """A first-order step of length dt adds noise of variance eta^2 g^2 dt, as the SDE
    dx = [...] dt + eta g dW says (this tells eta from eta^2)."""
    field = smooth_field()
    s = field.schedule
    t0, t1 = 0.5, 0.499
    dt = t0 - t1
    x = torch.zeros(100_000, 2, dtype=torch.float64)
    ts = torch.tensor([t0, t1], dtype=torch.float64)
    for eta in (0.3, 0.7):
        run = Run(field, ts, eta, torch.Generator().manual_seed(0), None, "ddim")
        x0 = run.x0(x, t0)
        out = first_order_step(run, x, x0, t0, t1, eta)  # all from one point: spread = noise
        var = float(((out - out.mean(0)) ** 2).mean())
        assert var == pytest.approx(eta**2 * float(s.g2(t0)) * dt, rel=0.03), eta


def test_solver_options_are_checked():
    field = smooth_field()
    for solver, opts in [("deis", {"order": -1}), ("deis", {"order": 2.5}), ("pc", {"snr": 0.0}),
                         ("pc", {"corrector_steps": -1}), ("ode_adaptive", {"rtol": float("nan")})]:
        with pytest.raises(ValueError):
            sample(field, n=10, solver=solver, steps=3, **opts)


def test_spacings():
    s = smooth_field().schedule
    for name in SPACINGS:
        ts = time_grid(s, 10, name)
        assert ts.shape == (11,) and torch.all(ts[1:] < ts[:-1])
        assert float(ts[0]) == s.t_max and float(ts[-1]) == s.t_min
    lam = s.lambda_(time_grid(s, 10, "logsnr"))
    torch.testing.assert_close(lam.diff(), torch.full((10,), float(lam.diff()[0]), dtype=torch.float64))
    torch.testing.assert_close(time_grid(s, 4, "time_uniform"),
                               torch.linspace(s.t_max, s.t_min, 5, dtype=torch.float64))
    # Karras et al. 2022 eq. 5 in sigma/alpha, rho = 7
    k = torch.exp(-s.lambda_(time_grid(s, 8, "karras")))
    hi, lo = float(k[0]), float(k[-1])
    expected = (hi ** (1 / 7) + torch.linspace(0, 1, 9, dtype=torch.float64) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    torch.testing.assert_close(k, expected)


def test_bad_input_names_the_problem():
    field = smooth_field()
    with pytest.raises(ValueError, match="dpm\\+\\+2m"):
        sample(field, n=10, solver="nope")
    with pytest.raises(ValueError, match="logsnr"):
        sample(field, n=10, spacing="nope")
    for steps in (0, -3, 2.5, 10**9):
        with pytest.raises(ValueError, match="steps"):
            sample(field, n=10, steps=steps)
    bad = torch.zeros(10, 2)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x_T"):
        sample(field, x_T=bad)
    with pytest.raises(ValueError, match="eta"):
        sample(field, n=10, solver="ode_heun", eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        sample(field, n=10, solver="ddim", eta=float("nan"))
    with pytest.raises(ValueError, match="give n"):
        sample(field)
    with pytest.raises(ValueError, match="option"):
        sample(field, n=10, solver="ddim", snr=0.1)


def test_non_finite_field_output_says_where():
    class Broken(MixtureField):
        def eps(self, x, t):
            out = super().eps(x, t)
            return out * float("nan") if t < 0.5 else out

    field = Broken(smooth_field().mixture, "vp")
    with pytest.raises(NonFiniteError, match=r"step \d+ of solver 'dpm\+\+2m'"):
        sample(field, n=10, solver="dpm++2m", steps=10)


def test_every_solver_has_a_docstring_naming_its_source():
    for name, spec in SOLVERS.items():
        assert re.search(r"(19|20)\d\d", spec.doc) or "Runge-Kutta" in spec.doc, (name, spec.doc)



@pytest.mark.parametrize("solver,spacing", [("euler_maruyama", "time_uniform"), ("pc", "time_uniform"),
                                            ("ddpm", "time_uniform"), ("ddim", "time_uniform"),
                                            ("dpm++2m_sde", "time_uniform"), ("euler_maruyama", "refined_end")])
def test_sde_solvers_are_no_more_biased_than_the_ode_with_the_exact_score(solver, spacing):
    """Deveney et al.'s protocol (OU on [1e-5, 10], 800 time-uniform steps), exact score of
    N(0, 0.05^2 I): an SDE solver's end variance must be as close to p_{t_min}'s as the
    Euler ODE's (bias +0.0039), up to the noise floor. Found so: Euler-Maruyama's noise on
    its last step (variance g^2 dt = 0.0125, never taken out) made it +0.0106; SDE-DPM-
    Solver++(2M)'s second-order last step over a 50x longer step made it +0.0042.
    Also on the paper's own grid (refined_end, 890 steps), with the width of its rings
    (std 0.2). There, with std 0.05, Euler-Maruyama is measurably worse than the ODE (bias
    5.4e-4 against 4.3e-4, floor 7e-5): its drift is twice the ODE's, and a step of 0.00125
    is half of v = 0.0025 (first-order error of size dt/v); the paper's data are 4x wider."""
    std = 0.2 if spacing == "refined_end" else 0.05
    mix = GaussianMixture([[0.0, 0.0]], std)            # the end law is N(0, v I), v known
    field = MixtureField(mix, "ou")
    s = field.schedule
    v = float(s.alpha(s.t_min)) ** 2 * std**2 + float(s.sigma(s.t_min)) ** 2
    n = 40_000
    floor = 4 * 2**0.5 * v / n**0.5    # 4 standard errors of a difference of two variance estimates
    bias = {}
    for name in ("ode_euler", solver):
        eta = 1.0 if SOLVERS[name].takes_eta else None
        steps = 890 if spacing == "refined_end" else 800
        x = sample(field, n=n, solver=name, steps=steps, spacing=spacing, eta=eta, seed=1).samples.double()
        bias[name] = abs(float(x.var(0).mean()) - v)
    assert bias[solver] <= bias["ode_euler"] + floor, (bias, floor)


def test_noise_level_grids_skip_pure_noise():
    """VP with beta up to 200 (the hallucination paper's DDPM) has lambda(t_max) = -50; the
    logSNR and Karras grids begin at lambda = -10 (LAMBDA_FLOOR), below which x_t holds no
    trace of the data, and keep t_max as their first time."""
    from lab.fields import LAMBDA_FLOOR
    from lab.schedules import get_schedule

    s = get_schedule("vp", beta0=1.0, beta1=200.0, t_min=1e-5)
    assert float(s.lambda_(s.t_max)) < -40
    for spacing in ("logsnr", "karras"):
        ts = time_grid(s, 20, spacing)
        lam = s.lambda_(ts)
        assert float(ts[0]) == s.t_max and torch.all(lam[1:] > LAMBDA_FLOOR)
    lam = s.lambda_(time_grid(s, 20, "logsnr"))[1:]
    h = (float(s.lambda_(s.t_min)) - LAMBDA_FLOOR) / 20
    torch.testing.assert_close(lam.diff(), torch.full((19,), h, dtype=torch.float64))


def test_a_network_field_past_the_floor_predicts_the_mean():
    """Past lambda = -10 a network field is eps = x / sigma (exact to O(alpha^2)): its
    denoiser is 0, so few ancestral steps through VP-200's pure noise (lambda down to -50)
    stay finite; they overflowed when a network's eps error was divided by alpha = e^-50."""
    from lab.pretrained import load_pretrained

    field = load_pretrained("gaussian_grid", device="cpu")
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(field.x0(x, 0.9), torch.zeros(100, 2), atol=1e-6, rtol=0)
    assert float(field.schedule.lambda_(0.3)) > -10 and field.x0(x, 0.3).abs().max() > 0.1
    out = sample(field, n=500, solver="ddpm", steps=20, spacing="time_uniform", seed=0).samples
    assert out.abs().max() < 3


# --- the seed papers' newer samplers (UniPC, DPM-Solver-v3, time-shifted sampling) ---------
@pytest.mark.parametrize("solver, options, steps, low, high", [
    # UniP-p alone has order p; UniC adds one (Zhao et al. 2023, Thm. 3.1-3.2), held back a
    # little here by the uncorrected last state and the lowered final orders. Measured (bh2):
    # UniP-2 2.01, UniP-3 2.87, UniPC-1 1.87, UniPC-2 2.53, UniPC-3 3.41
    ("unipc", dict(order=2, corrector=False), [10, 20, 40, 80], 1.8, 2.3),
    ("unipc", dict(order=3, corrector=False), [10, 20, 40, 80], 2.6, 3.3),
    ("unipc", dict(order=1), [20, 40, 80, 160], 1.7, 2.2),
    ("unipc", dict(order=2), [10, 20, 40, 80], 2.3, 3.2),
    ("unipc", dict(order=2, variant="bh1"), [10, 20, 40, 80], 2.3, 3.3),
    ("unipc", dict(order=3), [10, 20, 40, 80], 3.0, 4.0),
    # DPM-Solver-v3: its nominal order without the corrector (2.01, 3.06), above with it
    ("dpm_v3", dict(order=2, corrector=False), [10, 20, 40, 80], 1.8, 2.3),
    ("dpm_v3", dict(order=3, corrector=False), [10, 20, 40, 80], 2.7, 3.4),
    ("dpm_v3", dict(order=2), [10, 20, 40, 80], 2.2, 3.2),
])
def test_new_solvers_reach_their_orders(reference, solver, options, steps, low, high):
    field, x, ref = reference
    order, errs = convergence_order(field, solver, steps, x, ref, **options)
    assert low < order < high, (solver, options, errs, order)


def test_unipc_variants_differ_only_where_a_lone_coefficient_is_set_to_its_limit(reference):
    """B(h) cancels from an exactly solved system of UniPC's coefficients: bh1 and bh2 differ
    only through a lone rho set to its limit 1/2 (UniP-2's predictor, UniC-1's corrector).
    UniP-1 alone is DDIM, whatever B(h)."""
    field, x, _ = reference
    a, b = (sample(field, x_T=x, solver="unipc", steps=8, variant=v, order=1, corrector=False).samples
            for v in ("bh1", "bh2"))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, sample(field, x_T=x, solver="ddim", steps=8).samples, rtol=1e-12, atol=1e-12)
    a, b = (sample(field, x_T=x, solver="unipc", steps=8, variant=v).samples for v in ("bh1", "bh2"))
    assert float((a - b).abs().max()) > 1e-6
    with pytest.raises(ValueError, match="variant"):
        sample(field, x_T=x, solver="unipc", steps=8, variant="bh3")
    with pytest.raises(ValueError, match="order"):
        sample(field, x_T=x, solver="unipc", steps=8, order=4)


def test_dpm_v3_statistics_of_a_gaussian_are_its_closed_form_and_one_step_is_exact():
    """For data N(0, v I) eps = sigma x / (alpha^2 v + sigma^2): the linear part is all of it,
    l = sigma^2 / (alpha^2 v + sigma^2), and nothing is left (f = 0, s = b = 0). Then one
    step of DPM-Solver-v3 is the exact flow x_t = x_s sqrt(v_t / v_s), v = alpha^2 v + sigma^2,
    to the quadrature's error."""
    from lab.solvers import empirical_model_statistics

    v = 0.3
    field = MixtureField(GaussianMixture([[0.0, 0.0]], v**0.5), "vp")
    sch = field.schedule
    ts = time_grid(sch, 1)
    ems = empirical_model_statistics(field, ts, points=200, samples=500)
    t = sch.t_of_lambda(ems.lam)
    a2, s2 = sch.alpha(t) ** 2, sch.sigma(t) ** 2
    torch.testing.assert_close(ems.l, (s2 / (a2 * v + s2))[:, None].expand(-1, 2), rtol=1e-5, atol=1e-6)
    assert float(ems.s.abs().max()) == 0 and float(ems.b.abs().max()) < 1e-4   # finite differences
    x = x_T(field, 256)
    out = sample(field, x_T=x, solver="dpm_v3", steps=1, ems_points=200, ems_samples=500).samples
    var = [float(sch.alpha(u)) ** 2 * v + float(sch.sigma(u)) ** 2 for u in (sch.t_max, sch.t_min)]
    exact = x * (var[1] / var[0]) ** 0.5
    err = float((out - exact).abs().max())
    assert err < 2e-4
    assert float((sample(field, x_T=x, solver="dpm++2m", steps=1).samples - exact).abs().max()) > 100 * err


def test_dpm_v3_statistics_are_computed_once_per_field_and_grid(reference, monkeypatch):
    import lab.solvers.v3 as v3

    field, x, _ = reference
    calls = []
    real = v3.empirical_model_statistics
    monkeypatch.setattr(v3, "empirical_model_statistics", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(2):
        sample(field, x_T=x, solver="dpm_v3", steps=7, ems_points=50, ems_samples=100)
    assert len(calls) == 1
    sample(field, x_T=x, solver="dpm_v3", steps=8, ems_points=50, ems_samples=100)
    assert len(calls) == 2


def test_time_shift_is_nothing_where_the_variance_says_nothing():
    """VP keeps alpha^2 + sigma^2 = 1: with data of unit variance every time has the same
    marginal variance, so TS-DDIM and TS-DDPM ask at the grid's own times: DDIM and DDPM."""
    field = smooth_field("vp")
    x = x_T(field, 128)
    for shifted, base in (("ts_ddim", "ddim"), ("ts_ddpm", "ddpm")):
        a = sample(field, x_T=x, solver=shifted, steps=20, seed=1, data_var=1.0).samples
        b = sample(field, x_T=x, solver=base, steps=20, seed=1).samples
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_time_shift_finds_the_time_whose_variance_the_samples_have():
    """On VE the marginal variance v + sigma^2 grows with t: a batch whose variance is that of
    a time tau inside the window is asked at tau (to the window's resolution, 1/1000 of the
    range); below the cutoff, or within the noise of the batch's variance, at its own time."""
    field = MixtureField(GaussianMixture([[0.0, 0.0]], 1.0), "ve")
    sch = field.schedule
    run = Run(field, time_grid(sch, 10), 0.0, torch.Generator(), None, "ts_ddim")
    span = sch.t_max - sch.t_min
    s = sch.t_min + 0.6 * span
    tau = s + 7 * span / 1000
    z = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (z - z.mean(0)) / z.std(0) * (1.0 + float(sch.sigma(tau)) ** 2) ** 0.5
    assert shifted_time(run, x, s, sch.t_min, 10, 300, 1.0) == pytest.approx(tau, abs=1.01 * span / 1000)
    assert shifted_time(run, x, s, sch.t_min, 10, 700, 1.0) == s           # below the cutoff
    near = x[:500] / x[:500].std(0) * (1.0 + float(sch.sigma(tau)) ** 2) ** 0.5
    v_s = 1.0 + float(sch.sigma(s)) ** 2
    at_s = near * (v_s / float(near.var(0).mean())) ** 0.5 * (1 + 0.02)    # 500 points: 4 % is noise
    assert shifted_time(run, at_s, s, sch.t_min, 10, 300, 1.0) == s
    assert shifted_time(run, x, s, sch.t_min, 3, 300, 1.0) == pytest.approx(s + 3 * span / 1000)  # window's edge
    with pytest.raises(ValueError, match="data_var"):
        sample(field, x_T=x_T(field), solver="ts_ddim", steps=5, data_var=-1.0)


def test_dc_solver_compensation_beats_unipc_on_fresh_points_and_ratio_one_is_unipc(reference):
    """DC-Solver's ratios, searched on 64 reference trajectories of the field's own ODE, carry
    over to other starting points: at 10 steps the end points are nearer the RK4 reference
    than UniPC's (measured 1.7e-2 against 4.5e-2 on 256 fresh points). Ratios of 1 are
    UniPC itself."""
    from lab.solvers import dc_ratios

    field = smooth_field()
    x = x_T(field, 256, seed=3)
    ref = sample(field, x_T=x, solver="ode_rk4", steps=1000).samples
    err = {s: float((sample(field, x_T=x, solver=s, steps=10).samples - ref).norm(dim=1).mean())
           for s in ("unipc", "dc_solver")}
    assert err["dc_solver"] < 0.6 * err["unipc"], err
    ones = sample(field, x_T=x, solver="dc_solver", steps=10, ratios=[1.0] * 10).samples
    torch.testing.assert_close(ones, sample(field, x_T=x, solver="unipc", steps=10).samples, rtol=0, atol=0)
    ratios = dc_ratios(field, time_grid(field.schedule, 10))
    assert len(ratios) == 10 and ratios[0] == 1.0 and ratios != [1.0] * 10
    assert dc_ratios(field, time_grid(field.schedule, 30)) == [1.0] * 30      # beyond the search
    with pytest.raises(ValueError, match="one ratio per step"):
        sample(field, x_T=x, solver="dc_solver", steps=10, ratios=[1.0] * 9)


def test_dpm_v3_starts_from_pure_noise_on_a_long_schedule():
    """The grid's schedule starts at lambda = -50, far past LAMBDA_FLOOR, where the field is
    x / sigma: there l = 1 and nothing is left (f = 0) exactly, not round-off over alpha =
    e^-50 (which blew the samples up to 1e13). At 10 steps the samples are as near the truth
    as DPM-Solver++(2M)'s."""
    from lab.pretrained import GRID_SCHEDULE
    from lab.schedules import get_schedule

    field = MixtureField(dataset_mixture("gaussian_grid"), get_schedule("vp", **GRID_SCHEDULE))
    g = torch.Generator().manual_seed(0)
    truth = noised_samples(field, field.schedule.t_min, 1000, generator=g)
    d = {s: w2(sample(field, n=1000, solver=s, steps=10, seed=1).samples, truth) for s in ("dpm_v3", "dpm++2m")}
    assert d["dpm_v3"] < 1.2 * d["dpm++2m"], d


def test_new_solvers_refuse_bad_options_by_name(reference):
    field, x, _ = reference
    for solver, options, name in (("unipc", {"corrector": "no"}, "corrector"),
                                  ("dpm_v3", {"lower_order_final": 1}, "lower_order_final"),
                                  ("dc_solver", {"ratios": 1.0}, "ratios"),
                                  ("ts_ddim", {"window": -1}, "window")):
        with pytest.raises(ValueError, match=name):
            sample(field, x_T=x, solver=solver, steps=5, **options)


def test_statistics_are_recomputed_when_the_weights_change_in_place():
    """A network trained further in place (train's callbacks hand out the same field) is
    another field to DPM-Solver-v3's statistics."""
    from lab.models import ScoreMLP
    import lab.solvers.v3 as v3

    torch.manual_seed(0)
    field = NetworkField(ScoreMLP(hidden=16, depth=1), "vp")
    calls = []
    real = v3.empirical_model_statistics
    v3.empirical_model_statistics = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        kw = dict(n=50, solver="dpm_v3", steps=4, seed=0, ems_points=20, ems_samples=50)
        sample(field, **kw)
        sample(field, **kw)
        with torch.no_grad():
            next(field.model.parameters()).add_(0.1)
        sample(field, **kw)
    finally:
        v3.empirical_model_statistics = real
    assert len(calls) == 2
