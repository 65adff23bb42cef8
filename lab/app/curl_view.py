"""Is the learned score a gradient? The field over its curl, learned beside exact, at a t slider;
their difference; circulation around a loop (click a map to move it); the Helmholtz split's
shares (Vuong et al. 2025)."""
from __future__ import annotations

import panel as pn
import param
import torch
from bokeh.events import Tap

from lab import plots
from lab.app.figures import FieldFigure
from lab.app.session import REDRAW_ON, Session
from lab.app.worker import Worker, on_page
from lab.curl import asymmetry, circulation, field_helmholtz
from lab.metrics import noised_samples

__all__ = ["CurlView"]

ASYM_POINTS = 1000  # points from p_t for the Jacobian asymmetry
READING = ("**Reading the maps.** Arrows: the score (length grows with its size, capped). "
           "Colours: its curl, red counter-clockwise, blue clockwise, white none. All three maps "
           "share one colour range. The exact score is a gradient: its map is white and its "
           "circulation zero. The bottom map shows where the network is wrong: arrows are the "
           "score error, colours the curl the network added.")
LOOP_BOUND = 2.5    # the loop's centre stays in [-LOOP_BOUND, LOOP_BOUND]^2


class CurlView(pn.viewable.Viewer):
    """Arrows over a symmetric curl map for the learned and the exact field, and their
    difference, at time t; the circulation around a circle; Helmholtz energy shares."""

    t = param.Number(default=0.1, bounds=(0.01, 1.0), step=0.01, label="t (noise level)")
    loop_x = param.Number(default=0.0, bounds=(-LOOP_BOUND, LOOP_BOUND), step=0.1, label="loop centre x")
    loop_y = param.Number(default=0.0, bounds=(-LOOP_BOUND, LOOP_BOUND), step=0.1, label="loop centre y")
    loop_r = param.Number(default=1.0, bounds=(0.05, 2.5), step=0.05, label="loop radius")

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self.numbers = {}
        self._maps = None                   # the maps and numbers drawn last
        self._maps_key = None               # (t, learned, exact) they were computed for
        self._worker = Worker("score-lab-curl", label="computing the maps…")
        self.session.on_close(self._worker.close)
        self._learned = FieldFigure("learned score", loop=True)
        self._exact = FieldFigure("exact score", loop=True)
        self._diff = FieldFigure("learned - exact", label="curl difference")
        for fig in (self._learned, self._exact):
            fig.fig.on_event(Tap, on_page(self._on_tap))
        self._info = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        widgets = pn.Param(self.param, parameters=["t", "loop_x", "loop_y", "loop_r"], show_name=False,
                           widgets={name: {"type": pn.widgets.FloatSlider, "throttled": True}
                                    for name in ("t", "loop_x", "loop_y", "loop_r")})
        self._layout = pn.FlexBox(   # the figures wrap below the controls on a narrow screen
            pn.Column("### Curl", widgets, "Click a map to move the loop.", self._worker.indicator, self._info,
                      self._alert, self.session.notice(), width=320),
            pn.Column(pn.Row(self._learned.pane, self._exact.pane),
                      pn.Row(self._diff.pane, pn.pane.Markdown(READING, width=300))))
        self.param.watch(lambda *e: self.update(), ["t", "loop_x", "loop_y", "loop_r"])
        self.session.param.watch(lambda *e: self.update(), REDRAW_ON)
        self.update()

    def _on_tap(self, event):
        b = LOOP_BOUND
        self.param.update(loop_x=round(min(max(event.x, -b), b), 1), loop_y=round(min(max(event.y, -b), b), 1))

    def update(self):
        """Recompute (on the worker) and redraw; when only the loop moved, only its circulation."""
        schedule = self.session.exact.schedule
        t = min(max(self.t, schedule.t_min), schedule.t_max)
        learned, exact = self.session.field("learned"), self.session.exact
        center, radius = (self.loop_x, self.loop_y), self.loop_r
        is_exact = self.session.learned_is_exact
        key = (t, learned, exact)
        maps = self._maps_key != key

        def compute():
            out = {"circulation": {key: float(circulation(f, t, list(center), radius))
                                   for key, f in (("learned", learned), ("exact", exact))}}
            if maps:
                out["maps"] = self._compute_maps(learned, exact, t)
            return out

        def draw(out):
            if not maps and self._maps_key != key:
                self.update()   # the maps drawn meanwhile are for another t: compute them anew
                return
            if maps:
                m = out["maps"]
                self._maps, self._maps_key = m, key
                name = "exact score (no model)" if is_exact else "learned score"
                self._learned.update(m["curl_learned"], m["arrows_learned"], m["clim"], f"{name}, t = {t:.2f}")
                self._exact.update(m["curl_exact"], m["arrows_exact"], m["clim"], f"exact score, t = {t:.2f}")
                self._diff.update(m["curl_learned"] - m["curl_exact"], m["arrows_diff"], m["clim"],
                                  "learned - exact: score error, curl difference")
            for fig in (self._learned, self._exact):
                fig.set_loop(center, radius)
            m = self._maps
            self.numbers = {"circulation": out["circulation"], "asymmetry": m["asymmetry"],
                            "grad_share": m["grad_share"], "rest_share": m["rest_share"]}
            self._alert.visible = False
            self._info.object = self._report(t, center, radius)
        self._worker.submit(compute, draw, self._show_error)

    @staticmethod
    def _compute_maps(learned, exact, t) -> dict:
        curl_l, curl_e = plots.curl_grid(learned, t), plots.curl_grid(exact, t)
        x = noised_samples(exact, t, ASYM_POINTS, generator=torch.Generator().manual_seed(0))
        split = field_helmholtz(learned, t, plots.EXTENT, plots.CURL_GRID)
        return {"curl_learned": curl_l, "curl_exact": curl_e, "clim": plots.clim_of(curl_l, curl_e),
                "arrows_learned": plots.score_arrows(learned, t), "arrows_exact": plots.score_arrows(exact, t),
                "arrows_diff": plots.score_arrows(learned, t, minus=exact),
                "asymmetry": asymmetry(learned, learned.as_input(x), t),
                "grad_share": split["grad_share"], "rest_share": split["rest_share"]}

    def _report(self, t, center, radius) -> str:
        n = self.numbers
        circ = n["circulation"]
        return (f"At t = {t:.2f}:\n\n"
                f"**Circulation** around the green circle (centre ({center[0]:.1f}, {center[1]:.1f}), "
                f"radius {radius:.2f}): learned **{circ['learned']:.4f}**, exact **{circ['exact']:.1e}**\n\n"
                f"**Jacobian asymmetry** ‖J−Jᵀ‖/‖J‖ on p_t: learned **{n['asymmetry']:.4f}** (exact: 0)\n\n"
                f"**Helmholtz split** of the learned score on the grid: gradient part "
                f"**{n['grad_share']:.2%}** of the energy, rotational + harmonic **{n['rest_share']:.2%}**\n\n"
                "A true score is a gradient: zero curl, zero circulation. A trained network's is not, "
                "yet it samples well: a rotational part that is tangent to p_t's level sets moves no "
                "probability mass (Vuong et al. 2025).")

    def _show_error(self, e: Exception):
        text = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        self._alert.object, self._alert.visible = f"**Could not compute:** {text}", True

    def __panel__(self):
        return self._layout
