"""Heavy work on a Dask cluster (issue 29 item 3): the HoloViews answer to a room that needs more
compute than a web server has ("Scaling with Dask" in Panel's how-to guides). The Panel server
only draws; what a page computes runs on the cluster's workers, on as many machines and GPUs as
the department has.

``python -m lab cluster`` starts a local scheduler and workers for trying it; ``python -m lab
serve --dask ADDRESS`` (or ``LAB_DASK=ADDRESS``) sends every page's computation there through
one ``distributed.Client`` per server process. The seam is ``lab.app.shared.memo``, through
which every page's heavy result is computed: it looks in the memo and the shared result cache
on the server, and only what is in neither goes to the cluster (``run``), so the cache keeps
serving a class and the warm-up fills it. The request's ``Worker`` (``lab.app.worker``) is told
of each future (``futures_to``), so latest-wins, a closed page cancelling its future, and errors
reaching the page hold as they do in process. A computation that cannot travel (it holds
something that does not pickle) runs in the server process instead, and the server's log says
so once per kind. What a page computes outside ``memo`` (drawing, its own small sums) stays in
the server.

Workers must have the lab installed (the same version: they import ``lab`` to run the pages'
functions); a job carries its fields (weights, schedule and data with it, pickled by Dask).

Not yet on the cluster: training (``lab.train.TrainingRun`` keeps its thread in the server).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading

__all__ = ["connect", "client", "run", "disconnect", "futures_to", "ENV"]

ENV = "LAB_DASK"                 # the scheduler's address, when set
CONNECT_TIMEOUT_S = 10
log = logging.getLogger("lab.app")

_lock = threading.Lock()
_client = None                   # (pid, Client) of this process
_address = None                  # set by connect(); else read from ENV
_unpicklable: set[str] = set()
_current = threading.local()     # the hook of the request this thread computes (futures_to)


@contextlib.contextmanager
def futures_to(hook):
    """While in the block, every future ``run`` makes on this thread is handed to ``hook``
    (a ``Worker``'s, which cancels it when its request goes stale or its page closes)."""
    previous = getattr(_current, "hook", None)
    _current.hook = hook
    try:
        yield
    finally:
        _current.hook = previous


def connect(address: str):
    """This process's client of the scheduler at ``address`` (made once a process: a forked
    server process makes its own). Raises OSError naming the address when it cannot be reached
    within CONNECT_TIMEOUT_S."""
    global _client, _address
    from distributed import Client

    with _lock:
        if (_client is not None and _client[0] == os.getpid() and _address == address
                and _client[1].status in ("running", "connecting")):
            return _client[1]            # else closed (the scheduler gone past its reconnect time): anew
        try:
            made = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                          "`python -m lab cluster` or check the address") from None
        _client, _address = (os.getpid(), made), address
        return made


def client():
    """The process's client when a cluster is in use (``connect`` called, or ``LAB_DASK`` set),
    else None: the pages compute in process."""
    address = _address or os.environ.get(ENV)
    if not address:
        return None
    return connect(address)


def disconnect() -> None:
    """Close this process's client (tests; a server at exit)."""
    global _client, _address
    with _lock:
        if _client is not None and _client[0] == os.getpid():
            _client[1].close()
        _client, _address = None, None


def run(compute, on_future=None):
    """``compute()``'s result, computed on the cluster when one is in use (``on_future(f)``, by
    default the hook of ``futures_to``, receives the future first, so its owner can cancel it),
    else here."""
    on_future = on_future or getattr(_current, "hook", None)
    c = client()
    if c is None:
        return compute()
    import cloudpickle

    try:
        cloudpickle.dumps(compute)
    except Exception as e:         # a closure over a lock, a thread, a page: it cannot travel
        name = getattr(compute, "__qualname__", type(compute).__name__)
        if name not in _unpicklable:
            _unpicklable.add(name)
            log.warning("score-lab: %s cannot go to the Dask cluster (%s: %s); it runs in the server",
                        name, type(e).__name__, e)
        return compute()
    future = c.submit(compute, pure=False)
    if on_future is not None:
        on_future(future)
    return future.result()
