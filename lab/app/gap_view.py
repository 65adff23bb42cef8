"""The ODE-SDE gap, seen: the same model sampled by its probability-flow ODE and by its
reverse SDE, side by side, for several Fokker-Planck weights and two networks (Deveney et
al.): theirs (a log-density u(t, x) on raw inputs) and the lab's preconditioned eps network."""
from __future__ import annotations

import panel as pn
import param

from lab import plots
from lab.app import shared
from lab.app.figures import CurvesFigure, ScatterFigure
from lab.app.shared import memo
from lab.app.view import ON_SESSION, LabView
from lab.data import end_law
from lab.gap import GAP_PROTOCOL, gap_binned, residual_curve
from lab.pretrained import GAP_DATASET, GAP_NETWORKS, GAP_WEIGHTS, gap_path
from lab.schedules import get_schedule

__all__ = ["GapView", "SESSION_MODEL", "model_name", "shipped_models"]

SHOWN_POINTS = 5000      # samples drawn in the scatter plots (the numbers use all n)
SESSION_MODEL = "this session's model"
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
NETWORK_NAMES = {"paper": "paper's network", "lab": "lab's network"}


def model_name(network: str, w: float) -> str:
    """The page's name of the shipped gap model of ``network`` with weight ``w``."""
    return f"{NETWORK_NAMES[network]}, w = {w:g}"


_CHOICES = [(network, w) for network in GAP_NETWORKS for w in GAP_WEIGHTS]


def shipped_models() -> dict:
    """The page's name -> the shipped gap model, for those this checkout has (`python -m lab
    pretrain --gap` builds the others), each loaded once a process (``lab.app.shared``)."""
    return {model_name(network, w): shared.checkpoint(gap_path(w, network))
            for network, w in _CHOICES if gap_path(w, network).is_file()}


class GapView(LabView):
    """ODE (Euler) and SDE (Euler-Maruyama) samples of a model on Deveney et al.'s grid (the
    last steps refined, the SDE's last step noise-free), their W2^2 to the truth and to each
    other beside the floor, and the Fokker-Planck residual of the models beside the exact
    score's (zero). The models: OU models of Deveney et al.'s circles, their network and the
    lab's, each trained with regulariser weight w (shipped), or the session's own (train one
    with a Fokker-Planck weight on the Train tab)."""

    model = param.Selector(default=model_name(*_CHOICES[0]),
                           objects=[model_name(*c) for c in _CHOICES] + [SESSION_MODEL])
    steps = param.Integer(default=290, bounds=(110, 890),
                          label="sampler steps (the paper: 890, the last 100 fine)")
    n = param.Integer(default=5000, bounds=(1000, 300_000), label="samples per sampler")

    title = "ODE vs SDE"
    failure = "Could not sample"

    def __init__(self, session=None, **params):
        models = shipped_models()
        if models and "model" not in params and self.param.model.default not in models:
            params["model"] = next(iter(models))      # the first this checkout has
        super().__init__(session, **params)
        self.exact = shared.exact_field(GAP_DATASET, get_schedule("ou"))
        self.models = models
        # only the models there are (a checkout may lack some: `python -m lab pretrain --gap`)
        self.param.model.objects = [m for m in self.param.model.objects if m in self.models] + [SESSION_MODEL]
        self.table = {}                  # model name -> numbers, for every model shown so far
        self._residuals = {}             # model name -> (field it was computed for, {t: residual})
        self._worker = self.worker("gap", label="sampling ODE and SDE…")
        extent = GAP_PROTOCOL["extent"]    # the paper's square: its outer ring reaches 3.4
        names = self.param.model.objects
        self.figures = {
            "ode": ScatterFigure("ODE (Euler)", {"truth": plots.COLORS["truth"], "samples": plots.COLORS["model"]},
                                 extent=extent),
            "sde": ScatterFigure("SDE (Euler-Maruyama)", {"truth": plots.COLORS["truth"], "samples": "#9467bd"},
                                 extent=extent),
            "residual": CurvesFigure("Fokker-Planck residual (the exact score's is 0)",
                                     {n: CURVE_COLORS[i % len(CURVE_COLORS)] for i, n in enumerate(names)},
                                     "t", "mean |sigma^3 R|^2", width=2 * plots.SIZE - 60, log_x=True, log_y=True)}
        self._table = pn.pane.Markdown("", sizing_mode="stretch_width")
        f = self.figures
        self.page([self.controls("model", "steps", "n", widgets={"model": pn.widgets.RadioBoxGroup}),
                   self._worker.indicator],
                  pn.Column(pn.Row(f["ode"].pane, f["sde"].pane), f["residual"].pane, self._table), width=340)
        self.update()

    @param.depends(*ON_SESSION, watch=True)
    def _on_session(self):
        self.table.pop(SESSION_MODEL, None)
        if self.model == SESSION_MODEL:
            self.update()

    def _selected(self):
        """(field, exact field to compare with, description) of the chosen model."""
        if self.model == SESSION_MODEL:
            s = self.session
            return s.field("learned"), s.exact, f"{'exact score' if s.learned_is_exact else 'your model'} " \
                                                f"({s.dataset}, {s.schedule})"
        if self.model not in self.models:
            raise ValueError(f"no pretrained model for {self.model}: `python -m lab pretrain --gap` builds it")
        return self.models[self.model], self.exact, f"{self.model} ({GAP_DATASET}, OU schedule)"

    @param.depends("model", "steps", "n", watch=True)
    def update(self):
        """Sample the chosen model both ways (on the worker), with the residual curves of the
        models not drawn yet, then draw."""
        try:
            field, exact, what = self._selected()
        except ValueError as e:
            self.show_error(e)
            return
        name, n, steps = self.model, self.n, self.steps
        others = {k: f for k, f in self._fields().items() if self._residuals.get(k, (None,))[0] is not f}

        def run():
            numbers = gap_binned(field, end_law(exact.mixture, exact.schedule), n=n, steps=steps, seed=0,
                                 keep=min(n, SHOWN_POINTS))
            numbers.pop("hist")
            return numbers

        def compute():   # a shipped model's protocol is the same for every page (and process)
            numbers = dict(memo(("gap binned", n, steps, 0, min(n, SHOWN_POINTS)), run, [field, exact]))
            shown = numbers.pop("samples")
            residuals = {k: (f, memo(("gap residual",), lambda f=f: residual_curve(f), [f]))
                         for k, f in others.items()}
            return shown["truth"], shown["ode"], shown["sde"], numbers, residuals

        def draw(result):
            truth, ode, sde, numbers, residuals = result
            self._residuals.update(residuals)
            numbers["residual"] = self._residuals[name][1]
            self.numbers = numbers
            self.table[name] = dict(numbers, steps=steps, n=n)
            self.figures["ode"].update(truth=truth, samples=ode, title=f"ODE (Euler), {name}")
            self.figures["sde"].update(truth=truth, samples=sde, title=f"SDE (Euler-Maruyama), {name}")
            for k, (_, curve) in residuals.items():
                self.figures["residual"].update(k, list(curve), list(curve.values()))
            self.say(self._report(what, numbers, steps, n))
            self._table.object = self._table_text()
        self._worker.submit(compute, draw, self.show_error)

    def _fields(self) -> dict:
        fields = dict(self.models)
        fields[SESSION_MODEL] = self.session.field("learned")
        return fields

    @staticmethod
    def _report(what, n, steps, count) -> str:
        return (f"**{what}**\n\nW2² ×1e-2 (64×64 binning, {count:,} samples, {steps} steps):\n\n"
                f"- ODE to truth **{100 * n['ode_truth']:.2f}**\n"
                f"- SDE to truth **{100 * n['sde_truth']:.2f}**\n"
                f"- ODE to SDE **{100 * n['ode_sde']:.2f}**\n"
                f"- two independent true draws: {100 * n['floor']:.2f} (the noise floor: smaller "
                "differences are chance; more samples lower it)\n\n"
                "A field that is the exact score of one family p_t gives the same marginals to the ODE "
                "and the SDE. A trained field is not, and the two drift apart. Penalising the "
                "Fokker-Planck residual (w > 0) pulls them together, at a price in accuracy "
                "(Deveney et al.). Its size at the bottom: the lower, the more consistent. "
                "Compare the two networks at w = 0: the paper's raw log-density network errs "
                "differently under the two samplers; the lab's preconditioned one errs alike, so "
                "its gap is small from the start. Consistency of the field, not only its error, "
                "decides whether ODE and SDE agree.")

    def _table_text(self) -> str:
        rows = ["| model | ODE–truth | SDE–truth | ODE–SDE | floor | steps | samples |",
                "|---|---|---|---|---|---|---|"]
        for name in self.param.model.objects:
            if name in self.table:
                r = self.table[name]
                rows.append(f"| {name} | {100 * r['ode_truth']:.2f} | {100 * r['sde_truth']:.2f} | "
                            f"{100 * r['ode_sde']:.2f} | {100 * r['floor']:.2f} | {r['steps']} | {r['n']:,} |")
        return "**The models seen so far** (W2² ×1e-2):\n\n" + "\n".join(rows)
