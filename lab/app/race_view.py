"""The solver race: every solver at 5, 10, 20 and 50 NFE on the learned and on the exact field,
W2 to the truth against NFE beside the floor. On the exact field only the solver's own
(discretisation) error is left; the learned field adds the network's (learning) error, so a
student reads off which one a budget is spent against, and which solver to use."""
from __future__ import annotations

import itertools
import math

import panel as pn
import param
from bokeh.models import Range1d
from bokeh.palettes import Category20

from lab.app.figures import CurvesFigure
from lab.app.shared import memo
from lab.app.view import ON_SESSION, LabView, page_loop_running
from lab.app.worker import on_page
from lab.metrics import RACE_BUDGETS, solver_race
from lab.solvers import SOLVERS

__all__ = ["SolverRaceView", "RACE_SOLVERS", "RACE_POINTS"]

RACE_SOLVERS = [s for s in SOLVERS if s != "ode_adaptive"]   # its NFE is set by a tolerance
RACE_POINTS = 500       # samples per run (exact W2: its cost grows as n^3)
POLL_MS = 300           # how often a served page redraws the progress
FLOOR = "floor"
SOURCES = {"exact": "exact field: the solver's error alone",
           "learned": "learned field: the solver's and the network's"}


def finite(w) -> bool:
    """A run that ran and did not diverge."""
    return w is not None and math.isfinite(w)


class SolverRaceView(LabView):
    """Run every solver at each budget on the session's learned and exact fields."""

    title = "Solver race"
    failure = "Could not run the race"

    n = param.Integer(default=RACE_POINTS, bounds=(100, 4000), label="samples per run")
    seed = param.Integer(default=0, bounds=(0, 10_000))

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self.result = None                    # the last RaceResult drawn
        self.progress = (0, 0, "")            # runs done, runs in all, the last one
        self._poller = None
        self._worker = self.worker("race", label="racing…")
        self._button = pn.widgets.Button(label="Run the race", color="primary")
        self._button.on_click(on_page(lambda event: self.run()))
        self._bar = pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width")
        colors = dict(zip(RACE_SOLVERS, itertools.cycle(Category20[20])))
        names = {**colors, FLOOR: "#000000"}
        self.figures = {src: CurvesFigure(title, names, "NFE", "W2 to the truth", log_x=True, log_y=True,
                                          width=460, height=400) for src, title in SOURCES.items()}
        for fig in self.figures.values():       # 18 names: a compact legend (click one to hide it)
            legend = fig.fig.legend[0]
            legend.label_text_font_size, legend.spacing, legend.padding = "8pt", 0, 4
            legend.glyph_height = legend.label_height = 14
            fig.fig.y_range = Range1d(0.1, 1.0)      # set from the race's numbers when drawn
        self._table = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.page([self.controls("n", "seed"),
                   self._button, self._bar, self._worker.indicator],
                  pn.Column(pn.Row(self.figures["exact"].pane, self.figures["learned"].pane), self._table))
        self.say(f"Every solver at {', '.join(map(str, RACE_BUDGETS))} NFE from the same starting points. "
                 "On the exact field only the solver's discretisation error is left; on the learned field "
                 "the network's error adds to it. Where the two lines agree the solver is what limits you "
                 "(take a better one, or more NFE); where the learned line stays above the exact one the "
                 "network does (more NFE will not help). Press *Run the race* (about half a minute).")

    @param.depends(*ON_SESSION, watch=True)
    def _forget(self):
        """A new model or data set: the race shown is of another field."""
        if self.result is not None:
            self.result = None
            for fig in self.figures.values():
                fig.clear()
            self._table.object = ""
            self.say("The model or data set changed: run the race again.")

    @property
    def table(self) -> str:
        """The race's table as shown (Markdown; "" before a race)."""
        return self._table.object

    # --- the run ------------------------------------------------------------------------------
    def run(self):
        """Race in the background; the progress bar follows it, the figures come at the end."""
        learned, exact = self.session.field("learned"), self.session.exact
        n, seed = self.n, self.seed
        self.progress = (0, 2 * len(RACE_SOLVERS), "")
        self._bar.value, self._bar.visible = 0, True
        self._button.disabled = True

        def report(done, total, source, solver):
            self.progress = (done, total, f"{solver} on the {source} field")
            if not self._worker.threaded:         # a notebook or a script: draw it now
                self._show_progress()

        def compute():   # a shipped model's race is the same for every page
            return memo(("race", n, seed),
                        lambda: solver_race({"exact": exact, "learned": learned}, exact, RACE_SOLVERS,
                                            n=n, seed=seed, callback=report), [learned, exact])

        def failed(e):
            self._done()
            self.show_error(e)

        def done(result):   # a race of the field it was run on: the model may have changed since
            if self.session.field("learned") is learned and self.session.exact is exact:
                self.draw(result)
            else:
                self._done()
                self.say("The model or data set changed during the race: run it again.")

        if self._worker.threaded and page_loop_running() and self._poller is None:
            self._poller = pn.state.add_periodic_callback(self._show_progress, period=POLL_MS)
        self._worker.submit(compute, done, failed)

    def _show_progress(self):
        done, total, last = self.progress
        if total:
            self._bar.value = int(100 * done / total)
            self.say(f"racing: {done} of {total} runs" + (f" (last: {last})" if last else ""))

    def _done(self):
        self._button.disabled, self._bar.visible = False, False
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def draw(self, result):
        """The curves, the floor and the table of a RaceResult."""
        self._done()
        self.result = result
        lo, hi = min(result.budgets), max(result.budgets)
        for src, fig in self.figures.items():
            for s in RACE_SOLVERS:
                pts = [(nfe, w) for nfe, w in zip(result.nfe[s], result.w2[src][s]) if finite(w)]
                fig.update(s, [p[0] for p in pts], [p[1] for p in pts])
            fig.update(FLOOR, [lo, hi], [result.floor, result.floor])
            # the axis from below the floor to the worst run, at most 20x the floor: a solver
            # that blows up at 5 NFE (dpm3: tens) would flatten the rest; the table has it
            worst = max([w for s in RACE_SOLVERS for w in result.w2[src][s] if finite(w)], default=result.floor)
            fig.fig.y_range.start, fig.fig.y_range.end = 0.7 * result.floor, min(1.2 * worst, 20 * result.floor)
        best = {}
        for src in SOURCES:
            for k, b in enumerate(result.budgets):
                runs = [(result.w2[src][s][k], s) for s in RACE_SOLVERS if finite(result.w2[src][s][k])]
                best[src, b] = min(runs, default=(math.inf, "none (all diverged)"))
        self.numbers = {"floor": result.floor, "n": result.n,
                        "best": {f"{src} {b}": best[src, b] for src in SOURCES for b in result.budgets}}
        self._table.object = result.markdown()
        top = max(result.budgets)
        self.say(f"W2 to the truth, {result.n} samples per run; the floor (two true draws) is "
                 f"**{result.floor:.3f}**. Best at {min(result.budgets)} NFE: "
                 f"**{best['exact', lo][1]}** on the exact field ({best['exact', lo][0]:.3f}), "
                 f"**{best['learned', lo][1]}** on the learned one ({best['learned', lo][0]:.3f}). "
                 f"At {top} NFE the best learned run is {best['learned', top][0]:.3f}: "
                 + ("the network's error, not the solver's, is what is left."
                    if best["learned", top][0] > 1.5 * result.floor else "at the floor."))

