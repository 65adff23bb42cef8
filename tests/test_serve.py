"""The served lab: pretrained models load, and `panel serve` renders the app pages
without an error in the page or the server log (browser tests are the next step)."""
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lab.app.session import Session
from lab.data import DATASETS, dataset_mixture
from lab.fields import NetworkField
from lab.metrics import score_error
from lab.fields import MixtureField
from lab.pretrained import load_pretrained, pretrained_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_data_set_has_a_usable_pretrained_model(name):
    field = load_pretrained(name, device="cpu")
    assert isinstance(field, NetworkField) and field.meta["dataset"] == name
    assert pretrained_path(name).stat().st_size < 400_000  # small: it ships in the repo
    # against the exact score under the model's own schedule (the grid's is VP with beta to 200)
    errors = score_error(field, MixtureField(dataset_mixture(name), field.schedule), (0.1, 0.5, 0.9), n=2000)
    assert max(errors.values()) < 0.25, errors  # the quality bound of tests/test_train.py


def test_session_starts_from_the_pretrained_model_and_falls_back_to_exact():
    s = Session(dataset="ring")
    assert isinstance(s.model, NetworkField) and s.field("learned") is s.model
    s.schedule = "ve"  # no pretrained VE model: the exact field, and a message saying so
    assert s.model is None and s.field("learned") is s.exact and "pretrained" in s.message
    assert Session(dataset="ring", pretrained=False).model is None


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(args, port, first_path, tmp_path):
    """Run a server command; yield (first page's HTML, a function giving the log so far)
    once it answers; stop it afterwards."""
    log = open(tmp_path / "server.log", "w+")
    # its own result cache; the pages' defaults not computed ahead (the browser tests' server does)
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "LAB_CACHE_DIR": str(tmp_path / "cache"),
           "LAB_PREFILL": "off"}
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)
    try:
        deadline = time.time() + 90
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}{first_path}", timeout=60).read().decode()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        yield page, lambda: (log.seek(0), log.read())[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_panel_serve_renders_the_apps(tmp_path):
    port = _free_port()
    apps = map(str, sorted((ROOT / "apps").glob("*.py")))
    with serving(["panel", "serve", *apps, "--port", str(port), "--address", "127.0.0.1"],
                 port, "/solvers", tmp_path) as (page, server_log):
        assert "Traceback" not in page and "score-lab" in page
        for outside in ("cdn.bokeh.org", "cdn.jsdelivr", "fonts.googleapis", "unpkg.com"):
            assert outside not in page  # offline: nothing from a CDN
        index = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "solvers" in index
    text = server_log()
    assert "Traceback" not in text and "ERROR" not in text, text


@pytest.mark.slow
def test_lab_serve_command_serves_every_page(tmp_path):
    """README's first command ends in `python -m lab serve`: it must serve /all."""
    port = _free_port()
    with serving(["lab", "serve", "--port", str(port)], port, "/all", tmp_path) as (page, server_log):
        assert "score-lab" in page and "Traceback" not in page
    text = server_log()
    assert f"http://127.0.0.1:{port}/all" in text and "Traceback" not in text, text
    assert "score-lab: warmed up" in text     # before the first page (lab.app.warmup.warm_up)


def test_after_the_warm_up_a_first_training_imports_nothing():
    """A first import on a served process holds every page still (one thread runs Python at a
    time): the first training imported PyTorch's compiler stack, 2 s, while a class waited."""
    code = "\n".join([
        "import sys, torch",
        "torch.set_num_threads(1)",
        "from lab.app.warmup import warm_up",
        "took = warm_up()",
        "assert set(took) == {'imports', 'model', 'training'}, took",
        "from lab.train import TrainConfig, TrainingRun",
        "before = set(sys.modules)",
        "run = TrainingRun(torch.randn(256, 2), TrainConfig(steps=4, batch_size=32, log_every=2, device='cpu'))",
        "run.start().join(60)",
        "assert run.done and not run.error, run.error",
        "print(sorted(set(sys.modules) - before))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_nothing_touches_cuda_at_import():
    """`panel serve --num-procs N` forks after importing the apps' modules: CUDA must not be
    initialised before that (a forked child cannot use a parent's CUDA context)."""
    code = "\n".join([
        "import torch",
        "def touched(*args, **kwargs):",
        "    raise RuntimeError('CUDA was touched at import')",
        "for name in ('is_available', 'init', 'device_count', 'current_device', '_lazy_init'):",
        "    setattr(torch.cuda, name, touched)",
        "import lab, lab.data, lab.schedules, lab.fields, lab.models, lab.train, lab.solvers",
        "import lab.curl, lab.metrics, lab.hallucination, lab.plots, lab.pretrained, lab.cli",
        "import lab.app, lab.app.session, lab.app.figures, lab.app.worker, lab.app.solver_view",
        "import lab.app.train_view, lab.app.curl_view, lab.app.hallucination_view, lab.app.gap_view",
        "print('imported without touching CUDA')",
    ])
    env = {k: v for k, v in os.environ.items() if k != "LAB_DEVICE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "without touching CUDA" in out.stdout, out.stderr
