"""The solver page and its race (SolverView, SolverRaceView), driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import numpy as np
import pytest

from lab.app.session import Session
from lab.app.solver_view import N_SAMPLES, N_TRAJECTORIES, SolverView
from lab.fields import MixtureField
from lab.metrics import RACE_BUDGETS, sliced_w2
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
        assert f"NFE **{view.last.nfe}**" in view.message
        assert not view.error


def test_the_figures_show_the_samples_and_paths_that_were_drawn(view, true_samples):
    view.solver = "ddim"
    np.testing.assert_allclose(view.figures["samples"].points("samples"), view.last.samples.double().numpy(), rtol=1e-6)
    lines = view.figures["paths"].lines.data
    assert len(lines["xs"]) == N_TRAJECTORIES and len(lines["xs"][0]) == view.steps + 1
    np.testing.assert_allclose(lines["xs"][3], view.last.xs[:, 3, 0].double().numpy(), rtol=1e-6)
    # the grey layer is the truth: as close to a fresh draw of p_{t_min} as two draws are
    truth = view.figures["samples"].points("truth")
    fresh, other = true_samples(view.session, 2000, seed=11), true_samples(view.session, 2000, seed=12)
    assert sliced_w2(truth[:2000], fresh) < 2 * sliced_w2(other, fresh) + 0.01


def test_exact_samples_are_close_to_the_truth_and_few_steps_are_not(view, true_samples):
    truth = true_samples(view.session)
    view.steps = 50
    good = sliced_w2(view.last.samples, truth)
    view.steps = 1
    view.solver = "ddim"
    bad = sliced_w2(view.last.samples, truth)
    assert good < 0.05 < bad
    assert view.w2 > 0.05 and f"**{view.w2:.3f}**" in view.message   # the page says so


def test_eta_reaches_solvers_that_take_it_and_only_those(view):
    view.eta = 0.7
    view.solver = "ddim"
    assert view.last.eta == pytest.approx(0.7)
    view.solver = "ode_heun"   # an ODE solver: eta stays 0, and the page says so
    assert view.last.eta == 0.0 and not view.error
    assert "this solver has eta = 0" in view.message


def test_a_broken_field_gives_a_message_not_a_traceback(view):
    class Broken(MixtureField):
        def eps(self, x, t):
            return super().eps(x, t) * float("nan")

    view.session.model = Broken(view.session.exact.mixture, "vp")
    view.source = "learned"
    assert "non-finite" in view.error
    view.session.model = None   # back to a good field: the message goes
    assert not view.error


def test_changing_the_data_set_resamples_the_new_one(view, true_samples):
    moons = true_samples(view.session)
    view.session.dataset = "ring"
    ring = true_samples(view.session)
    # the samples are the ring's, not the moons' (measured 0.06 vs 0.5)
    assert sliced_w2(view.last.samples, ring) < 0.5 * sliced_w2(view.last.samples, moons)


def test_solver_page_draws_learned_and_exact_fields_in_one_colour_range():
    view = SolverView(Session(dataset="ring"))          # the pretrained ring model
    learned, exact = (np.asarray(f.image.data["image"][0]) for f in (view.figures["learned field"], view.figures["exact field"]))
    assert np.abs(exact).max() < 1e-6                   # a true score: no curl
    assert np.abs(learned).max() > 0.1                  # the network's: some
    assert view.figures["learned field"].clim == view.figures["exact field"].clim == pytest.approx(np.abs(learned).max())
    first = view.figures["learned field"].arrows.data["x1"]
    view.solver = "ddim"                                # a solver change does not redraw the fields
    assert view.figures["learned field"].arrows.data["x1"] is first
    view.session.model = None                           # a model change does: now exact twice
    assert np.abs(np.asarray(view.figures["learned field"].image.data["image"][0])).max() < 1e-6


@pytest.mark.slow
def test_solver_race_on_the_solvers_page_draws_the_races_numbers():
    view = SolverView(Session(dataset="two_moons"))
    assert view.race is None                             # built on demand only
    race = view.open_race()
    assert view.open_race() is race
    race.n = 150
    race.run()
    r = race.result
    assert set(r.w2) == {"exact", "learned"} and r.budgets == RACE_BUDGETS and r.n == 150
    for src in ("exact", "learned"):
        line = race.figures[src].sources["dpm++2m"].data
        assert list(line["y"]) == r.w2[src]["dpm++2m"] and list(line["x"]) == r.nfe["dpm++2m"]
        assert list(race.figures[src].sources["floor"].data["y"]) == [r.floor, r.floor]
    assert list(race.figures["exact"].sources["ode_rk4"].data["x"]) == [4, 8, 20, 48]   # 4 NFE a step
    assert race.numbers["floor"] == r.floor and "| dpm_v3 |" in race.table
    assert f"{r.floor:.3f}" in race.message and not race.error
    view.session.model = None                            # another field: the race shown is gone
    assert race.result is None and "again" in race.message


def test_a_race_finished_after_the_model_changed_is_not_shown(monkeypatch):
    import lab.app.race_view as race_view

    view = SolverView(Session(dataset="two_moons"))
    race = view.open_race()
    real = race_view.solver_race

    def race_while_the_model_changes(fields, reference, solvers, **kw):
        view.session.model = None                    # the student loads another model meanwhile
        return real(fields, reference, ["ddim"], **kw)
    monkeypatch.setattr(race_view, "solver_race", race_while_the_model_changes)
    race.n = 100
    race.run()
    assert race.result is None and "changed during the race" in race.message and not race.error
