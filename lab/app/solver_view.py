"""Change the solver live: samples, trajectories, NFE and W2 to the truth update at once."""
from __future__ import annotations

import time

import panel as pn
import param
import torch

from lab import plots
from lab.app.session import Session
from lab.metrics import noised_samples, sliced_w2
from lab.solvers import SOLVERS, SPACINGS, sample

__all__ = ["SolverView", "MAX_STEPS_SERVED", "N_SAMPLES"]

N_SAMPLES = 4000          # points re-sampled on every change
N_TRAJECTORIES = 24       # paths drawn
MAX_STEPS_SERVED = 500    # the steps slider's top (served mode caps the cost of one update)
W2_POINTS = 2000          # points of the sliced W2 shown live (cheap: a few ms)
W2_DIRECTIONS = 64        # its random directions
FIELD_T = 0.1             # time at which the learned and exact fields are drawn


class SolverView(pn.viewable.Viewer):
    """Solver, steps, spacing and the ODE <-> SDE knob eta, on the session's field."""

    solver = param.Selector(default="dpm++2m", objects=list(SOLVERS))
    steps = param.Integer(default=20, bounds=(1, MAX_STEPS_SERVED))
    spacing = param.Selector(default="logsnr", objects=list(SPACINGS))
    eta = param.Number(default=0.0, bounds=(0.0, 1.0), step=0.05)
    source = param.Selector(default="learned", objects=["learned", "exact"])
    seed = param.Integer(default=0, bounds=(0, 10_000))

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self.last = None              # the last Trajectory
        self.last_ms = float("nan")   # server time of the last update
        self._samples = pn.pane.HoloViews(sizing_mode="fixed")
        self._paths = pn.pane.HoloViews(sizing_mode="fixed")
        self._info = pn.pane.Markdown("")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self._truth_key = None
        self._truth = None
        self._widgets = pn.Param(
            self.param, parameters=["solver", "steps", "spacing", "eta", "source", "seed"],
            widgets={"steps": {"type": pn.widgets.IntSlider, "throttled": True},
                     "eta": {"type": pn.widgets.FloatSlider, "throttled": True}},
            show_name=False)
        self._learned_field = pn.pane.HoloViews(sizing_mode="fixed")
        self._exact_field = pn.pane.HoloViews(sizing_mode="fixed")
        self._layout = pn.Row(pn.Column("### Solver", self._widgets, self._info, self._alert, width=320),
                              pn.Column(pn.Row(self._samples, self._paths),
                                        pn.Row(self._learned_field, self._exact_field)))
        self.param.watch(self._on_change, ["solver", "steps", "spacing", "eta", "source", "seed"])
        self.session.param.watch(self._on_session, ["model", "dataset", "schedule"])
        self.draw_fields()
        self.update()

    def _on_session(self, *events):
        self.draw_fields()
        self.update()

    def draw_fields(self):
        """The learned score beside the exact one at t = FIELD_T (redrawn when the model or
        the data set changes, not on every solver change)."""
        learned, exact = self.session.field("learned"), self.session.exact
        t = max(FIELD_T, exact.schedule.t_min)
        name = "learned" if learned is not exact else "exact (no model yet)"
        exact_plot = plots.field_plot(exact, t, title=f"exact score at t = {t:g}")
        self._exact_field.object = exact_plot
        self._learned_field.object = (exact_plot.relabel(f"{name} score at t = {t:g}")
                                      if learned is exact else
                                      plots.field_plot(learned, t, title=f"{name} score at t = {t:g}"))

    def _on_change(self, *events):
        self.update()

    def _truth_samples(self):
        key = (self.session.dataset, self.session.schedule)
        if key != self._truth_key:
            exact = self.session.exact
            g = torch.Generator().manual_seed(1)
            self._truth = noised_samples(exact, exact.schedule.t_min, N_SAMPLES, generator=g)
            self._truth_key = key
        return self._truth

    def update(self):
        """Re-sample with the current settings and redraw; problems become a message."""
        spec = SOLVERS[self.solver]
        eta = self.eta if spec.takes_eta else spec.eta_default
        start = time.perf_counter()
        try:
            field = self.session.field(self.source)
            traj = sample(field, n=N_SAMPLES, solver=self.solver, steps=self.steps,
                          spacing=self.spacing, eta=eta, seed=self.seed)
        except ValueError as e:  # bad settings or a diverging solver: say so, keep the page
            self._alert.object, self._alert.visible = f"**Could not sample:** {e}", True
            return
        truth = self._truth_samples()
        dist = sliced_w2(traj.samples[:W2_POINTS], truth[:W2_POINTS], n_projections=W2_DIRECTIONS)
        self.last, self.last_ms = traj, (time.perf_counter() - start) * 1e3
        self._alert.visible = False
        eta_note = "" if spec.takes_eta else f" (this solver has eta = {spec.eta_default:g})"
        self._info.object = (f"**{self.solver}** — {spec.doc}\n\n"
                             f"NFE **{traj.nfe}**, eta {eta:g}{eta_note}\n\n"
                             f"sliced W2 to the truth **{dist:.3f}** ({W2_POINTS} points)\n\n"
                             f"server time {self.last_ms:.0f} ms")
        self._samples.object = plots.samples_plot(traj.samples, truth, title=f"{self.source} field, {self.solver}")
        self._paths.object = plots.trajectories_plot(traj, N_TRAJECTORIES)

    def __panel__(self):
        return self._layout


