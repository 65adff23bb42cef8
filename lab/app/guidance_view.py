"""Guidance and composition, seen: the naive sampler of a combined score beside the
Feynman-Kac corrector (Skreta et al. 2025) and the exact target, with W2 to the target, the
floor, and the weights' effective sample size over the run (lab.guidance)."""
from __future__ import annotations

import panel as pn
import param
import torch

from lab import plots
from lab.app.figures import CurvesFigure, ScatterFigure
from lab.app.shared import memo
from lab.app.view import LabView
from lab.guidance import KINDS, example, exact_target, fkc_sample
from lab.metrics import w2
from lab.solvers import sample

__all__ = ["GuidanceView", "KIND_NAMES"]

KIND_NAMES = {"cfg": "classifier-free guidance", "product": "product of two models",
              "anneal": "annealing (a power of the density)"}
SPACING = "logsnr"
TARGET_COLOR = "#bbbbbb"


class GuidanceView(LabView):
    """Pick a kind and its weight: the naive sampler (Euler-Maruyama on the combined score)
    and FKC (the same SDE with importance weights and resampling) sample it, the exact target
    is drawn beneath both, and W2 to the target is reported beside the floor (two draws of
    the target)."""

    kind = param.Selector(default="cfg", objects=list(KINDS), doc="what is combined")
    w = param.Number(default=3.0, bounds=(0.0, 10.0), step=0.5, label="guidance w (cfg)")
    beta = param.Number(default=0.5, bounds=(0.1, 4.0), step=0.1, label="power beta (anneal)")
    steps = param.Integer(default=500, bounds=(50, 2000), label="SDE steps (log-SNR uniform)")
    n = param.Integer(default=1000, bounds=(200, 8000), label="samples (particles)")
    ess_threshold = param.Number(default=0.5, bounds=(0.0, 1.0), step=0.05,
                                 label="resample when the ESS falls below")
    seed = param.Integer(default=0, bounds=(0, 10_000))

    title = "Guidance and composition"
    failure = "Could not sample"

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self._worker = self.worker("guidance", label="sampling naive and FKC…")
        layers = {"target": TARGET_COLOR, "samples": plots.COLORS["model"]}
        self.figures = f = {
            "naive": ScatterFigure("naive: the combined score", layers),
            "fkc": ScatterFigure("Feynman-Kac corrector", {"target": TARGET_COLOR, "samples": "#2ca02c"}),
            "target": ScatterFigure("the exact target", {"target": "#555555"}),
            "ess": CurvesFigure("FKC: effective sample size of the weights", {"ESS": "#2ca02c",
                                                                              "resampled": "#d62728"},
                                "t (the sampler runs from 1 down)", "ESS / n", width=2 * plots.SIZE - 60,
                                sizes={"resampled": 7, "ESS": 2}, dots_only=("resampled",))}
        widgets = self.controls("kind", "w", "beta", "steps", "n", "ess_threshold", "seed",
                                widgets={"kind": pn.widgets.RadioBoxGroup})
        self.page([widgets, self._worker.indicator],
                  pn.Column(pn.Row(f["naive"].pane, f["fkc"].pane), pn.Row(f["target"].pane), f["ess"].pane),
                  width=340)
        self.update()

    @param.depends("kind", "w", "beta", "steps", "n", "ess_threshold", "seed", watch=True)
    def update(self):
        """Sample the chosen kind both ways on the worker, then draw."""
        kind, n, steps, seed, threshold = self.kind, self.n, self.steps, self.seed, self.ess_threshold
        weight = {"cfg": self.w, "anneal": self.beta}.get(kind)

        def compute():
            ex = example(kind, weight)
            target = memo(("guidance target", kind, weight), lambda: exact_target(kind, **ex.target_parts))
            g = torch.Generator().manual_seed(seed + 101)
            truth, other = target.sample(n, generator=g), target.sample(n, generator=g)
            naive = sample(ex.field, n=n, solver="euler_maruyama", steps=steps, spacing=SPACING, seed=seed)
            fkc = fkc_sample(kind, n=n, steps=steps, spacing=SPACING, seed=seed, ess_threshold=threshold,
                             **ex.parts)
            numbers = {"floor": w2(other, truth), "naive": w2(naive.samples, truth), "fkc": w2(fkc.samples, truth),
                       "nfe_naive": naive.nfe * len(ex.field.fields), "nfe_fkc": fkc.nfe, "min_ess": float(fkc.ess.min()),
                       "resamples": int(fkc.resampled.sum())}
            return ex.title, truth, naive.samples, fkc, numbers

        def draw(result):
            title, truth, naive, fkc, numbers = result
            self.numbers = numbers
            f = self.figures
            f["naive"].update(target=truth, samples=naive, title=f"naive: {title}")
            f["fkc"].update(target=truth, samples=fkc.samples, title=f"FKC: {title}")
            f["target"].update(target=truth, title=f"exact target: {title}")
            ts = fkc.ts[1:].double()
            f["ess"].update("ESS", ts, fkc.ess)
            f["ess"].update("resampled", ts[fkc.resampled], fkc.ess[fkc.resampled])
            self.say(self._report(kind, title, numbers, n, steps))
        self._worker.submit(compute, draw, self.show_error)

    @staticmethod
    def _report(kind, title, r, n, steps) -> str:
        ratio = lambda v: v / r["floor"] if r["floor"] > 0 else float("inf")   # noqa: E731
        return (f"**{KIND_NAMES[kind]}**: {title}\n\n"
                f"W2 to the exact target ({n:,} samples, {steps} steps):\n\n"
                f"- naive **{r['naive']:.3f}** ({ratio(r['naive']):.1f}x the floor), {r['nfe_naive']} model evaluations\n"
                f"- FKC **{r['fkc']:.3f}** ({ratio(r['fkc']):.1f}x the floor), {r['nfe_fkc']} model evaluations; "
                f"lowest ESS {r['min_ess']:.2f}, resampled {r['resamples']} times\n"
                f"- two draws of the target: {r['floor']:.3f} (the noise floor)\n\n"
                "A sum or multiple of scores is not the score of the product or power it is "
                "meant to sample at intermediate noise levels, so the naive sampler ends "
                "elsewhere. FKC keeps the same SDE and weights each particle by "
                "g²/2 (|Σβs|² − Σβ|s|²) dt, resampling when the weights grow uneven (Skreta et "
                "al. 2025). Where the target's modes are far apart the weights degenerate: "
                "few particles carry the run, and more samples or steps are needed.")
