"""Panel components driven in-process: set parameters, assert results (no browser)."""
import pytest
import torch

from lab.app.session import Session
from lab.app.solver_view import N_SAMPLES, SolverView
from lab.fields import MixtureField
from lab.metrics import noised_samples, sliced_w2
from lab.solvers import SOLVERS


@pytest.fixture
def view():
    return SolverView(Session(dataset="two_moons"), source="exact")


def test_every_solver_change_resamples_with_honest_nfe(view):
    for solver, spec in SOLVERS.items():
        if solver == "ode_adaptive":
            continue
        view.solver = solver
        assert view.last.solver == solver and view.last.samples.shape == (N_SAMPLES, 2)
        assert view.last.nfe == view.steps * spec.nfe_per_step
        assert f"NFE **{view.last.nfe}**" in view._info.object
        assert not view._alert.visible


def test_exact_samples_are_close_to_the_truth_and_few_steps_are_not(view):
    truth = noised_samples(view.session.exact, view.session.exact.schedule.t_min, N_SAMPLES,
                           generator=torch.Generator().manual_seed(5))
    view.steps = 50
    good = sliced_w2(view.last.samples, truth)
    view.steps = 1
    view.solver = "ddim"
    bad = sliced_w2(view.last.samples, truth)
    assert good < 0.05 < bad


def test_eta_reaches_solvers_that_take_it_and_only_those(view):
    view.eta = 0.7
    view.solver = "ddim"
    assert view.last.eta == pytest.approx(0.7)
    view.solver = "ode_heun"   # an ODE solver: eta stays 0, and the page says so
    assert view.last.eta == 0.0 and not view._alert.visible
    assert "this solver has eta = 0" in view._info.object


def test_a_broken_field_gives_a_message_not_a_traceback(view):
    class Broken(MixtureField):
        def eps(self, x, t):
            return super().eps(x, t) * float("nan")

    view.session.model = Broken(view.session.exact.mixture, "vp")
    view.source = "learned"
    assert view._alert.visible and "non-finite" in view._alert.object
    view.session.model = None   # back to a good field: the message goes
    assert not view._alert.visible


def test_sessions_do_not_share_state():
    a, b = SolverView(Session(dataset="ring")), SolverView(Session(dataset="two_moons"))
    a.solver = "ddim"
    assert b.solver == "dpm++2m"
    assert a.session.exact.mixture.n_components != b.session.exact.mixture.n_components


def test_changing_the_data_set_resamples(view):
    before = view.last
    view.session.dataset = "ring"
    assert view.last is not before
    assert sliced_w2(view.last.samples, view.session.exact.mixture.sample(N_SAMPLES)) < 0.1
