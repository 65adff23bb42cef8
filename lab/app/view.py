"""The shape every page of the lab shares: a view on one ``Session``, its background workers
(closed with the session), a message and an error pane, and the page layout (controls on the
left, figures on the right, wrapping below on a narrow screen).

A view's public surface is what tests and notebooks read: ``message`` (the text shown beside
the figures), ``error`` (the problem shown, or ""), ``numbers`` (what the page reports) and
``figures`` (name -> the figure object that draws it, see ``lab/app/figures.py``).
"""
from __future__ import annotations

import panel as pn
import param

from lab.app.session import REDRAW_ON, Session
from lab.app.worker import Worker

__all__ = ["LabView", "ON_SESSION", "error_text", "page_loop_running"]

# the session's changes a view redraws on, as ``param.depends`` names them
ON_SESSION = tuple(f"session.{name}" for name in REDRAW_ON)


def error_text(e: Exception | str) -> str:
    """What the page says of a problem: a ValueError is the lab's way of naming one (its text
    is the message); anything else is a bug, shown with its type rather than lost."""
    if isinstance(e, str):
        return e
    return str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"


def page_loop_running() -> bool:
    """Whether a periodic callback will fire: on a served page, or in a Jupyter kernel
    (a notebook cell). Elsewhere (tests, scripts) a view draws its progress when asked."""
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LabView(pn.viewable.Viewer):
    """Base of the lab's pages: ``session`` (one user's data, schedule and model; a view
    redraws on its changes by ``@param.depends(*ON_SESSION, watch=True)``), ``worker`` to make
    background workers, ``controls`` for the view's parameters as widgets, ``say`` /
    ``show_error`` for the page's text, ``page`` to lay it out (``layout``)."""

    session = param.ClassSelector(class_=Session, constant=True,
                                  doc="the user's data set, schedule and model, shared by a page's tabs")

    title = "score-lab"              # the heading above the controls
    failure = "Could not compute"    # how an error message starts

    def __init__(self, session: Session | None = None, **params):
        super().__init__(session=session if session is not None else self.new_session(), **params)
        self.numbers: dict = {}          # what the page reports, as numbers
        self.figures: dict = {}          # name -> figure (lab.app.figures) drawn on the page
        self._info = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self.layout: pn.FlexBox | None = None     # the page, once ``page`` has laid it out

    @staticmethod
    def new_session() -> Session:
        """The session a view makes when given none."""
        return Session()

    def worker(self, name: str, label: str = "computing…") -> Worker:
        """A background worker for this view, ended when the session ends."""
        w = Worker(f"score-lab-{name}", label=label)
        self.session.on_close(w.close)
        return w

    # --- the page's text ----------------------------------------------------------------------
    @property
    def message(self) -> str:
        """The text the page shows beside its figures (numbers and what they mean)."""
        return self._info.object

    @property
    def error(self) -> str:
        """The problem the page shows ("" when none)."""
        return self._alert.object if self._alert.visible else ""

    def say(self, text: str) -> None:
        """Show ``text`` as the page's message, and clear the error shown."""
        self._info.object = text
        self._alert.visible = False

    def show_error(self, e: Exception | str, what: str | None = None) -> None:
        """Show a problem (bad settings, a diverging solver, a refused file) and keep the page:
        "**what:** text". An empty string hides the error shown."""
        text = error_text(e)
        lead = self.failure if what is None else what
        self._alert.object = (f"**{lead}:** {text}" if lead else text) if text else ""   # hidden text is text too
        self._alert.visible = bool(text)

    # --- the layout ---------------------------------------------------------------------------
    def controls(self, *names: str, widgets: dict | None = None) -> pn.Param:
        """The view's parameters ``names`` as widgets. A bounded number gets a throttled
        slider: the view recomputes when the slider is released, not at every step of a drag
        (a served page would queue one sampling run per pixel). ``widgets`` overrides a
        parameter's widget (Panel's ``pn.Param(widgets=...)``)."""
        spec = {}
        for name in names:
            p = self.param[name]
            if isinstance(p, param.Number) and p.bounds is not None and None not in p.bounds:
                slider = pn.widgets.IntSlider if isinstance(p, param.Integer) else pn.widgets.FloatSlider
                spec[name] = {"type": slider, "throttled": True}
        spec.update(widgets or {})
        return pn.Param(self.param, parameters=list(names), widgets=spec, show_name=False)

    def page(self, controls: list, figures, width: int = 320, after: list = ()) -> pn.FlexBox:
        """Controls (with this view's message, error and the session's notice below them, then
        ``after``) in a column of ``width`` beside ``figures``; the figures wrap below the
        controls on a narrow screen."""
        self.layout = pn.FlexBox(
            pn.Column(f"### {self.title}", *controls, self._info, self._alert, self.session.notice(), *after,
                      width=width),
            figures)
        return self.layout

    def __panel__(self):
        return self.layout
