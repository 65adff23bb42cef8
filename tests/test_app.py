"""Panel components driven in-process: set parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import math

import numpy as np
import pytest
import torch
from bokeh.events import Tap

from lab.app.session import UPLOADED, Session
from lab.app.solver_view import N_SAMPLES, N_TRAJECTORIES, SolverView
from lab.metrics import RACE_BUDGETS
from lab.data import dataset_mixture
from lab.fields import MixtureField, NetworkField, SwirlField
from lab.metrics import noised_samples, score_error, sliced_w2
from lab.solvers import SOLVERS


@pytest.fixture
def view():
    return SolverView(Session(dataset="two_moons"), source="exact")


def _truth(session, n=N_SAMPLES, seed=5):
    exact = session.exact
    return noised_samples(exact, exact.schedule.t_min, n, generator=torch.Generator().manual_seed(seed))


# --- the solver page ---------------------------------------------------------------------------
def test_every_solver_change_resamples_with_honest_nfe(view):
    for solver, spec in SOLVERS.items():
        if solver == "ode_adaptive":
            continue
        view.solver = solver
        assert view.last.solver == solver and view.last.samples.shape == (N_SAMPLES, 2)
        assert view.last.nfe == view.steps * spec.nfe_per_step
        assert f"NFE **{view.last.nfe}**" in view.message
        assert not view.error


def test_the_figures_show_the_samples_and_paths_that_were_drawn(view):
    view.solver = "ddim"
    np.testing.assert_allclose(view.figures["samples"].points("samples"), view.last.samples.double().numpy(), rtol=1e-6)
    lines = view.figures["paths"].lines.data
    assert len(lines["xs"]) == N_TRAJECTORIES and len(lines["xs"][0]) == view.steps + 1
    np.testing.assert_allclose(lines["xs"][3], view.last.xs[:, 3, 0].double().numpy(), rtol=1e-6)
    # the grey layer is the truth: as close to a fresh draw of p_{t_min} as two draws are
    truth = view.figures["samples"].points("truth")
    fresh, other = _truth(view.session, 2000, seed=11), _truth(view.session, 2000, seed=12)
    assert sliced_w2(truth[:2000], fresh) < 2 * sliced_w2(other, fresh) + 0.01


def test_exact_samples_are_close_to_the_truth_and_few_steps_are_not(view):
    truth = _truth(view.session)
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


def test_sessions_do_not_share_state():
    a, b = SolverView(Session(dataset="ring")), SolverView(Session(dataset="two_moons"))
    a.solver = "ddim"
    assert b.solver == "dpm++2m"
    assert a.session.exact.mixture.n_components != b.session.exact.mixture.n_components
    assert a.figures["samples"].fig is not b.figures["samples"].fig


def test_sessions_share_the_shipped_models_and_their_pictures_but_not_their_own():
    """A class opening one page: the shipped model and the built-in exact field are one copy a
    process, and what a page computes from them alone is computed once; a session's own
    model, or uploaded points, is its own."""
    from lab.app import shared

    a, b = Session(), Session()
    assert a.model is b.model and a.exact is b.exact
    va, vb = SolverView(a), SolverView(b)
    assert vb.last is va.last                          # the same first run, computed once
    assert torch.equal(vb.last.samples, va.last.samples)
    calls = []
    assert shared.memo(("test", id(a.model)), lambda: calls.append(1) or len(calls), [a.model]) == 1
    assert shared.memo(("test", id(a.model)), lambda: calls.append(1) or len(calls), [a.model]) == 1
    own = NetworkField(a.model.model, a.model.schedule)    # a model of the session's own
    assert not shared.is_shared(own)
    assert shared.memo(("test", id(own)), lambda: calls.append(1) or len(calls), [own]) == 2
    assert shared.memo(("test", id(own)), lambda: calls.append(1) or len(calls), [own]) == 3
    b.use_points(dataset_mixture("ring").sample(500, generator=torch.Generator().manual_seed(0)))
    assert b.exact is not a.exact and not shared.is_shared(b.exact)
    # sub-VP has VP's arguments: still its own field
    assert Session(schedule="subvp").exact.schedule.name == "subvp" and a.exact.schedule.name == "vp"


def test_changing_the_data_set_resamples_the_new_one(view):
    moons = _truth(view.session)
    view.session.dataset = "ring"
    ring = _truth(view.session)
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


# --- the session ---------------------------------------------------------------------------------
def test_uploaded_points_become_the_sessions_data_set():
    session, other = Session(dataset="ring"), Session(dataset="ring")
    g = torch.Generator().manual_seed(0)
    raw = torch.cat([torch.randn(300, 2, generator=g) * 0.1 + torch.tensor([10.0, 5.0]),
                     torch.randn(300, 2, generator=g) * 0.1 + torch.tensor([14.0, 5.0])])
    x = session.use_points(raw)
    assert session.dataset == UPLOADED and session.model is None and "density estimate" in session.message
    assert x.mean(0).abs().max() < 1e-5 and float(x.var(0).mean()) == pytest.approx(1.0, rel=1e-4)
    assert UPLOADED not in other.param.dataset.objects       # only this session offers them
    # the exact field is the KDE's: its samples hold the two clusters, standardised: centres
    # +-2 / sqrt(mean variance 2.01), spread by the points' 0.1 and the kernel's ~0.17
    s = session.exact.mixture.sample(4000, generator=g)
    assert abs(float((s[:, 0] > 0).double().mean()) - 0.5) < 0.05
    assert (s[:, 0].abs() - 2 / math.sqrt(2.01)).abs().median() < 0.2
    with pytest.raises(ValueError, match="all equal"):
        session.use_points(torch.ones(20, 2))
    assert session.points is x                                # refused: nothing changed


def test_a_second_upload_redraws_the_pages():
    session = Session(dataset="ring")
    page = SolverView(session, source="exact")
    g = torch.Generator().manual_seed(1)
    session.use_points(torch.randn(400, 2, generator=g) * torch.tensor([3.0, 0.1]))   # a flat band
    band = page.last
    session.use_points(torch.randn(400, 2, generator=g) * torch.tensor([0.1, 3.0]))   # upright
    assert page.last is not band
    x = page.last.samples
    assert float(x[:, 1].var()) > 5 * float(x[:, 0].var())   # the page samples the new points


# --- the training page ---------------------------------------------------------------------------
from lab.app.train_view import EXACT, LOG_EVERY, PEN_WIDTH, TrainView  # noqa: E402


def test_train_runs_off_the_page_thread_and_hands_the_model_over():
    session = Session(dataset="ring", pretrained=False)
    solver_page = SolverView(session)               # another page on the same session
    view = TrainView(session, steps=600)
    view.start()
    assert view.running and view._train_button.disabled and not view._stop_button.disabled
    view.join(timeout=120)
    assert not view.running and isinstance(session.model, NetworkField)
    assert view.run.step == view.run.total == 600 and view.message.startswith("done: 600 steps")
    errors = score_error(session.model, session.exact, (0.25, 0.5, 0.9), n=2000)
    assert max(errors.values()) < 0.25, errors      # it learned the ring
    loss = view.figures["loss"].sources["loss"].data          # the live curve got every report
    assert list(loss["x"]) == list(range(LOG_EVERY, 601, LOG_EVERY))
    assert solver_page.last.samples.shape == (N_SAMPLES, 2)  # the other page re-sampled
    assert solver_page.session.field("learned") is session.model
    assert sliced_w2(solver_page.last.samples, _truth(session)) < 0.15


def test_a_run_finishing_after_the_data_set_changed_keeps_its_own_setting():
    session = Session(dataset="ring", pretrained=False)
    view = TrainView(session, steps=300)
    view.start()
    session.dataset = "two_moons"                 # changed on another tab while it trains
    view.join(timeout=120)
    assert session.dataset == "ring" and isinstance(session.model, NetworkField)
    assert "back to ring" in view.message
    errors = score_error(session.model, session.exact, (0.5, 0.9), n=2000)
    assert max(errors.values()) < 0.25, errors    # compared with the truth it learned


def test_stop_keeps_the_model_trained_so_far():
    session = Session(dataset="ring", pretrained=False)
    view = TrainView(session, steps=20_000)
    view.start()
    while view.run.step < 50 and view.running:
        view.run.join(0.05)
    view.stop()
    view.join(timeout=60)
    assert isinstance(session.model, NetworkField)
    assert session.model.summary["steps_done"] < 20_000 and "cancelled" in view.message


def test_the_exact_kind_hands_over_the_exact_field():
    session = Session(dataset="ring")
    solver_page = SolverView(session)
    view = TrainView(session, model_kind=EXACT)
    assert view._train_button.label == "Use the exact score"
    view.start()
    assert not view.running and session.model is session.exact and session.learned_is_exact
    assert sliced_w2(solver_page.last.samples, _truth(session)) < 0.15
    assert "exact score" in view.figures["preview"].title


def test_knobs_reach_the_training_config():
    view = TrainView(Session(dataset="ring", pretrained=False), steps=30, batch_size=128, lr=3e-3,
                     fp_weight=0.5, model_kind="potential_mlp")
    view.start()
    view.join(timeout=120)
    cfg = view.session.model.config
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.fp_weight, cfg.model) == (30, 128, 3e-3, 0.5, "potential_mlp")
    assert view.session.model.model.conservative


def test_uploaded_points_train_and_bad_uploads_give_messages():
    view = TrainView(Session(dataset="ring"))
    for bad, words in ((b"x,y\n1,2\n3,oops\n", "line 3 is not numeric"), (b"", "holds no data"),
                       (b"1,2,3\n" * 20, "two columns"), (b"x,y\n" + b"1,nan\n" * 20, "finite"),
                       (b"\x89PNG\r\n\x1a\n\x00\x00binary", "")):
        view.upload_points(bad)
        assert "could not use the uploaded file" in view.error
        assert words in view.error, view.error
        assert view.session.dataset == "ring"                  # nothing changed
    view.upload_points(b"x,y\n" + b"".join(f"{100 + i % 7},{i % 5}\n".encode() for i in range(40)))
    assert not view.error and view.session.dataset == UPLOADED
    assert view.session.points.shape == (40, 2) and "40 points" in view.message
    view.steps = 20
    view.start()
    view.join(timeout=60)
    assert isinstance(view.session.model, NetworkField) and view.session.model.summary["steps_done"] == 20
    view.upload_checkpoint(b"not a checkpoint at all")
    assert "not a score-lab checkpoint" in view.error


def test_a_drawing_becomes_the_data_set_as_an_upload_does():
    """Strokes on the canvas -> points along them, standardised, with the KDE's exact field;
    an empty canvas is refused with a message and changes nothing."""
    view = TrainView(Session(dataset="ring"))
    view.use_drawing()                                   # nothing drawn yet
    assert "the drawing is empty" in view.error and view.session.dataset == "ring"
    view.figures["drawing"].strokes.data = {"xs": [[-1.0, 1.0]], "ys": [[0.0, 0.0]]}   # as the browser sends
    view.use_drawing()
    x = view.session.points
    assert view.session.dataset == UPLOADED and x.shape == (4000, 2) and "using your drawing" in view.message
    # a horizontal segment of length 2, pen width w: std across / std along = w / sqrt(1/3 + w^2)
    w = PEN_WIDTH
    assert float(x[:, 1].std() / x[:, 0].std()) == pytest.approx(w / math.sqrt(1 / 3 + w**2), rel=0.1)
    assert abs(float(x.var(0).mean()) - 1.0) < 1e-4 and not view.error
    view.figures["drawing"].undo()
    assert view.figures["drawing"].drawing() == []


def test_absurd_numbers_are_refused_with_a_message_and_the_box_reset():
    import panel as pn

    view = TrainView(Session(dataset="ring"))
    steps, batch = view._layout.select(pn.widgets.IntInput)
    lr, weight = view._layout.select(pn.widgets.FloatInput)
    for box, value, words in ((steps, 999_999_999, "999,999,999 is outside 1 to 20,000"),
                              (batch, -5, "-5 is outside 16 to 16,384"),
                              (lr, None, "needs a number"), (lr, float("nan"), "needs a number"),
                              (weight, float("inf"), "needs a number")):
        box._process_events({"value": value})          # what a browser's edit sends
        assert words in view.input_error
        assert (view.steps, view.batch_size, view.lr, view.fp_weight) == (2000, 1024, 0.01, 0.0)
        assert box.value == {steps: 2000, batch: 1024, lr: 0.01, weight: 0.0}[box]   # shows what holds
    steps._process_events({"value": 300})              # a good value: taken, the message goes
    assert view.steps == 300 and not view.input_error


def test_download_then_upload_round_trips_the_model_and_its_setting():
    session = Session(dataset="ring")
    view = TrainView(session)
    data = view.download().getvalue()
    assert len(data) > 1000
    other = TrainView(Session(dataset="two_moons", schedule="ve", pretrained=False))
    other.upload_checkpoint(data)
    assert (other.session.dataset, other.session.schedule) == ("ring", "vp")  # compared with its truth
    q = torch.randn(8, 2)
    torch.testing.assert_close(other.session.model.eps(q, 0.3), session.model.eps(q, 0.3))


def test_a_failing_run_is_reported_not_raised(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("the device fell over")

    monkeypatch.setattr("lab.train.train", boom)
    view = TrainView(Session(dataset="ring"))
    before = view.session.model
    view.start()
    view.join(timeout=30)
    assert "RuntimeError: the device fell over" in view.error
    assert not view._train_button.disabled and view.session.model is before   # nothing lost


# --- the curl page -------------------------------------------------------------------------
from lab.app.curl_view import CurlView  # noqa: E402


def test_curl_page_exact_is_conservative_and_learned_is_not():
    view = CurlView(Session(dataset="ring"))   # the pretrained ring model
    n = view.numbers
    assert abs(n["circulation"]["exact"]) < 1e-8
    assert abs(n["circulation"]["learned"]) > 1e-4 and n["asymmetry"] > 1e-3
    assert n["grad_share"] + n["rest_share"] == pytest.approx(1.0, abs=1e-9)
    assert 0.5 < n["grad_share"] < 1.0          # mostly a gradient, not only
    exact_map = np.asarray(view.figures["exact"].image.data["image"][0])
    learned_map = np.asarray(view.figures["learned"].image.data["image"][0])
    diff_map = np.asarray(view.figures["difference"].image.data["image"][0])
    assert np.abs(exact_map).max() < 1e-6 and np.abs(learned_map).max() > 0.1
    np.testing.assert_allclose(diff_map, learned_map - exact_map)
    view.t = 0.5
    assert "t = 0.50" in view.message


def test_curl_page_loop_is_a_circle_that_follows_clicks_and_sliders():
    view = CurlView(Session(dataset="ring"))
    maps = view.maps
    view.move_loop(Tap(model=None, x=1.234, y=-0.46))
    assert (view.loop_x, view.loop_y) == (1.2, -0.5)
    assert view.maps is maps                    # only the circulation was recomputed
    view.loop_r = 0.4
    loop = view.figures["learned"].loop.data
    radius = np.hypot(np.asarray(loop["x"]) - 1.2, np.asarray(loop["y"]) + 0.5)
    np.testing.assert_allclose(radius, 0.4, rtol=1e-9)
    assert "radius 0.40" in view.message and abs(view.numbers["circulation"]["exact"]) < 1e-8
    view.move_loop(Tap(model=None, x=9.0, y=-9.0))  # outside the sliders' range: clipped
    assert (view.loop_x, view.loop_y) == (2.5, -2.5)


def test_curl_page_against_a_field_of_known_curl():
    session = Session(dataset="ring")
    view = CurlView(session, loop_r=0.8)
    session.model = SwirlField(session.exact, c=0.5)   # curl 2c = 1, circulation 2c pi r^2
    learned = np.asarray(view.figures["learned"].image.data["image"][0])
    np.testing.assert_allclose(learned, 1.0, atol=1e-6)                   # 2c
    np.testing.assert_allclose(np.asarray(view.figures["difference"].image.data["image"][0]), 1.0, atol=1e-6)
    assert view.figures["learned"].clim == pytest.approx(1.0, abs=1e-6)            # the map's range is +-1
    assert view.numbers["circulation"]["learned"] == pytest.approx(2 * 0.5 * math.pi * 0.8**2, rel=1e-6)
    # positive curl (counter-clockwise, as here) is drawn red, negative blue, as the page says
    from lab.app.figures import CURL_PALETTE
    red, blue = (int(c[1:3], 16) - int(c[5:7], 16) for c in (CURL_PALETTE[-1], CURL_PALETTE[0]))
    from lab.app.curl_view import READING
    assert red > 0 > blue and "red counter-clockwise" in READING


def test_curl_page_without_a_model_shows_the_exact_field_twice():
    view = CurlView(Session(dataset="ring", pretrained=False))
    assert abs(view.numbers["circulation"]["learned"]) < 1e-8 and view.numbers["asymmetry"] < 1e-10
    assert "no model" in view.figures["learned"].title


# --- the hallucinations page ---------------------------------------------------------------
from lab.app.hallucination_view import (AT_DETECTION, SESSION_MODEL as HALLUCINATION_SESSION,  # noqa: E402
                                        UNDERTRAINED_MODEL, WELL_TRAINED, HallucinationView)
from lab.hallucination import (IN_SUPPORT, end_law, kept_share, operating_points, support_labels,  # noqa: E402
                               trajectory_variance)
from lab.schedules import get_schedule  # noqa: E402
from lab.pretrained import GRID_SCHEDULE  # noqa: E402


@pytest.mark.slow
def test_hallucination_page_shows_the_papers_operating_points():
    """The page opens on the grid model trained at the paper's setting, with the paper's
    protocol (1000 ancestral steps, last 10, labels at 6 std)."""
    view = HallucinationView(Session(dataset="two_moons"))    # 20,000 samples, as the paper
    assert (view.model, view.steps, view.last_k, view.k_std, view.n) == (WELL_TRAINED, 1000, 10, 6.0, 20_000)
    # 6 std hold all but exp(-18) of each noised mode: the exact score never leaves them
    assert view.numbers["rate_exact"] == 0.0 and view.numbers["rate_learned"] > 0
    # the numbers are those of the samples shown, scored again here
    law = end_law(dataset_mixture("gaussian_grid"), get_schedule("vp", **GRID_SCHEDULE))
    labels = support_labels(view.runs["learned"].samples, law, 6.0)
    scores = trajectory_variance(view.runs["learned"], 10)
    op = operating_points(scores, labels)
    assert view.points == op and view.numbers["rate_learned"] == op.rate
    assert f"{op.retention_at_detection:.1%}" in view.message and "paper" in view.message
    assert all(0 <= f < 0.2 for f in view.numbers["floor"].values())   # a bootstrap std
    # the same cut on the exact score: its samples never leave the modes, and it removes them
    # as often as the model's good ones (measured on 100k samples each: 95.7 % and 95.6 %)
    exact_kept = kept_share(trajectory_variance(view.runs["exact"], 10), op.threshold_at_detection)
    assert view.numbers["exact_kept"] == exact_kept and f"{exact_kept:.1%}" in view.message
    assert view.numbers["good_kept"] == op.retention_at_detection
    assert abs(exact_kept - op.retention_at_detection) < 0.01
    # the pictures hold what the numbers say
    shown = {name: len(src.data["x"]) for name, src in view.figures["learned"].sources.items()}
    assert sum(shown.values()) == 20_000 and shown["in support"] == (labels == IN_SUPPORT).sum()
    kept = sum(len(src.data["x"]) for src in view.figures["kept"].sources.values())
    assert kept == int((scores < op.threshold_at_detection).sum())
    assert int(((scores < op.threshold_at_detection) & (labels == IN_SUPPORT)).sum()) == round(
        op.retention_at_detection * int((labels == IN_SUPPORT).sum()))
    assert view.figures["roc"].sources[AT_DETECTION].data["y"][0] == 0.95
    counts = sum(np.asarray(src.data["top"]).sum() for src in view.figures["histogram"].sources.values())
    assert counts == 20_000
    assert view.figures["histogram"].cut.location == pytest.approx(math.log10(op.threshold_at_detection + 1e-12))
    view.cut = "96% retention"
    assert view.figures["kept"].title.startswith("after the cut at 96% retention")
    assert view.figures["histogram"].cut.location == pytest.approx(math.log10(op.threshold_at_retention + 1e-12))


@pytest.mark.slow
def test_hallucination_page_switches_to_the_undertrained_run_which_blurs():
    view = HallucinationView(Session(dataset="gaussian_grid"))   # the runs above, from the cache
    trained = dict(view.numbers)
    view.model = UNDERTRAINED_MODEL
    under = view.numbers
    # stopped at 2,000 steps the model leaves the modes far more often, and the detector
    # tells those samples apart less well (blur settles early, as good samples do)
    assert under["rate_learned"] > 3 * trained["rate_learned"]
    assert under["auc"] < trained["auc"] and "blur" in view.message
    # blur is the model's: its cut removes far more of its good samples than of the exact score's
    assert under["good_kept"] < under["exact_kept"] - 0.2, under


def test_hallucination_page_with_nothing_to_detect_says_so():
    session = Session(dataset="ring", pretrained=False)   # learned = the exact score
    view = HallucinationView(session, model=HALLUCINATION_SESSION, n=500, steps=100)
    assert view.numbers["rate_learned"] == 0.0 and view.points is None
    assert "nothing for the detector" in view.message


def test_sample_again_draws_anew():
    view = HallucinationView(Session(dataset="gaussian_grid"), n=500, steps=20)
    first = view.runs["learned"].samples
    view.sample_again()
    assert view.seed == 1 and not torch.equal(view.runs["learned"].samples, first)


# --- the ODE-SDE gap page ------------------------------------------------------------------
from lab.app.gap_view import SESSION_MODEL, GapView, model_name  # noqa: E402
from lab.pretrained import GAP_WEIGHTS  # noqa: E402


def test_gap_page_shows_the_regulariser_shrinking_the_residual():
    view = GapView(Session(dataset="ring"), n=1000, steps=110)
    assert {model_name("lab", w) for w in GAP_WEIGHTS} <= set(view.models)  # the pretrained OU models ship
    assert view.param.model.objects[-1] == SESSION_MODEL
    residual = {}
    for w in (0.0, 1.0):
        view.model = model_name("lab", w)
        residual[w] = view.numbers["residual"]
        assert all(0 <= view.numbers[k] < 1 for k in ("ode_truth", "sde_truth", "ode_sde", "floor"))
        assert view.numbers["n"] == 1000 and view.numbers["nfe"] == 110
    # the w = 1 model satisfies the Fokker-Planck equation far better at every t (measured 4-10x)
    assert all(residual[1.0][t] < 0.5 * residual[0.0][t] for t in residual[0.0]), residual
    assert "ODE to SDE" in view.message
    assert model_name('lab', 0) in view.table and model_name('lab', 1) in view.table   # the table so far


def test_gap_page_on_the_exact_score_has_no_residual_and_a_small_gap():
    session = Session(dataset="circles")
    view = GapView(session, n=2000, steps=200)
    session.model = session.exact                # the exact score as "this session's model"
    view.model = SESSION_MODEL
    # the exact score solves the score Fokker-Planck equation: R = 0 up to rounding
    assert max(view.numbers["residual"].values()) < 1e-12
    curve = view.figures["residual"].sources[SESSION_MODEL].data
    assert len(curve["x"]) == 5                  # the VP times up to t_max = 1
    # and its ODE and SDE agree up to sampling noise: within a small multiple of the W2^2
    # between two independent true draws (measured 0.8-1.5x at 2000 points, 200 steps)
    assert view.numbers["ode_sde"] < 3 * view.numbers["floor"]
    assert "two independent true draws" in view.message


def test_a_full_disk_on_upload_gives_a_message_and_changes_nothing(monkeypatch):
    import errno

    import lab.app.files as files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    view = TrainView(Session(dataset="ring"))
    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", full)
    view.upload_points(b"x,y\n" + b"1,2\n3,4\n" * 20)
    assert "No space left on device" in view.error
    assert view.session.dataset == "ring"
    model = view.session.model
    view.upload_checkpoint(b"whatever")
    assert "No space left on device" in view.error
    assert view.session.model is model


def test_an_upload_over_the_size_cap_is_refused_before_it_is_read(monkeypatch):
    import lab.app.files as files

    monkeypatch.setattr(files, "MAX_CSV_BYTES", 1000)
    view = TrainView(Session(dataset="ring"))
    view.upload_points(b"x,y\n" + b"1,2\n" * 300)              # 1,204 bytes
    assert "MiB a CSV of points may hold" in view.error
    assert view.session.dataset == "ring"


@pytest.mark.slow
def test_guidance_page_shows_fkc_nearer_the_exact_target_than_the_naive_sampler():
    """The product and the annealed kinds at the page's defaults: FKC's samples
    end within twice the floor of the exact target, the naive sampler's over three times;
    the figures hold what was measured, the ESS curve one point a step."""
    from lab.app.guidance_view import GuidanceView

    view = GuidanceView(kind="product", n=1000, steps=500)
    for kind in ("product", "anneal"):
        view.kind = kind
        r = view.numbers
        assert not view.error and "FKC" in view.message and "the floor" in view.message
        assert r["fkc"] < 2 * r["floor"] < r["naive"] / 1.5, (kind, r)
        assert view.figures["fkc"].points("samples").shape == (1000, 2)
        assert len(view.figures["ess"].sources["ESS"].data["x"]) == 500
    view.ess_threshold = 0.0       # never resampled: the weights' ESS only reported
    assert view.numbers["resamples"] == 0
