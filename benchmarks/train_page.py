"""Training on the served page against ``train()`` alone, in one run (issue 16, item 4).

Starts ``python -m lab serve``, opens /train as a browser would (a Bokeh client session),
presses Train with the page's defaults and times click -> "done" (the page's own
report of training seconds, and the wall time the user waits), then runs ``train()`` with
the very config the page builds, in this process, with the same torch threads. Prints both,
their ratio (target: at most 1.3), and the progress lines the page showed (steps/s, time left).

    python benchmarks/train_page.py                    # torch's default threads, as served: 44 s here
    python benchmarks/train_page.py --torch-threads 1
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import User, cpu_seconds, first_match, start_server, texts  # noqa: E402


class PageTrainer(User):
    """On /train: the default run, start to finish; what the page showed on the way."""

    def __init__(self, url: str, timeout: float = 600.0):
        super().__init__(url, "page-trainer", timeout)
        self.wait_s = None            # click -> the page says done
        self.page_train_s = None      # the training seconds the page reports
        self.lines: list[str] = []    # progress lines seen

    def progress(self):
        for t in texts(self.doc):
            if re.search(r"step \d+ of \d+", t) and t not in self.lines:
                self.lines.append(t)

    def done(self):
        self.progress()
        m = first_match(self.doc, r"done: (\d+) steps in ([\d.]+) s")
        if m:
            self.page_train_s = float(m.group(2))
        return m is not None

    async def script(self):
        await self.until(lambda: any(getattr(m, "label", None) == "Train" for m in self.doc.models),
                         "the train page")
        await asyncio.sleep(2.0)               # the first preview of the pretrained model settles
        self.click(self.model("Button", label="Train"))
        start = time.perf_counter()
        await self.until(self.done, "the end of training")
        self.wait_s = time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch intra-op threads of the server and of train() alone (default: torch's)")
    args = ap.parse_args()
    if args.torch_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    import torch

    from lab.app.session import Session
    from lab.app.train_view import TrainView
    from lab.train import train

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    log = Path(tempfile.mkdtemp()) / "server.log"
    proc, url = start_server(log, torch_threads=args.torch_threads)
    try:
        cpu0 = cpu_seconds(proc.pid)
        user = PageTrainer(url + "/train")
        user.start()
        user.join()
        if user.error:
            raise user.error
        server_cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    view = TrainView(Session(pretrained=False))        # the page's defaults: its config and data
    cfg, data = view.config(), view.session.data(20_000)
    start = time.perf_counter()
    _, history = train(data, cfg)
    alone_s = time.perf_counter() - start
    print(f"torch threads: {torch.get_num_threads()} here, the server's "
          f"{'default' if args.torch_threads is None else args.torch_threads}")
    print(f"default run ({cfg.steps} steps of batch {cfg.batch_size}, {cfg.model}):")
    print(f"  train() alone:          {alone_s:6.1f} s")
    print(f"  on the page, reported:  {user.page_train_s:6.1f} s   (train's own clock, in the server)")
    print(f"  on the page, waited:    {user.wait_s:6.1f} s   (click -> done; server CPU {server_cpu:.1f} s)")
    print(f"  ratio waited / alone:   {user.wait_s / alone_s:6.2f}   (target <= 1.3)")
    print("  progress the page showed:", *(f"    {t}" for t in user.lines[-3:]), sep="\n")
    text = log.read_text()
    print("server log:", "no errors" if "Traceback" not in text else text[-3000:])


if __name__ == "__main__":
    main()
