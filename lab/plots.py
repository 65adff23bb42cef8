"""What the lab draws, and HoloViews elements of it (no Panel here).

Two layers:

- data functions (``score_arrows``, ``curl_grid``, ``circle``, ``log_histogram``, ``by_label``) turn fields
  and results into plain arrays: what an arrow plot or a curl map shows, decided once;
- pure functions from results to HoloViews elements sized for a laptop screen, for
  notebooks and static figures.

The served pages draw the same data with Bokeh figures that are updated in place
(``lab/app/figures.py``): re-rendering a HoloViews element costs about 300 ms a plot on a
2-core CPU, too slow for a live slider. Curl maps use a symmetric diverging colour map
centred on zero, so "no curl" is white.
"""
from __future__ import annotations

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (the Bokeh backend, without notebook output)
import numpy as np
import torch

from lab.curl import curl, grid_points
from lab.hallucination import LABEL_NAMES

__all__ = ["samples_plot", "labelled_plot", "trajectories_plot", "field_plot", "curl_image", "curve_plot",
           "curves_plot", "score_arrows", "curl_grid", "circle", "log_histogram", "by_label", "clim_of", "to_numpy",
           "SIZE", "EXTENT", "COLORS", "LABEL_COLORS", "ARROWS", "CURL_GRID"]

SIZE = 360              # pixels, width and height of square plots
CURL_CLIM_FLOOR = 1e-3  # smallest colour range of a curl image: float noise stays white
EXTENT = 3.0            # half-width of the plotted square [-EXTENT, EXTENT]^2
ARROWS = 21             # arrows per side of a field plot
CURL_GRID = 96          # pixels per side of a curl map
ARROW_QUANTILE = 0.9    # arrow lengths grow with |score| up to this quantile, then stay
COLORS = {"model": "#1f77b4", "truth": "#bbbbbb", "between": "#d62728", "in": "#2ca02c",
          "loop": "#2ca02c", "path": "#555555"}
# a sample's support label (lab.hallucination.LABEL_NAMES) -> its colour
LABEL_COLORS = {"in support": "#2ca02c", "between modes": "#d62728", "outside": "#ff7f0e"}


def to_numpy(x) -> np.ndarray:
    """A tensor or array-like as a float64 NumPy array (on the CPU)."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)



# --- what is drawn ---------------------------------------------------------------------
def score_arrows(field, t: float, extent: float = EXTENT, n: int = ARROWS, minus=None, of: str = "score") -> dict:
    """Arrows of the score (``of="velocity"``: the velocity) at time t on an n x n grid over
    [-extent, extent]^2 (with ``minus``, another field: of the difference field.score - minus.score).

    Returns dict of arrays (n*n,): tails ``x``, ``y``; ``angle`` (radians); ``length`` in
    data units, proportional to |score| up to its ARROW_QUANTILE on the grid and capped
    there at 0.9 grid steps (the score grows without bound away from the data, so plain
    proportional arrows would show a few giants and many dots); ``magnitude`` |score|;
    and heads ``x1``, ``y1``.
    """
    _, pts = grid_points(extent, n, dtype=torch.float64)
    if of not in ("score", "velocity"):
        raise ValueError(f"of must be 'score' or 'velocity', got {of!r}")
    with torch.no_grad():
        s = to_numpy(getattr(field, of)(field.as_input(pts), t))
        if minus is not None:
            s = s - to_numpy(getattr(minus, of)(minus.as_input(pts), t))
    mag = np.linalg.norm(s, axis=1)
    ref = float(np.quantile(mag, ARROW_QUANTILE)) or 1.0
    length = 0.9 * (2 * extent / (n - 1)) * np.minimum(mag / ref, 1.0)
    angle = np.arctan2(s[:, 1], s[:, 0])
    p = to_numpy(pts)
    return {"x": p[:, 0], "y": p[:, 1], "angle": angle, "length": length, "magnitude": mag,
            "x1": p[:, 0] + length * np.cos(angle), "y1": p[:, 1] + length * np.sin(angle)}


def curl_grid(field, t: float, extent: float = EXTENT, n: int = CURL_GRID, of: str = "score") -> np.ndarray:
    """The curl of the score (``of="velocity"``: of the velocity) at time t on an n x n grid,
    (n, n), y along axis 0 (row 0 at y = -extent)."""
    _, pts = grid_points(extent, n, dtype=torch.float64)
    return to_numpy(curl(field, field.as_input(pts), t, of)).reshape(n, n)


def circle(center, radius: float, k: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """k+1 points (x, y) closing a circle, for drawing a loop."""
    a = np.linspace(0, 2 * np.pi, k + 1)
    return center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)


def log_histogram(values, bins: int = 40, edges=None, density: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Counts (``density``: a density, integrating to 1) and edges of log10(values) (positive
    values; zeros are floored at 1e-12)."""
    logv = np.log10(to_numpy(values) + 1e-12)
    if edges is None:
        lo, hi = (float(logv.min()), float(logv.max())) if logv.size else (0.0, 1.0)
        edges = np.linspace(lo, hi + 1e-9, bins + 1)
    return np.histogram(logv, edges, density=density)


def by_label(samples, labels) -> dict[str, np.ndarray]:
    """Samples (n, 2) grouped by their support label (``lab.hallucination.support_labels``):
    label name (``LABEL_NAMES``, the keys of ``LABEL_COLORS``) -> the points (k, 2)."""
    x, lab = to_numpy(samples), to_numpy(labels)
    return {name: x[lab == value] for value, name in LABEL_NAMES.items()}


def clim_of(*values, floor: float = CURL_CLIM_FLOOR) -> float:
    """A symmetric colour range that holds every value given: max |value|, at least ``floor``."""
    return max([floor] + [float(np.abs(to_numpy(v)).max()) for v in values if np.size(v)])


# --- HoloViews elements (notebooks, static figures) -------------------------------------
def _square(el, title: str, extent: float = EXTENT):
    return el.opts(width=SIZE, height=SIZE, xlim=(-extent, extent), ylim=(-extent, extent),
                   title=title, toolbar="above", data_aspect=1)


def samples_plot(samples, truth=None, title: str = "samples", extent: float = EXTENT,
                 color: str = COLORS["model"]):
    """Scatter of samples (n, 2), over grey true samples when given."""
    pts = hv.Points(to_numpy(samples), label="samples").opts(color=color, size=2, alpha=0.6)
    if truth is not None:
        pts = hv.Points(to_numpy(truth), label="truth").opts(color=COLORS["truth"], size=2, alpha=0.5) * pts
    return _square(pts, title, extent).opts(legend_position="top_left", show_legend=truth is not None)


def labelled_plot(samples, labels, title: str = "samples", extent: float = EXTENT, legend: bool = True,
                  size: int = SIZE):
    """Samples coloured by their support label (``by_label``, ``LABEL_COLORS``), in a square
    of ``size`` pixels."""
    layers = [hv.Points(points, label=name).opts(color=LABEL_COLORS[name], size=2)
              for name, points in by_label(samples, labels).items()]
    return _square(hv.Overlay(layers), title, extent).opts(show_legend=legend, legend_position="bottom",
                                                           width=size, height=size)


def trajectories_plot(trajectory, k: int = 24, title: str = "trajectories", extent: float = EXTENT):
    """The paths of the first k samples of a Trajectory, from the prior to the end."""
    xs = to_numpy(trajectory.xs[:, :k])                          # (steps+1, k, 2)
    paths = hv.Path([xs[:, i] for i in range(xs.shape[1])]).opts(color=COLORS["path"], alpha=0.5,
                                                                  line_width=1)
    ends = hv.Points(xs[-1]).opts(color=COLORS["model"], size=4)
    return _square(paths * ends, title, extent)


def curl_image(values, extent: float = EXTENT, title: str = "curl", clim: float | None = None):
    """A square grid of scalar values (size, size), y along axis 0, as an image with a
    symmetric diverging colour map (zero is white)."""
    v = to_numpy(values)
    c = clim if clim is not None else clim_of(v)
    img = hv.Image(v[::-1], bounds=(-extent, -extent, extent, extent), vdims=["curl"]).opts(
        cmap="RdBu_r", clim=(-c, c), colorbar=True, clabel="curl", tools=["hover"])
    return _square(img, title, extent)


def field_plot(field, t: float, extent: float = EXTENT, arrows: int = ARROWS, grid: int = CURL_GRID,
               title: str | None = None, clim: float | None = None, of: str = "score"):
    """The score (``of="velocity"``: the velocity) of a field at time t: arrows (see
    ``score_arrows``) over its curl."""
    a = score_arrows(field, t, extent, arrows, of=of)
    arrows_el = hv.VectorField((a["x"], a["y"], a["angle"], a["length"])).opts(   # lengths in data units
        magnitude="Magnitude", rescale_lengths=False, normalize_lengths=False, color="black", pivot="tail",
        line_width=1)
    c = curl_grid(field, t, extent, grid, of=of)
    return curl_image(c, extent, title or f"{of} and its curl at t = {t:g}", clim) * arrows_el


def curve_plot(x, y, title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False):
    """A line plot of y against x."""
    return hv.Curve((to_numpy(x), to_numpy(y)), xlabel, ylabel).opts(
        width=SIZE, height=220, title=title, logy=logy, tools=["hover"], line_width=2)


def curves_plot(curves: dict, title: str = "", xlabel: str = "t", ylabel: str = "", logx: bool = False,
                logy: bool = False, width: int = 560):
    """Several lines, one per entry of ``curves``: label -> {x: y} (e.g. a residual per time,
    ``lab.gap.residual_curve``) or (xs, ys)."""
    def xy(c):
        return (list(c), list(c.values())) if isinstance(c, dict) else (to_numpy(c[0]), to_numpy(c[1]))
    lines = [hv.Curve(xy(c), xlabel, ylabel, label=str(label)) for label, c in curves.items()]
    return hv.Overlay(lines).opts(width=width, height=320, title=title, logx=logx, logy=logy,
                                  legend_position="right", tools=["hover"])
