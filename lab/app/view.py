"""The shape every page of the lab shares: a view on one ``Session``, its background workers
(closed with the session), a message and an error pane, and the page layout (controls on the
left, figures on the right, wrapping below on a narrow screen).

A view's public surface is what tests and notebooks read: ``message`` (the text shown beside
the figures), ``error`` (the problem shown, or ""), ``numbers`` (what the page reports) and
``figures`` (name -> the figure object that draws it, see ``lab/app/figures.py``).
"""
from __future__ import annotations

import panel as pn

from lab.app.session import Session
from lab.app.worker import Worker

__all__ = ["LabView", "error_text", "page_loop_running"]


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
    """Base of the lab's pages: ``session`` (one user's data, schedule and model), ``worker``
    to make background workers, ``say`` / ``show_error`` for the page's text, ``page`` to lay
    it out."""

    title = "score-lab"              # the heading above the controls
    failure = "Could not compute"    # how an error message starts

    def __init__(self, session: Session | None = None, **params):
        super().__init__(**params)
        self.session = session if session is not None else self.new_session()
        self.numbers: dict = {}          # what the page reports, as numbers
        self.figures: dict = {}          # name -> figure (lab.app.figures) drawn on the page
        self._info = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self._layout = None

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
        self._alert.object = f"**{lead}:** {text}" if lead else text
        self._alert.visible = bool(text)

    # --- the layout ---------------------------------------------------------------------------
    def page(self, controls: list, figures, width: int = 320, after: list = ()) -> pn.FlexBox:
        """Controls (with this view's message, error and the session's notice below them, then
        ``after``) in a column of ``width`` beside ``figures``; the figures wrap below the
        controls on a narrow screen."""
        self._layout = pn.FlexBox(
            pn.Column(f"### {self.title}", *controls, self._info, self._alert, self.session.notice(), *after,
                      width=width),
            figures)
        return self._layout

    def __panel__(self):
        return self._layout
