"""Browser tests: Playwright drives Debian's chromium (test.sh installs it) against a real
`panel serve`. Screenshots go to test-artifacts/ for a person to look at."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = [pytest.mark.slow,   # a browser and a server each: the quick tier leaves them out
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                 "(test.sh installs it when run as root)")]


def wait_for_server(url: str, proc: subprocess.Popen, log_path: Path, seconds: float):
    """Until ``url`` answers; if the server dies or ``seconds`` pass first, kill it and fail
    with its log."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=30)
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"the server at {url} did not start:\n" + Path(log_path).read_text())
            time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    log = open(log_path, "w+")
    # a result cache of its own: nothing from an earlier run (lab.app.cache)
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "LAB_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    # README's first command ends in `python -m lab serve`; further options go to panel serve:
    # here a closed page's session ends within ~2 s (by default: up to 30 s)
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", str(port),
                             "--check-unused-sessions", "500", "--unused-session-lifetime", "1000"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    # the server computes every page's defaults before it serves (lab.app.warmup.fill_defaults):
    # about a minute on two cores, with an empty result cache
    wait_for_server(f"http://127.0.0.1:{port}/", proc, log_path, 400)
    yield f"http://127.0.0.1:{port}", log_path
    proc.terminate()
    proc.wait(timeout=30)
    # Tornado logs a client that leaves mid-message as "Task exception was never retrieved
    # ... WebSocketClosedError": a disconnect race, not an error of the lab. Drop only those.
    text = re.sub(r"Task exception was never retrieved.*?tornado\.websocket\.WebSocketClosedError",
                  "", log_path.read_text(), flags=re.S)
    assert "Traceback" not in text and "ERROR" not in text, text


def start_kernel_session(base: str, path: str, seconds: float) -> str:
    """Start a kernel for the notebook at `path` through the Jupyter server's sessions API and
    return its id (the server reports it "starting" until a client connects: the page does)."""
    request = urllib.request.Request(
        f"{base}/api/sessions", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"path": path, "name": path, "type": "notebook",
                         "kernel": {"name": "python3"}}).encode())
    with urllib.request.urlopen(request, timeout=seconds) as answer:
        return json.loads(answer.read())["kernel"]["id"]


def open_page(browser, height: int):
    """A new page, 1300 px wide, and the list its console errors and any request that leaves
    127.0.0.1 will land in (offline: the lab's own server serves everything)."""
    page = browser.new_page(viewport={"width": 1300, "height": height})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: errors.append(f"offsite request: {r.url}") if "127.0.0.1" not in r.url
            and not r.url.startswith(("data:", "blob:", "about:")) else None)
    return page, errors


def finish(page, errors, screenshot: str):
    """Keep a screenshot of the page in test-artifacts/ (for a person to look at), check that
    no error shows on it or in its console and that nothing was fetched from outside, and
    leave it."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    assert_no_error_shown(page)
    assert not errors, errors   # console errors and offsite requests (offline: none)
    leave(page)


def leave(page):
    """Navigate away first, so the page's websocket closes cleanly (an abrupt close makes
    the server log a harmless but noisy WebSocketClosedError), then close."""
    page.goto("about:blank")
    page.wait_for_timeout(500)
    page.close()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def page_text(page, selector: str = "body") -> str:
    """The text of the page (or of the first element `selector` matches), shadow roots
    included (Panel renders into them), style sheets and scripts left out. Read from the DOM,
    not as laid out: JupyterLab skips laying out cells out of view (content-visibility), whose
    text inner_text would leave out."""
    return page.evaluate("""(selector) => {
        const out = [];
        const walk = (node) => {
            if (node.shadowRoot) walk(node.shadowRoot);
            for (const child of node.childNodes) {
                if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent);
                else if (!["STYLE", "SCRIPT"].includes(child.nodeName)) walk(child);
            }
        };
        walk(document.querySelector(selector));
        return out.join(" ");
    }""", selector)


def assert_no_error_shown(page):
    text = page_text(page)
    for sign in ("Traceback", "Could not", "failed", "Error:"):
        assert sign not in text, f"{sign!r} on the page: ...{text[max(0, text.find(sign) - 200):][:600]}"


def info_line(page, pattern: str, log_path=None, timeout_ms: int = 60_000) -> str:
    """The first rendered text that matches ``pattern``, once it is there. If it never comes:
    a screenshot in test-artifacts/ and a failure that shows the page's text and the end of
    the server log, so a failure on CI can be read."""
    loc = page.get_by_text(re.compile(pattern)).first
    try:
        loc.wait_for(timeout=timeout_ms)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"\W+", "-", page.url.split("/")[-1] or "page")
        page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
        log = Path(log_path).read_text()[-4000:] if log_path else ""
        raise AssertionError(f"{pattern!r} never appeared on {page.url}.\nPage text: {page_text(page)[:3000]}"
                             f"\nServer log (end): {log}") from None
    return loc.inner_text()


def set_training_steps(page, steps: int):
    """Type a step count into the train page's first number box (training steps)."""
    box = page.locator("input.bk-input").first
    box.fill(str(steps))
    box.press("Enter")
    page.wait_for_timeout(500)


def start_training(page) -> str:
    """Press Train for 20,000 steps (so Stop always comes first, on any machine); return the
    first progress line once it is drawn."""
    page.get_by_role("button", name="Train").wait_for(timeout=60_000)
    set_training_steps(page, 20_000)
    page.get_by_role("button", name="Train").click()
    status = page.get_by_text(re.compile(r"^step \d+ of 20000")).first
    status.wait_for(timeout=60_000)
    return status.inner_text()


def stop_training(page) -> int:
    """Press Stop after a moment; return the steps done."""
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Stop").click()
    done = page.get_by_text(re.compile(r"^done: \d+ steps")).first
    done.wait_for(timeout=60_000)
    return int(re.search(r"done: (\d+) steps", done.inner_text()).group(1))


def test_solver_page_renders_and_follows_the_solver(server, browser):
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/solvers")
    page.get_by_text("DPM-Solver++(2M)").first.wait_for(timeout=60_000)
    assert page.locator("canvas").count() >= 4  # samples, paths, learned and exact field
    w2_before = info_line(page, r"sliced W2 to the truth")
    page.locator("select").first.select_option("ddim")
    page.get_by_text("Song, Meng & Ermon").first.wait_for(timeout=30_000)
    page.locator("select").nth(1).select_option("karras")        # the spacing
    info_line(page, r"karras spacing")
    page.locator("select").first.select_option("ode_heun")       # 2 evaluations a step
    page.get_by_text(re.compile(r"NFE 40")).first.wait_for(timeout=30_000)
    assert info_line(page, r"sliced W2 to the truth") != w2_before  # the numbers followed
    # the solver race, opened on demand, runs in the background with its progress shown
    canvases = page.locator("canvas").count()
    page.get_by_role("button", name="Open the solver race: which error dominates?").click()
    page.get_by_role("button", name="Run the race").click()
    info_line(page, r"racing: \d+ of \d+ runs", log_path=server[1])
    info_line(page, r"Best at 5 NFE", log_path=server[1], timeout_ms=300_000)
    assert page.locator("canvas").count() >= canvases + 2        # W2 against NFE, exact and learned
    assert page.get_by_text(re.compile(r"^dpm_v3$")).count() >= 1  # the table's rows
    finish(page, errors, "solvers.png")


def test_train_page_trains_and_stops(server, browser):
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/train")
    first = start_training(page)                                 # progress is drawn
    assert page.locator("canvas").count() >= 2
    steps_done = stop_training(page)
    assert int(re.search(r"step (\d+)", first).group(1)) < steps_done < 20_000  # advanced, then stopped
    finish(page, errors, "train.png")


def test_a_drawn_data_set_trains_and_its_samples_follow_the_drawing(server, browser):
    """Drag a diagonal stroke on the train page's canvas, use it, train: the model's samples
    lie along a line (the smaller principal axis of their spread is a few percent of the
    larger one; a round blob would give 1)."""
    url, _ = server
    page, errors = open_page(browser, 1100)
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Use my drawing").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    canvas = page.locator(".bk-Canvas").nth(2)             # loss curve, preview, drawing
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = box["x"] + 0.35 * box["width"], box["y"] + 0.65 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 31):                                  # up and to the right
        page.mouse.move(x0 + 0.01 * i * box["width"], y0 - 0.01 * i * box["height"])
    page.mouse.up()
    page.get_by_role("button", name="Use my drawing").click()
    page.get_by_text(re.compile(r"using your drawing: 4,000 points")).first.wait_for(timeout=60_000)
    set_training_steps(page, 800)
    page.get_by_role("button", name="Train").click()
    page.get_by_text(re.compile(r"^done: 800 steps")).first.wait_for(timeout=180_000)
    page.wait_for_function("""() => [...Bokeh.documents[0].all_models].some(    // the trained model's preview
        m => m.title && m.title.text === "samples of the current model (20 steps)")""", timeout=60_000)
    xy = page.evaluate("""() => {
        const src = Bokeh.documents[0].get_model_by_name("samples");
        return [Array.from(src.data.x), Array.from(src.data.y)];
    }""")
    spread = np.linalg.eigvalsh(np.cov(np.asarray(xy)))
    assert len(xy[0]) == 1000 and spread[0] < 0.05 * spread[1], spread
    finish(page, errors, "train-drawing.png")


def test_bad_input_shows_a_message_and_the_server_lives(server, browser, tmp_path):
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Train").wait_for(timeout=60_000)
    steps = page.locator("input.bk-input").first          # training steps
    steps.fill("999999999")
    steps.press("Enter")
    page.get_by_text(re.compile(r"999,999,999 is outside 1 to 20,000")).first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert steps.input_value().replace(",", "") == "2000"   # the box shows what is in force
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n3,oops\n4,5\n")
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_text(re.compile(r"could not use the uploaded file")).first.wait_for(timeout=30_000)
    good = tmp_path / "good.csv"
    good.write_text("x,y\n" + "".join(f"{i % 7},{(i * 3) % 11}\n" for i in range(200)))
    page.locator("input[type=file]").first.set_input_files(str(good))
    page.get_by_text(re.compile(r"using your 200 points")).first.wait_for(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train-upload.png"), full_page=True)
    assert not errors, errors
    leave(page)


@pytest.mark.parametrize("app", sorted(p.stem for p in (ROOT / "apps").glob("*.py")))
def test_every_page_renders_plots_without_errors(server, browser, app):
    url, log_path = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/{app}")
    page.locator("canvas").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator("canvas").count() >= 2
    if app != "all":   # each page's numbers arrive from its worker
        info_line(page, {"train": r"Your own points", "solvers": r"NFE \d+", "curl": r"Helmholtz split",
                         "hallucinations": r"retention at 95% detection", "gap": r"ODE to SDE",
                         "guidance": r"FKC \d", "flows": r"Straightness of the learned flow"}[app], log_path,
                  # every page's defaults were computed before the server served (fill_defaults)
                  timeout_ms=60_000)
    finish(page, errors, f"page-{app}.png")


def test_one_page_lab_shares_the_model_between_tabs(server, browser):
    """Train on the first tab of apps/all.py, then the other tabs show the new model."""
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/all")
    start_training(page)
    stop_training(page)
    page.get_by_text("Solvers", exact=True).click()
    page.get_by_text(re.compile(r"NFE \d+")).first.wait_for(timeout=60_000)
    page.get_by_text("Curl", exact=True).click()
    page.get_by_text("Helmholtz split").first.wait_for(timeout=60_000)
    page.get_by_text("ODE vs SDE", exact=True).click()
    page.get_by_text("this session's model").first.click()
    info_line(page, r"your model \(two_moons, vp\)", timeout_ms=300_000)   # after the default model's run
    finish(page, errors, "lab-gap-tab.png")


def test_the_index_page_leads_into_the_lab(server, browser):
    url, _ = server
    page, errors = open_page(browser, 900)
    page.goto(f"{url}/")
    page.get_by_text("Open the lab").wait_for(timeout=30_000)
    for name in ("train", "solvers", "curl", "hallucinations", "gap", "guidance", "flows"):   # the single pages too
        assert page.locator(f'a[href="./{name}"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    page.get_by_role("link", name=re.compile("^Curl")).click()
    page.get_by_text("Helmholtz split").first.wait_for(timeout=60_000)
    assert page.url.endswith("/all?tab=curl")
    assert not errors, errors   # the index too: nothing from outside
    leave(page)


def test_a_link_opens_a_tab(server, browser):
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/all?tab=curl")
    page.get_by_text("Helmholtz split").first.wait_for(timeout=60_000)
    assert not errors, errors
    leave(page)


def test_closing_the_page_stops_its_training(server, browser):
    url, log_path = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/train")
    start_training(page)
    assert not errors, errors
    leave(page)                                            # the session ends; so must its thread
    deadline = time.time() + 60
    while "training stopped at step" not in log_path.read_text():
        assert time.time() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.5)
    stopped = re.search(r"training stopped at step (\d+) of 20000", log_path.read_text())
    assert stopped and int(stopped.group(1)) < 20000
    assert "session closed; stopped its" in log_path.read_text()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_lab_serve_with_two_processes(browser, tmp_path):
    """`python -m lab serve --num-procs 2` forks two servers on one port: pages work."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path / "server.log"
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "LAB_CACHE_DIR": str(tmp_path / "cache"),
           "LAB_PREFILL": "off"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", str(port), "--num-procs", "2"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)   # its own process group: the forks end with it
    try:
        deadline = time.time() + 90
        while log_path.read_text().count("Starting Bokeh server with process id") < 2:
            assert time.time() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.5)
        for _ in range(3):       # each page load and its websocket may land on either process
            page, errors = open_page(browser, 900)
            page.goto(f"http://127.0.0.1:{port}/all?tab=solvers")
            page.get_by_text(re.compile(r"NFE 20")).first.wait_for(timeout=60_000)
            assert not errors, errors
            leave(page)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)    # the parent and both forked servers
        proc.wait(timeout=30)
        deadline = time.time() + 30
        while group_alive(proc.pid):           # no server is left behind
            assert time.time() < deadline, "a forked server outlived the test"
            time.sleep(0.2)
    text = log_path.read_text()
    pids = set(re.findall(r"Starting Bokeh server with process id: (\d+)", text))
    assert len(pids) == 2 and "Traceback" not in text, text


def test_a_notebook_renders_its_plots_offline_in_jupyterlab(browser, tmp_path):
    """JupyterLab opens the first lesson, runs it top to bottom, and its Bokeh plots and the
    embedded Panel view draw, with nothing fetched from outside (issue 7: inline resources).
    The notebook runs from a copy: JupyterLab autosaves, and the committed notebooks stay
    without outputs."""
    pytest.importorskip("jupyterlab")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", work)
    home = tmp_path / "home"             # JupyterLab's settings and workspaces: not the user's
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "LAB_QUICK": "1",
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log_path = tmp_path / "jupyter.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                                 "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
                                 "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                                 f"--ServerApp.root_dir={work}", "--LabApp.news_url=None",
                                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                                 "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
                                 "--allow-root"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                start_new_session=True)   # the server and its kernel end together
    try:
        wait_for_server(f"http://127.0.0.1:{port}/lab", proc, log_path, 120)
        # The notebook's kernel is started through the server's REST API before the page opens,
        # and the page attaches to it: left to the page, a kernel that starts slowly under load
        # makes JupyterLab ask which kernel to start (seen in CI), a question a test cannot
        # answer reliably.
        kernel_id = start_kernel_session(f"http://127.0.0.1:{port}", "00_start_here.ipynb", 180)
        page, errors = open_page(browser, 1000)
        page.goto(f"http://127.0.0.1:{port}/lab/tree/00_start_here.ipynb")
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        page.get_by_text("Kernel status: Idle").first.wait_for(state="attached", timeout=120_000)
        # Run All through JupyterLab's own command (a menu click can land before the menu is
        # wired and do nothing). The command is disabled until the notebook is the shell's
        # current widget, which a headless browser does not always make it: a click on the
        # first cell does. Even then the first call is sometimes lost (seen under load): again
        # if no cell is queued ("[*]", shown at once) within 15 s.
        started = re.compile(r"\[(\*|\d+)\]")
        t0 = time.time()
        for attempt in range(8):
            dialog = page.locator(".jp-Dialog")
            if dialog.count():     # e.g. a kernel question after a lost attempt, under load
                print(f"run all, attempt {attempt + 1}: a dialog: {page_text(page, '.jp-Dialog')[:300]!r}"
                      f" (kernel {kernel_id})")
                choice = dialog.first.locator("select")
                if choice.count():        # "Select kernel": the session's own kernel, else Python 3
                    labels = choice.first.locator("option").all_inner_texts()
                    wanted = [label for label in labels if "python 3" in label.lower()]
                    if wanted:
                        choice.first.select_option(label=wanted[-1])
                dialog.first.locator(".jp-mod-accept").first.click()
                try:
                    dialog.first.wait_for(state="detached", timeout=30_000)
                except PlaywrightTimeout:
                    page.keyboard.press("Escape")
                    print(f"run all, attempt {attempt + 1}: the dialog stayed; Escape")
                    continue
            page.locator(".jp-Notebook .jp-Cell").first.click()
            try:
                page.wait_for_function(
                    "() => window.jupyterapp.commands.isEnabled('notebook:run-all-cells')", timeout=30_000)
            except PlaywrightTimeout:
                print(f"run all, attempt {attempt + 1}: command not enabled after {time.time() - t0:.0f} s")
                continue
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")   # not awaited
            try:
                page.locator(".jp-InputPrompt", has_text=started).first.wait_for(state="attached", timeout=15_000)
                print(f"run all, attempt {attempt + 1}: a cell started after {time.time() - t0:.0f} s")
                break
            except PlaywrightTimeout:
                print(f"run all, attempt {attempt + 1}: no cell started after {time.time() - t0:.0f} s")
                continue
        else:
            state = page.evaluate("() => [window.jupyterapp.commands.isEnabled('notebook:run-all-cells'), "
                                  "String(window.jupyterapp.shell.currentWidget && "
                                  "window.jupyterapp.shell.currentWidget.title.label)]")
            raise AssertionError(f"Run All never started a cell (command enabled, current tab: {state});"
                                 f" server log:\n{log_path.read_text()[-3000:]}")
        # the last cell embeds the solver view: its plots draw once the whole notebook has run
        last = page.locator(".jp-Cell").last
        last.scroll_into_view_if_needed()
        deadline = time.time() + 240
        while page.locator(".jp-OutputArea canvas").count() < 4:
            text = page_text(page, ".jp-Notebook")
            assert "Traceback" not in text and "Error" not in text, text[-3000:]
            assert time.time() < deadline, f"no plots after 4 minutes:\n{text[-3000:]}"
            page.wait_for_timeout(1000)
        page.get_by_text(re.compile(r"NFE \d+")).first.wait_for(timeout=120_000)   # the view's worker answered
        text = page_text(page, ".jp-Notebook")
        assert "Traceback" not in text and "Error" not in text, text[-3000:]
        assert "two_moons" in text and "True" in text    # the printed checks ran
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-00.png"), full_page=False)
        assert not errors, errors   # console errors and offsite requests (offline: none)
        leave(page)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_hostile_uploads_are_refused_with_a_message(server, browser, tmp_path):
    """A CSV over the size cap, one with more points than the cap, one with infinities: each
    refused with a message that names the problem; the page and the server live on."""
    url, _ = server
    page, errors = open_page(browser, 1000)
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Train").wait_for(timeout=60_000)
    upload = page.locator("input[type=file]").first
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as fh:                       # 65 MiB: over lab.data.MAX_CSV_BYTES
        fh.write(b"x,y\n" + b"1.0,2.0\n" * (65 * 2**20 // 8))
    upload.set_input_files(str(huge))
    page.get_by_text(re.compile(r"more than the 64 MiB")).first.wait_for(timeout=120_000)
    many = tmp_path / "many.csv"
    many.write_text("x,y\n" + "1,2\n" * 2_000_001)    # one point over lab.data.MAX_POINTS
    upload.set_input_files(str(many))
    page.get_by_text(re.compile(r"more than 2,000,000 points")).first.wait_for(timeout=120_000)
    infinite = tmp_path / "inf.csv"
    infinite.write_text("x,y\n" + "1,2\n" * 20 + "inf,3\n")
    upload.set_input_files(str(infinite))
    page.get_by_text(re.compile(r"finite")).first.wait_for(timeout=60_000)
    good = tmp_path / "good.csv"                       # and the page still works
    good.write_text("x,y\n" + "".join(f"{i % 7},{(i * 3) % 11}\n" for i in range(200)))
    upload.set_input_files(str(good))
    page.get_by_text(re.compile(r"using your 200 points")).first.wait_for(timeout=60_000)
    assert not errors, errors
    leave(page)
