"""Flows: stochastic interpolants and flow matching between any two ends, the learned velocity
beside the exact one (Albergo, Boffi & Vanden-Eijnden 2023; Liu et al. 2023's reflow; Tong et
al. 2024's minibatch OT).

Pick the two ends (a Gaussian, a data set, your own points or drawing), the interpolant and its
gamma, the coupling; train a velocity (on a background thread, with progress), reflow it. The
page draws the particles' paths (straight or curved), the learned velocity beside the exact one
at a tau slider (colours: its curl), samples of the interpolant's SDE at an eps slider, and W2 to
the target against the number of Euler steps beside the floor. The flow trained here is the
session's (``Session.flow``): the solver tab samples it, the curl tab shows its velocity's curl.
"""
from __future__ import annotations

import dataclasses

import panel as pn
import param
import torch

from lab import plots
from lab.app import shared
from lab.app.figures import CurvesFigure, DrawFigure, FieldFigure, PathsFigure, ScatterFigure
from lab.app.session import FLOW_REDRAW_ON, UPLOADED
from lab.app.train_view import (LOG_EVERY, MAX_TRAIN_STEPS, N_DRAWN_POINTS, N_TRAIN_POINTS, PEN_WIDTH,
                                 TrainingPage)
from lab.app.view import LabView
from lab.app.worker import on_page
from lab.data import DATASETS, make_dataset, points_from_drawing
from lab.interpolants import (GAMMAS, INTERPOLANTS, InterpolantField, get_interpolant, is_standard_gaussian,
                              straightness, velocity_error)
from lab.metrics import sliced_w2
from lab.pretrained import FLOW_ENDS, flow_path
from lab.solvers import sample
from lab.train import TrainConfig, TrainingRun, reflow, train

__all__ = ["FlowsView", "N_SAMPLES", "NFES", "DEFAULT_GAMMA"]

# The exact field between two data sets costs ~3.4 ns a point and component pair an evaluation
# here (two_moons -> circles: 5,760 pairs, so 2,000 points by 25 RK4 steps take ~4 s; from
# N(0, I), 80 pairs, ~60 ms): the page's sizes keep a change within seconds, and the shared
# fields' results are kept for every session (``shared.memo``).
N_SAMPLES = 2000          # samples drawn at every change (the SDE's, and each NFE's)
N_PATHS = 32              # particle paths drawn
SDE_STEPS = 100           # the eps-SDE's steps (eps = 0: RK4, PATH_STEPS)
PATH_STEPS = 25
NFES = (1, 2, 4, 8, 16, 32)   # Euler steps of the W2 curve
W2_DIRECTIONS = 64        # the sliced W2's directions (evenly spaced: lab.distances)
FLOOR_PAIRS = 4           # the floor: the mean sliced W2 between this many pairs of target draws
EXACT_CURVE_PAIRS = 2_000     # the exact field's W2 curve is drawn up to this many component pairs
REFLOW_PAIRS = 20_000     # pairs a reflow draws from the flow (Liu et al.)
ERROR_TAUS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)   # where the learned fields' error is drawn
ERROR_POINTS = 1000       # points of rho_tau it is measured on
DEFAULT_GAMMA = "family's own"
ENDS = ["gaussian", *DATASETS]


class FlowsView(TrainingPage, LabView):
    """Train, reflow and sample a flow between two ends, beside the exact interpolant field."""

    source = param.Selector(default="gaussian", objects=list(ENDS), label="source (tau = 0)")
    target = param.Selector(default="two_moons", objects=list(DATASETS), label="target (tau = 1)")
    interpolant = param.Selector(default="linear", objects=list(INTERPOLANTS),
                                 doc="linear: rectified flow / CondOT; trig, gvp, encoding-decoding: "
                                     "Albergo et al.'s; one_sided: from N(0, I), the diffusion case")
    gamma = param.Selector(default=DEFAULT_GAMMA, objects=[DEFAULT_GAMMA, *[g for g in GAMMAS if g != "scaled"]],
                           label="gamma (latent noise)")
    coupling = param.Selector(default="independent", objects=["independent", "ot", "sinkhorn"],
                              doc="how training pairs source and target points: independent draws, "
                                  "minibatch exact OT, or Sinkhorn's entropic plan")
    show = param.Selector(default="learned", objects=["learned", "exact"], label="field sampled")
    tau = param.Number(default=0.5, bounds=(0.0, 1.0), step=0.05, label="tau (0: source, 1: target)")
    eps = param.Number(default=0.0, bounds=(0.0, 2.0), step=0.1, label="eps (0: the ODE)",
                       doc="the interpolant's SDE dX = (b + eps s) dtau + sqrt(2 eps) dW")
    steps = param.Integer(default=TrainConfig.steps, bounds=(100, MAX_TRAIN_STEPS), label="training steps")
    seed = param.Integer(default=0, bounds=(0, 10_000))

    title = "Flows"
    failure = "Could not compute"

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self._init_training()        # its run: a training or a reflow
        self._run_key = None         # the settings it trains for
        self._flows: dict = {}       # settings -> (learned flow, reflows done, the flow before the last reflow)
        self._exact_cache = None     # (key, the exact field of uploaded points)
        self._maps_worker = self.worker("flow-maps", label="drawing the fields…")
        self._samples_worker = self.worker("flow-samples", label="sampling…")
        self._curve_worker = self.worker("flow-curve", label="W2 against NFE…")
        self.figures = f = {
            "paths": PathsFigure("particle paths"),
            "samples": ScatterFigure("samples", {"truth": plots.COLORS["truth"], "samples": plots.COLORS["model"]}),
            "learned": FieldFigure("learned velocity"),
            "exact": FieldFigure("exact velocity"),
            "w2": CurvesFigure("sliced W2 to the target against Euler steps",
                               {"learned": plots.COLORS["model"], "before reflow": "#ff7f0e",
                                "exact": "#2ca02c", "floor": plots.COLORS["truth"]},
                               "NFE (Euler steps)", "sliced W2", width=2 * plots.SIZE - 60, log_x=True, log_y=True),
            "loss": CurvesFigure("training loss", {"loss": "#1f77b4"}, "step", "loss", log_y=True),
            "error": CurvesFigure("the learned flow's error to the exact one", {"velocity": plots.COLORS["model"],
                                                                                 "score": "#ff7f0e"},
                                  "tau", "relative L2 error on rho_tau", log_y=True),
            "drawing": DrawFigure("draw a target: drag to draw strokes")}
        self.train_button = pn.widgets.Button(label="Train", color="primary", width=95)
        self.reflow_button = pn.widgets.Button(label="Reflow", width=95)
        self.stop_button = pn.widgets.Button(label="Stop", color="warning", disabled=True, width=95)
        self.train_button.on_click(on_page(lambda event: self.start()))
        self.reflow_button.on_click(on_page(lambda event: self.start_reflow()))
        self.stop_button.on_click(on_page(lambda event: self.stop()))
        self._bar = pn.indicators.Progress(value=0, max=100, width=280)
        use = pn.widgets.Button(label="Use my drawing as the target", color="primary", width=210)
        undo, clear = pn.widgets.Button(label="Undo", width=60), pn.widgets.Button(label="Clear", width=60)
        use.on_click(on_page(lambda event: self.use_drawing()))
        undo.on_click(on_page(lambda event: f["drawing"].undo()))
        clear.on_click(on_page(lambda event: f["drawing"].clear()))
        self._install_pretrained()
        self._ends_options()
        widgets = self.controls("source", "target", "interpolant", "gamma", "coupling", "show", "tau", "eps",
                                "steps", "seed", widgets={"show": pn.widgets.RadioButtonGroup})
        self.page([widgets, pn.Row(self.train_button, self.reflow_button, self.stop_button), self._bar,
                   self._maps_worker.indicator, self._samples_worker.indicator, self._curve_worker.indicator],
                  pn.Column(pn.Row(f["paths"].pane, f["samples"].pane),
                            pn.pane.Markdown("The learned velocity beside the exact one at the tau slider: arrows "
                                             "show b, colours its curl (zero for an optimal transport's)."),
                            pn.Row(f["learned"].pane, f["exact"].pane), pn.Row(f["w2"].pane, f["loss"].pane),
                            pn.Row(f["error"].pane, pn.Column(f["drawing"].pane, pn.Row(use, undo, clear)))))
        self._on_settings()

    # --- the settings and their fields -------------------------------------------------------
    def key(self) -> tuple:
        """The settings a flow is trained for (your points: which upload too)."""
        uploaded = UPLOADED in (self.source, self.target)
        return (self.source, self.target, self.interpolant, self.gamma, self.coupling,
                self.session.points_version if uploaded else None)

    def _entry(self, key=None) -> tuple:
        return self._flows.get(self.key() if key is None else key, (None, 0, None))

    def interpolant_obj(self):
        return get_interpolant(self.interpolant, None if self.gamma == DEFAULT_GAMMA else self.gamma)

    def _end(self, name: str):
        return self.session.points if name == UPLOADED else name

    def exact(self) -> InterpolantField:
        """The exact field of the page's ends and interpolant (built-in ends: shared by sessions)."""
        I = self.interpolant_obj()            # a ValueError names a bad family and gamma
        if UPLOADED not in (self.source, self.target):
            return shared.flow_field(self.source, self.target, self.interpolant,
                                     None if self.gamma == DEFAULT_GAMMA else self.gamma)
        key = self.key()
        if self._exact_cache is None or self._exact_cache[0] != key:
            self._exact_cache = (key, InterpolantField(self._end(self.source), self._end(self.target), I))
        return self._exact_cache[1]

    @property
    def learned(self):
        """The learned flow of the current settings, or None."""
        return self._entry()[0]

    def _install_pretrained(self):
        for source, target in FLOW_ENDS:
            flow = shared.checkpoint(flow_path(source, target))
            self._flows[(source, target, "linear", DEFAULT_GAMMA, "independent", None)] = (flow, 0, None)

    def use_drawing(self, strokes=None, dots=()) -> None:
        """Make the strokes on the canvas (or ``strokes``, see ``lab.data.points_from_drawing``)
        the session's points (as the Train tab's drawing does) and this page's target."""
        strokes = self.figures["drawing"].drawing() if strokes is None else strokes
        try:
            self.session.use_points(points_from_drawing(strokes, dots, N_DRAWN_POINTS, PEN_WIDTH))
        except ValueError as e:
            self.show_error(e, "Could not use the drawing")
            return
        self.target = UPLOADED

    @param.depends("session.points_version", watch=True)
    def _ends_options(self):
        """Your points (an upload or a drawing on the Train tab) become an end to choose."""
        if self.session.points is not None:
            for name in ("source", "target"):
                if UPLOADED not in self.param[name].objects:
                    self.param[name].objects = [*self.param[name].objects, UPLOADED]

    @param.depends("source", "target", "interpolant", "gamma", "coupling", watch=True)
    def _on_settings(self):
        """New ends or interpolant: the session's flow is this setting's (or none), and all is redrawn."""
        try:
            exact = self.exact()
        except ValueError as e:
            self.show_error(e, "These settings make no interpolant")
            return
        self.show_error("")
        for name in ("straightness", "w2_curve", "w2"):
            self.numbers.pop(name, None)
        learned, session = self.learned, self.session
        unchanged = session.flow is learned and session.flow_exact is exact
        session.param.update(flow=learned, flow_exact=exact)     # a change redraws (_on_flow watches it)
        if unchanged:
            self._on_flow()

    @param.depends(*[f"session.{name}" for name in FLOW_REDRAW_ON], watch=True)
    def _on_flow(self):
        self.draw_maps()
        self.draw_samples()
        self.draw_curve()

    # --- the velocity maps at tau --------------------------------------------------------------
    @param.depends("tau", watch=True)
    def draw_maps(self):
        """Arrows of the learned and exact velocity at tau over their curl, in one colour range."""
        learned, exact = self.session.flow_field("learned"), self.session.flow_field("exact")
        is_exact = self.session.flow is None
        t = 1 - self.tau

        def one(f):
            return shared.memo(("flow map", t), lambda: (plots.curl_grid(f, t, of="velocity"),
                                                                plots.score_arrows(f, t, of="velocity")), [f])

        def compute():
            out = {"exact": one(exact)}
            out["learned"] = out["exact"] if learned is exact else one(learned)
            return out, plots.clim_of(out["learned"][0], out["exact"][0])

        def draw(result):
            maps, clim = result
            name = "exact velocity (no learned flow)" if is_exact else "learned velocity"
            self.figures["learned"].update(*maps["learned"], clim=clim, title=f"{name}, tau = {self.tau:.2f}")
            self.figures["exact"].update(*maps["exact"], clim=clim, title=f"exact velocity, tau = {self.tau:.2f}")
        self._maps_worker.submit(compute, draw, lambda e: self.show_error(e, "Could not draw the velocity"))

    # --- samples at eps, and the paths ---------------------------------------------------------
    @param.depends("eps", "show", "seed", watch=True)
    def draw_samples(self):
        """The chosen field's samples by the interpolant's SDE at eps (eps = 0: RK4), the paths of
        its first particles, and their sliced W2 to the target beside the floor."""
        field = self.session.flow_field(self.show)
        exact = self.session.flow_field("exact")
        eps, seed, show = self.eps, self.seed, self.show
        settings = (dict(solver="flow_sde", steps=SDE_STEPS, eta=eps) if eps > 0
                    else dict(solver="ode_rk4", steps=PATH_STEPS))

        def run():
            traj = sample(field, n=N_SAMPLES, seed=seed, **settings)
            truth, floor = _truth_and_floor(exact)
            dist = sliced_w2(traj.samples, truth, n_projections=W2_DIRECTIONS, estimator="grid")
            return traj.samples, traj.xs[:, :N_PATHS], truth, dist, floor, traj.nfe

        def compute():      # a shared field's run is the same for every session
            return shared.memo(("flow samples", seed, tuple(sorted(settings.items()))),
                               run, [field, exact])

        def draw(result):
            x, paths, truth, dist, floor, nfe = result
            what = "exact" if show == "exact" or self.session.flow is None else "learned"
            how = f"the SDE at eps = {eps:g}" if eps > 0 else "RK4"
            self.figures["samples"].update(truth=truth, samples=x, title=f"{what} flow, {how}, {nfe} NFE")
            self.figures["paths"].update(paths, title=f"particle paths of the {what} flow ({how})")
            self.numbers.update(w2=dist, floor=floor, nfe=nfe, eps=eps)
            self.say(self._report())

        def failed(e):
            self.numbers.pop("w2", None)
            self._info.object = self._report()
            self.show_error(e, "Could not sample")
        self._samples_worker.submit(compute, draw, failed)

    # --- W2 against NFE ------------------------------------------------------------------------
    def draw_curve(self):
        """Sliced W2 to the target of Euler sampling at NFES steps: the learned flow (and the one
        before the last reflow), the exact field (small mixtures), and the floor; and the learned
        flow's straightness."""
        learned, exact = self.session.flow, self.session.flow_field("exact")
        before = self._entry()[2]
        with_exact = exact.pairs <= EXACT_CURVE_PAIRS

        def curve(f):
            truth, _ = _truth_and_floor(exact)
            return [sliced_w2(sample(f, n=N_SAMPLES, solver="ode_euler", steps=k, seed=0).samples, truth,
                              n_projections=W2_DIRECTIONS, estimator="grid") for k in NFES]

        def compute():
            out = {"floor": _truth_and_floor(exact)[1]}
            if learned is not None:
                out["learned"] = curve(learned)
                out["straightness"] = straightness(learned, n=500, steps=50)
                out["velocity_error"] = velocity_error(learned, exact, ERROR_TAUS, n=ERROR_POINTS)
                if learned.has_score:
                    out["score_error"] = velocity_error(learned, exact, ERROR_TAUS, n=ERROR_POINTS, of="score")
            if before is not None:
                out["before reflow"] = curve(before)
            if with_exact:
                out["exact"] = shared.memo(("flow curve",), lambda: curve(exact), [exact])
            return out

        def draw(out):
            fig = self.figures["w2"]
            for name in ("learned", "before reflow", "exact"):
                fig.update(name, NFES if name in out else [], out.get(name, []))
            fig.update("floor", [NFES[0], NFES[-1]], [out["floor"]] * 2)
            for name, key in (("velocity", "velocity_error"), ("score", "score_error")):
                errors = out.get(key, {})
                self.figures["error"].update(name, list(errors), list(errors.values()))
            for key in ("straightness", "velocity_error", "score_error"):
                self.numbers.pop(key, None)
                if key in out:
                    self.numbers[key] = out[key]
            self.numbers["w2_curve"] = {k: v for k, v in out.items() if k in ("learned", "before reflow", "exact")}
            self._info.object = self._report()      # the samples' error, if any, stays shown
        self._curve_worker.submit(compute, draw, lambda e: self.show_error(e, "Could not measure W2 against NFE"))

    def _report(self) -> str:
        n = self.numbers
        learned = self.session.flow
        lines = []
        if learned is None:
            lines.append("No learned flow for these settings: press **Train** (the page shows the exact field).")
        else:
            reflows = self._entry()[1]
            lines.append(f"Learned flow: {learned.interpolant.name} interpolant, {learned.coupling} coupling"
                         f"{f', {reflows} reflow(s)' if reflows else ''}.")
        if "w2" in n:
            lines.append(f"Samples: sliced W2 to the target **{n['w2']:.3f}** (floor {n['floor']:.3f}), "
                         f"{n['nfe']} NFE, eps {n['eps']:g}.")
        if "straightness" in n and learned is not None:
            lines.append(f"Straightness of the learned flow **{n['straightness']:.3f}** "
                         "(0: straight paths, one Euler step is exact).")
        if "velocity_error" in n and learned is not None:
            score = f", its score's {n['score_error'][0.5]:.1%}" if "score_error" in n else ""
            lines.append(f"Error to the exact field at tau = 0.5: the velocity's **{n['velocity_error'][0.5]:.1%}**"
                         f"{score} (every tau: the figure below).")
        return "\n\n".join(lines)

    # --- training and reflow on a background thread -----------------------------------------------
    def config(self) -> TrainConfig:
        return TrainConfig(objective="velocity", interpolant=self.interpolant,
                           gamma=None if self.gamma == DEFAULT_GAMMA else self.gamma, coupling=self.coupling,
                           steps=self.steps, log_every=LOG_EVERY)

    def _data(self):
        return self.session.points if self.target == UPLOADED else make_dataset(self.target, N_TRAIN_POINTS, seed=0)

    def start(self):
        """Train a velocity for the current settings (and, for a two-sided flow with latent
        noise, a denoiser for its SDE)."""
        if self.running:
            return
        try:
            cfg, data, exact = self.config(), self._data(), self.exact()
        except ValueError as e:
            self.show_error(e)
            return
        source = exact.source
        score_steps = self.steps // 2 if self._needs_denoiser(exact) else 0
        fit = _velocity_and_denoiser if score_steps else train
        extra = {"score_steps": score_steps} if score_steps else {}
        self._launch(TrainingRun(data, cfg, fit=fit, total=cfg.steps + score_steps, source=source, **extra),
                     f"training a velocity{' and a denoiser' if score_steps else ''}: {cfg.steps + score_steps} steps")

    def _needs_denoiser(self, exact) -> bool:
        noisy = float(exact.interpolant.gamma(torch.tensor(0.5, dtype=torch.float64))) > 0
        return noisy and (not is_standard_gaussian(exact.source) or self.coupling != "independent")

    def start_reflow(self):
        """Reflow the learned flow: REFLOW_PAIRS pairs from its own ODE, trained on again."""
        if self.running:
            return
        flow = self.learned
        if flow is None:
            self.show_error("there is no learned flow to reflow: press Train first", "Cannot reflow")
            return
        cfg = dataclasses.replace(flow.config or self.config(), steps=self.steps, log_every=LOG_EVERY)
        self._launch(TrainingRun(None, cfg, fit=lambda _data, c, **kw: reflow(flow, c, n=REFLOW_PAIRS, **kw)),
                     f"reflow: {REFLOW_PAIRS:,} pairs from the flow's ODE, then {cfg.steps} steps")

    def _launch(self, run: TrainingRun, text: str):
        self._run_key = self.key()
        self.figures["loss"].clear()
        self.figures["loss"].title = f"training loss ({text.split(':')[0]})"
        self.train_button.disabled = self.reflow_button.disabled = True
        self.stop_button.disabled = False
        self.say(text)
        self._watch(run)

    def _finish(self, run: TrainingRun):
        """Install the run's flow (a reflow's keeps the flow before it, for the W2 curve)."""
        self.train_button.disabled = self.reflow_button.disabled = False
        self.stop_button.disabled = True
        if run.error:
            self.show_error(f"training failed: {run.error}")
            return
        field = run.result
        previous, reflows, _ = self._entry(self._run_key)
        is_reflow = field.config is not None and field.config.coupling == "paired"
        self._flows[self._run_key] = (field, reflows + 1, previous) if is_reflow else (field, 0, None)
        summary = field.summary or {}
        self.say(f"done: {'reflow ' if is_reflow else ''}{summary.get('steps_done', '?')} steps in "
                 f"{summary.get('train_s', float('nan')):.1f} s{' (' + run.stopped + ')' if run.stopped else ''}")
        if self._run_key == self.key():
            self.session.flow = field
        else:
            self._info.object += "; the settings changed meanwhile: choose them again to see it"


def _truth_and_floor(exact: InterpolantField):
    """N_SAMPLES draws of the target, and the floor: the mean sliced W2 between FLOOR_PAIRS
    pairs of such draws (one pair's scatters by tens of percent)."""
    def make():
        g = torch.Generator().manual_seed(1)
        draws = [exact.target.sample(N_SAMPLES, generator=g).float() for _ in range(FLOOR_PAIRS + 1)]
        floor = sum(sliced_w2(draws[0], d, n_projections=W2_DIRECTIONS, estimator="grid")
                    for d in draws[1:]) / FLOOR_PAIRS
        return draws[0], floor
    return shared.memo(("flow truth",), make, [exact])


def _velocity_and_denoiser(data, cfg: TrainConfig, callback=None, cancel=None, source=None, score_steps: int = 0):
    """A velocity, then a denoiser of the latent noise for its SDE (``score_steps`` steps),
    as one run: the denoiser's progress counts on from the velocity's last step."""
    v, history = train(data, cfg, callback=callback, cancel=cancel, source=source)
    if cancel is not None and cancel.is_set():
        return v, history

    def shifted(p):
        return callback(dataclasses.replace(p, step=p.step + cfg.steps)) if callback is not None else None
    s, score_history = train(data, dataclasses.replace(cfg, objective="denoiser", steps=score_steps),
                             callback=shifted, cancel=cancel, source=source)
    stopped = score_history["summary"]["stopped"]
    if stopped:     # a denoiser stopped early is no score to sample by: the velocity alone
        history["summary"]["stopped"] = f"the denoiser {stopped}: the flow has no score (eps = 0 only)"
        return v, history
    return v.with_score(s), history
