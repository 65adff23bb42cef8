"""Do closed sessions free their memory? (issue 8: "a session closed mid-training frees its
thread and memory, measured").

The served pages run in this process (``pn.serve`` on a thread, the scripts in ``apps/``),
so their objects can be counted: after each round of browser-like sessions (the virtual
users of ``benchmarks/load.py``: solver pages that change settings, and a training page
left mid-training, without Stop) have closed and the server has discarded them, a full
garbage collection runs and the lab's objects still in memory are counted. A session that
was freed leaves none: no ``Session``, no view, no worker, no learned field of its own, no
Bokeh document, no thread. The process's resident memory is printed after each round:
Python and the allocator keep freed memory for reuse, so it should level off, not grow
round after round.

The count walks every object (``gc.get_objects``), which is only safe while no other thread
runs Python: it runs on the server's event-loop thread once the round's pages are gone. (Run
while pages were open, it let other threads see half-built tuples: CPython raised
"SystemError: bad argument to internal function" in a page's thread.) While the pages are
open only the ``Session`` objects (noted as they are made) and the threads are counted.

    python benchmarks/session_memory.py [--rounds 3] [--users 4] [--train-seconds 3]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import gc
import importlib.util
import json
import os
import threading
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = weakref.WeakSet()     # every lab Session made in this process, while it lives


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lab_objects() -> dict[str, int]:
    """The lab's per-session objects alive in this process, after a full collection."""
    from bokeh.document import Document

    from lab.app.curl_view import CurlView
    from lab.app.gap_view import GapView
    from lab.app.hallucination_view import HallucinationView
    from lab.app.session import Session
    from lab.app.solver_view import SolverView
    from lab.app.train_view import TrainView
    from lab.app.worker import Worker

    import param
    import torch
    from bokeh.model import Model

    gc.collect()
    kinds = {"Session": Session, "TrainView": TrainView, "SolverView": SolverView,
             "CurlView": CurlView, "HallucinationView": HallucinationView, "GapView": GapView,
             "Worker": Worker, "bokeh Document": Document}
    counts = dict.fromkeys(kinds, 0)
    models = parameterized = tensors = tensor_bytes = 0
    for obj in gc.get_objects():
        cls = type(obj)          # not isinstance: that asks lazy modules' __class__
        for name, kind in kinds.items():
            if issubclass(cls, kind):
                counts[name] += 1
        if issubclass(cls, Model):
            models += 1
        elif issubclass(cls, param.Parameterized):
            parameterized += 1
        elif issubclass(cls, torch.Tensor):
            tensors += 1
            tensor_bytes += obj.untyped_storage().nbytes() if obj.device.type == "cpu" else 0
    counts["score-lab threads"] = sum(t.name.startswith("score-lab") for t in threading.enumerate())
    # not per session, but they must not grow round after round
    totals = {"bokeh models": models, "param objects": parameterized, "torch tensors": tensors,
              "tensor MiB": round(tensor_bytes / 2**20, 1), "threads": threading.active_count(),
              "thread names": sorted({t.name.rstrip("0123456789_") for t in threading.enumerate()})}
    return counts, totals


def _note_sessions() -> None:
    """From now on, every ``Session`` made here is noted in ``SESSIONS``."""
    from lab.app.session import Session

    if getattr(Session.__init__, "_noted", False):
        return
    init = Session.__init__

    def noted(self, *args, **kwargs):
        init(self, *args, **kwargs)
        SESSIONS.add(self)
    noted._noted = True
    Session.__init__ = noted


def _open_counts() -> dict[str, int]:
    """What can be counted safely while pages are open: sessions alive and lab threads."""
    return {"Session": len(SESSIONS),
            "score-lab threads": sum(t.name.startswith("score-lab") for t in threading.enumerate())}


def _on_loop(loop, fn):
    """``fn()`` run on the server's event-loop thread (nothing else of the server runs then)."""
    done = concurrent.futures.Future()

    def call():
        try:
            done.set_result(fn())
        except BaseException as e:   # noqa: BLE001 (raised in the caller)
            done.set_exception(e)
    loop.call_soon_threadsafe(call)
    return done.result(120)


def measure(rounds: int = 3, users: int = 4, changes: int = 1, train_seconds: float = 3.0,
            settle_s: float = 60.0) -> list[dict]:
    """Serve the train and solver pages here; per round, ``users`` sessions at once (the last
    trains and leaves mid-training). After each round, once the server has discarded the
    sessions (or ``settle_s`` has passed): the lab objects left and the resident memory."""
    import panel as pn

    load = _load_benchmark()
    _note_sessions()
    port = load.free_port()
    server = pn.serve({"solvers": str(ROOT / "apps" / "solvers.py"), "train": str(ROOT / "apps" / "train.py")},
                      port=port, address="127.0.0.1", show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}"],
                      check_unused_sessions_milliseconds=200, unused_session_lifetime_milliseconds=500)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request
        deadline = time.time() + 60
        while True:                  # until the server answers (its index page)
            try:
                urllib.request.urlopen(url + "/", timeout=30)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("the in-process server did not start") from None
                time.sleep(0.2)
        objects, totals = _on_loop(server.asyncio_loop, lab_objects)
        out = [{"round": 0, "objects": objects, "totals": totals, "seconds": 0.0,
                "rss_mib": load.server_usage(os.getpid())["rss_mib"]}]
        for r in range(1, rounds + 1):
            start, box = time.perf_counter(), {}
            runner = threading.Thread(target=lambda: box.update(
                res=load.run(url, users, changes, train_seconds, None, trainer_stops=False)))
            runner.start()
            during = {}                 # the most of each object seen while the pages were open
            while runner.is_alive():
                runner.join(1.0)
                if runner.is_alive():
                    seen = _open_counts()
                    during = {k: max(v, during.get(k, 0)) for k, v in seen.items()}
            res = box.pop("res")
            if res["errors"]:
                raise RuntimeError(f"round {r}: {res['errors']}")
            left_mid_training = res["trainer"].done is None and bool(res["trainer"].progress)
            del res               # the virtual users' own (client-side) documents
            deadline = time.time() + settle_s
            ran = time.perf_counter() - start
            while _open_counts()["score-lab threads"] and time.time() < deadline:
                time.sleep(0.2)     # the sessions' threads end first: then nothing else runs
            while True:
                objects, totals = _on_loop(server.asyncio_loop, lab_objects)
                if objects["Session"] == 0 or time.time() > deadline:
                    break
                time.sleep(0.5)
            out.append({"round": r, "sessions": users, "trainer_left_mid_training": left_mid_training,
                        "during": during, "objects": objects, "totals": totals, "seconds": round(ran, 1),
                        "discarded_after_s": round(time.perf_counter() - start - ran, 1), "rss_mib": load.server_usage(os.getpid())["rss_mib"]})
        return out
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=4, help="sessions at once per round (the last trains)")
    ap.add_argument("--train-seconds", type=float, default=3.0)
    ap.add_argument("--changes", type=int, default=1, help="solver changes per solver user")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    rows = measure(args.rounds, args.users, args.changes, args.train_seconds)
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        left = {k: v for k, v in row["objects"].items() if v}
        what = (f"{row['sessions']} sessions ran {row['seconds']} s and closed (the trainer left "
                f"mid-training: {row['trainer_left_mid_training']}), discarded within "
                f"{row['discarded_after_s']} s" if row["round"] else "before any session")
        if row["round"]:
            print(f"round {row['round']}: while open, at most: "
                  f"{ {k: v for k, v in row['during'].items() if v} }")
        print(f"round {row['round']}: {what}; lab objects left: {left or 'none'}; "
              f"resident memory {row['rss_mib']:.0f} MiB; {row['totals']}")


if __name__ == "__main__":
    main()
