"""The training page (TrainView): training, uploads, downloads, driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import math

import pytest
import torch

from lab.app.session import UPLOADED, Session
from lab.app.solver_view import N_SAMPLES, SolverView
from lab.app.train_view import EXACT, LOG_EVERY, PEN_WIDTH, TrainView
from lab.fields import NetworkField
from lab.metrics import score_error, sliced_w2


def test_train_runs_off_the_page_thread_and_hands_the_model_over(true_samples):
    session = Session(dataset="ring", pretrained=False)
    solver_page = SolverView(session)               # another page on the same session
    view = TrainView(session, steps=600)
    view.start()
    assert view.running and view.train_button.disabled and not view.stop_button.disabled
    view.join(timeout=120)
    assert not view.running and isinstance(session.model, NetworkField)
    assert view.run.step == view.run.total == 600 and view.message.startswith("done: 600 steps")
    errors = score_error(session.model, session.exact, (0.25, 0.5, 0.9), n=2000)
    assert max(errors.values()) < 0.25, errors      # it learned the ring
    loss = view.figures["loss"].sources["loss"].data          # the live curve got every report
    assert list(loss["x"]) == list(range(LOG_EVERY, 601, LOG_EVERY))
    assert solver_page.last.samples.shape == (N_SAMPLES, 2)  # the other page re-sampled
    assert solver_page.session.field("learned") is session.model
    assert sliced_w2(solver_page.last.samples, true_samples(session)) < 0.15


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


def test_the_exact_kind_hands_over_the_exact_field(true_samples):
    session = Session(dataset="ring")
    solver_page = SolverView(session)
    view = TrainView(session, model_kind=EXACT)
    assert view.train_button.label == "Use the exact score"
    view.start()
    assert not view.running and session.model is session.exact and session.learned_is_exact
    assert sliced_w2(solver_page.last.samples, true_samples(session)) < 0.15
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
    steps, batch = view.layout.select(pn.widgets.IntInput)
    lr, weight = view.layout.select(pn.widgets.FloatInput)
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
    assert not view.train_button.disabled and view.session.model is before   # nothing lost


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
