"""The load test, short (issue 8): browser-like sessions at once against one `python -m lab
serve` (benchmarks/load.py has the full run and the latency figures). Asserted: every
change reaches its own page, no page sees another's samples or training, the server's
threads end with the pages that started them (also when a page leaves mid-training), its
log stays clean, and closed sessions leave none of their objects in memory. No timing is
asserted."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("load", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(load, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("load") / "server.log"
    proc, url = load.start_server(log_path, torch_threads=1)   # the guide: one torch thread in tests
    yield proc, url, log_path
    proc.terminate()
    proc.wait(timeout=30)
    text = log_path.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-5000:]


def test_concurrent_sessions_get_their_own_results(load, server):
    proc, url, _ = server
    warm = load.run(url, 1, 1, None, proc.pid)                 # the first page loads the models
    assert not warm["errors"], warm["errors"]
    idle = load.wait_for_threads(proc.pid, warm["usage"]["before"]["threads"])
    res = load.run(url, 6, 2, 4.0, proc.pid)                   # 5 changing solvers, 1 training
    assert not res["errors"], res["errors"]
    for u in res["users"]:
        assert len(u.latencies) == len(u.changes) + 1          # the seed, then each change arrived
    assert len(res["trainer"].progress) >= 2 and res["trainer"].done is not None
    assert res["usage"]["peak"]["threads"] > idle["threads"]   # the pages did start threads ...
    assert load.check_no_cross_talk(res["users"], res["trainer"]) == []
    after = load.wait_for_threads(proc.pid, idle["threads"], seconds=60)
    assert after["threads"] <= idle["threads"]                 # ... and they all ended


def test_a_page_left_mid_training_ends_its_run_and_threads(load, server):
    proc, url, log_path = server
    idle = load.server_usage(proc.pid)
    res = load.run(url, 1, 0, 3.0, proc.pid, trainer_stops=False)
    assert not res["errors"], res["errors"]
    assert res["trainer"].progress and res["trainer"].done is None    # it left without Stop
    after = load.wait_for_threads(proc.pid, idle["threads"], seconds=60)
    assert after["threads"] <= idle["threads"]
    stopped = re.findall(r"training stopped at step (\d+) of 20000", log_path.read_text())
    assert stopped and int(stopped[-1]) < 20000


def test_closed_sessions_free_their_objects():
    """benchmarks/session_memory.py serves the pages in its own process, where their objects
    can be counted: two rounds of three sessions (a trainer leaving mid-training among them).
    While open they hold Sessions and threads; once closed, a full collection finds no
    Session, view, worker or thread of theirs, and nothing of the lab's or Bokeh's that
    grows from round to round."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "session_memory.py"), "--rounds", "2",
                        "--users", "3", "--train-seconds", "2", "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-5000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    _, first, second = rows
    for row in (first, second):
        assert row["trainer_left_mid_training"]
        # counted once a second while open (a closed Session stays noted until collected)
        assert 1 <= row["during"]["Session"] <= 3 and row["during"]["score-lab threads"] >= 2
        left = {k: v for k, v in row["objects"].items() if k != "bokeh Document" and v}
        assert left == {}, left                  # no session, view, worker or lab thread
    # Bokeh documents and models, param objects, tensors, threads: the first round may leave
    # caches (the pretrained models), the second must add nothing
    assert second["objects"]["bokeh Document"] <= first["objects"]["bokeh Document"]
    for key in ("bokeh models", "param objects", "torch tensors", "threads"):
        assert second["totals"][key] <= first["totals"][key], (key, first["totals"], second["totals"])
