"""The ODE-SDE gap, seen: the same model sampled by its probability-flow ODE and by its
reverse SDE, side by side, for several Fokker-Planck weights (Deveney et al.)."""
from __future__ import annotations

import holoviews as hv
import panel as pn
import param
import torch

from lab import plots
from lab.data import dataset_mixture
from lab.fields import MixtureField
from lab.metrics import fokker_planck_residual, noised_samples, w2_binned
from lab.pretrained import GAP_DATASET, GAP_WEIGHTS, gap_path
from lab.solvers import sample
from lab.train import load

__all__ = ["GapView"]

RESIDUAL_TIMES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
RESIDUAL_POINTS = 500


class GapView(pn.viewable.Viewer):
    """ODE (Euler) and SDE (Euler-Maruyama) samples of OU-schedule models trained with
    regulariser weight w, their W2^2 to the truth and to each other, and the Fokker-Planck
    residual of each model beside the exact score's (zero)."""

    weight = param.Selector(default=0.0, objects=list(GAP_WEIGHTS), doc="Fokker-Planck weight w")
    steps = param.Integer(default=400, bounds=(20, 800), doc="sampler steps (the paper: 800)")
    n = param.Integer(default=3000, bounds=(500, 10_000), doc="samples per sampler")

    def __init__(self, **params):
        super().__init__(**params)
        self.exact = MixtureField(dataset_mixture(GAP_DATASET), "ou")
        self.models = {w: load(gap_path(w), device="cpu") for w in GAP_WEIGHTS if gap_path(w).is_file()}
        self.numbers = {}
        self._ode = pn.pane.HoloViews(sizing_mode="fixed")
        self._sde = pn.pane.HoloViews(sizing_mode="fixed")
        self._residual = pn.pane.HoloViews(sizing_mode="fixed")
        self._info = pn.pane.Markdown("")
        self._layout = pn.Row(
            pn.Column("### ODE vs SDE", pn.Param(
                self.param, parameters=["weight", "steps", "n"], show_name=False,
                widgets={k: {"type": pn.widgets.IntSlider, "throttled": True} for k in ("steps", "n")}),
                self._info, width=340),
            pn.Column(pn.Row(self._ode, self._sde), self._residual))
        self.param.watch(lambda *e: self.update(), ["weight", "steps", "n"])
        self.update()

    def update(self):
        if self.weight not in self.models:
            self._info.object = (f"No pretrained model for w = {self.weight:g}: run "
                                 "`python -m lab pretrain` to build them.")
            return
        field = self.models[self.weight]
        truth = noised_samples(self.exact, self.exact.schedule.t_min, self.n,
                               generator=torch.Generator().manual_seed(7))
        common = dict(n=self.n, steps=self.steps, spacing="time_uniform", seed=0)
        ode = sample(field, solver="ode_euler", **common).samples
        sde = sample(field, solver="euler_maruyama", **common).samples
        self.numbers = {"ode_truth": w2_binned(ode, truth) ** 2, "sde_truth": w2_binned(sde, truth) ** 2,
                        "ode_sde": w2_binned(ode, sde) ** 2}
        self._ode.object = plots.samples_plot(ode, truth, title=f"ODE (Euler), w = {self.weight:g}")
        self._sde.object = plots.samples_plot(sde, truth, title=f"SDE (Euler-Maruyama), w = {self.weight:g}")
        g = torch.Generator().manual_seed(3)
        xc = (2 * torch.rand(RESIDUAL_POINTS, 2, generator=g) - 1) * 3.5
        res = []
        for t in RESIDUAL_TIMES:
            r = fokker_planck_residual(field, xc, t)
            res.append(float(((field.schedule.sigma(t) ** 3 * r.cpu().double()) ** 2).sum(1).mean()))
        self.numbers["residual"] = dict(zip(RESIDUAL_TIMES, res))
        self._residual.object = hv.Curve((list(RESIDUAL_TIMES), res), "t", "mean |sigma^3 R|^2").opts(
            logx=True, logy=True, width=2 * plots.SIZE, height=240, line_width=2, tools=["hover"],
            title="Fokker-Planck residual of this model (the exact score's is 0)")
        n = self.numbers
        self._info.object = (
            f"W2² ×1e-2 (64×64 binning, {self.n} samples, {self.steps} steps):\n\n"
            f"- ODE to truth **{100 * n['ode_truth']:.2f}**\n"
            f"- SDE to truth **{100 * n['sde_truth']:.2f}**\n"
            f"- ODE to SDE **{100 * n['ode_sde']:.2f}**\n\n"
            "A field that is the exact score of one family p_t gives the same marginals to the ODE "
            "and the SDE. A trained field is not, and the two drift apart. Penalising the "
            "Fokker-Planck residual (w > 0) pulls them together, at a price in accuracy "
            "(Deveney et al.).")

    def __panel__(self):
        return self._layout
