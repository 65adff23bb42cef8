"""Cold start (issue 29 item 2): how long a fresh ``python -m lab serve`` takes to start, and how
long the first student then waits for each page's first result, in Chromium.

Each page's own URL is opened in a fresh browser context, one after another, and timed from
``goto`` until the page's numbers are on it (the line the browser tests wait for). Run twice:
with an empty result cache (the server computes every page's defaults before it serves:
``lab.app.warmup.fill_defaults``), then restarted on the cache the first run left. And once
with ``--no-prefill`` for comparison: what a first visit cost before.

    python benchmarks/cold_start.py          # about 4 minutes here
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PAGES = {"train": r"Your own points", "solvers": r"NFE \d+", "curl": r"Helmholtz split",
         "hallucinations": r"retention at 95% detection", "gap": r"ODE to SDE", "guidance": r"FKC \d",
         "flows": r"Straightness of the learned flow"}


def start(cache: str, *options: str):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "LAB_CACHE_DIR": cache}
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--port", str(port), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30)
            return proc, f"http://127.0.0.1:{port}", time.perf_counter() - began
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the server died")
            time.sleep(0.2)


def first_results(browser, url: str) -> dict[str, float]:
    out = {}
    for name, pattern in PAGES.items():
        context = browser.new_context(viewport={"width": 1300, "height": 1000})
        page = context.new_page()
        began = time.perf_counter()
        page.goto(f"{url}/{name}")
        page.get_by_text(re.compile(pattern)).first.wait_for(timeout=300_000)
        out[name] = time.perf_counter() - began
        context.close()
    return out


def main():
    from playwright.sync_api import sync_playwright

    cache = tempfile.mkdtemp(prefix="lab-cache-")
    runs = (("fresh server, empty cache", ()), ("restarted on that cache", ()),
            ("fresh server, --no-prefill --no-cache", ("--no-prefill", "--no-cache")))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        print(f"{'server':<40s} {'start':>7s}  " + " ".join(f"{k:>14s}" for k in PAGES))
        for what, options in runs:
            proc, url, ready = start(cache, *options)
            try:
                times = first_results(browser, url)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(f"{what:<40s} {ready:6.1f}s  " + " ".join(f"{times[k]:13.1f}s" for k in PAGES), flush=True)
        browser.close()
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
