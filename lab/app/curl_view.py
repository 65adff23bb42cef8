"""Is the learned score a gradient? The field over its curl, learned beside exact, at a t slider;
their difference; circulation around a loop (click a map to move it); the Helmholtz split's
shares (Vuong et al. 2025). Or the same of the session's flow's velocity (the flows tab's):
an optimal transport's velocity is a gradient too (Benamou & Brenier 2000)."""
from __future__ import annotations

import panel as pn
import param
import torch
from bokeh.events import Tap

from lab import plots
from lab.app.figures import FieldFigure
from lab.app.session import FLOW_REDRAW_ON
from lab.app.view import ON_SESSION, LabView
from lab.app.worker import on_page
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


class CurlView(LabView):
    """Arrows over a symmetric curl map for the learned and the exact field, and their
    difference, at time t; the circulation around a circle; Helmholtz energy shares."""

    t = param.Number(default=0.1, bounds=(0.01, 1.0), step=0.01, label="t (noise level)")
    loop_x = param.Number(default=0.0, bounds=(-LOOP_BOUND, LOOP_BOUND), step=0.1, label="loop centre x")
    loop_y = param.Number(default=0.0, bounds=(-LOOP_BOUND, LOOP_BOUND), step=0.1, label="loop centre y")
    loop_r = param.Number(default=1.0, bounds=(0.05, 2.5), step=0.05, label="loop radius")
    of = param.Selector(default="score", objects=["score", "flow velocity"], label="field",
                        doc="the session's score model, or its flow's velocity (the flows tab's; t = 1 - tau)")

    title = "Curl"

    def __init__(self, session=None, **params):
        super().__init__(session, **params)
        self.maps = None                    # the maps and numbers drawn last
        self._maps_key = None               # (t, learned, exact) they were computed for
        self._worker = self.worker("curl", label="computing the maps…")
        self.figures = f = {"learned": FieldFigure("learned score", loop=True),
                            "exact": FieldFigure("exact score", loop=True),
                            "difference": FieldFigure("learned - exact", label="curl difference")}
        for fig in (f["learned"], f["exact"]):
            fig.fig.on_event(Tap, on_page(self.move_loop))
        self.page([self.controls("of", "t", "loop_x", "loop_y", "loop_r",
                                 widgets={"of": pn.widgets.RadioButtonGroup}), "Click a map to move the loop.", self._worker.indicator],
                  pn.Column(pn.Row(f["learned"].pane, f["exact"].pane),
                            pn.Row(f["difference"].pane, pn.pane.Markdown(READING, width=300))))
        self.update()

    def move_loop(self, event):
        """Centre the loop where a map was clicked (``event.x``, ``event.y``), within bounds."""
        b = LOOP_BOUND
        self.param.update(loop_x=round(min(max(event.x, -b), b), 1), loop_y=round(min(max(event.y, -b), b), 1))

    @param.depends(*[f"session.{name}" for name in FLOW_REDRAW_ON], watch=True)
    def _on_flow(self):
        if self.of != "score":
            self.update()

    @param.depends("t", "loop_x", "loop_y", "loop_r", "of", *ON_SESSION, watch=True)
    def update(self):
        """Recompute (on the worker) and redraw; when only the loop moved, only its circulation."""
        flow = self.of != "score"
        if flow:
            learned, exact = self.session.flow_field("learned"), self.session.flow_field("exact")
            is_exact, of, what = self.session.flow is None, "velocity", "velocity"
        else:
            learned, exact = self.session.field("learned"), self.session.exact
            is_exact, of, what = self.session.learned_is_exact, "score", "score"
        schedule = exact.schedule
        t = min(max(self.t, schedule.t_min), schedule.t_max)
        center, radius = (self.loop_x, self.loop_y), self.loop_r
        key = (t, learned, exact)
        maps = self._maps_key != key

        def compute():
            out = {"circulation": {key: float(circulation(f, t, list(center), radius, of=of))
                                   for key, f in (("learned", learned), ("exact", exact))}}
            if maps:
                out["maps"] = self._compute_maps(learned, exact, t, of)
            return out

        def draw(out):
            if not maps and self._maps_key != key:
                self.update()   # the maps drawn meanwhile are for another t: compute them anew
                return
            if maps:
                m = out["maps"]
                self.maps, self._maps_key = m, key
                kind = "flow's velocity" if flow else "score"
                name = f"exact {kind} (no {'flow' if flow else 'model'})" if is_exact else f"learned {kind}"
                when = f"t = {t:.2f}" + (f" (tau = {1 - t:.2f})" if flow else "")
                f = self.figures
                f["learned"].update(m["curl_learned"], m["arrows_learned"], m["clim"], f"{name}, {when}")
                f["exact"].update(m["curl_exact"], m["arrows_exact"], m["clim"], f"exact {what}, {when}")
                f["difference"].update(m["curl_learned"] - m["curl_exact"], m["arrows_diff"], m["clim"],
                                       f"learned - exact: {what} error, curl difference")
            for fig in (self.figures["learned"], self.figures["exact"]):
                fig.set_loop(center, radius)
            m = self.maps
            self.numbers = {"circulation": out["circulation"], "asymmetry": m["asymmetry"],
                            "asymmetry_exact": m["asymmetry_exact"],
                            "grad_share": m["grad_share"], "rest_share": m["rest_share"]}
            self.say(self._report(t, center, radius, flow))
        self._worker.submit(compute, draw, self.show_error)

    @staticmethod
    def _compute_maps(learned, exact, t, of: str = "score") -> dict:
        curl_l, curl_e = plots.curl_grid(learned, t, of=of), plots.curl_grid(exact, t, of=of)
        x = noised_samples(exact, t, ASYM_POINTS, generator=torch.Generator().manual_seed(0))
        split = field_helmholtz(learned, t, plots.EXTENT, plots.CURL_GRID, of=of)
        return {"curl_learned": curl_l, "curl_exact": curl_e, "clim": plots.clim_of(curl_l, curl_e),
                "arrows_learned": plots.score_arrows(learned, t, of=of),
                "arrows_exact": plots.score_arrows(exact, t, of=of),
                "arrows_diff": plots.score_arrows(learned, t, minus=exact, of=of),
                "asymmetry": asymmetry(learned, learned.as_input(x), t, of=of),
                "asymmetry_exact": asymmetry(exact, exact.as_input(x), t, of=of) if of == "velocity" else 0.0,
                "grad_share": split["grad_share"], "rest_share": split["rest_share"]}

    def _report(self, t, center, radius, flow: bool = False) -> str:
        n = self.numbers
        circ = n["circulation"]
        if flow:
            return (f"The flow's velocity at t = {t:.2f} (tau = {1 - t:.2f}):\n\n"
                    f"**Circulation** around the green circle (centre ({center[0]:.1f}, {center[1]:.1f}), "
                    f"radius {radius:.2f}): learned **{circ['learned']:.4f}**, exact **{circ['exact']:.4f}**\n\n"
                    f"**Jacobian asymmetry** ‖J−Jᵀ‖/‖J‖ on rho_tau: learned **{n['asymmetry']:.4f}**, "
                    f"exact **{n['asymmetry_exact']:.4f}**\n\n"
                    f"**Helmholtz split** of the learned velocity on the grid: gradient part "
                    f"**{n['grad_share']:.2%}** of the energy, rotational + harmonic **{n['rest_share']:.2%}**\n\n"
                    "An optimal transport's velocity is a gradient (Benamou & Brenier 2000). The exact flow "
                    "from N(0, I) under independent coupling has none either; between two data sets it has "
                    "curl, and minibatch OT's learned flow less of it.")
        return (f"At t = {t:.2f}:\n\n"
                f"**Circulation** around the green circle (centre ({center[0]:.1f}, {center[1]:.1f}), "
                f"radius {radius:.2f}): learned **{circ['learned']:.4f}**, exact **{circ['exact']:.1e}**\n\n"
                f"**Jacobian asymmetry** ‖J−Jᵀ‖/‖J‖ on p_t: learned **{n['asymmetry']:.4f}** (exact: 0)\n\n"
                f"**Helmholtz split** of the learned score on the grid: gradient part "
                f"**{n['grad_share']:.2%}** of the energy, rotational + harmonic **{n['rest_share']:.2%}**\n\n"
                "A true score is a gradient: zero curl, zero circulation. A trained network's is not, "
                "yet it samples well: a rotational part that is tangent to p_t's level sets moves no "
                "probability mass (Vuong et al. 2025).")
