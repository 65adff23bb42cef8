"""Long work off the page's thread: compute on a worker thread, draw on the page's thread.

A served page runs its callbacks on the server's one event-loop thread, which every
browser session of that process shares: ten students dragging a slider that samples for
100 ms each would queue behind each other, and a 3-second re-sample would freeze all of
them. So a view hands its expensive part to a ``Worker``:

    self._worker.submit(compute, draw)     # compute() on the worker; draw(result) on the page

- One thread per view, started on first use; ``close`` ends it (views register it with
  their ``Session``, which closes them all when the browser session ends).
- Latest wins: while one computation runs, newer requests replace each other, and only the
  newest runs next (a dragged slider costs one extra update, not one per pixel).
- ``draw`` runs on the page's thread, as a document callback, so draws may change Bokeh
  models and Panel components freely. The worker thread itself touches no Bokeh object: it
  hands the result to the server's event loop with Tornado's ``IOLoop.add_callback`` (safe
  from any thread), and the loop adds the document callback. (Adding it from the worker
  thread raced with Bokeh building the session: the draw could be lost and the worker die.)
- An exception in ``compute`` is handed to ``on_error`` on the page's thread; the worker
  lives on.

Without a served document (tests, scripts, a notebook cell before display) ``submit``
runs both parts at once on the caller's thread, so results are there when it returns.

With a Dask cluster in use (``lab.app.cluster``: ``lab serve --dask``) the heavy part of
``compute`` (what it asks of ``lab.app.shared.memo``) runs there, the worker thread waiting; a
newer request, or ``close``, cancels the future in flight (a closed page leaves nothing queued
on the cluster), and the cluster's error reaches ``on_error`` as a local one would.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import panel as pn
from panel.io.state import set_curdoc

from lab.app import cluster

__all__ = ["Worker", "on_page"]

log = logging.getLogger("lab.app")


def on_page(fn: Callable[[Any], Any]) -> Callable[[Any], None]:
    """``fn`` as a handler of Bokeh events (a button's click, a tap on a plot) that may
    change Bokeh models directly.

    Panel runs such a handler at once when the event arrives with the page's document
    locked, but *outside* the lock when a widget change of the same page is still pending
    (say the steps box was edited and Train clicked before the edit was processed); a Bokeh
    model changed there makes the server raise ("_pending_writes should be non-None ...")
    and the click is lost. Found by the load test (benchmarks/load.py). Whether the lock is
    held cannot be asked (Panel's ``state._unblocked`` says yes in that case too), so on a
    served page ``fn`` always runs on the page's next tick, which holds the lock; in a
    notebook or a script, at once.
    """
    def handler(event) -> None:        # Bokeh checks a handler's signature: one argument
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            fn(event)
        else:
            doc.add_next_tick_callback(lambda: fn(event))
    return handler


class Worker:
    """A view's background thread for compute-then-draw requests (module doc)."""

    def __init__(self, name: str = "score-lab-worker", doc=None, schedule: Callable | None = None,
                 label: str = "computing…"):
        """``doc``: the Bokeh document to draw in (default: the current one, if served);
        ``schedule``: how a draw reaches the page's thread (default: the document's next
        tick); given, it makes the worker threaded even without a document (tests).
        ``label``: the text of ``indicator``, a spinner shown while a request is under way."""
        self.name = name
        self.indicator = pn.indicators.LoadingSpinner(value=True, size=18, label=label, visible=False)
        self.doc = doc if doc is not None else pn.state.curdoc
        served = self.doc is not None and self.doc.session_context is not None
        if served and schedule is None:
            from tornado.ioloop import IOLoop

            # Views are built while the app script runs, on the server's event-loop thread,
            # so the current loop is the one that serves this document.
            self._ioloop = IOLoop.current()
        self._schedule = schedule or (self._next_tick if served else None)
        self._cond = threading.Condition()
        self._pending = None          # the newest request not yet started
        self._thread = None
        self._closed = False
        self._future = None           # the cluster's future of the request in flight, if any
        self.busy = False             # a request is being computed or waits

    @property
    def threaded(self) -> bool:
        return self._schedule is not None

    def submit(self, compute: Callable[[], Any], draw: Callable[[Any], None],
               on_error: Callable[[Exception], None] | None = None) -> None:
        """Run ``compute()`` off the page's thread, then ``draw(result)`` on it."""
        if not self.threaded:
            try:
                result = compute()
            except Exception as e:
                if on_error is None:
                    raise
                on_error(e)
                return
            draw(result)
            return
        draw, on_error = self._quiet(draw), self._quiet(on_error)
        self.indicator.visible = True
        with self._cond:
            if self._closed:
                return
            self._pending = (compute, draw, on_error)
            self.busy = True
            self._cancel_future()             # latest wins: the one in flight is stale
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _quiet(self, fn):
        """fn, then hide the indicator unless another request is under way (page thread)."""
        if fn is None:
            return None

        def wrapped(arg):
            try:
                fn(arg)
            finally:
                self.indicator.visible = self.busy
        return wrapped

    def close(self) -> None:
        """Drop what waits and end the thread (after the computation in flight, if any)."""
        with self._cond:
            self._closed, self._pending = True, None
            self._cancel_future()
            self._cond.notify()

    def _cancel_future(self) -> None:
        """Cancel the cluster's future in flight (holding ``_cond``)."""
        future, self._future = self._future, None
        if future is not None:
            try:
                future.cancel()
            except Exception:                  # a closed client: nothing left to cancel
                log.debug("score-lab: could not cancel a cluster future", exc_info=True)

    def _keep_future(self, future) -> None:
        with self._cond:
            if self._closed or self._pending is not None:
                self._future = future
                self._cancel_future()     # stale before it started
            else:
                self._future = future

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread has ended (after ``close``)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self):
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                compute, draw, on_error = self._pending
                self._pending = None
            try:
                with cluster.futures_to(self._keep_future):
                    result = compute()
                done = (lambda r=result, d=draw: d(r))
            except Exception as e:  # shown on the page, never a dead thread (a cancelled future: stale)
                done = (lambda err=e, h=on_error: h(err)) if on_error is not None else None
            with self._cond:
                self._future = None
                self.busy = self._pending is not None
                stale = self._pending is not None or self._closed
            if done is not None and not stale:
                try:
                    self._schedule(done)
                except Exception:  # never a dead worker behind a spinning page
                    log.exception("score-lab: could not hand a result to the page")

    def _next_tick(self, fn: Callable[[], None]) -> None:
        """From the worker thread: the event loop adds ``fn`` as a document callback."""
        doc = self.doc

        def on_page():
            with set_curdoc(doc):   # so Panel updates its models at once
                fn()

        def on_loop():
            if self._closed or doc.session_context is None:
                return          # the session has ended: nobody to draw for
            try:
                doc.add_next_tick_callback(on_page)
            except RuntimeError:   # destroyed between the check and now
                pass
        self._ioloop.add_callback(on_loop)
