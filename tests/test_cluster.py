"""The pages' work on a Dask cluster (lab.app.cluster, issue 29 item 3), with a real
``distributed.LocalCluster`` of worker processes: a request's heavy part (``cluster.run``, what
``shared.memo`` computes) runs on a worker, its error reaches the page, a newer request or a
closed page cancels the one in flight, the solver page gives the same numbers on the cluster as
in process and the result cache still serves it, and an unreachable scheduler is an error
naming it."""
import threading
import time

import pytest

distributed = pytest.importorskip("distributed")

from lab.app import cluster                      # noqa: E402
from lab.app.worker import Worker                # noqa: E402


@pytest.fixture(scope="module")
def local_cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield c
    c.close()


@pytest.fixture
def on_cluster(local_cluster):
    cluster.connect(local_cluster.scheduler_address)
    yield cluster.client()
    cluster.disconnect()


def threaded_worker():
    """A Worker with its own thread that draws at once on that thread (no served page)."""
    return Worker("test", schedule=lambda fn: fn())


def wait_for(results, n=1, seconds=60):
    deadline = time.time() + seconds
    while len(results) < n:
        assert time.time() < deadline, results
        time.sleep(0.05)


def where():
    """Which Dask worker runs this (ValueError outside one)."""
    return distributed.get_worker().address


def test_a_request_runs_on_a_worker_and_its_error_reaches_the_page(on_cluster):
    w, results, errors = threaded_worker(), [], []
    w.submit(lambda: cluster.run(where), results.append, errors.append)
    wait_for(results)
    assert results[0] in on_cluster.scheduler_info()["workers"]          # one of the cluster's workers

    def fails():
        raise ValueError("a bad setting, named")
    w.submit(lambda: cluster.run(fails), results.append, errors.append)
    wait_for(errors)
    assert str(errors[0]) == "a bad setting, named"
    w.close()


def test_latest_wins_and_a_closed_page_leaves_nothing_running(on_cluster):
    w, results = threaded_worker(), []

    def slow(tag):
        def run():
            time.sleep(3)
            return tag
        return run
    w.submit(lambda: cluster.run(slow("first")), results.append)
    time.sleep(0.5)                                     # "first" is on a worker now
    w.submit(lambda: "second", results.append)          # the first is stale: cancelled
    wait_for(results)
    assert results == ["second"]
    w.submit(lambda: cluster.run(slow("third")), results.append)
    time.sleep(0.5)
    w.close()                                           # the page closed
    deadline = time.time() + 10
    while any(on_cluster.processing().values()):
        assert time.time() < deadline, on_cluster.processing()
        time.sleep(0.1)
    assert results == ["second"]


def test_the_solver_page_computes_the_same_on_the_cluster_and_the_cache_still_serves(on_cluster, tmp_path,
                                                                                     monkeypatch):
    """The solver page's run (the shipped model, sampling and W2) travels to a worker and back
    with the same numbers as in process; a second session (a fresh process: memory emptied) is
    served from the result cache, with nothing sent to the cluster."""
    from lab.app import shared
    from lab.app.cache import ResultCache
    from lab.app.session import Session
    from lab.app.solver_view import SolverView

    shipped = []
    real = cluster.run

    def counting(compute, on_future=None):
        if cluster.client() is not None:
            shipped.append(getattr(compute, "__qualname__", ""))
        return real(compute, on_future)
    monkeypatch.setattr(cluster, "run", counting)
    shared.use_cache(ResultCache(tmp_path))
    shared.forget()
    try:
        on = SolverView(Session(dataset="ring"), solver="ddim", steps=10, seed=3)
        assert "SolverView.update.<locals>.run" in shipped
        shipped.clear()
        shared.forget()
        again = SolverView(Session(dataset="ring"), solver="ddim", steps=10, seed=3)
        assert "SolverView.update.<locals>.run" not in shipped and again.numbers["w2"] == on.numbers["w2"]
    finally:
        shared.use_cache(None)
        shared.forget()
    cluster.disconnect()
    here = SolverView(Session(dataset="ring"), solver="ddim", steps=10, seed=3)
    assert on.numbers["w2"] == pytest.approx(here.numbers["w2"], rel=1e-6) and on.numbers["nfe"] == 10


def test_an_unreachable_scheduler_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(OSError, match="tcp://127.0.0.1:9"):
        cluster.connect("tcp://127.0.0.1:9")
    assert cluster.client() is None


def test_without_a_cluster_work_stays_in_process():
    assert cluster.client() is None
    assert cluster.run(lambda: threading.current_thread().name) == threading.current_thread().name
