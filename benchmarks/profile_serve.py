"""Profile the served lab (issue 16): ``python -m lab serve`` under yappi, every thread, CPU
clock; on SIGTERM or Ctrl-C it prints where the CPU went and exits.

    pip install yappi
    python benchmarks/profile_serve.py OUT.txt [--port 5006 ...]   # then load it, e.g.
    python benchmarks/load.py --profile OUT.txt                     # (starts this itself)

OUT.txt gets the functions by own CPU time and by CPU time including callees, and the CPU
time by package (torch, bokeh, panel, tornado, lab, ...) with each thread's total.
"""
from __future__ import annotations

import collections
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGES = ("torch", "bokeh", "panel", "param", "tornado", "holoviews", "numpy", "markdown_it",
            "asyncio", "json", "threading", "concurrent", "lab")


def package(path: str) -> str:
    """The package a function's file belongs to ("lab" for this checkout's code)."""
    parts = Path(path).parts
    if path.startswith(str(ROOT)) and "site-packages" not in parts:
        return "lab"
    for name in PACKAGES:
        if name in parts:
            return name
    return "other (python, builtins)"


def report(out: Path) -> None:
    import yappi

    yappi.stop()
    stats = yappi.get_func_stats()
    rows = list(stats)
    total = sum(s.tsub for s in rows)
    by_package = collections.Counter()
    for s in rows:
        by_package[package(s.module)] += s.tsub
    lines = [f"CPU seconds in Python-visible functions, all threads: {total:.1f}", "",
             "by package (own time):"]
    lines += [f"  {name:28s} {sec:8.1f} s  {100 * sec / total:5.1f} %" for name, sec in by_package.most_common()]
    lines += ["", "threads (CPU s):"]
    lines += [f"  {t.name:40s} {t.ttot:8.1f}" for t in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot)[:15]]
    for key, title in (("tsub", "own time"), ("ttot", "time with callees")):
        lines += ["", f"functions by {title}:"]
        for s in sorted(rows, key=lambda s: -getattr(s, key))[:45]:
            lines.append(f"  {getattr(s, key):8.2f} s {s.ncall:9d} calls  {s.name}  "
                         f"({Path(s.module).name}:{s.lineno})")
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    import yappi

    from lab.cli import serve_command

    out = Path(sys.argv[1])
    argv = sys.argv[2:]
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 5006
    rest = [a for i, a in enumerate(argv) if a != "--port" and (i == 0 or argv[i - 1] != "--port")]
    cmd = serve_command(port=port, panel_args=rest)

    def stop(*_):
        report(out)
        os._exit(0)
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    from panel.command import main as panel_main
    sys.argv = ["panel", *cmd[cmd.index("serve"):]]
    # Bokeh's server sets its own handlers when it starts: ours go in once it serves
    import tornado.ioloop
    tornado.ioloop.IOLoop.current().call_later(1.0, lambda: (signal.signal(signal.SIGTERM, stop),
                                                             signal.signal(signal.SIGINT, stop)))
    try:
        panel_main()
    finally:
        stop()


if __name__ == "__main__":
    main()
