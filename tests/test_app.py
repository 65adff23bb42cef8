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


# --- the training page ---------------------------------------------------------------------
from lab.app.train_view import TrainView  # noqa: E402
from lab.fields import NetworkField  # noqa: E402
from lab.metrics import score_error  # noqa: E402


def test_train_runs_off_the_page_thread_and_hands_the_model_over():
    session = Session(dataset="ring", pretrained=False)
    solver_page = SolverView(session)               # another page on the same session
    view = TrainView(session, steps=600)
    view.start()
    assert view.running and view._train_button.disabled and not view._stop_button.disabled
    view.join(timeout=120)
    assert not view.running and isinstance(session.model, NetworkField)
    assert view._bar.value == 100 and view._status.object.startswith("done: 600 steps")
    errors = score_error(session.model, session.exact, (0.25, 0.5, 0.9), n=2000)
    assert max(errors.values()) < 0.25, errors      # it learned the ring
    assert solver_page.last.samples.shape == (N_SAMPLES, 2)  # the other page re-sampled
    assert solver_page.session.field("learned") is session.model


def test_stop_keeps_the_model_trained_so_far():
    session = Session(dataset="ring", pretrained=False)
    view = TrainView(session, steps=20_000)
    view.start()
    while view._progress.step < 50 and view.running:
        view._thread.join(0.05)
    view.stop()
    view.join(timeout=60)
    assert isinstance(session.model, NetworkField)
    assert session.model.summary["steps_done"] < 20_000 and "cancelled" in view._status.object


def test_bad_uploads_give_messages(tmp_path):
    view = TrainView(Session(dataset="ring"))
    view._upload.value = b"x,y\n1,2\n3,oops\n"
    assert view._alert.visible and "not numeric" in view._alert.object and view.uploaded is None
    view._upload.value = b"x,y\n" + b"".join(f"{i % 7},{i % 5}\n".encode() for i in range(40))
    assert not view._alert.visible and view.uploaded.shape == (40, 2)
    view._ckpt_in.value = b"not a checkpoint at all"
    assert view._alert.visible and "not a score-lab checkpoint" in view._alert.object


def test_download_then_upload_round_trips_the_model():
    session = Session(dataset="ring")
    view = TrainView(session)
    data = view._checkpoint_bytes().getvalue()
    assert len(data) > 1000
    other = TrainView(Session(dataset="ring", pretrained=False))
    other._ckpt_in.value = data
    q = torch.randn(8, 2)
    torch.testing.assert_close(other.session.model.eps(q, 0.3), session.model.eps(q, 0.3))


def test_a_failing_run_is_reported_not_raised():
    view = TrainView(Session(dataset="ring"), steps=5)
    view.lr = 0.1
    view.batch_size = 16
    view.uploaded = torch.ones(20, 2)  # all points equal: train() refuses
    view.start()
    view.join(timeout=30)
    assert view._alert.visible and "all equal" in view._alert.object
    assert not view._train_button.disabled


# --- the curl page -------------------------------------------------------------------------
from lab.app.curl_view import CurlView  # noqa: E402


def test_curl_page_exact_is_conservative_and_learned_is_not():
    view = CurlView(Session(dataset="ring"))   # the pretrained ring model
    n = view.numbers
    assert abs(n["circulation"]["exact"]) < 1e-8
    assert abs(n["circulation"]["learned"]) > 1e-4 and n["asymmetry"] > 1e-3
    assert n["grad_share"] + n["rest_share"] == pytest.approx(1.0, abs=1e-9)
    assert 0.5 < n["grad_share"] < 1.0          # mostly a gradient, not only
    view.t = 0.5
    assert "t = 0.50" in view._info.object


def test_curl_page_without_a_model_shows_the_exact_field_twice():
    view = CurlView(Session(dataset="ring", pretrained=False))
    assert abs(view.numbers["circulation"]["learned"]) < 1e-8 and view.numbers["asymmetry"] < 1e-10


# --- the hallucinations page ---------------------------------------------------------------
from lab.app.hallucination_view import HallucinationView  # noqa: E402


def test_hallucination_page_exact_stays_in_support_learned_does_not():
    view = HallucinationView(Session(dataset="gaussian_grid"), n=2000)
    # 3 std holds all but exp(-4.5) = 1.1% of each (noised) mode; the pretrained model
    # interpolates (measured 13-15%)
    assert view.rates["exact"] < 0.02 and view.rates["learned"] > 0.05
    assert view.report.auc > 0.6                 # better than chance (0.5); measured 0.79
    before = view.report
    view.keep = 0.6                              # keep fewer: detection rises, retention falls
    assert view.report.detection >= before.detection and view.report.retention <= before.retention
    assert "removed" in view._info.object


# --- the ODE-SDE gap page ------------------------------------------------------------------
from lab.app.gap_view import GapView  # noqa: E402
from lab.pretrained import GAP_WEIGHTS  # noqa: E402


def test_gap_page_shows_the_regulariser_shrinking_the_residual():
    view = GapView(n=1000, steps=100)
    assert set(view.models) == set(GAP_WEIGHTS)  # the pretrained OU models ship
    residual = {}
    for w in (0.0, 1.0):
        view.weight = w
        residual[w] = view.numbers["residual"]
        assert all(0 <= view.numbers[k] < 1 for k in ("ode_truth", "sde_truth", "ode_sde"))
    # the w = 1 model satisfies the Fokker-Planck equation far better at every t (measured 4-10x)
    assert all(residual[1.0][t] < 0.5 * residual[0.0][t] for t in residual[0.0]), residual
    assert "ODE to SDE" in view._info.object


def test_solver_page_shows_the_learned_field_beside_the_exact_one():
    view = SolverView(Session(dataset="ring"))
    assert view._learned_field.object is not None and view._exact_field.object is not None
    first = view._learned_field.object
    view.solver = "ddim"                        # a solver change does not redraw the fields
    assert view._learned_field.object is first
    view.session.model = None                   # a model change does
    assert view._learned_field.object is not first
