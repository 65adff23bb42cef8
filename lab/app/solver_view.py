"""Change the solver live: samples, trajectories, NFE and W2 to the truth update at once. The
field is the session's score model (learned or exact) or its flow (the flows tab's: the
solvers that apply to a flow, ``lab.solvers.FLOW_SOLVERS``)."""
from __future__ import annotations

import time

import panel as pn
import param

from lab import plots
from lab.app.figures import FieldFigure, PathsFigure, ScatterFigure
from lab.app.race_view import SolverRaceView
from lab.app.shared import memo
from lab.app.session import FLOW_REDRAW_ON
from lab.app.view import ON_SESSION, LabView
from lab.app.worker import on_page
from lab.metrics import sliced_w2, truth_and_floor
from lab.solvers import FLOW_ONLY, FLOW_SOLVERS, FLOW_SPACINGS, SOLVERS, SPACINGS, sample

__all__ = ["SolverView", "MAX_STEPS_SERVED", "N_SAMPLES"]

N_SAMPLES = 4000          # points re-sampled on every change
N_TRAJECTORIES = 24       # paths drawn
MAX_STEPS_SERVED = 500    # the steps slider's top (served mode caps the cost of one update)
W2_POINTS = 2000          # points of the sliced W2 shown live (cheap: a few ms)
W2_DIRECTIONS = 64        # its directions: evenly spaced angles, the best estimator in 2-D (lab.distances)
FIELD_T = 0.1             # time at which the learned and exact fields are drawn
FLOW_T = 0.5              # ... and a flow's velocity (t = 1 - tau)
FLOW = "flow"             # the field choice that samples the session's flow


class SolverView(LabView):
    """Solver, steps, spacing and the ODE <-> SDE knob eta, on the session's field."""

    title = "Solver"
    failure = "Could not sample"

    solver = param.Selector(default="dpm++2m", objects=list(SOLVERS))
    steps = param.Integer(default=20, bounds=(1, MAX_STEPS_SERVED))
    spacing = param.Selector(default="logsnr", objects=list(SPACINGS))
    eta = param.Number(default=0.0, bounds=(0.0, 1.0), step=0.05, label="eta (0: ODE, 1: SDE)",
                      doc="0: the probability-flow ODE; 1: the reverse SDE; between: the family")
    source = param.Selector(default="learned", objects=["learned", "exact", FLOW], label="field",
                            doc="the session's score model (learned or exact), or its flow (the flows tab's)")
    seed = param.Integer(default=0, bounds=(0, 10_000))

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self.last = None              # the last Trajectory
        self.last_ms = float("nan")   # server time of the last update (sampling, W2, drawing)
        self.w2 = float("nan")        # its sliced W2 to the truth
        self._truth_shown = None      # the setting whose truth samples the figure holds
        self._worker = self.worker("solvers", label="sampling…")
        self._fields_worker = self.worker("solver-fields")
        self.figures = {"samples": ScatterFigure("samples", {"truth": plots.COLORS["truth"],
                                                             "samples": plots.COLORS["model"]}),
                        "paths": PathsFigure(f"{N_TRAJECTORIES} trajectories"),
                        "learned field": FieldFigure("learned score"),
                        "exact field": FieldFigure("exact score")}
        f = self.figures
        widgets = self.controls("solver", "steps", "spacing", "eta", "source", "seed",
                                widgets={"source": pn.widgets.RadioButtonGroup})
        self.race = None   # the solver race (lab.app.race_view), built when first asked for
        race_button = pn.widgets.Button(label="Open the solver race: which error dominates?")
        self._race_slot = pn.Column(race_button, sizing_mode="stretch_width")
        race_button.on_click(on_page(lambda event: self.open_race()))
        self.page([widgets, self._worker.indicator],
                  pn.Column(pn.Row(f["samples"].pane, f["paths"].pane),
                            pn.pane.Markdown(f"The learned score beside the exact one at t = {FIELD_T:g}: arrows "
                                             "show the score, colours its curl (zero for a true score)."),
                            pn.Row(f["learned field"].pane, f["exact field"].pane), self._race_slot))
        self._on_session()

    def open_race(self):
        """Show the solver race below the figures (its figures cost every page: only on demand)."""
        if self.race is None:
            self.race = SolverRaceView(self.session)
            self._race_slot[:] = [self.race]
        return self.race

    @param.depends("eta", watch=True)
    def _on_eta(self):
        if _spec(self.solver).takes_eta:    # else the solver has its own eta: nothing to re-sample
            self.update()

    @param.depends(*ON_SESSION, watch=True)
    def _on_session(self):
        self.draw_fields()
        self.update()

    @param.depends(*[f"session.{name}" for name in FLOW_REDRAW_ON], watch=True)
    def _on_flow(self):
        if self.source == FLOW:
            self._on_session()

    @param.depends("source", watch=True)
    def _on_source(self):
        """A flow takes only the ODE solvers and flow_sde, on a grid in time: the choices narrow."""
        flow = self.source == FLOW
        solvers, spacings = (list(FLOW_SOLVERS), list(FLOW_SPACINGS)) if flow else (list(SOLVERS), list(SPACINGS))
        with param.parameterized.batch_call_watchers(self):
            self.param.solver.objects, self.param.spacing.objects = solvers, spacings
            if self.solver not in solvers:
                self.solver = "ode_rk4" if flow else self.param.solver.default
            if self.spacing not in spacings:
                self.spacing = "time_uniform" if flow else self.param.spacing.default
        self.draw_fields()

    def _fields(self):
        """(learned, exact) of the field chosen: the session's score model or its flow."""
        if self.source == FLOW:
            return self.session.flow_field("learned"), self.session.flow_field("exact")
        return self.session.field(self.source), self.session.exact

    # --- the fields (on model or data set changes only) ---------------------------------------
    def draw_fields(self):
        """The learned score beside the exact one at t = FIELD_T, in one colour range."""
        flow = self.source == FLOW
        if flow:
            learned, exact = self._fields()
            t, of, what = FLOW_T, "velocity", "velocity"
            name = "exact flow's velocity (no learned flow)" if self.session.flow is None else "learned flow's velocity"
        else:
            learned, exact = self.session.field("learned"), self.session.exact
            t, of, what = max(FIELD_T, exact.schedule.t_min), "score", "score"
            name = "exact score (no model yet)" if self.session.learned_is_exact else "learned score"

        def maps():
            out = {key: (plots.curl_grid(f, t, of=of), plots.score_arrows(f, t, of=of))
                   for key, f in (("learned", learned), ("exact", exact))}
            return out, plots.clim_of(out["learned"][0], out["exact"][0])

        def compute():   # the shipped models' maps are drawn once a process
            return memo(("solver fields", t, of), maps, [learned, exact])

        def draw(result):
            maps, clim = result
            self.figures["learned field"].update(*maps["learned"], clim=clim, title=f"{name} at t = {t:g}")
            self.figures["exact field"].update(*maps["exact"], clim=clim, title=f"exact {what} at t = {t:g}")
        self._fields_worker.submit(compute, draw, lambda e: self.show_error(e, "Could not draw the fields"))

    # --- sampling (on every change) -------------------------------------------------------------
    @param.depends("solver", "steps", "spacing", "source", "seed", watch=True)
    def update(self):
        """Re-sample with the current settings and redraw; problems become a message."""
        spec = _spec(self.solver)
        eta = self.eta if spec.takes_eta else spec.eta_default
        settings = dict(solver=self.solver, steps=self.steps, spacing=self.spacing, eta=eta, seed=self.seed)
        field, exact = self._fields()                          # read here, on the page's thread
        source = "learned flow" if self.source == FLOW and self.session.flow is not None else (
            "exact flow" if self.source == FLOW else self.source)
        key = ("flow", id(exact)) if self.source == FLOW else self.session.key
        start = time.perf_counter()

        def run():       # no reference to the page: it may run on a Dask worker (lab.app.cluster)
            traj = sample(field, n=N_SAMPLES, **settings)
            truth, floor = _truth_and_floor(exact)
            return traj, truth, _sliced_w2(traj.samples[:W2_POINTS], truth[:W2_POINTS]), floor

        def compute():   # a shipped model's run with the same settings is the same for every page
            return memo(("solver run", tuple(sorted(settings.items()))), run, [field, exact])

        def draw(result):
            traj, truth, dist, floor = result
            self.last, self.w2 = traj, dist
            if key != self._truth_shown:        # send the grey layer only when it changes
                self.figures["samples"].update(truth=truth)
                self._truth_shown = key
            self.figures["samples"].update(samples=traj.samples,
                                           title=f"{source} field, {settings['solver']}, {traj.nfe} NFE")
            self.figures["paths"].update(traj.xs[:, :N_TRAJECTORIES])
            self.last_ms = (time.perf_counter() - start) * 1e3
            self.numbers = {"nfe": traj.nfe, "w2": dist, "floor": floor, "ms": self.last_ms}
            eta_note = "" if spec.takes_eta else f" (this solver has eta = {spec.eta_default:g})"
            self.say(f"**{settings['solver']}** — {spec.doc}\n\n"
                     f"NFE **{traj.nfe}**, {settings['spacing']} spacing, eta {eta:g}{eta_note}, "
                     f"seed {settings['seed']}\n\n"
                     f"sliced W2 to the truth **{dist:.3f}** (floor at {W2_POINTS} points: {floor:.3f})\n\n"
                     f"server time {self.last_ms:.0f} ms")
        self._worker.submit(compute, draw, self.show_error)


def _sliced_w2(a, b) -> float:
    return sliced_w2(a, b, n_projections=W2_DIRECTIONS, estimator="grid")


def _truth_and_floor(exact):
    """True samples at t_min of ``exact`` and the sliced W2 between two independent draws of
    W2_POINTS: the floor below which no sampler can go at this sample size."""
    return memo(("solver truth",), lambda: truth_and_floor(exact, N_SAMPLES, n_floor=W2_POINTS, seed=1,
                                                          distance=_sliced_w2), [exact])


def _spec(name: str):
    """The registry's entry of a solver (a flow's own ones too)."""
    return SOLVERS.get(name) or FLOW_ONLY[name]
