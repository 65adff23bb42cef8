"""Mode interpolation, seen: samples coloured in support / between modes, the trajectory
variance of each, and what filtering on it removes (Aithal et al. 2024)."""
from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from lab import plots
from lab.app.session import Session
from lab.hallucination import IN_SUPPORT, LABEL_NAMES, filter_report, support_labels, trajectory_variance
from lab.solvers import SPACINGS, sample

__all__ = ["HallucinationView"]

LABEL_COLORS = {0: "#2ca02c", 1: "#d62728", 2: "#ff7f0e"}


class HallucinationView(pn.viewable.Viewer):
    """Sample the learned and the exact field with the ancestral sampler; label every sample
    against the true mixture; filter on the x0 variance over the last k steps."""

    steps = param.Integer(default=200, bounds=(20, 1000), doc="ancestral (DDPM) steps")
    spacing = param.Selector(default="time_uniform", objects=list(SPACINGS),
                             doc="time grid: which noise levels the last k steps cover")
    n = param.Integer(default=3000, bounds=(500, 10_000), doc="samples drawn")
    last_k = param.Integer(default=10, bounds=(2, 50), doc="steps the x0 variance looks back")
    keep = param.Number(default=0.85, bounds=(0.05, 1.0), step=0.01, doc="share of samples kept")
    k_std = param.Number(default=3.0, bounds=(1.0, 10.0), step=0.5,
                         doc="in support: within this many component stds of a mode")

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session(dataset="gaussian_grid")
        self.report = None
        self.rates = {}
        self._runs = {}
        self._scatter = pn.pane.HoloViews(sizing_mode="fixed")
        self._exact = pn.pane.HoloViews(sizing_mode="fixed")
        self._hist = pn.pane.HoloViews(sizing_mode="fixed")
        self._info = pn.pane.Markdown("")
        self._button = pn.widgets.Button(name="Sample again", button_type="primary")
        self._button.on_click(lambda event: self.resample())
        widgets = pn.Param(self.param, parameters=["steps", "spacing", "n", "last_k", "keep", "k_std"], show_name=False,
                           widgets={"keep": {"type": pn.widgets.FloatSlider, "throttled": True}})
        self._layout = pn.Row(
            pn.Column("### Mode interpolation", pn.Param(self.session.param, parameters=["dataset"],
                                                         show_name=False),
                      widgets, self._button, self._info, width=340),
            pn.Column(pn.Row(self._scatter, self._exact), self._hist))
        self.param.watch(lambda *e: self.resample(), ["steps", "spacing", "n"])
        self.param.watch(lambda *e: self.refilter(), ["last_k", "keep", "k_std"])
        self.session.param.watch(lambda *e: self.resample(), ["model", "dataset", "schedule"])
        self.resample()

    def _end_mixture(self):
        """The true law at the sampler's end point t_min: samples are judged against it."""
        exact = self.session.exact
        s = exact.schedule
        return exact.mixture.noised(float(s.alpha(s.t_min)), float(s.sigma(s.t_min)))

    def resample(self):
        """Draw from both fields (the expensive part), then filter."""
        for key, field in (("learned", self.session.field("learned")), ("exact", self.session.exact)):
            self._runs[key] = sample(field, n=self.n, solver="ddpm", steps=self.steps,
                                     spacing=self.spacing, seed=0)
        self.refilter()

    def refilter(self):
        """Label, score and filter the stored runs (cheap: sliders call this)."""
        mixture = self._end_mixture()
        last_k = min(self.last_k, self.steps)
        labels = {key: support_labels(run.samples, mixture, self.k_std) for key, run in self._runs.items()}
        self.rates = {key: float((lab != IN_SUPPORT).double().mean()) for key, lab in labels.items()}
        learned = self._runs["learned"]
        scores = trajectory_variance(learned, last_k)
        keep = max(1, int(round(self.keep * len(scores))))
        self.report = filter_report(scores, labels["learned"], keep=keep)
        self._scatter.object = self._labelled(learned.samples, labels["learned"], "learned field")
        self._exact.object = self._labelled(self._runs["exact"].samples, labels["exact"], "exact score")
        self._hist.object = self._histogram(scores, labels["learned"], self.report.threshold)
        r = self.report
        self._info.object = (
            f"Out of support (further than {self.k_std:g} std from every mode): learned "
            f"**{self.rates['learned']:.1%}**, exact **{self.rates['exact']:.1%}**\n\n"
            f"Filter: keep the {keep} of {len(scores)} samples with the lowest x0 variance over the "
            f"last {last_k} steps:\n\n"
            f"- removed **{r.detection:.0%}** of the hallucinations (detection)\n"
            f"- kept **{r.retention:.0%}** of the good samples (retention)\n"
            f"- out-of-support rate {r.rate_before:.1%} -> **{r.rate_after:.1%}**; ROC AUC {r.auc:.2f}\n\n"
            "Paper (Aithal et al. 2024): the true score never interpolates; the filter removes "
            "over 95% of hallucinations and keeps 96% of the rest. Try the spacing and last k: "
            "the window must cover the noise levels where a sample chooses its mode.")

    @staticmethod
    def _labelled(samples, labels, title):
        x, lab = samples.detach().cpu().numpy(), labels.numpy()
        layers = [hv.Points(x[lab == v], label=name).opts(color=LABEL_COLORS[v], size=2, alpha=0.6)
                  for v, name in LABEL_NAMES.items() if (lab == v).any()]
        overlay = hv.Overlay(layers) if layers else hv.Points([])
        return overlay.opts(width=plots.SIZE, height=plots.SIZE, xlim=(-2, 2), ylim=(-2, 2),
                            title=title, legend_position="bottom_right", data_aspect=1)

    @staticmethod
    def _histogram(scores, labels, threshold):
        logv = np.log10(scores.numpy() + 1e-12)
        edges = np.linspace(logv.min(), logv.max() + 1e-9, 40)
        bad = (labels != IN_SUPPORT).numpy()
        dim = "log10_x0_variance"  # its own axis name: not linked to the x of the scatter plots
        good_h = hv.Histogram(np.histogram(logv[~bad], edges), kdims=[dim], label="in support").opts(
            color=LABEL_COLORS[0], alpha=0.5)
        bad_h = hv.Histogram(np.histogram(logv[bad], edges), kdims=[dim], label="out of support").opts(
            color=LABEL_COLORS[1], alpha=0.5)
        line = hv.VLine(np.log10(threshold + 1e-12), kdims=[dim, "samples"]).opts(color="black", line_dash="dashed")
        return (good_h * bad_h * line).opts(width=2 * plots.SIZE, height=240, xlabel="log10 x0 variance",
                                            ylabel="samples", title="trajectory variance and the filter's cut",
                                            legend_position="top_right")

    def __panel__(self):
        return self._layout
