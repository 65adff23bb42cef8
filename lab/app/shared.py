"""What every session of a served process may share: the shipped models, the built-in data
sets' exact fields, and what pages compute from them.

A class opens the same page at once: twenty sessions that each loaded the same checkpoint,
built the same exact field and drew the same first picture did twenty times the work of one
(``benchmarks/load.py``). These objects are read-only once made (sampling, Jacobians and
drawing never change a field; training makes a new one), so one copy per process serves every
session. A session's own trained model or uploaded points are never shared.

What ``memo`` computes from shared fields alone is kept in memory for the process and, when a
result cache is in use (``use_cache``; ``python -m lab serve`` opens one, ``LAB_CACHE_DIR``
names its folder), on disk for every process of the server (``lab.app.cache``): under the
result's name and settings and each field's ``lab.fields.fingerprint``, never its ``id``.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Hashable

from lab.app import cluster
from lab.data import dataset_mixture
from lab.fields import MixtureField, fingerprint
from lab.interpolants import InterpolantField, get_interpolant
from lab.pretrained import load_pretrained
from lab.train import load

__all__ = ["pretrained", "checkpoint", "exact_field", "flow_field", "memo", "is_shared", "MEMO_ENTRIES",
           "use_cache", "result_cache", "forget"]

MEMO_ENTRIES = 24      # results kept by ``memo`` (up to 8 MB each: samples, maps, runs)

_lock = threading.Lock()
_fields: dict[Hashable, Any] = {}                      # shared fields, kept for the process
_memo: collections.OrderedDict = collections.OrderedDict()
_prints: dict[int, str] = {}                            # id() of every shared field -> its fingerprint
_cache = None                                           # the on-disk result cache (lab.app.cache), if any
_inflight: dict = {}                                    # key -> Event: a result some thread is computing


def _keep(key: Hashable, make: Callable[[], Any]):
    with _lock:
        if key in _fields:
            return _fields[key]
    made = make()            # outside the lock: a checkpoint load must not block the others
    with _lock:
        field = _fields.setdefault(key, made)
    if field is not None and id(field) not in _prints:
        print_ = fingerprint(field)      # outside the lock: it hashes the weights
        with _lock:
            _prints[id(field)] = print_
    return field


def pretrained(name: str):
    """The shipped model ``name`` (``lab.pretrained.load_pretrained``, on the CPU), loaded once
    a process; None when the lab has none."""
    return _keep(("pretrained", name), lambda: load_pretrained(name, device="cpu"))


def checkpoint(path):
    """The model saved at ``path`` (``lab.train.load``, on the CPU), loaded once a process:
    for shipped checkpoints that are not ``pretrained`` names (the gap page's models)."""
    return _keep(("checkpoint", str(path)), lambda: load(path, device="cpu"))


def exact_field(dataset: str, schedule) -> MixtureField:
    """The exact field of a built-in data set under ``schedule`` (a Schedule), once a process
    per data set and schedule configuration."""
    key = ("exact", dataset, schedule.name, tuple(sorted(schedule.config().items())))   # vp, subvp: one config
    return _keep(key, lambda: MixtureField(dataset_mixture(dataset), schedule))


def flow_field(source: str, target: str, interpolant: str = "linear", gamma: str | None = None):
    """The exact flow (``lab.interpolants.InterpolantField``) between two built-in ends ("gaussian"
    or data sets), once a process per ends and interpolant."""
    return _keep(("flow", source, target, interpolant, gamma),
                 lambda: InterpolantField(source, target, get_interpolant(interpolant, gamma)))


def is_shared(*fields) -> bool:
    """True when every field is one of this module's shared ones (so results computed from
    them alone may be shared too)."""
    with _lock:
        return all(id(f) in _prints for f in fields)


def use_cache(cache) -> None:
    """Keep ``memo``'s results on disk too: a ``lab.app.cache.ResultCache``, a folder for one,
    or None (memory only)."""
    global _cache
    if cache is not None and not hasattr(cache, "get"):
        from lab.app.cache import ResultCache
        cache = ResultCache(cache)
    _cache = cache


def result_cache():
    """The on-disk result cache in use, or None."""
    return _cache


def forget() -> None:
    """Empty the process's memo (as a new server process starts; tests)."""
    with _lock:
        _memo.clear()


def memo(key: tuple, compute: Callable[[], Any], fields=()) -> Any:
    """``compute()``, remembered when every one of ``fields`` is shared, under ``key`` (the
    result's name and every setting it depends on: the seed too) and the fields' fingerprints:
    for the process (the newest MEMO_ENTRIES results) and in the result cache, if one is in use
    (values it cannot store stay in memory). Computed afresh otherwise. While one thread computes
    a result, another asking for it waits for that one (twenty students opening a page at once
    cost one computation, the warm-up's included). What is in neither the memo nor the cache is
    computed on the Dask cluster when one is in use (``lab.app.cluster``), else here."""
    if not is_shared(*fields):
        return cluster.run(compute)
    while True:
        with _lock:
            full = (*key, *(_prints[id(f)] for f in fields))
            if full in _memo:
                _memo.move_to_end(full)
                return _memo[full]
            running = _inflight.get(full)
            if running is None:
                running = _inflight[full] = threading.Event()
                break
        running.wait()           # then read it from the memo (or compute it, if that one failed)
    try:
        return _memo_compute(full, compute)
    finally:
        with _lock:
            _inflight.pop(full, None)
        running.set()


def _memo_compute(full: tuple, compute: Callable[[], Any]) -> Any:
    cache, here = _cache, compute
    compute = lambda: cluster.run(here)      # noqa: E731 (on the cluster, if one is in use)
    if cache is None:
        result = compute()
    else:
        from lab.app.cache import key_of
        result = cache.get_or_compute(key_of(*full), compute)     # once for every process
    with _lock:
        _memo[full] = result
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return result
