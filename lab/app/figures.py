"""Live figures of the served lab: Bokeh figures built once and updated in place.

Each class owns one Bokeh figure and its data sources; ``update`` writes new columns into
the sources, so a change costs the arrays' transfer (under a millisecond to build on the
server) instead of a new figure (about 300 ms through HoloViews on a 2-core CPU, measured
in benchmarks/app_latency.py). What is drawn comes from ``lab.plots``'s data functions, so
notebooks' HoloViews plots and these show the same thing. Call ``update`` on the page's
thread (a ``Worker``'s draw).
"""
from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import (Arrow, ColorBar, ColumnDataSource, FreehandDrawTool, HoverTool, Legend,
                          LinearColorMapper, Range1d, Span, VeeHead)
from bokeh.palettes import RdBu11, interp_palette
from bokeh.plotting import figure

from lab.plots import COLORS, EXTENT, SIZE, circle, clim_of, to_numpy

__all__ = ["ScatterFigure", "PathsFigure", "FieldFigure", "CurvesFigure", "HistogramFigure", "DrawFigure"]

FRAME = SIZE - 60                        # the data frame of a square plot, in pixels
CURL_PALETTE = interp_palette(RdBu11, 255)   # blue < 0 < red, white at zero
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def _square_figure(title: str, extent: float = EXTENT):
    """A figure whose data frame is FRAME x FRAME pixels (a colour bar goes beside it, so a
    circle in data units stays round)."""
    fig = figure(title=title, frame_width=FRAME, frame_height=FRAME, tools=TOOLS,
                 x_range=Range1d(-extent, extent), y_range=Range1d(-extent, extent),
                 toolbar_location="above")
    _quiet_toolbar(fig)
    return fig


def _quiet_toolbar(fig):
    """The toolbar shows while the pointer is over the plot (so it never hides the title)."""
    fig.toolbar.logo = None
    fig.toolbar.autohide = True


def _place_legend(fig, where: str):
    """Inside the frame at a corner ("top_left", ...) or outside it ("right", "below")."""
    legend = fig.legend[0]
    legend.click_policy = "hide"
    legend.background_fill_alpha = 0.6
    if where in ("right", "below", "above", "left"):
        fig.add_layout(legend, where)
        legend.orientation = "horizontal" if where in ("below", "above") else "vertical"
    else:
        legend.location = where


def _xy(points) -> dict:
    a = to_numpy(points).reshape(-1, 2) if points is not None else np.zeros((0, 2))
    return {"x": a[:, 0], "y": a[:, 1]}


class _Live:
    """Common part: a Bokeh figure shown by a Panel pane."""

    fig = None

    @property
    def pane(self) -> pn.pane.Bokeh:
        if getattr(self, "_pane", None) is None:
            self._pane = pn.pane.Bokeh(self.fig, sizing_mode="fixed")
        return self._pane

    @property
    def title(self) -> str:
        return self.fig.title.text

    @title.setter
    def title(self, text: str):
        if self.fig.title.text != text:
            self.fig.title.text = text

    def __panel__(self):
        return self.pane


class ScatterFigure(_Live):
    """Point clouds, one layer per name: ``layers`` maps name -> colour. The first layer is
    drawn first (underneath)."""

    def __init__(self, title: str, layers: dict[str, str], extent: float = EXTENT, size: float = 2.5,
                 legend: str = "top_left"):
        """legend: a corner inside the frame ("top_left", ...) or "right" / "below" outside it."""
        self.fig = _square_figure(title, extent)
        self.sources = {}
        for name, color in layers.items():
            self.sources[name] = ColumnDataSource(_xy(None), name=name)   # findable by a client
            self.fig.scatter("x", "y", source=self.sources[name], color=color, size=size, alpha=0.6,
                             legend_label=name)
        _place_legend(self.fig, legend)

    def update(self, title: str | None = None, **layers):
        """New points (n, 2) for the named layers (None empties a layer)."""
        for name, points in layers.items():
            self.sources[name].data = _xy(points)
        if title is not None:
            self.title = title

    def points(self, name: str) -> np.ndarray:
        """The points a layer shows now, (n, 2)."""
        d = self.sources[name].data
        return np.stack([np.asarray(d["x"]), np.asarray(d["y"])], 1)


class DrawFigure(_Live):
    """A canvas to draw a data set on: drag to draw a stroke (Bokeh's FreehandDrawTool; a
    stroke is selected by a tap and deleted by Backspace). The strokes live in ``strokes``
    (xs, ys) in the browser and here alike; ``undo`` and ``clear`` edit them from the server.
    (Bokeh's PointDrawTool is left out: it takes the drag gesture too, and the two cannot
    both be active.)"""

    def __init__(self, title: str = "draw your data: drag to draw strokes", extent: float = EXTENT):
        self.fig = _square_figure(title, extent)
        self.strokes = ColumnDataSource({"xs": [], "ys": []}, name="strokes")
        lines = self.fig.multi_line("xs", "ys", source=self.strokes, color=COLORS["model"], line_width=3,
                                    alpha=0.8)
        pen = FreehandDrawTool(renderers=[lines], num_objects=0, description="draw strokes")
        self.fig.add_tools(pen)
        self.fig.toolbar.active_drag = pen

    def drawing(self) -> list:
        """The strokes drawn now, as [(xs, ys)]."""
        s = self.strokes.data
        return list(zip(s["xs"], s["ys"]))

    def undo(self) -> None:
        """Remove the last stroke."""
        s = self.strokes.data
        self.strokes.data = {"xs": list(s["xs"])[:-1], "ys": list(s["ys"])[:-1]}

    def clear(self) -> None:
        self.strokes.data = {"xs": [], "ys": []}


class PathsFigure(_Live):
    """Sampling paths from the prior (faint) to their end points (dots)."""

    def __init__(self, title: str = "trajectories", extent: float = EXTENT):
        self.fig = _square_figure(title, extent)
        self.lines = ColumnDataSource({"xs": [], "ys": []})
        self.starts = ColumnDataSource(_xy(None))
        self.ends = ColumnDataSource(_xy(None))
        self.fig.multi_line("xs", "ys", source=self.lines, color=COLORS["path"], alpha=0.5, line_width=1)
        self.fig.scatter("x", "y", source=self.starts, color=COLORS["truth"], size=4, legend_label="start (prior)")
        self.fig.scatter("x", "y", source=self.ends, color=COLORS["model"], size=4, legend_label="end")
        _place_legend(self.fig, "top_left")

    def update(self, xs, title: str | None = None):
        """xs: (steps+1, k, 2) states of k paths."""
        a = to_numpy(xs)
        self.lines.data = {"xs": list(a[:, :, 0].T), "ys": list(a[:, :, 1].T)}
        self.starts.data = _xy(a[0])
        self.ends.data = _xy(a[-1])
        if title is not None:
            self.title = title


class FieldFigure(_Live):
    """A scalar map (the curl) in symmetric diverging colours with a labelled colour bar,
    arrows over it (the score), and an optional loop (a circle in data units)."""

    def __init__(self, title: str, extent: float = EXTENT, label: str = "curl", arrows: bool = True,
                 loop: bool = False):
        self.extent = extent
        self.fig = _square_figure(title, extent)
        self.mapper = LinearColorMapper(palette=CURL_PALETTE, low=-1, high=1)
        self.image = ColumnDataSource({"image": [np.zeros((2, 2))]})
        img = self.fig.image(image="image", x=-extent, y=-extent, dw=2 * extent, dh=2 * extent,
                             source=self.image, color_mapper=self.mapper)
        self.fig.add_tools(HoverTool(renderers=[img], tooltips=[(label, "@image{0.000}")]))
        self.fig.add_layout(ColorBar(color_mapper=self.mapper, title=label, width=10), "right")
        self.arrows = ColumnDataSource({"x": [], "y": [], "x1": [], "y1": []})
        if arrows:
            self.fig.add_layout(Arrow(end=VeeHead(size=5, line_color="black", fill_color="black"),
                                      source=self.arrows, x_start="x", y_start="y", x_end="x1", y_end="y1",
                                      line_color="black", line_width=1))
        self.loop = ColumnDataSource(_xy(None))
        if loop:
            self.fig.line("x", "y", source=self.loop, color=COLORS["loop"], line_width=2.5)

    def update(self, values=None, arrows: dict | None = None, clim: float | None = None,
               title: str | None = None):
        """values: (n, n) map, y along axis 0; arrows: ``lab.plots.score_arrows``'s dict;
        clim: the colour range +-clim (default: the map's own max |value|)."""
        if values is not None:
            v = to_numpy(values)
            self.image.data = {"image": [v]}
            c = clim if clim is not None else clim_of(v)
            self.mapper.update(low=-c, high=c)
        elif clim is not None:
            self.mapper.update(low=-clim, high=clim)
        if arrows is not None:
            self.arrows.data = {k: arrows[k] for k in ("x", "y", "x1", "y1")}
        if title is not None:
            self.title = title

    def set_loop(self, center, radius: float):
        x, y = circle(center, radius)
        self.loop.data = {"x": x, "y": y}

    @property
    def clim(self) -> float:
        return float(self.mapper.high)


class CurvesFigure(_Live):
    """Named lines (name -> colour) against a shared x; ``stream`` appends points (a live
    loss curve sends only what is new)."""

    def __init__(self, title: str, names: dict[str, str], x_label: str, y_label: str,
                 width: int = SIZE, height: int = 240, log_x: bool = False, log_y: bool = False,
                 sizes: dict[str, float] | None = None, dots_only=()):
        """``sizes``: dot size of some names (default 4), e.g. marked single points;
        ``dots_only``: names drawn as dots without a line (marked events)."""
        self.fig = figure(title=title, width=width, height=height, tools=TOOLS, toolbar_location="above",
                          x_axis_type="log" if log_x else "linear", y_axis_type="log" if log_y else "linear",
                          x_axis_label=x_label, y_axis_label=y_label)
        _quiet_toolbar(self.fig)
        self.sources, items = {}, []
        for name, color in names.items():
            self.sources[name] = ColumnDataSource({"x": [], "y": []})
            dots = self.fig.scatter("x", "y", source=self.sources[name], color=color,
                                    size=(sizes or {}).get(name, 4))
            if name in dots_only:
                items.append((name, [dots]))
                continue
            line = self.fig.line("x", "y", source=self.sources[name], color=color, line_width=2)
            items.append((name, [line, dots]))
        self.fig.add_tools(HoverTool(tooltips=[(x_label, "@x{0.[000]}"), (y_label, "@y{0.[0000]}")]))
        if len(names) > 1:
            self.fig.add_layout(Legend(items=items, click_policy="hide", background_fill_alpha=0.6), "right")

    def update(self, name: str, x, y, title: str | None = None):
        """Replace a line's points."""
        self.sources[name].data = {"x": to_numpy(x), "y": to_numpy(y)}
        if title is not None:
            self.title = title

    def stream(self, name: str, x, y):
        """Append points to a line."""
        self.sources[name].stream({"x": to_numpy(x).reshape(-1), "y": to_numpy(y).reshape(-1)})

    def clear(self):
        for src in self.sources.values():
            src.data = {"x": [], "y": []}


class HistogramFigure(_Live):
    """Overlaid histograms (name -> colour) on shared bins, and a vertical cut."""

    def __init__(self, title: str, names: dict[str, str], x_label: str, width: int = 2 * SIZE,
                 height: int = 240):
        self.fig = figure(title=title, width=width, height=height, tools=TOOLS, toolbar_location="above",
                          x_axis_label=x_label, y_axis_label="samples")
        _quiet_toolbar(self.fig)
        self.sources = {}
        for name, color in names.items():
            self.sources[name] = ColumnDataSource({"left": [], "right": [], "top": []})
            self.fig.quad(left="left", right="right", top="top", bottom=0, source=self.sources[name],
                          color=color, alpha=0.5, legend_label=name)
        self.cut = Span(location=0, dimension="height", line_color="black", line_dash="dashed", line_width=2)
        self.fig.add_layout(self.cut)
        _place_legend(self.fig, "top_left")

    def update(self, edges, cut: float | None = None, **counts):
        """edges (bins+1,); counts per name (bins,); cut: where the dashed line stands."""
        e = to_numpy(edges)
        for name, c in counts.items():
            self.sources[name].data = {"left": e[:-1], "right": e[1:], "top": to_numpy(c)}
        if cut is not None and np.isfinite(cut):
            self.cut.location = float(cut)
