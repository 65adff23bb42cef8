"""One browser session's store: the data set, its exact field, and the learned field.

Each served page makes its own ``Session`` (no module-level state), and every view reads
and writes the lab's objects through it, so training on one tab shows on the others.
"""
from __future__ import annotations

import logging

import panel as pn
import param
import torch

from lab.app import shared
from lab.data import DATASETS, GaussianMixture, dataset_mixture, load_points, make_dataset, standardize
from lab.fields import MixtureField, ScoreField
from lab.schedules import SCHEDULES, get_schedule

__all__ = ["Session", "UPLOADED", "REDRAW_ON", "FLOW_REDRAW_ON"]

UPLOADED = "your points"   # the data set name of points a user uploaded
REDRAW_ON = ["model", "dataset", "schedule", "points_version"]   # session changes views redraw on
FLOW_REDRAW_ON = ["flow", "flow_exact"]                         # ... and those a flow's views redraw on
log = logging.getLogger("lab.app")


class Session(param.Parameterized):
    """Data set, schedule, exact field and learned field of one user."""

    dataset = param.Selector(default="two_moons", objects=list(DATASETS), doc="data set")
    schedule = param.Selector(default="vp", objects=list(SCHEDULES), doc="noise schedule")
    model = param.Parameter(default=None, doc="the learned ScoreField (None: none yet)")
    message = param.String(default="", doc="what the user should know about the session's model")
    points_version = param.Integer(default=0, doc="counts uploads: views redraw when it moves")
    flow = param.Parameter(default=None, doc="the learned flow of the flows page's settings (a "
                                             "lab.interpolants.VelocityField), or None")
    flow_exact = param.Parameter(default=None, doc="the exact flow of the flows page's ends and interpolant "
                                                   "(None: Gaussian -> two_moons, linear)")

    def __init__(self, pretrained: bool = True, **params):
        super().__init__(**params)
        self._exact = None
        self.points = None            # uploaded points, standardised (n, 2), or None
        self._pretrained = pretrained
        self._closers = []
        self.closed = False
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.close())
        if pretrained and self.model is None:
            self._load_pretrained()

    # --- the end of a browser session ------------------------------------------------------------
    def on_close(self, fn) -> None:
        """Call ``fn()`` when the session ends (views stop their threads here)."""
        self._closers.append(fn)

    def close(self) -> None:
        """End the session's background work (called when its browser session is destroyed)."""
        if self.closed:
            return
        self.closed = True
        for fn in self._closers:
            try:
                fn()
            except Exception:  # one view's failure must not keep the others running
                log.exception("score-lab: a view failed to close")
        log.info("score-lab: session closed; stopped its %d background tasks", len(self._closers))

    @param.depends("dataset", "schedule", watch=True)
    def _load_pretrained(self):
        """Start from the data set's pretrained model (VP only), so every page is useful at once."""
        if not self._pretrained:
            return
        model = None
        if self.dataset in DATASETS and self.schedule == "vp":
            model = shared.pretrained(self.dataset)     # one read-only copy a process
        if model is not None:
            self.message = ""
        elif self.dataset == UPLOADED:
            self.message = ("Your points are the data set: until you train a model, the pages show the "
                            "exact score of their density estimate (a Gaussian kernel at each point).")
        else:
            self.message = (f"No pretrained model for {self.dataset} with the {self.schedule} schedule: "
                            "the pages show the exact score until you train one.")
        self.model = model

    # --- the data ----------------------------------------------------------------------------
    def use_points(self, points) -> torch.Tensor:
        """Make uploaded points (n, 2) this session's data set, standardised (centred, unit
        variance: the scale the schedules assume). Their exact field is the score of a
        Gaussian kernel density estimate of them (``GaussianMixture.kde``). Raises ValueError
        naming what is wrong with the points."""
        x = standardize(load_points(points))
        GaussianMixture.kde(x)          # refuses degenerate points before anything changes
        if UPLOADED not in self.param.dataset.objects:
            self.param.dataset.objects = [*self.param.dataset.objects, UPLOADED]
        self.points = x
        with param.parameterized.batch_call_watchers(self):   # one redraw, with the new points
            if self.dataset == UPLOADED:
                self._load_pretrained()     # a model of the old points no longer fits
            else:
                self.dataset = UPLOADED
            self.points_version += 1
        return x

    @property
    def mixture(self) -> GaussianMixture:
        """The data set's exact law (uploaded points: their kernel density estimate)."""
        if self.dataset == UPLOADED:
            if self.points is None:
                raise ValueError("no uploaded points in this session")
            return GaussianMixture.kde(self.points)
        return dataset_mixture(self.dataset)

    @property
    def schedule_obj(self):
        """The noise process the session's fields share: the model's own when it runs on the
        session's schedule (a pretrained model may carry other arguments, e.g. the
        hallucination paper's VP with beta up to 200), else the schedule's defaults."""
        model = self.model
        schedule = getattr(model, "schedule", None)
        if schedule is not None and schedule.name == self.schedule:
            return schedule
        return get_schedule(self.schedule)

    @property
    def key(self) -> tuple:
        """The setting a model is trained for: (dataset, schedule, points_version)."""
        return self.dataset, self.schedule, self.points_version

    def data(self, n: int, seed: int = 0) -> torch.Tensor:
        """Training points: n drawn from a built-in data set, or all the uploaded points."""
        return self.points if self.dataset == UPLOADED else make_dataset(self.dataset, n, seed=seed)

    # --- the fields ----------------------------------------------------------------------------
    @property
    def exact(self) -> MixtureField:
        """The exact score of the data set under the session's schedule (``schedule_obj``)."""
        cached = self._exact         # one read: another thread may replace it meanwhile
        schedule = self.schedule_obj
        key = (*self.key, tuple(sorted(schedule.config().items())))   # the model's arguments too
        if cached is None or cached[0] != key:
            field = (MixtureField(self.mixture, schedule) if self.dataset == UPLOADED
                     else shared.exact_field(self.dataset, schedule))   # a built-in one: shared
            cached = self._exact = (key, field)
        return cached[1]

    def field(self, source: str = "learned") -> ScoreField:
        """The field a view shows: "learned" (falls back to exact while there is no model)
        or "exact"."""
        if source == "learned" and self.model is not None:
            return self.model
        return self.exact

    def flow_field(self, source: str = "learned"):
        """The flow a view shows: "learned" (the flows page's trained or shipped flow; the exact
        one while there is none) or "exact" (``flow_exact``, by default Gaussian -> two_moons)."""
        if source == "learned" and self.flow is not None:
            return self.flow
        return self.flow_exact if self.flow_exact is not None else shared.flow_field("gaussian", "two_moons")

    @property
    def learned_is_exact(self) -> bool:
        """True when "learned" shows the exact field (no model, or the exact one chosen)."""
        return isinstance(self.field("learned"), MixtureField)

    def notice(self) -> pn.pane.Alert:
        """A pane that shows ``message`` while there is one (each view puts one in its page)."""
        alert = pn.pane.Alert(self.message, alert_type="info", visible=bool(self.message))

        def show(event):
            alert.object, alert.visible = event.new, bool(event.new)
        self.param.watch(show, "message")
        return alert
