"""Train a model live: knobs, Train / Stop, progress, a live loss curve and sample preview.

Training runs on a background thread (on the GPU when there is one); the thread only
writes a small progress record, and a periodic callback on the page's own thread draws it.
The finished model becomes the session's model, so every other page shows it.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading

import panel as pn
import param
import torch

from lab import plots
from lab.app.session import Session
from lab.data import load_points, make_dataset
from lab.models import MODELS
from lab.solvers import sample
from lab.train import TrainConfig, load, save, train

__all__ = ["TrainView", "MAX_TRAIN_STEPS"]

MAX_TRAIN_STEPS = 20_000    # the served lab's cap on one run
PREVIEW_POINTS = 1000       # samples drawn for the live preview
PREVIEW_EVERY = 4           # preview every k progress reports (each is log_every steps)
POLL_MS = 300               # how often the page redraws the progress
N_TRAIN_POINTS = 20_000     # points drawn from a built-in data set


class _Progress:
    """What the training thread shares with the page: replaced whole, read on the page."""

    def __init__(self):
        self.steps, self.losses, self.step, self.total = [], [], 0, 0
        self.preview = None
        self.done = False
        self.result = None
        self.error = ""
        self.stopped = ""


class TrainView(pn.viewable.Viewer):
    """Train on the session's data set (or uploaded points) and hand the model to the session."""

    model_kind = param.Selector(default="score_mlp", objects=list(MODELS))
    steps = param.Integer(default=TrainConfig.steps, bounds=(1, MAX_TRAIN_STEPS))
    batch_size = param.Integer(default=TrainConfig.batch_size, bounds=(16, 16_384))
    lr = param.Number(default=TrainConfig.lr, bounds=(1e-5, 0.1))

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self.uploaded = None                     # points from an uploaded CSV, or None
        self._thread = None
        self._cancel = threading.Event()
        self._progress = _Progress()
        self._train_button = pn.widgets.Button(name="Train", button_type="primary")
        self._stop_button = pn.widgets.Button(name="Stop", button_type="warning", disabled=True)
        self._train_button.on_click(lambda event: self.start())
        self._stop_button.on_click(lambda event: self.stop())
        self._bar = pn.indicators.Progress(value=0, max=100, width=280)
        self._status = pn.pane.Markdown("")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self._loss = pn.pane.HoloViews(plots.curve_plot([0], [0], title="training loss"))
        self._preview = pn.pane.HoloViews(sizing_mode="fixed")
        self._upload = pn.widgets.FileInput(accept=".csv,.txt", name="points (CSV)")
        self._upload.param.watch(self._on_upload, "value")
        self._ckpt_in = pn.widgets.FileInput(accept=".pt", name="checkpoint")
        self._ckpt_in.param.watch(self._on_checkpoint, "value")
        self._download = pn.widgets.FileDownload(callback=self._checkpoint_bytes, filename="model.pt",
                                                 label="Download the model")
        knobs = pn.Param(self.param, parameters=["model_kind", "steps", "batch_size", "lr"],
                         show_name=False)
        self._layout = pn.Row(
            pn.Column("### Train", pn.Param(self.session.param, parameters=["dataset", "schedule"],
                                            show_name=False),
                      knobs, pn.Row(self._train_button, self._stop_button), self._bar, self._status,
                      self._alert, "Your own points (two columns x, y):", self._upload,
                      "Load a checkpoint:", self._ckpt_in, self._download, width=320),
            pn.Column(self._loss, self._preview))
        self._poller = None
        self._draw_preview(self.session.field("learned"))

    # --- training on a background thread ------------------------------------------------
    def config(self) -> TrainConfig:
        return TrainConfig(schedule=self.session.schedule, model=self.model_kind, steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, log_every=50)

    def start(self):
        """Start training (ignored while a run is going)."""
        if self.running:
            return
        try:
            cfg = self.config()
            data = self.uploaded if self.uploaded is not None else make_dataset(
                self.session.dataset, N_TRAIN_POINTS, seed=0)
        except ValueError as e:
            self._show_error(str(e))
            return
        self._alert.visible = False
        self._cancel.clear()
        self._progress = progress = _Progress()
        progress.total = cfg.steps
        self._thread = threading.Thread(target=self._run, args=(data, cfg, progress), daemon=True,
                                        name="score-lab-train")
        self._thread.start()
        self._train_button.disabled, self._stop_button.disabled = True, False
        if pn.state.curdoc is not None and self._poller is None:
            self._poller = pn.state.add_periodic_callback(self.poll, period=POLL_MS)
            pn.state.on_session_destroyed(lambda ctx: self.stop())

    def _run(self, data, cfg, progress: _Progress):
        reports = [0]

        def callback(p):
            progress.steps = progress.steps + [p.step]
            progress.losses = progress.losses + [p.loss]
            progress.step = p.step
            reports[0] += 1
            if reports[0] % PREVIEW_EVERY == 1:
                progress.preview = sample(p.field, n=PREVIEW_POINTS, steps=10, seed=0).samples.cpu()
            return None

        try:
            field, history = train(data, cfg, callback=callback, cancel=self._cancel)
            progress.stopped = history["summary"]["stopped"] or ""
            progress.result = field
        except Exception as e:  # a thread must not die silently: the page shows it
            progress.error = f"{type(e).__name__}: {e}"
        progress.done = True

    def stop(self):
        """Ask the training thread to stop; the model trained so far is kept."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None):
        """Wait for the training thread (tests, scripts), then draw its result."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.poll()

    # --- drawing, on the page's thread ------------------------------------------------------
    def poll(self):
        """Draw the progress the thread has written; finish up when it is done."""
        p = self._progress
        if p.total:
            self._bar.value = int(100 * p.step / p.total)
            last = f", loss {p.losses[-1]:.4f}" if p.losses else ""
            self._status.object = f"step {p.step} of {p.total}{last}"
        if p.steps:
            self._loss.object = plots.curve_plot(p.steps, p.losses, title="training loss")
        if p.preview is not None:
            self._preview.object = plots.samples_plot(p.preview, title="samples while training (10 steps)")
        if p.done and not self.running:
            self._finish(p)

    def _finish(self, p: _Progress):
        self._train_button.disabled, self._stop_button.disabled = False, True
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        if p.error:
            self._show_error(f"training failed: {p.error}")
        elif p.result is not None:
            self.session.model = p.result
            summary = p.result.summary
            loss = f", final loss {summary['final_loss']:.4f}" if summary["final_loss"] is not None else ""
            self._status.object = (f"done: {summary['steps_done']} steps in {summary['train_s']:.1f} s"
                                   f"{loss}{' (' + p.stopped + ')' if p.stopped else ''}")
            self._draw_preview(p.result)
        self._progress = _Progress()

    def _draw_preview(self, field):
        with torch.no_grad():
            x = sample(field, n=PREVIEW_POINTS, steps=20, seed=0).samples
        self._preview.object = plots.samples_plot(x, title="samples of the current model")

    def _show_error(self, message: str):
        self._alert.object, self._alert.visible = message, True

    # --- files ---------------------------------------------------------------------------------
    def _on_upload(self, event):
        if not event.new:
            return
        try:
            with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as fh:
                fh.write(event.new)
            try:
                self.uploaded = load_points(fh.name)
            finally:
                os.unlink(fh.name)
        except ValueError as e:
            self.uploaded = None
            self._show_error(f"could not use the uploaded file: {e}")
            return
        self._alert.visible = False
        self._status.object = f"using your {self.uploaded.shape[0]:,} points; press Train"

    def _on_checkpoint(self, event):
        if not event.new:
            return
        with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as fh:
            fh.write(event.new)
        try:
            field = load(fh.name, device="cpu")
        except ValueError as e:
            self._show_error(str(e).replace(fh.name, "the uploaded file"))
            return
        finally:
            os.unlink(fh.name)
        self._alert.visible = False
        self.session.model = field
        self._draw_preview(field)
        self._status.object = "loaded the uploaded checkpoint"

    def _checkpoint_bytes(self):
        field = self.session.model
        if field is None:
            self._show_error("there is no trained model to download yet")
            return io.BytesIO(b"")
        with tempfile.TemporaryDirectory() as folder:
            path = save(field, os.path.join(folder, "model.pt"), meta={"dataset": self.session.dataset})
            with open(path, "rb") as fh:
                return io.BytesIO(fh.read())

    def __panel__(self):
        return self._layout
