"""The ODE-SDE gap, seen: the same model sampled by its probability-flow ODE and by its
reverse SDE, side by side, for several Fokker-Planck weights (Deveney et al.)."""
from __future__ import annotations

import panel as pn
import param
import torch

from lab import plots
from lab.app.figures import CurvesFigure, ScatterFigure
from lab.app.session import REDRAW_ON, Session
from lab.app.worker import Worker
from lab.data import dataset_mixture
from lab.fields import MixtureField
from lab.metrics import fokker_planck_residual, noised_samples, w2_binned
from lab.pretrained import GAP_DATASET, GAP_WEIGHTS, gap_path
from lab.solvers import sample
from lab.train import load

__all__ = ["GapView", "SESSION_MODEL"]

RESIDUAL_TIMES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
RESIDUAL_POINTS = 500
SESSION_MODEL = "this session's model"
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def _pretrained_name(w: float) -> str:
    return f"pretrained, w = {w:g}"


class GapView(pn.viewable.Viewer):
    """ODE (Euler) and SDE (Euler-Maruyama) samples of a model, their W2^2 to the truth and
    to each other, and the Fokker-Planck residual of the models beside the exact score's
    (zero). The models: OU-schedule models of circles trained with regulariser weight w
    (shipped), or the session's own (train one with a Fokker-Planck weight on the Train tab)."""

    model = param.Selector(default=_pretrained_name(GAP_WEIGHTS[0]),
                           objects=[_pretrained_name(w) for w in GAP_WEIGHTS] + [SESSION_MODEL])
    steps = param.Integer(default=400, bounds=(20, 800), label="sampler steps (the paper: 800)")
    n = param.Integer(default=5000, bounds=(500, 20_000), label="samples per sampler")

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self.exact = MixtureField(dataset_mixture(GAP_DATASET), "ou")
        self.models = {w: load(gap_path(w), device="cpu") for w in GAP_WEIGHTS if gap_path(w).is_file()}
        self.numbers = {}
        self.table = {}                  # model name -> numbers, for every model shown so far
        self._residuals = {}             # model name -> (field it was computed for, {t: residual})
        self._worker = Worker("score-lab-gap", label="sampling ODE and SDE…")
        self.session.on_close(self._worker.close)
        self._ode = ScatterFigure("ODE (Euler)", {"truth": plots.COLORS["truth"], "samples": plots.COLORS["model"]})
        self._sde = ScatterFigure("SDE (Euler-Maruyama)", {"truth": plots.COLORS["truth"],
                                                             "samples": "#9467bd"})
        names = self.param.model.objects
        self._residual = CurvesFigure("Fokker-Planck residual (the exact score's is 0)",
                                      {n: CURVE_COLORS[i % len(CURVE_COLORS)] for i, n in enumerate(names)},
                                      "t", "mean |sigma^3 R|^2",
                                      width=2 * plots.SIZE - 60, log_x=True, log_y=True)
        self._info = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._table = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self._layout = pn.FlexBox(   # the figures wrap below the controls on a narrow screen
            pn.Column("### ODE vs SDE", pn.Param(
                self.param, parameters=["model", "steps", "n"], show_name=False,
                widgets={"model": pn.widgets.RadioBoxGroup} |
                        {k: {"type": pn.widgets.IntSlider, "throttled": True} for k in ("steps", "n")}),
                self._worker.indicator, self._info, self._alert, width=340),
            pn.Column(pn.Row(self._ode.pane, self._sde.pane), self._residual.pane, self._table))
        self.param.watch(lambda *e: self.update(), ["model", "steps", "n"])
        self.session.param.watch(self._on_session, REDRAW_ON)
        self.update()

    def _on_session(self, *events):
        self.table.pop(SESSION_MODEL, None)
        if self.model == SESSION_MODEL:
            self.update()

    def _selected(self):
        """(field, exact field to compare with, description) of the chosen model."""
        if self.model == SESSION_MODEL:
            s = self.session
            return s.field("learned"), s.exact, f"{'exact score' if s.learned_is_exact else 'your model'} " \
                                                f"({s.dataset}, {s.schedule})"
        w = GAP_WEIGHTS[[_pretrained_name(v) for v in GAP_WEIGHTS].index(self.model)]
        if w not in self.models:
            raise ValueError(f"no pretrained model for w = {w:g}: run `python -m lab pretrain` to build it")
        return self.models[w], self.exact, f"{GAP_DATASET}, OU schedule, trained with w = {w:g}"

    def update(self):
        try:
            field, exact, what = self._selected()
        except ValueError as e:
            self._show_error(e)
            return
        name, n, steps = self.model, self.n, self.steps
        others = {k: f for k, f in self._fields().items() if self._residuals.get(k, (None,))[0] is not f}

        def compute():
            g = torch.Generator().manual_seed(7)
            truth = noised_samples(exact, exact.schedule.t_min, n, generator=g)
            other = noised_samples(exact, exact.schedule.t_min, n, generator=g)
            common = dict(n=n, steps=steps, spacing="time_uniform", seed=0)
            ode = sample(field, solver="ode_euler", **common).samples
            sde = sample(field, solver="euler_maruyama", **common).samples
            numbers = {"ode_truth": w2_binned(ode, truth) ** 2, "sde_truth": w2_binned(sde, truth) ** 2,
                       "ode_sde": w2_binned(ode, sde) ** 2, "floor": w2_binned(other, truth) ** 2}
            residuals = {k: (f, self._residual_curve(f)) for k, f in others.items()}
            return truth, ode, sde, numbers, residuals

        def draw(result):
            truth, ode, sde, numbers, residuals = result
            self._residuals.update(residuals)
            numbers["residual"] = self._residuals[name][1]
            self.numbers = numbers
            self.table[name] = dict(numbers, steps=steps, n=n)
            self._ode.update(truth=truth, samples=ode, title=f"ODE (Euler), {name}")
            self._sde.update(truth=truth, samples=sde, title=f"SDE (Euler-Maruyama), {name}")
            for k, (_, curve) in residuals.items():
                self._residual.update(k, list(curve), list(curve.values()))
            self._alert.visible = False
            self._info.object = self._report(what, numbers, steps, n)
            self._table.object = self._table_text()
        self._worker.submit(compute, draw, self._show_error)

    def _fields(self) -> dict:
        fields = {_pretrained_name(w): f for w, f in self.models.items()}
        fields[SESSION_MODEL] = self.session.field("learned")
        return fields

    @staticmethod
    def _residual_curve(field) -> dict:
        """Mean |sigma^3 R|^2 at RESIDUAL_TIMES (those inside the field's schedule), on
        RESIDUAL_POINTS uniform points of [-3.5, 3.5]^2 (Deveney et al.'s region)."""
        g = torch.Generator().manual_seed(3)
        xc = (2 * torch.rand(RESIDUAL_POINTS, 2, generator=g) - 1) * 3.5
        s = field.schedule
        out = {}
        for t in RESIDUAL_TIMES:
            if s.t_min <= t <= s.t_max:
                r = fokker_planck_residual(field, xc, t)
                out[t] = float(((float(s.sigma(t)) ** 3 * r.cpu().double()) ** 2).sum(1).mean())
        return out

    @staticmethod
    def _report(what, n, steps, count) -> str:
        return (f"**{what}**\n\nW2² ×1e-2 (64×64 binning, {count} samples, {steps} steps):\n\n"
                f"- ODE to truth **{100 * n['ode_truth']:.2f}**\n"
                f"- SDE to truth **{100 * n['sde_truth']:.2f}**\n"
                f"- ODE to SDE **{100 * n['ode_sde']:.2f}**\n"
                f"- two independent true draws: {100 * n['floor']:.2f} (the noise floor: smaller "
                "differences are chance; more samples lower it)\n\n"
                "A field that is the exact score of one family p_t gives the same marginals to the ODE "
                "and the SDE. A trained field is not, and the two drift apart. Penalising the "
                "Fokker-Planck residual (w > 0) pulls them together, at a price in accuracy "
                "(Deveney et al.). Its size at the bottom: the lower, the more consistent.")

    def _table_text(self) -> str:
        rows = ["| model | ODE–truth | SDE–truth | ODE–SDE | floor | steps | samples |",
                "|---|---|---|---|---|---|---|"]
        for name in self.param.model.objects:
            if name in self.table:
                r = self.table[name]
                rows.append(f"| {name} | {100 * r['ode_truth']:.2f} | {100 * r['sde_truth']:.2f} | "
                            f"{100 * r['ode_sde']:.2f} | {100 * r['floor']:.2f} | {r['steps']} | {r['n']} |")
        return "**The models seen so far** (W2² ×1e-2):\n\n" + "\n".join(rows)

    def _show_error(self, e: Exception):
        text = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        self._alert.object, self._alert.visible = f"**Could not sample:** {text}", True

    def __panel__(self):
        return self._layout
