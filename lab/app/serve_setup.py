"""The setup script of ``python -m lab serve`` (``panel serve --setup``): run once in each
server process before it serves a page; see ``lab.app.warmup.warm_up``. A script, not a
module to import."""
from lab.app.warmup import warm_up

took = warm_up()
print("score-lab: warmed up (" + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()) + ")", flush=True)
