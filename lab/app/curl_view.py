"""Is the learned score a gradient? The field over its curl, learned beside exact, at a t slider;
circulation around a loop; the Helmholtz split's shares."""
from __future__ import annotations

import holoviews as hv
import panel as pn
import param
import torch

from lab import plots
from lab.app.session import Session
from lab.curl import asymmetry, circulation, curl, grid_points, helmholtz
from lab.metrics import noised_samples

__all__ = ["CurlView"]

GRID = 96           # curl image resolution
ASYM_POINTS = 1000  # points from p_t for the Jacobian asymmetry


class CurlView(pn.viewable.Viewer):
    """Arrows over a symmetric curl map for the learned and the exact field, and their
    difference, at time t; the circulation around a circle; Helmholtz energy shares."""

    t = param.Number(default=0.1, bounds=(0.01, 1.0), step=0.01, doc="time (noise level)")
    loop_x = param.Number(default=0.0, bounds=(-2.5, 2.5), step=0.1)
    loop_y = param.Number(default=0.0, bounds=(-2.5, 2.5), step=0.1)
    loop_r = param.Number(default=1.0, bounds=(0.05, 2.5), step=0.05)

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session or Session()
        self.numbers = {}
        self._learned = pn.pane.HoloViews(sizing_mode="fixed")
        self._exact = pn.pane.HoloViews(sizing_mode="fixed")
        self._diff = pn.pane.HoloViews(sizing_mode="fixed")
        self._info = pn.pane.Markdown("")
        widgets = pn.Param(self.param, parameters=["t", "loop_x", "loop_y", "loop_r"], show_name=False,
                           widgets={name: {"type": pn.widgets.FloatSlider, "throttled": True}
                                    for name in ("t", "loop_x", "loop_y", "loop_r")})
        self._layout = pn.Row(pn.Column("### Curl", widgets, self._info, width=320),
                              pn.Column(pn.Row(self._learned, self._exact), self._diff))
        self.param.watch(lambda *e: self.update(), ["t", "loop_x", "loop_y", "loop_r"])
        self.session.param.watch(lambda *e: self.update(), ["model", "dataset", "schedule"])
        self.update()

    def update(self):
        t = min(max(self.t, self.session.exact.schedule.t_min), self.session.exact.schedule.t_max)
        learned, exact = self.session.field("learned"), self.session.exact
        _, pts = grid_points(plots.EXTENT, GRID, dtype=torch.float64)
        c_learned = curl(learned, learned.as_input(pts), t).double().cpu()
        c_exact = curl(exact, pts, t)
        clim = max(float(c_learned.abs().max()), plots.CURL_CLIM_FLOOR)
        is_exact = learned is exact
        name = "exact (no model)" if is_exact else "learned"
        loop = hv.Ellipse(self.loop_x, self.loop_y, 2 * self.loop_r).opts(color="#2ca02c", line_width=2)
        self._learned.object = plots.field_plot(learned, t, title=f"{name} score, curl", clim=clim) * loop
        self._exact.object = plots.field_plot(exact, t, title="exact score, curl", clim=clim) * loop
        self._diff.object = plots.curl_image((c_learned - c_exact).reshape(GRID, GRID),
                                             title="curl: learned - exact", clim=clim)
        circ = {key: float(circulation(f, t, [self.loop_x, self.loop_y], self.loop_r))
                for key, f in (("learned", learned), ("exact", exact))}
        x = noised_samples(exact, t, ASYM_POINTS, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            s = learned.score(learned.as_input(pts), t).double().cpu().numpy()
        split = helmholtz(s[:, 0].reshape(GRID, GRID), s[:, 1].reshape(GRID, GRID),
                          2 * plots.EXTENT / (GRID - 1))
        self.numbers = {"circulation": circ, "asymmetry": asymmetry(learned, learned.as_input(x), t),
                        "grad_share": split["grad_share"], "rest_share": split["rest_share"]}
        self._info.object = (
            f"At t = {t:.2f}:\n\n"
            f"circulation around the circle (centre ({self.loop_x:.1f}, {self.loop_y:.1f}), radius "
            f"{self.loop_r:.2f}): learned **{circ['learned']:.4f}**, exact **{circ['exact']:.1e}**\n\n"
            f"Jacobian asymmetry ‖J−Jᵀ‖/‖J‖ on p_t: **{self.numbers['asymmetry']:.4f}** (exact: 0)\n\n"
            f"Helmholtz split of the learned score on the grid: gradient part "
            f"**{split['grad_share']:.2%}** of the energy, rotational + harmonic "
            f"**{split['rest_share']:.2%}**\n\n"
            "A true score is a gradient: zero curl, zero circulation. A trained network's is not, "
            "yet it samples well (Vuong et al. 2025).")

    def __panel__(self):
        return self._layout
