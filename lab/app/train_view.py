"""Train a model live: knobs, Train / Stop, progress (steps/s, time left), a live loss curve
and sample preview; your own points (a CSV) or a checkpoint in, the model out.

Training is a ``lab.train.TrainingRun`` (a background thread, on the GPU when there is one);
the thread only writes its progress record, and a periodic callback on the page's own thread
draws it. The finished model becomes the session's model, so every other tab shows it.
"""
from __future__ import annotations

import io
import math
import threading

import panel as pn
import param
import torch

from lab import plots
from lab.app.figures import CurvesFigure, DrawFigure, ScatterFigure
from lab.app.files import checkpoint_bytes, field_from_upload, points_from_upload
from lab.app.inputs import number_input
from lab.app.session import log
from lab.app.view import ON_SESSION, LabView, page_loop_running
from lab.app.worker import on_page
from lab.data import end_law, points_from_drawing
from lab.fields import MixtureField
from lab.models import MODELS
from lab.schedules import SCHEDULES
from lab.solvers import sample
from lab.train import TrainConfig, TrainingRun

__all__ = ["TrainView", "TrainingPage", "MAX_TRAIN_STEPS", "EXACT"]

MAX_TRAIN_STEPS = 20_000    # the served lab's cap on one run
EXACT = "exact"             # the model kind that trains nothing: the exact score
PREVIEW_POINTS = 1000       # samples drawn for the live preview
PREVIEW_STEPS = 10          # their sampler steps (dpm++2m)
PREVIEW_EVERY = 4           # preview every k progress reports (each is LOG_EVERY steps)
LOG_EVERY = 50              # steps between progress reports
POLL_MS = 300               # how often the page redraws the progress
N_TRAIN_POINTS = 20_000     # points drawn from a built-in data set
N_DRAWN_POINTS = 4000       # points made from a drawing
PEN_WIDTH = 0.04            # their spread around the strokes, in the canvas's units (it spans +-2.5)


class TrainingPage:
    """What a page that trains in the background shares (the Train and Flows pages): its
    ``TrainingRun`` (``run``), Stop, a periodic callback that draws the run's progress on the
    page's thread (``_bar``, ``figures["loss"]``, the progress text), and the run stopped when
    the session closes. A page calls ``_init_training`` in its ``__init__`` and ``_watch(run)``
    to start one, draws more in ``_draw_progress`` and ends in ``_finish(run)``."""

    def _init_training(self):
        self.run = None                         # the TrainingRun under way or last finished
        self._finished = None                   # the run whose end has been drawn
        self._drawn = 0                         # loss points already on the curve
        self._poller = None
        self.session.on_close(self._on_session_closed)

    def _watch(self, run: TrainingRun) -> None:
        """Start ``run`` and draw its progress until it ends."""
        self._drawn = 0
        self.run = run.start()
        if self._poller is None and page_loop_running():
            self._poller = pn.state.add_periodic_callback(self.poll, period=POLL_MS)

    def stop(self):
        """Ask the training thread to stop; the model trained so far is kept."""
        if self.run is not None:
            self.run.stop()

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def join(self, timeout: float | None = None):
        """Wait for the training thread (tests, scripts), then draw its result."""
        if self.run is not None:
            self.run.join(timeout)
        self.poll()

    def poll(self):
        """Draw the progress the run has written; finish up when it is done."""
        run = self.run
        if run is None:
            return
        self._bar.value = int(100 * min(run.step, run.total) / run.total)
        n = len(run.losses)
        if not run.done:
            self.say(progress_text(run))
        if n > self._drawn:
            self.figures["loss"].stream("loss", run.steps[self._drawn:n], run.losses[self._drawn:n])
            self._drawn = n
        self._draw_progress(run)
        if run.done and not run.running and run is not self._finished:
            self._finished = run
            if self._poller is not None:
                self._poller.stop()
                self._poller = None
            self._finish(run)

    def _draw_progress(self, run: TrainingRun) -> None:
        """What else the page draws of a run under way (the Train page: its preview)."""

    def _finish(self, run: TrainingRun) -> None:
        raise NotImplementedError

    def _on_session_closed(self):
        """Stop training; a helper thread waits for it to end and logs (never the page's thread)."""
        if not self.running:
            return
        run = self.run
        run.stop()

        def report():
            run.join(60)
            state = "still running after 60 s" if run.running else "stopped"
            log.info("score-lab: training %s at step %d of %d (its session closed)", state, run.step, run.total)
        threading.Thread(target=report, name="score-lab-train-reaper", daemon=True).start()


class TrainView(TrainingPage, LabView):
    """Train on the session's data set (or uploaded points) and hand the model to the session."""

    model_kind = param.Selector(default="score_mlp", objects=[*MODELS, EXACT], label="model",
                                doc="score_mlp: an eps network; potential_mlp: an energy network, "
                                    "conservative by construction; exact: the exact score, no training")
    steps = param.Integer(default=TrainConfig.steps, bounds=(1, MAX_TRAIN_STEPS), label="training steps")
    batch_size = param.Integer(default=TrainConfig.batch_size, bounds=(16, 16_384), label="batch size")
    lr = param.Number(default=TrainConfig.lr, bounds=(1e-5, 0.1), label="learning rate")
    fp_weight = param.Number(default=TrainConfig.fp_weight, bounds=(0.0, 10.0), step=0.1,
                             label="Fokker-Planck weight w",
                             doc="the regulariser of Deveney et al. (see the ODE vs SDE tab)")

    title = "Train"
    failure = ""                 # the train page's messages say what failed themselves

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self._init_training()
        self._preview_shown = None
        self._worker = self.worker("train-preview", label="sampling…")
        self._reader = self.worker("upload", label="reading your points…")   # off the page's thread
        # the page's buttons (public: what a test presses and reads, as a student would)
        self.train_button = pn.widgets.Button(label=self._train_label(self.model_kind), color="primary",
                                               width=140)
        self.stop_button = pn.widgets.Button(label="Stop", color="warning", disabled=True, width=140)
        self.train_button.on_click(on_page(lambda event: self.start()))
        self.stop_button.on_click(on_page(lambda event: self.stop()))
        self._bar = pn.indicators.Progress(value=0, max=100, width=280)
        self.figures = {"loss": CurvesFigure("training loss (press Train)", {"loss": "#1f77b4"},
                                             "step", "loss", width=2 * plots.SIZE - 60, log_y=True),
                        "preview": ScatterFigure("samples of the current model",
                                                 {"truth": plots.COLORS["truth"], "samples": plots.COLORS["model"]}),
                        "drawing": DrawFigure()}
        drawing = self.figures["drawing"]
        use = pn.widgets.Button(label="Use my drawing", color="primary", width=130)
        undo = pn.widgets.Button(label="Undo", width=70)
        clear = pn.widgets.Button(label="Clear", width=70)
        use.on_click(on_page(lambda event: self.use_drawing()))
        undo.on_click(on_page(lambda event: drawing.undo()))
        clear.on_click(on_page(lambda event: drawing.clear()))
        self._upload = pn.widgets.FileInput(accept=".csv,.txt", label="points (CSV)")
        self._upload.param.watch(lambda e: e.new is not None and self.upload_points(e.new), "value")
        self._ckpt_in = pn.widgets.FileInput(accept=".pt", label="checkpoint")
        self._ckpt_in.param.watch(lambda e: e.new is not None and self.upload_checkpoint(e.new), "value")
        self._download = pn.widgets.FileDownload(callback=self.download, filename="model.pt",
                                                 label="Download the model")
        self._input_alert = pn.pane.Alert("", alert_type="warning", visible=False)  # refused numbers
        knobs = pn.Column(
            pn.Param(self.param, parameters=["model_kind"], show_name=False),
            number_input(self, "steps", self._show_input_error, step=500),
            number_input(self, "batch_size", self._show_input_error, step=256),
            number_input(self, "lr", self._show_input_error, step=1e-3, format="0.[00000]"),
            number_input(self, "fp_weight", self._show_input_error, step=0.1), self._input_alert)
        self.page([pn.Param(self.session.param, parameters=["dataset", "schedule"], show_name=False),
                   knobs, pn.Row(self.train_button, self.stop_button), self._bar],
                  pn.Column(self.figures["loss"].pane,
                            pn.Row(self.figures["preview"].pane,
                                   pn.Column(drawing.pane, pn.Row(use, undo, clear)))),
                  after=["**Your own points** (a CSV of two columns x, y):", self._upload,
                         "**Load a checkpoint:**", self._ckpt_in, self._download])
        self.redraw_preview()

    @property
    def input_error(self) -> str:
        """The refused number's message beside the boxes ("" when none)."""
        return self._input_alert.object if self._input_alert.visible else ""

    # --- training on a background thread ------------------------------------------------
    def config(self) -> TrainConfig:
        return TrainConfig(schedule=self.session.schedule, model=self.model_kind, steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, fp_weight=self.fp_weight,
                           log_every=LOG_EVERY)

    @staticmethod
    def _train_label(kind: str) -> str:
        return "Use the exact score" if kind == EXACT else "Train"

    @param.depends("model_kind", watch=True)
    def _on_kind(self):
        self.train_button.label = self._train_label(self.model_kind)

    def start(self):
        """Start training (ignored while a run is going); the exact kind takes the exact field."""
        if self.running:
            return
        if self.model_kind == EXACT:
            self.session.model = self.session.exact
            self.say(f"using the exact score of {self.session.dataset}: nothing to train")
            return
        try:
            cfg = self.config()
            data = self.session.data(N_TRAIN_POINTS)
        except ValueError as e:
            self.show_error(e)
            return
        self._run_key = self.session.key        # the setting this run trains for
        loss = self.figures["loss"]
        loss.clear()
        loss.title = ("training loss (denoising score matching"
                      f"{', Fokker-Planck w = %g' % cfg.fp_weight if cfg.fp_weight else ''})")
        self.train_button.disabled, self.stop_button.disabled = True, False
        self.say(f"starting: {cfg.steps} steps of a {cfg.model}")
        self._watch(TrainingRun(data, cfg, preview=_preview, preview_every=PREVIEW_EVERY))

    # --- drawing, on the page's thread ------------------------------------------------------
    def _draw_progress(self, run: TrainingRun):
        if run.preview is not None and run.preview is not self._preview_shown:
            self._preview_shown = run.preview
            self.figures["preview"].update(
                samples=run.preview, title=f"samples while training ({PREVIEW_STEPS} steps), step {run.preview_step}")

    def _finish(self, run: TrainingRun):
        self.train_button.disabled, self.stop_button.disabled = False, True
        if run.error:
            self.show_error(f"training failed: {run.error}")
        elif run.result is not None:
            summary = run.result.summary
            loss = f", final loss {summary['final_loss']:.4f}" if summary["final_loss"] is not None else ""
            self.say(f"done: {summary['steps_done']} steps in {summary['train_s']:.1f} s "
                     f"on {summary.get('device', 'cpu')} ({run.rate:.0f} steps/s){loss}"
                     f"{' (' + run.stopped + ')' if run.stopped else ''}")
            self._install(run.result)

    def _install(self, field):
        """Make a finished run the session's model, in the setting it was trained for: if the
        data set or schedule changed meanwhile (here or on another tab), go back to it."""
        s, (dataset, schedule, version) = self.session, self._run_key
        if version != s.points_version:
            self.show_error("training finished, but the uploaded points were replaced while it ran: "
                            "its model was not used; press Train again")
            return
        if s.key != self._run_key:
            s.param.update(dataset=dataset, schedule=schedule)
            self._info.object += f"; back to {dataset} with the {schedule} schedule, which it was trained for"
        s.model = field

    @param.depends(*ON_SESSION, watch=True)
    def redraw_preview(self):
        """Draw samples of the session's field (on a session change: a new model or data set)."""
        self._draw_preview(self.session.field("learned"))

    def _draw_preview(self, field):
        """Samples of the session's field over the truth (on the worker: ~0.1 s)."""
        exact = self.session.exact
        name = "exact score" if isinstance(field, MixtureField) else "current model"

        def compute():
            g = torch.Generator().manual_seed(2)
            truth = end_law(exact.mixture, exact.schedule).sample(PREVIEW_POINTS, g)
            return truth, sample(field, n=PREVIEW_POINTS, steps=20, seed=0).samples

        def draw(result):
            truth, x = result
            self.figures["preview"].update(truth=truth, samples=x, title=f"samples of the {name} (20 steps)")
        self._worker.submit(compute, draw, lambda e: self.show_error(e, "could not sample the model"))

    def _show_input_error(self, message: str):
        """A refused number, beside the boxes ("" hides it)."""
        self._input_alert.object, self._input_alert.visible = message, bool(message)

    # --- files ---------------------------------------------------------------------------------
    def upload_points(self, data: bytes) -> None:
        """Use the points of an uploaded CSV as the session's data set (read on a worker:
        parsing a million rows takes seconds); a refused file leaves everything as it was."""
        def use(points):                            # on the page
            try:
                x = self.session.use_points(points)
            except ValueError as e:
                failed(e)
                return
            self.say(f"using your {x.shape[0]:,} points (centred and scaled to unit variance); press Train")

        def failed(e):
            self.show_error(e, None if isinstance(e, OSError) else "could not use the uploaded file")
        self._reader.submit(lambda: points_from_upload(data), use, failed)

    def use_drawing(self, strokes=None, dots=()) -> None:
        """Make the strokes on the canvas (or the ``strokes`` and ``dots`` given, see
        ``lab.data.points_from_drawing``) the session's data set, as an uploaded CSV does."""
        strokes = self.figures["drawing"].drawing() if strokes is None else strokes
        try:
            x = self.session.use_points(points_from_drawing(strokes, dots, N_DRAWN_POINTS, PEN_WIDTH))
        except ValueError as e:
            self.show_error(e, "could not use the drawing")
            return
        self.say(f"using your drawing: {x.shape[0]:,} points along it (centred and scaled to unit variance); "
                 "press Train")

    def upload_checkpoint(self, data: bytes) -> None:
        """Make an uploaded checkpoint the session's model, with its data set and schedule."""
        try:
            field = field_from_upload(data)
        except (ValueError, OSError) as e:
            self.show_error(e)
            return
        dataset = field.meta.get("dataset")
        if dataset in self.session.param.dataset.objects:
            self.session.dataset = dataset      # compare it with the truth it was trained on
        if field.schedule.name in SCHEDULES:
            self.session.schedule = field.schedule.name
        self.session.model = field
        self.say(f"loaded the uploaded checkpoint: a {type(field.model).__name__} "
                 f"({field.schedule.name} schedule{', ' + dataset if dataset else ''})")

    def download(self) -> io.BytesIO:
        """The session's model as a checkpoint file (empty, with a message, when there is none)."""
        try:
            return io.BytesIO(checkpoint_bytes(self.session.model, {"dataset": self.session.dataset}))
        except ValueError as e:
            self.show_error(e)
            return io.BytesIO(b"")


def _preview(field):
    """The live preview's samples of the model as it is (on the training thread)."""
    return sample(field, n=PREVIEW_POINTS, steps=PREVIEW_STEPS, seed=0).samples.cpu()


def progress_text(run: TrainingRun) -> str:
    """"step 400 of 2000, loss 0.41, 52 steps/s, about 31 s left" (before the first report:
    "starting")."""
    n = len(run.losses)      # the thread appends the step first, then the loss
    if not n:
        return f"starting: {run.total} steps"
    left = run.time_left
    eta = f", about {left:.0f} s left" if math.isfinite(left) else ""
    return f"step {run.steps[n - 1]} of {run.total}, loss {run.losses[n - 1]:.4f}, {run.rate:.0f} steps/s{eta}"
