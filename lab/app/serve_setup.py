"""The setup script of ``python -m lab serve`` (``panel serve --setup``): run before the server
serves a page: the shared result cache (``lab.app.cache``; ``LAB_CACHE=off`` turns it off,
``LAB_CACHE_DIR`` names its folder), then ``lab.app.warmup.warm_up`` with every page's
defaults computed ahead (``LAB_PREFILL=off``: not), all set by ``lab serve``'s options. A
script, not a module to import."""
import os

from lab.app import cluster, shared
from lab.app.cache import ResultCache
from lab.app.warmup import warm_up

if os.environ.get(cluster.ENV):
    cluster.connect(os.environ[cluster.ENV])      # an error naming the address if it cannot be reached
    print(f"score-lab: the pages compute on the Dask cluster at {os.environ[cluster.ENV]}", flush=True)
if os.environ.get("LAB_CACHE", "on") != "off":
    try:
        cache = ResultCache()      # LAB_CACHE_DIR, else ~/.cache/score-lab/results
    except OSError as e:           # a read-only home, a full disk: serve without it
        print(f"score-lab: no shared result cache ({e}); each process keeps its results in memory", flush=True)
    else:
        shared.use_cache(cache)
        print(f"score-lab: results shared through {cache.directory} ({len(cache)} kept, "
              f"{cache.volume / 2**20:.0f} MB)", flush=True)
took = warm_up(prefill=os.environ.get("LAB_PREFILL", "on") != "off")
print("score-lab: warmed up (" + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()) + ")", flush=True)
