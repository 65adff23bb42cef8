"""Load test (issue 8): many browser-like sessions against one ``python -m lab serve``.

Each virtual user is a Bokeh client session (``bokeh.client.pull_session``, its own thread
and IOLoop): it gets the page's document over the websocket as a browser does and sends
widget changes and button clicks the way BokehJS does, so the server runs exactly what a
browser would make it run. It draws nothing.

- Solver users open ``/solvers`` and change their seed, solver and steps, one change at a
  time; the *update latency* is the time from sending a change until the page shows it:
  its text (solver, NFE and seed) and its new samples.
- One trainer opens ``/train``, trains 20,000 steps and presses Stop after a while.

No cross-talk, checked after the run: every user's settings differ (its seed is its own), and
the 4,000 samples each solver user received after each change are, to float rounding,
those that its own settings and the pretrained model give when recomputed here; no solver
page ever showed the trainer's progress; the trainer's steps only went up. Threads and
memory of the server are read from /proc before, during and after (sessions closed: their
threads must end).

Baseline, measured in the same run: the same script by one solver user alone.

    python benchmarks/load.py [--users 20] [--changes 3] [--train-seconds 20] [--torch-threads N]
    python benchmarks/load.py --compare-threads   # torch's default threads, then one
    python benchmarks/load.py --compare-procs 2   # one server process, then two (lab serve --num-procs 2)
    python benchmarks/load.py --open-first        # nobody changes anything before every page is open

The server runs as served (torch on its default intra-op threads) unless told otherwise. The
virtual users run in this process, on the same machine: the CPU each side used is printed.
"""
from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the solvers the users walk through, each from its own place
POLL_S = 0.02      # how often a virtual user looks at its page (the latencies' resolution)
SOLVER_CYCLE = ["ddim", "ode_heun", "dpm2", "deis", "euler_maruyama", "dpm3", "ode_euler"]   # not the default


# --- the server ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(log_path: Path, port: int | None = None, torch_threads: int | None = None,
                 profile: Path | None = None, root: Path = ROOT, num_procs: int = 1) -> tuple[subprocess.Popen, str]:
    """``python -m lab serve`` on loopback (closed pages' sessions end within ~2 s), with
    ``torch_threads`` intra-op threads (None: torch's default, as served); under yappi
    (benchmarks/profile_serve.py) when ``profile`` names its report; the lab of the checkout
    at ``root`` (another version's, for a before/after comparison); ``num_procs`` processes
    forked on one port (``lab serve --num-procs``)."""
    port = port or free_port()
    env = {**os.environ, "LAB_DEVICE": "cpu"}
    env.pop("OMP_NUM_THREADS", None)
    if torch_threads is not None:
        env["OMP_NUM_THREADS"] = str(torch_threads)
    log = open(log_path, "w")
    serve = ([str(ROOT / "benchmarks" / "profile_serve.py"), str(profile)] if profile
             else ["-m", "lab", "serve"])
    procs = ["--num-procs", str(num_procs)] if num_procs > 1 else []
    proc = subprocess.Popen([sys.executable, *serve, "--port", str(port), *procs,
                             "--check-unused-sessions", "500", "--unused-session-lifetime", "1000"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    import urllib.request
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=30)
            return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the server did not start:\n" + log_path.read_text())
            time.sleep(0.5)


def family(pid: int) -> list[int]:
    """A process and its descendants (a server with --num-procs forks its workers), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:          # a thread that just ended
                pass
    return out


def server_usage(pid: int) -> dict:
    """Threads and resident memory (MiB) of a server (all its processes), from /proc (Linux)."""
    threads, rss = 0, 0.0
    for p in family(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        threads += int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        rss += int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return {"threads": threads, "rss_mib": rss}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a server (all its processes) has used so far, from /proc."""
    total = 0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- virtual users -------------------------------------------------------------------------
def texts(doc) -> list[str]:
    """The page's rendered texts (Panel's Markdown panes arrive HTML-escaped). The text
    models are looked up again only when the page's models change in number: the virtual
    users share the server's cores, and a scan of every model at every poll cost them a
    third of the machine."""
    cached = getattr(doc, "_lab_text_models", None)
    if cached is None or cached[0] != len(doc.models):
        cached = (len(doc.models), [m for m in doc.models if type(m).__name__ == "HTML" and "text" in m.properties()])
        doc._lab_text_models = cached
    return [html.unescape(html.unescape(str(m.text))) for m in cached[1]]


def first_match(doc, pattern: str):
    """The first match of ``pattern`` in the page's texts, or None."""
    return next((m for m in (re.search(pattern, t) for t in texts(doc)) if m), None)


class User(threading.Thread):
    """A browser-like session on one page, run on its own thread and IOLoop."""

    def __init__(self, url: str, label: str, timeout: float = 300.0):
        super().__init__(name=label, daemon=True)
        self.url, self.label, self.timeout = url, label, timeout
        self.error: BaseException | None = None
        self.seen: list[str] = []          # every text the page showed

    def run(self):
        from bokeh.client import pull_session
        from tornado.ioloop import IOLoop

        import panel  # noqa: F401  (registers Panel's models, so the document can be read)

        loop = IOLoop()
        try:
            self.session = pull_session(url=self.url, io_loop=loop)
            self.doc = self.session.document
            from bokeh.events import DocumentReady
            self.doc.callbacks.send_event(DocumentReady())   # as BokehJS, once the page is drawn
            loop.add_callback(self._main)
            self.session._loop_until_closed()
        except BaseException as e:   # noqa: BLE001 (reported by the caller)
            self.error = e
        finally:
            loop.close(all_fds=True)    # and its executor's thread (name lookups)

    async def _main(self):
        try:
            await self.script()
        except BaseException as e:   # noqa: BLE001
            self.error = e
        finally:
            self.session.close()

    async def until(self, predicate, what: str) -> float:
        """Wait (polling every POLL_S, the session's messages flowing meanwhile) until
        ``predicate()`` holds; the seconds it took."""
        start = time.perf_counter()
        while True:
            self.seen.extend(t for t in texts(self.doc) if t not in self.seen[-50:])
            if predicate():
                return time.perf_counter() - start
            if time.perf_counter() - start > self.timeout:
                raise TimeoutError(f"{self.label}: no {what} within {self.timeout:.0f} s; "
                                   f"page shows: {texts(self.doc)}")
            await asyncio.sleep(POLL_S)

    def model(self, kind: str, **match):
        for m in self.doc.models:
            if type(m).__name__ == kind and all(str(getattr(m, k, None)) == str(v) for k, v in match.items()):
                return m
        raise LookupError(f"{self.label}: no {kind} {match} on the page")

    def click(self, button):
        from bokeh.events import ButtonClick
        self.doc.callbacks.send_event(ButtonClick(button))   # as BokehJS sends a click


class Gate:
    """Holds every solver user until all have their page (``--open-first``): then the
    latencies are those of updates alone, without other users' pages being built meanwhile."""

    def __init__(self, n: int):
        self.n, self.arrived, self._lock = n, 0, threading.Lock()

    def arrive(self) -> None:
        with self._lock:
            self.arrived += 1

    @property
    def open(self) -> bool:
        return self.arrived >= self.n


class SolverUser(User):
    """On /solvers: seed, then solver and steps changes; records each update's latency and
    the samples it brought."""

    def __init__(self, url: str, label: str, seed: int, changes: list, timeout: float = 300.0,
                 gate: Gate | None = None):
        super().__init__(url, label, timeout)
        self.gate = gate                             # wait for every page to be open first
        self.seed, self.changes = seed, changes      # changes: [(parameter, value)]
        self.latencies: list[float] = []            # seconds, one per change
        self.received: list = []                    # [(settings, samples (n, 2))]

    def info(self):
        """(solver, NFE, seed) as the page's text shows them, or None before the first."""
        for t in texts(self.doc):
            m = re.search(r"<strong>([\w+]+)</strong> — .*?NFE <strong>(\d+)</strong>.*?seed (\d+)", t, re.S)
            if m:
                return m.group(1), int(m.group(2)), int(m.group(3))
        return None

    async def script(self):
        from lab.solvers import sample
        from lab.fields import MixtureField
        from lab.data import dataset_mixture

        exact = MixtureField(dataset_mixture("two_moons"), "vp")
        settings = {"solver": "dpm++2m", "steps": 20, "spacing": "logsnr", "eta": 0.0, "seed": 0}
        samples = lambda: self.doc.select_one({"name": "samples"}).data["x"]   # noqa: E731
        await self.until(lambda: self.info() is not None and len(samples()), "first samples")
        if self.gate is not None:
            self.gate.arrive()
            await self.until(lambda: self.gate.open, "every page open")
        for parameter, value in [("seed", self.seed)] + self.changes:
            shown = samples()
            settings[parameter] = value
            nfe = sample(exact, n=1, **settings).nfe            # what the page must show
            want = (settings["solver"], nfe, settings["seed"])
            if parameter == "solver":
                self.model("CustomSelect", title="Solver").value = value
            else:
                slider = self.model("Slider", title=parameter.capitalize())
                slider.value = value
                # as BokehJS does on release, for every slider: a throttled one (every bounded
                # number of the lab's pages, LabView.controls) listens to this alone
                slider.set_from_json("value_throttled", value)   # (read-only but for BokehJS)
            # the text and the new points may arrive in either order: wait for both
            self.latencies.append(await self.until(lambda: self.info() == want and samples() is not shown,
                                                   f"update to {want}"))
            src = self.doc.select_one({"name": "samples"})
            self.received.append((dict(settings), np.stack([np.asarray(src.data["x"]),
                                                            np.asarray(src.data["y"])], 1)))


class Trainer(User):
    """On /train: 20,000 steps, then Stop (or leave) after ``seconds``; records the
    progress it saw."""

    def __init__(self, url: str, label: str, seconds: float, stop: bool = True, timeout: float = 300.0):
        """stop: press Stop after ``seconds`` (else leave the page mid-training)."""
        super().__init__(url, label, timeout)
        self.seconds, self.stop = seconds, stop
        self.progress: list[int] = []     # steps shown, in order
        self.done: int | None = None

    def status(self):
        for t in texts(self.doc):
            m = re.search(r"step (\d+) of 20000", t)
            if m:
                return int(m.group(1))
        return None

    async def script(self):
        await self.until(lambda: any("training steps" in str(getattr(m, "title", ""))
                                     for m in self.doc.models), "the train page")
        self.model("Spinner", title="training steps").value = 20_000
        await asyncio.sleep(0.5)
        self.click(self.model("Button", label="Train"))
        start = time.perf_counter()
        # at least ``seconds``, and until the page has shown training move (a busy server
        # may take longer than ``seconds`` to draw its second progress line)
        while time.perf_counter() - start < self.seconds or len(self.progress) < 2:
            if time.perf_counter() - start > self.timeout:
                raise TimeoutError(f"{self.label}: training shown at steps {self.progress} only, "
                                   f"after {self.timeout:.0f} s")
            await self.until(lambda: self.status() is not None, "training progress")
            step = self.status()
            if not self.progress or step != self.progress[-1]:
                self.progress.append(step)
            await asyncio.sleep(0.1)
        if not self.stop:
            return                     # the page closes mid-training: the server must end the run
        self.click(self.model("Button", label="Stop"))

        def finished():
            m = first_match(self.doc, r"done: (\d+) steps")
            if m:
                self.done = int(m.group(1))
            return m is not None
        await self.until(finished, "the end of training")


# --- a run ---------------------------------------------------------------------------------
def solver_users(url: str, n: int, changes: int, first: int = 0, open_first: bool = False) -> list[SolverUser]:
    """``n`` solver users with settings all different: user k has seed 100 + k and walks the
    solver cycle from its own place, with its own step count. ``open_first``: none changes
    anything before every page is open."""
    users, gate = [], Gate(n) if open_first else None
    for k in range(first, first + n):
        script, steps = [], 20                      # the page's default steps
        for j in range(changes):
            script.append(("solver", SOLVER_CYCLE[(k + j) % len(SOLVER_CYCLE)]))
            if j % 2 == 1:
                new = 10 + (k + j) % 15
                steps = new if new != steps else new + 1   # a change, never a no-op
                script.append(("steps", steps))
        users.append(SolverUser(url + "/solvers", f"solver-user-{k}", seed=100 + k, changes=script, gate=gate))
    return users


def check_no_cross_talk(users: list[SolverUser], trainer: Trainer | None) -> list[str]:
    """Problems found: samples that are not the user's own, a solver page showing training,
    training progress that went back. Empty: no cross-talk."""
    from lab.app.session import Session
    from lab.solvers import SOLVERS, sample

    learned = Session().field("learned")        # the pretrained model every solver page starts with
    problems = []
    for u in users:
        for settings, got in u.received:
            spec = SOLVERS[settings["solver"]]    # as the page: a solver without eta uses its own
            eta = settings["eta"] if spec.takes_eta else spec.eta_default
            want = sample(learned, n=got.shape[0], **{**settings, "eta": eta}).samples.double().numpy()
            err = float(np.abs(want - got).max())
            if not err < 1e-4:
                problems.append(f"{u.label}: samples for {settings} differ from its own by {err:.2e}")
        if any(re.search(r"step \d+ of \d+", t) for t in u.seen):
            problems.append(f"{u.label}: a solver page showed training progress")
    if trainer is not None:
        if trainer.progress != sorted(trainer.progress) or not trainer.progress:
            problems.append(f"trainer: progress {trainer.progress} did not only go up")
    return problems


def run(url: str, n_users: int, changes: int, train_seconds: float | None, pid: int | None = None,
        timeout: float = 300.0, trainer_stops: bool = True, open_first: bool = False) -> dict:
    """Start every user at once (the last one trains, unless ``train_seconds`` is None),
    wait for all; their results and the server's usage (``pid``: the server's process).
    ``open_first``: the solver users change nothing before all their pages are open."""
    users = solver_users(url, n_users - (train_seconds is not None), changes, open_first=open_first)
    trainer = (Trainer(url + "/train", "trainer", seconds=train_seconds, stop=trainer_stops)
               if train_seconds is not None else None)
    everyone = users + ([trainer] if trainer else [])
    for u in everyone:
        u.timeout = timeout
    usage = {"before": server_usage(pid)} if pid else {}
    cpu0 = (cpu_seconds(pid) if pid else 0.0, sum(os.times()[:2]))
    start = time.perf_counter()
    for u in everyone:
        u.start()
    peak = dict(usage.get("before", {}))
    solvers_s = None
    while any(u.is_alive() for u in everyone):
        if pid:
            now = server_usage(pid)
            peak = {k: max(peak[k], now[k]) for k in now}
        if solvers_s is None and not any(u.is_alive() for u in users):
            solvers_s = time.perf_counter() - start
        time.sleep(0.2)
    wall = time.perf_counter() - start
    solvers_s = solvers_s or wall
    cpu = {"server_s": cpu_seconds(pid) - cpu0[0] if pid else None,
           "clients_s": sum(os.times()[:2]) - cpu0[1]}   # this process: every virtual user
    if pid:
        usage["peak"] = peak
    errors = [f"{u.label}: {type(u.error).__name__}: {u.error}" for u in everyone if u.error is not None]
    return {"users": users, "trainer": trainer, "errors": errors, "wall_s": wall,
            "solvers_s": solvers_s, "cpu": cpu, "usage": usage}


def summary(latencies: list[float]) -> str:
    ms = sorted(1e3 * x for x in latencies)
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]   # noqa: E731
    return (f"n {len(ms)}, median {statistics.median(ms):.0f} ms, p90 {q(0.9):.0f} ms, "
            f"max {ms[-1]:.0f} ms")


def wait_for_threads(pid: int, threads: int, seconds: float = 30.0) -> dict:
    """The server's usage once its thread count is back to ``threads`` (or after ``seconds``)."""
    deadline = time.time() + seconds
    while True:
        now = server_usage(pid)
        if now["threads"] <= threads or time.time() > deadline:
            return now
        time.sleep(0.5)


def bench(args, torch_threads: int | None, root: Path = ROOT, name: str = "", num_procs: int | None = None) -> dict:
    """One server (of the checkout at ``root``), warmed up; one user alone, then everyone at
    once. Prints and returns the figures."""
    import tempfile
    log = Path(tempfile.mkdtemp()) / "server.log"
    num_procs = num_procs or args.num_procs
    proc, url = start_server(log, torch_threads=torch_threads, profile=args.profile, root=root, num_procs=num_procs)
    print(f"--- {name or 'server'} with torch on {torch_threads or 'its default'} intra-op thread(s), "
          f"{num_procs} process(es) ({os.cpu_count()} cores here) ---", flush=True)
    try:
        # warm up (the first session loads the pretrained models), then the baseline: one user alone
        warm = run(url, 1, 1, None, proc.pid)
        idle = wait_for_threads(proc.pid, warm["usage"]["before"]["threads"])
        alone = run(url, 1, args.changes, None, proc.pid)
        base = [x for u in alone["users"] for x in u.latencies]
        idle = wait_for_threads(proc.pid, idle["threads"])
        print(f"server idle: {idle['threads']} threads, {idle['rss_mib']:.0f} MiB")
        print(f"one user alone:        {summary(base)}")
        res = run(url, args.users, args.changes, args.train_seconds, proc.pid, open_first=args.open_first)
        lat = [x for u in res["users"] for x in u.latencies]
        print(f"{args.users} users at once ({args.users - 1} solver users, 1 training"
              f"{'; changes once every page is open' if args.open_first else ''}): {summary(lat)}; "
              f"median x{statistics.median(lat) / statistics.median(base):.1f} the lone user's")
        cpu = res["cpu"]
        print(f"all solver users done in {res['solvers_s']:.1f} s ({len(lat) / res['solvers_s']:.1f} "
              f"updates/s); CPU used over the {res['wall_s']:.1f} s: server {cpu['server_s']:.1f} s, "
              f"the virtual users (this process) {cpu['clients_s']:.1f} s")
        by_change = list(zip(*[u.latencies for u in res["users"] if u.latencies]))
        print("median ms by change (1st = the seed, sent once the page has drawn): "
              + " ".join(f"{1e3 * statistics.median(c):.0f}" for c in by_change))
        print("per user, median ms: " + " ".join(f"{1e3 * statistics.median(u.latencies):.0f}"
                                                for u in res["users"] if u.latencies))
        t = res["trainer"]
        print(f"trainer: {len(t.progress)} progress updates, stopped at step {t.done}")
        print(f"server at peak: {res['usage']['peak']['threads']} threads, "
              f"{res['usage']['peak']['rss_mib']:.0f} MiB")
        after = wait_for_threads(proc.pid, idle["threads"])
        print(f"server after every page closed: {after['threads']} threads, {after['rss_mib']:.0f} MiB")
        print("errors:", res["errors"] or "none")
        problems = check_no_cross_talk(res["users"], t)
        print("cross-talk:", problems or "none (every page got its own samples, from its own settings)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    print("server log:", "no errors" if "Traceback" not in text else text[-3000:], flush=True)
    if args.profile:
        print(f"the server's profile: {args.profile}")
    return {"alone": base, "all": lat, "solvers_s": res["solvers_s"]}


def compare_with(args, rev: str) -> None:
    """The same benchmark against the lab as of ``rev`` (checked out in a temporary git
    worktree), then against this checkout; both printed, then side by side."""
    import tempfile
    where = Path(tempfile.mkdtemp()) / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    try:
        commit = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h %s"], check=True,
                                capture_output=True, text=True).stdout.strip()[:70]
        before = bench(args, args.torch_threads, root=where, name=f"before ({commit})")
        after = bench(args, args.torch_threads, name="after (this checkout)")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)
    print(f"--- before / after, {args.users} users ---")
    for key, label in (("alone", "one user alone"), ("all", f"{args.users} users at once")):
        print(f"{label:22s} before: {summary(before[key])}\n{'':22s} after:  {summary(after[key])}")
    print(f"all solver users done in {before['solvers_s']:.1f} s before, {after['solvers_s']:.1f} s after")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--changes", type=int, default=3, help="solver changes per user (steps change every 2nd)")
    ap.add_argument("--train-seconds", type=float, default=20.0)
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="the server's torch intra-op threads (default: torch's default, as served)")
    ap.add_argument("--compare-threads", action="store_true",
                    help="run twice: torch's default threads, then one thread (OMP_NUM_THREADS=1)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="run the server under yappi (pip install yappi) and write where its CPU went here")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="first serve the lab as of git revision REV (a temporary worktree), then this "
                         "checkout's, and compare: before / after in one run")
    ap.add_argument("--num-procs", type=int, default=1, help="server processes (lab serve --num-procs)")
    ap.add_argument("--open-first", action="store_true",
                    help="the solver users wait until every page is open, then change: the latency of "
                         "updates alone (default: each starts changing as soon as its own page is open)")
    ap.add_argument("--compare-procs", type=int, default=None, metavar="N",
                    help="run twice: one server process, then N (lab serve --num-procs N)")
    args = ap.parse_args()
    if args.compare_procs:
        one, many = bench(args, args.torch_threads, num_procs=1), bench(args, args.torch_threads,
                                                                         num_procs=args.compare_procs)
        for key, label in (("alone", "one user alone"), ("all", f"{args.users} users at once")):
            print(f"{label:22s} 1 process:  {summary(one[key])}\n{'':22s} {args.compare_procs} processes: "
                  f"{summary(many[key])}")
        return
    if args.baseline:
        compare_with(args, args.baseline)
        return
    if not args.compare_threads:
        bench(args, args.torch_threads)
        return
    d, one = bench(args, None), bench(args, 1)
    print(f"--- torch's default threads vs one thread, {args.users} users: median "
          f"{1e3 * statistics.median(d['all']):.0f} vs {1e3 * statistics.median(one['all']):.0f} ms, "
          f"all solver users done in {d['solvers_s']:.1f} vs {one['solvers_s']:.1f} s; "
          f"alone {1e3 * statistics.median(d['alone']):.0f} vs {1e3 * statistics.median(one['alone']):.0f} ms")


if __name__ == "__main__":
    main()
