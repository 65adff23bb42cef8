"""The load test, short (issue 8): browser-like sessions at once against one `python -m lab
serve` (benchmarks/load.py has the full run and the latency figures). Asserted: every
change reaches its own page, no page sees another's samples or training, the server's
threads end with the pages that started them (also when a page leaves mid-training), and
its log stays clean. No timing is asserted."""
import importlib.util
import re
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
