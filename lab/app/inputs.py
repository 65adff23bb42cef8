"""Number boxes that refuse bad values with a message instead of a server traceback.

A browser's number box can send anything: 999999999, -5, an empty box, "nan". Bound
directly to a bounded ``param`` (``pn.Param``), such a value raises inside Panel's event
handling: a traceback in the server log, nothing on the page, and the box keeps showing a
number that is not in force. ``number_input`` checks the value first: a good one is set on
the view; a bad one puts a message on the page and the box back to the value in force.
"""
from __future__ import annotations

import math
from typing import Callable

import panel as pn
import param

__all__ = ["number_input"]


def number_input(view: param.Parameterized, name: str, on_error: Callable[[str], None],
                 step: float | None = None, **widget_args) -> pn.widgets.Widget:
    """A box for the numeric parameter ``name`` of ``view`` (its label, bounds and value);
    ``on_error(message)`` is called with what is wrong with a refused value, and with ""
    when a good value follows (the message can go)."""
    p = view.param[name]
    integer = isinstance(p, param.Integer)
    lo, hi = p.bounds if p.bounds is not None else (None, None)
    # No start/end on the box: Bokeh would clamp a typed 999999999 to the bound in the
    # browser, silently, while still showing 999999999. The check below says so instead.
    span = f"{_num(lo)} to {_num(hi)}" if lo is not None and hi is not None else ""
    widget = (pn.widgets.IntInput if integer else pn.widgets.FloatInput)(
        label=p.label, value=getattr(view, name), step=step or (1 if integer else 0.1),
        description=" ".join(filter(None, [p.doc, span and f"({span})"])) or None, **widget_args)

    def refuse(why: str):
        widget.value = getattr(view, name)      # the box shows what is in force
        on_error(f"{p.label}: {why}; it stays {_num(getattr(view, name))}")

    def check(event):
        v = event.new
        if v == getattr(view, name):
            return
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return refuse("needs a number")
        if integer and v != int(v):
            return refuse(f"needs a whole number, not {v:g}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return refuse(f"{_num(v)} is outside {_num(lo)} to {_num(hi)}")
        setattr(view, name, int(v) if integer else float(v))
        on_error("")

    widget.param.watch(check, "value")
    view.param.watch(lambda e: setattr(widget, "value", e.new), name)   # code changes show too
    return widget


def _num(v) -> str:
    """1,000 for whole numbers, 0.003 for the rest."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"
