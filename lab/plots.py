"""Pure functions from the lab's results to HoloViews elements (no Panel here).

Every function takes tensors or arrays and returns an element or an overlay sized for a
laptop screen, so notebooks and dashboards show the same pictures. Curl images use a
symmetric diverging colour map centred on zero, so "no curl" is white.
"""
from __future__ import annotations

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (the Bokeh backend, without notebook output)
import numpy as np
import torch

from lab.curl import curl, grid_points

__all__ = ["samples_plot", "trajectories_plot", "field_plot", "curl_image", "curve_plot",
           "SIZE", "EXTENT"]

SIZE = 360        # pixels, width and height of square plots
CURL_CLIM_FLOOR = 1e-3  # smallest colour range of a curl image: float noise stays white
EXTENT = 3.0      # half-width of the plotted square [-EXTENT, EXTENT]^2
COLORS = {"model": "#1f77b4", "truth": "#bbbbbb", "between": "#d62728", "in": "#2ca02c"}


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def _square(el, title: str, extent: float = EXTENT):
    return el.opts(width=SIZE, height=SIZE, xlim=(-extent, extent), ylim=(-extent, extent),
                   title=title, toolbar="above", data_aspect=1)


def samples_plot(samples, truth=None, title: str = "samples", extent: float = EXTENT,
                 color: str = COLORS["model"]):
    """Scatter of samples (n, 2), over grey true samples when given."""
    pts = hv.Points(_np(samples), label="samples").opts(color=color, size=2, alpha=0.6)
    if truth is not None:
        pts = hv.Points(_np(truth), label="truth").opts(color=COLORS["truth"], size=2, alpha=0.5) * pts
    return _square(pts, title, extent).opts(legend_position="top_left", show_legend=truth is not None)


def trajectories_plot(trajectory, k: int = 24, title: str = "trajectories", extent: float = EXTENT):
    """The paths of the first k samples of a Trajectory, from the prior (light) to the end."""
    xs = _np(trajectory.xs[:, :k])                               # (steps+1, k, 2)
    paths = hv.Path([xs[:, i] for i in range(xs.shape[1])]).opts(color="#555555", alpha=0.5,
                                                                  line_width=1)
    ends = hv.Points(xs[-1]).opts(color=COLORS["model"], size=4)
    return _square(paths * ends, title, extent)


def curl_image(values, extent: float = EXTENT, title: str = "curl", clim: float | None = None):
    """A square grid of scalar values (size, size), y along axis 0, as an image with a
    symmetric diverging colour map (zero is white)."""
    v = _np(values)
    c = clim if clim is not None else max(float(np.abs(v).max()), CURL_CLIM_FLOOR)
    img = hv.Image(v[::-1], bounds=(-extent, -extent, extent, extent)).opts(
        cmap="RdBu_r", clim=(-c, c), colorbar=True, tools=["hover"])
    return _square(img, title, extent)


def field_plot(field, t: float, extent: float = EXTENT, arrows: int = 21, grid: int = 96,
               title: str | None = None, clim: float | None = None):
    """The score of a field at time t: arrows (direction, length ~ magnitude) over its curl."""
    xs_a, pts_a = grid_points(extent, arrows, dtype=torch.float64)
    with torch.no_grad():
        s = _np(field.score(field.as_input(pts_a), t))
    mag = np.linalg.norm(s, axis=1)
    scale = mag / (mag.max() or 1.0)
    angle = np.arctan2(s[:, 1], s[:, 0])
    p = _np(pts_a)
    arrows_el = hv.VectorField((p[:, 0], p[:, 1], angle, scale)).opts(
        magnitude="Magnitude", color="black", pivot="tail", line_width=1, scale=1.6)
    _, pts = grid_points(extent, grid, dtype=torch.float64)
    c = curl(field, field.as_input(pts), t).reshape(grid, grid)
    return curl_image(c, extent, title or f"score and its curl at t = {t:g}", clim) * arrows_el


def curve_plot(x, y, title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False):
    """A line plot of y against x."""
    return hv.Curve((_np(x), _np(y)), xlabel, ylabel).opts(
        width=SIZE, height=220, title=title, logy=logy, tools=["hover"], line_width=2)
