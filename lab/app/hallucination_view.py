"""Mode interpolation, seen: samples coloured in support / between modes, the trajectory
variance of each, its ROC curve and the filter's two operating points (Aithal et al. 2024),
for the grid model trained at the paper's setting, the same run stopped early, or the
session's own model."""
from __future__ import annotations

import math
from types import SimpleNamespace

import panel as pn
import param

from lab import plots
from lab.app import shared
from lab.app.figures import CurvesFigure, HistogramFigure, ScatterFigure
from lab.app.session import Session
from lab.app.shared import memo
from lab.app.view import ON_SESSION, LabView
from lab.app.worker import on_page
from lab.hallucination import (IN_SUPPORT, PAPER_DETECTION, PAPER_RETENTION, end_law, kept_by_cut,
                               kept_share, operating_floor, operating_points, roc_curve, support_labels,
                               trajectory_variance)
from lab.pretrained import GRID_SCHEDULE, UNDERTRAINED
from lab.schedules import get_schedule
from lab.solvers import SPACINGS, sample

__all__ = ["HallucinationView", "WELL_TRAINED", "UNDERTRAINED_MODEL", "SESSION_MODEL"]

EXTENT = 2.5       # the lab's data sets are standardised: nearly all mass within +-2.5
WELL_TRAINED = "grid, trained at the paper's setting"
UNDERTRAINED_MODEL = f"grid, the same run at {UNDERTRAINED:,} steps"
SESSION_MODEL = "this session's model"
PRETRAINED = {WELL_TRAINED: "gaussian_grid", UNDERTRAINED_MODEL: f"gaussian_grid-{UNDERTRAINED // 1000}k"}
AT_DETECTION = f"{PAPER_DETECTION:.0%} detection"
AT_RETENTION = f"{PAPER_RETENTION:.0%} retention"
MAX_LAST_K = 50        # x0 predictions kept per run: the last_k slider's range
BOOTSTRAP = 100        # resamples for the figures' noise floor


class HallucinationView(LabView):
    """Sample a model and the exact score with the ancestral sampler (the paper's: 1000
    time-uniform steps); label every sample against the true law; score each by the
    variance of its predicted x0 over the last k steps; show the ROC curve and the two
    operating points with their noise floor, beside the paper's figures."""

    model = param.Selector(default=WELL_TRAINED, objects=[WELL_TRAINED, UNDERTRAINED_MODEL, SESSION_MODEL],
                           doc="the shipped grid models, or the session's own")
    steps = param.Integer(default=1000, bounds=(20, 1000), label="ancestral (DDPM) steps (paper: 1000)")
    spacing = param.Selector(default="time_uniform", objects=list(SPACINGS),
                             doc="time grid: which noise levels the last k steps cover")
    # the paper's 20,000: the trained model puts about 1 in 1000 off the modes, so fewer
    # samples leave too few hallucinations to score (the shipped models' runs are cached)
    n = param.Integer(default=20_000, bounds=(500, 20_000), label="samples drawn (paper: 20,000)")
    last_k = param.Integer(default=10, bounds=(2, MAX_LAST_K), label="last k steps (x0 variance)")
    k_std = param.Number(default=6.0, bounds=(1.0, 10.0), step=0.5, label="in support: within k std of a mode")
    cut = param.Selector(default=AT_DETECTION, objects=[AT_DETECTION, AT_RETENTION],
                         label="the filter's cut")
    seed = param.Integer(default=0, bounds=(0, None), doc="the draw ('Sample again' takes the next)")

    title = "Mode interpolation"
    failure = "Could not sample"

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self.points = None      # the OperatingPoints shown
        self.runs = {}          # "learned" / "exact" -> the samples and x0 predictions drawn last
        self._grid_exact = shared.exact_field("gaussian_grid", get_schedule("vp", **GRID_SCHEDULE))
        self._worker = self.worker("hallucinations", label="sampling both fields…")
        # scoring has its own thread: a slider moved while sampling runs must not replace
        # (and so drop) the sampling's result in one latest-wins queue
        self._scorer = self.worker("hallucinations-score", label="scoring…")
        layers = plots.LABEL_COLORS
        self.figures = f = {
            "learned": ScatterFigure("learned field", layers, extent=EXTENT, legend="below"),
            "exact": ScatterFigure("exact score", layers, extent=EXTENT, legend="below"),
            "kept": ScatterFigure("learned, after filtering", layers, extent=EXTENT, legend="below"),
            "roc": CurvesFigure("ROC curve of the detector",
                                {"detector": "#1f77b4", "chance": "#999999", AT_DETECTION: "#d62728",
                                 AT_RETENTION: "#9467bd"},
                                "share of in-support samples removed", "share of hallucinations removed",
                                width=plots.SIZE + 150, height=plots.SIZE - 40,
                                sizes={AT_DETECTION: 12, AT_RETENTION: 12}),
            "histogram": HistogramFigure("trajectory variance and the filter's cut",
                                         {"in support": layers["in support"],
                                          "out of support": layers["between modes"]},
                                         "log10 variance of the predicted x0 over the last k steps",
                                         width=plots.SIZE + 20)}
        self._button = pn.widgets.Button(label="Sample again", color="primary")
        self._button.on_click(on_page(lambda event: self.sample_again()))
        widgets = self.controls("model", "steps", "spacing", "n", "last_k", "k_std", "cut",
                                widgets={"model": pn.widgets.RadioBoxGroup, "cut": pn.widgets.RadioButtonGroup})
        self.page([widgets, pn.Row(self._button, self._worker.indicator, self._scorer.indicator)],
                  pn.Column(pn.Row(f["learned"].pane, f["exact"].pane), pn.Row(f["roc"].pane, f["kept"].pane),
                            f["histogram"].pane), width=340)
        self.resample()

    @staticmethod
    def new_session() -> Session:
        return Session(dataset="gaussian_grid")

    def sample_again(self) -> None:
        """A new draw: the next seed ("Sample again")."""
        self.seed += 1

    @param.depends(*ON_SESSION, watch=True)
    def _on_session(self):
        if self.model == SESSION_MODEL:
            self.resample()

    @param.depends("model", "steps", "spacing", "n", "seed", watch=True)
    def resample(self):
        """Draw from both fields (the expensive part, on the worker; a shipped model is
        loaded there too), then filter."""
        settings = dict(n=self.n, solver="ddpm", steps=self.steps, spacing=self.spacing, seed=self.seed)
        shipped = self.model != SESSION_MODEL
        if shipped:
            name, exact = PRETRAINED[self.model], self._grid_exact
        else:   # the session's fields, read here on the page's thread
            learned, exact = self.session.field("learned"), self.session.exact
        key = tuple(sorted(settings.items()))

        def run(field):
            traj = sample(field, keep_last=MAX_LAST_K, **settings)   # memory: only what is scored
            return SimpleNamespace(samples=traj.samples.cpu(), x0_preds=traj.x0_preds.cpu())

        def compute():
            if not shipped:
                return {"learned": run(learned), "exact": run(exact)}, exact
            # the exact score's run is the same whichever shipped model it is shown beside
            model = shared.pretrained(name)
            if model is None:
                raise ValueError(f"the lab has no {name} checkpoint: run `python -m lab pretrain "
                                 "gaussian_grid` to build it")
            return {"learned": memo(("hallucinations", key), lambda: run(model), [model]),
                    "exact": memo(("hallucinations", key), lambda: run(exact), [exact])}, exact

        def draw(result):
            self.runs, self._runs_exact = result
            self.refilter()
        self._worker.submit(compute, draw, self.show_error)

    @param.depends("last_k", "k_std", "cut", watch=True)
    def refilter(self):
        """Label, score and filter the stored runs: the numbers on the worker (the bootstrap
        takes a few tenths of a second), the drawing on the page."""
        if not self.runs:
            return
        runs, exact = self.runs, self._runs_exact
        k_std, cut, last_k = self.k_std, self.cut, min(self.last_k, runs["learned"].x0_preds.shape[0])

        def compute():
            law = end_law(exact.mixture, exact.schedule)
            labels = {key: support_labels(run.samples, law, k_std) for key, run in runs.items()}
            scores = trajectory_variance(runs["learned"], last_k)
            bad = labels["learned"] != IN_SUPPORT
            out = dict(labels=labels, scores=scores, bad=bad, op=None)
            if bad.any() and not bad.all():
                out["op"] = op = operating_points(scores, labels["learned"])
                out["floor"] = operating_floor(scores, labels["learned"], BOOTSTRAP)
                out["roc"] = roc_curve(scores, bad)
                out["threshold"] = op.threshold_at_detection if cut == AT_DETECTION else op.threshold_at_retention
                # what the same cut costs the exact score, whose samples never leave the modes
                out["exact_kept"] = kept_share(trajectory_variance(runs["exact"], last_k), out["threshold"])
                out["good_kept"] = kept_share(scores[~bad], out["threshold"])
            return out

        self._scorer.submit(compute, lambda r: self._draw(runs, r, k_std, cut, last_k), self.show_error)

    def _draw(self, runs, r, k_std, cut, last_k):
        labels, scores, bad, op = r["labels"], r["scores"], r["bad"], r["op"]
        learned = runs["learned"]
        rates = {key: float((lab != IN_SUPPORT).double().mean()) for key, lab in labels.items()}
        f = self.figures
        self._draw_labelled(f["learned"], learned.samples, labels["learned"])
        self._draw_labelled(f["exact"], runs["exact"].samples, labels["exact"])
        name = "learned" if self.model == SESSION_MODEL else PRETRAINED[self.model]
        f["learned"].title = f"{name}: {rates['learned']:.1%} out of support"
        f["exact"].title = f"exact score: {rates['exact']:.1%} out of support"
        self.numbers = {"rate_learned": rates["learned"], "rate_exact": rates["exact"], "n": len(scores),
                        "n_out": int(bad.sum()), "last_k": last_k}
        self.points = op
        if op is None:
            self._draw_unscored(learned.samples, labels["learned"], scores, k_std)
            return
        floor = r["floor"]
        self.numbers |= op.as_dict() | {"floor": floor, "exact_kept": r["exact_kept"], "good_kept": r["good_kept"]}
        kept = kept_by_cut(scores, r["threshold"])
        self._draw_labelled(f["kept"], learned.samples[kept], labels["learned"][kept])
        f["kept"].title = f"after the cut at {cut}: {int(kept.sum())} of {len(scores)} kept"
        fpr, tpr, _ = r["roc"]
        f["roc"].update("detector", fpr, tpr, title=f"ROC curve of the detector (AUC {op.auc:.3f})")
        f["roc"].update("chance", [0, 1], [0, 1])
        f["roc"].update(AT_DETECTION, [1 - op.retention_at_detection], [PAPER_DETECTION])
        f["roc"].update(AT_RETENTION, [1 - PAPER_RETENTION], [op.detection_at_retention])
        self._draw_histogram(scores, bad, r["threshold"])
        self.say(
            f"**Out of support** (further than {k_std:g} std from every mode): learned "
            f"**{rates['learned']:.1%}** ({int(bad.sum())} of {len(scores)}), exact score "
            f"**{rates['exact']:.1%}**.\n\n"
            f"**The detector** (x0 variance over the last {last_k} steps), ± its noise floor "
            f"(bootstrap std over these samples):\n\n"
            f"| | here | paper |\n|---|---|---|\n"
            f"| retention at {PAPER_DETECTION:.0%} detection | **{op.retention_at_detection:.1%}** "
            f"± {floor['retention_at_detection']:.1%} | {PAPER_RETENTION:.0%} |\n"
            f"| detection at {PAPER_RETENTION:.0%} retention | **{op.detection_at_retention:.1%}** "
            f"± {floor['detection_at_retention']:.1%} | > {PAPER_DETECTION:.0%} |\n"
            f"| ROC AUC | {op.auc:.3f} ± {floor['auc']:.3f} | |\n\n"
            f"**The same cut on the exact score** keeps **{r['exact_kept']:.1%}** of its samples "
            f"({rates['exact']:.1%} of them out of support); of the model's in-support samples it "
            f"keeps {r['good_kept']:.1%}. A sample that chooses its mode only in the last steps trips "
            f"the detector, whatever the score.\n\n"
            + self._lesson())

    def _lesson(self) -> str:
        if self.model == UNDERTRAINED_MODEL:
            return ("This model stopped early: it has not learned how narrow the modes are, so it "
                    "**blurs** them, and all its samples, in support or not, still move in the last "
                    "steps. The detector has nothing to tell apart. Switch to the fully trained model.")
        if self.model == WELL_TRAINED:
            return ("Trained as in the paper (Aithal et al. 2024), the model puts few samples off the "
                    "modes, and those are **interpolations**: their predicted x0 wavers between modes "
                    "in the last steps while good samples have settled, which the filter catches. "
                    "Switch to the undertrained run to see blur instead.")
        return ("Your session's model: the paper's figures need the paper's setting (the first two "
                "choices). Try the spacing and last k: the window must cover the noise levels where "
                "a sample chooses its mode.")

    def _draw_histogram(self, scores, bad, threshold):
        counts_good, edges = plots.log_histogram(scores[~bad], edges=plots.log_histogram(scores)[1])
        counts_bad, _ = plots.log_histogram(scores[bad], edges=edges)
        self.figures["histogram"].update(edges, cut=math.log10(threshold + 1e-12),
                          **{"in support": counts_good, "out of support": counts_bad})

    def _draw_unscored(self, samples, labels, scores, k_std):
        """Every sample on one side of the line: there is nothing to detect."""
        f = self.figures
        self._draw_labelled(f["kept"], samples, labels)
        f["kept"].title = "no filter: nothing to tell apart"
        for name in f["roc"].sources:
            f["roc"].update(name, [], [])
        self._draw_histogram(scores, labels != IN_SUPPORT, float(scores.max()))
        side = "in" if (labels == IN_SUPPORT).all() else "out of"
        self.say(f"All {len(samples)} samples are {side} support at {k_std:g} std: "
                             "there is nothing for the detector to tell apart. Draw more samples, or "
                             "change k.\n\n" + self._lesson())

    @staticmethod
    def _draw_labelled(fig: ScatterFigure, samples, labels):
        fig.update(**plots.by_label(samples, labels))
