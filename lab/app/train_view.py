"""Train a model live: knobs, Train / Stop, progress, a live loss curve and sample preview.

Training runs on a background thread (on the GPU when there is one); the thread only
writes a small progress record, and a periodic callback on the page's own thread draws it.
The finished model becomes the session's model, so every other tab shows it.
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
from lab.app.figures import CurvesFigure, ScatterFigure
from lab.app.inputs import number_input
from lab.app.session import REDRAW_ON, Session, log
from lab.app.worker import Worker, on_page
from lab.data import MAX_CSV_BYTES, load_points
from lab.fields import MixtureField
from lab.hallucination import end_law
from lab.models import MODELS
from lab.schedules import SCHEDULES
from lab.solvers import sample
from lab.train import TrainConfig, load, save, train

__all__ = ["TrainView", "MAX_TRAIN_STEPS", "EXACT"]

MAX_TRAIN_STEPS = 20_000    # the served lab's cap on one run
EXACT = "exact"             # the model kind that trains nothing: the exact score
PREVIEW_POINTS = 1000       # samples drawn for the live preview
PREVIEW_STEPS = 10          # their sampler steps (dpm++2m)
PREVIEW_EVERY = 4           # preview every k progress reports (each is LOG_EVERY steps)
LOG_EVERY = 50              # steps between progress reports
POLL_MS = 300               # how often the page redraws the progress
N_TRAIN_POINTS = 20_000     # points drawn from a built-in data set


def _page_loop_running() -> bool:
    """Whether a periodic callback will fire: on a served page, or in a Jupyter kernel
    (a notebook cell). Elsewhere (tests, scripts) ``join`` draws the progress instead."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Progress:
    """What the training thread shares with the page: appended to there, read here."""

    def __init__(self, total: int = 0):
        self.steps, self.losses, self.step, self.total = [], [], 0, total
        self.preview = None
        self.done = False
        self.result = None
        self.error = ""
        self.stopped = ""


class TrainView(pn.viewable.Viewer):
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

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self._thread = None
        self._cancel = threading.Event()
        self._progress = _Progress()
        self._drawn = 0                         # loss points already on the curve
        self._preview_shown = None
        self._poller = None
        self._worker = Worker("score-lab-train-preview", label="sampling…")
        self.session.on_close(self._worker.close)
        self._reader = Worker("score-lab-upload", label="reading your points…")   # off the page's thread
        self.session.on_close(self._reader.close)
        self.session.on_close(self._on_session_closed)
        self._train_button = pn.widgets.Button(label=self._train_label(self.model_kind), color="primary",
                                               width=140)
        self._stop_button = pn.widgets.Button(label="Stop", color="warning", disabled=True, width=140)
        self._train_button.on_click(on_page(lambda event: self.start()))
        self._stop_button.on_click(on_page(lambda event: self.stop()))
        self._bar = pn.indicators.Progress(value=0, max=100, width=280)
        self._status = pn.pane.Markdown("")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self._loss = CurvesFigure("training loss (press Train)", {"loss": "#1f77b4"},
                                  "step", "loss", width=2 * plots.SIZE - 60, log_y=True)
        self._preview = ScatterFigure("samples of the current model", {"truth": plots.COLORS["truth"],
                                                                       "samples": plots.COLORS["model"]})
        self._upload = pn.widgets.FileInput(accept=".csv,.txt", label="points (CSV)")
        self._upload.param.watch(self._on_upload, "value")
        self._ckpt_in = pn.widgets.FileInput(accept=".pt", label="checkpoint")
        self._ckpt_in.param.watch(self._on_checkpoint, "value")
        self._download = pn.widgets.FileDownload(callback=self._checkpoint_bytes, filename="model.pt",
                                                 label="Download the model")
        self._input_alert = pn.pane.Alert("", alert_type="warning", visible=False)  # refused numbers
        knobs = pn.Column(
            pn.Param(self.param, parameters=["model_kind"], show_name=False),
            number_input(self, "steps", self._show_input_error, step=500),
            number_input(self, "batch_size", self._show_input_error, step=256),
            number_input(self, "lr", self._show_input_error, step=1e-3, format="0.[00000]"),
            number_input(self, "fp_weight", self._show_input_error, step=0.1), self._input_alert)
        self._layout = pn.FlexBox(   # the figures wrap below the controls on a narrow screen
            pn.Column("### Train", pn.Param(self.session.param, parameters=["dataset", "schedule"],
                                            show_name=False),
                      knobs, pn.Row(self._train_button, self._stop_button), self._bar, self._status,
                      self._alert, self.session.notice(),
                      "**Your own points** (a CSV of two columns x, y):", self._upload,
                      "**Load a checkpoint:**", self._ckpt_in, self._download, width=320),
            pn.Column(self._loss.pane, self._preview.pane))
        self.param.watch(self._on_kind, "model_kind")
        self.session.param.watch(lambda *e: self._draw_preview(self.session.field("learned")),
                                 REDRAW_ON)
        self._draw_preview(self.session.field("learned"))

    # --- training on a background thread ------------------------------------------------
    def config(self) -> TrainConfig:
        return TrainConfig(schedule=self.session.schedule, model=self.model_kind, steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, fp_weight=self.fp_weight,
                           log_every=LOG_EVERY)

    @staticmethod
    def _train_label(kind: str) -> str:
        return "Use the exact score" if kind == EXACT else "Train"

    def _on_kind(self, event):
        self._train_button.label = self._train_label(event.new)

    def start(self):
        """Start training (ignored while a run is going); the exact kind takes the exact field."""
        if self.running:
            return
        if self.model_kind == EXACT:
            self._alert.visible = False
            self.session.model = self.session.exact
            self._status.object = f"using the exact score of {self.session.dataset}: nothing to train"
            return
        try:
            cfg = self.config()
            data = self.session.data(N_TRAIN_POINTS)
        except ValueError as e:
            self._show_error(str(e))
            return
        self._alert.visible = False
        self._cancel.clear()
        self._run_key = self.session.key        # the setting this run trains for
        self._progress = progress = _Progress(cfg.steps)
        self._drawn = 0
        self._loss.clear()
        self._loss.title = f"training loss (denoising score matching{', Fokker-Planck w = %g' % cfg.fp_weight if cfg.fp_weight else ''})"
        self._thread = threading.Thread(target=self._run, args=(data, cfg, progress), daemon=True,
                                        name="score-lab-train")
        self._thread.start()
        self._train_button.disabled, self._stop_button.disabled = True, False
        self._status.object = f"starting: {cfg.steps} steps of a {cfg.model}"
        if self._poller is None and _page_loop_running():
            self._poller = pn.state.add_periodic_callback(self.poll, period=POLL_MS)

    def _run(self, data, cfg, progress: _Progress):
        reports = [0]

        def callback(p):
            progress.steps.append(p.step)       # list.append is atomic: the page reads a prefix
            progress.losses.append(p.loss)
            progress.step = p.step
            reports[0] += 1
            if reports[0] % PREVIEW_EVERY == 1:
                progress.preview = sample(p.field, n=PREVIEW_POINTS, steps=PREVIEW_STEPS, seed=0).samples.cpu()
            return None

        try:
            field, history = train(data, cfg, callback=callback, cancel=self._cancel)
            progress.stopped = history["summary"]["stopped"] or ""
            progress.result = field
        except Exception as e:  # a thread must not die silently: the page shows it
            progress.error = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        progress.done = True

    def stop(self):
        """Ask the training thread to stop; the model trained so far is kept."""
        self._cancel.set()

    def _on_session_closed(self):
        """Stop training; a helper thread waits for it to end and logs (never the page's thread)."""
        if not self.running:
            return
        self.stop()
        thread, progress = self._thread, self._progress

        def report():
            thread.join(60)
            state = "still running after 60 s" if thread.is_alive() else "stopped"
            log.info("score-lab: training %s at step %d of %d (its session closed)", state,
                     progress.step, progress.total)
        threading.Thread(target=report, name="score-lab-train-reaper", daemon=True).start()

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
            n = len(p.losses)
            last = f", loss {p.losses[n - 1]:.4f}" if n else ""
            self._status.object = f"step {p.step} of {p.total}{last}"
            if n > self._drawn:
                self._loss.stream("loss", p.steps[self._drawn:n], p.losses[self._drawn:n])
                self._drawn = n
        if p.preview is not None and p.preview is not self._preview_shown:
            self._preview_shown = p.preview
            self._preview.update(samples=p.preview,
                                 title=f"samples while training ({PREVIEW_STEPS} steps), step {p.step}")
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
            summary = p.result.summary
            loss = f", final loss {summary['final_loss']:.4f}" if summary["final_loss"] is not None else ""
            self._status.object = (f"done: {summary['steps_done']} steps in {summary['train_s']:.1f} s "
                                   f"on {summary.get('device', 'cpu')}{loss}"
                                   f"{' (' + p.stopped + ')' if p.stopped else ''}")
            self._install(p.result)
        self._progress = _Progress()

    def _install(self, field):
        """Make a finished run the session's model, in the setting it was trained for: if the
        data set or schedule changed meanwhile (here or on another tab), go back to it."""
        s, (dataset, schedule, version) = self.session, self._run_key
        if version != s.points_version:
            self._show_error("training finished, but the uploaded points were replaced while it ran: "
                             "its model was not used; press Train again")
            return
        if s.key != self._run_key:
            s.param.update(dataset=dataset, schedule=schedule)
            self._status.object += f"; back to {dataset} with the {schedule} schedule, which it was trained for"
        s.model = field

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
            self._preview.update(truth=truth, samples=x, title=f"samples of the {name} (20 steps)")
        self._worker.submit(compute, draw, lambda e: self._show_error(f"could not sample the model: {e}"))

    def _show_error(self, message: str):
        """Show a problem on the page ("" hides the last one)."""
        self._alert.object, self._alert.visible = message, bool(message)

    def _show_input_error(self, message: str):
        """A refused number, beside the boxes ("" hides it)."""
        self._input_alert.object, self._input_alert.visible = message, bool(message)

    # --- files ---------------------------------------------------------------------------------
    def _on_upload(self, event):
        if event.new is None:
            return
        if len(event.new) > MAX_CSV_BYTES:          # refused before anything is written or parsed
            self._show_error(f"could not use the uploaded file: it holds {len(event.new) / 2**20:.0f} MiB, "
                             f"more than the {MAX_CSV_BYTES >> 20} MiB a CSV of points may hold")
            return
        data = event.new

        def read():                                 # on the worker: parsing 1M rows takes seconds
            fh = None
            try:
                with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as fh:
                    fh.write(data)
                return load_points(fh.name)
            except ValueError as e:
                raise ValueError(str(e).replace(f"{fh.name}: ", "").replace(fh.name, "the file")) from None
            except OSError as e:                    # a full disk or an unwritable temp folder
                raise OSError(f"could not store the uploaded file on the server: {e.strerror or e}") from None
            finally:
                if fh is not None and os.path.exists(fh.name):
                    os.unlink(fh.name)

        def use(points):                            # on the page
            try:
                x = self.session.use_points(points)
            except ValueError as e:
                failed(e)
                return
            self._alert.visible = False
            self._status.object = (f"using your {x.shape[0]:,} points (centred and scaled to unit variance); "
                                   "press Train")

        def failed(e):
            self._show_error(str(e) if isinstance(e, OSError) else f"could not use the uploaded file: {e}")
        self._reader.submit(read, use, failed)

    def _on_checkpoint(self, event):
        if event.new is None:
            return
        fh = None
        try:
            with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as fh:
                fh.write(event.new)
            field = load(fh.name, device="cpu")
        except ValueError as e:
            self._show_error(str(e).replace(fh.name, "the uploaded file"))
            return
        except OSError as e:                        # a full disk or an unwritable temp folder
            self._show_error(f"could not store the uploaded checkpoint on the server: {e.strerror or e}")
            return
        finally:
            if fh is not None and os.path.exists(fh.name):
                os.unlink(fh.name)
        self._alert.visible = False
        dataset = field.meta.get("dataset")
        if dataset in self.session.param.dataset.objects:
            self.session.dataset = dataset      # compare it with the truth it was trained on
        if field.schedule.name in SCHEDULES:
            self.session.schedule = field.schedule.name
        self.session.model = field
        self._status.object = (f"loaded the uploaded checkpoint: a {type(field.model).__name__} "
                               f"({field.schedule.name} schedule{', ' + dataset if dataset else ''})")

    def _checkpoint_bytes(self):
        field = self.session.model
        if field is None or isinstance(field, MixtureField):
            self._show_error("there is no trained model to download yet (the exact score needs no file)")
            return io.BytesIO(b"")
        with tempfile.TemporaryDirectory() as folder:
            path = save(field, os.path.join(folder, "model.pt"), meta={"dataset": self.session.dataset})
            with open(path, "rb") as fh:
                return io.BytesIO(fh.read())

    def __panel__(self):
        return self._layout
