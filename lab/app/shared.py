"""What every session of a served process may share: the shipped models, the built-in data
sets' exact fields, and what pages compute from them.

A class opens the same page at once: twenty sessions that each loaded the same checkpoint,
built the same exact field and drew the same first picture did twenty times the work of one
(``benchmarks/load.py``). These objects are read-only once made (sampling, Jacobians and
drawing never change a field; training makes a new one), so one copy per process serves every
session. A session's own trained model or uploaded points are never shared.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Hashable

from lab.data import dataset_mixture
from lab.fields import MixtureField

__all__ = ["pretrained", "exact_field", "memo", "is_shared", "warm_up", "MEMO_ENTRIES"]

MEMO_ENTRIES = 24      # results kept by ``memo`` (up to 8 MB each: samples, maps, runs)

_lock = threading.Lock()
_fields: dict[Hashable, Any] = {}                      # shared fields, kept for the process
_memo: collections.OrderedDict = collections.OrderedDict()
_shared_ids: set[int] = set()                           # id() of every shared field


def _keep(key: Hashable, make: Callable[[], Any]):
    with _lock:
        if key in _fields:
            return _fields[key]
    made = make()            # outside the lock: a checkpoint load must not block the others
    with _lock:
        field = _fields.setdefault(key, made)
        if field is not None:
            _shared_ids.add(id(field))
        return field


def pretrained(name: str):
    """The shipped model ``name`` (``lab.pretrained.load_pretrained``, on the CPU), loaded once
    a process; None when the lab has none."""
    from lab.pretrained import load_pretrained

    return _keep(("pretrained", name), lambda: load_pretrained(name, device="cpu"))


def exact_field(dataset: str, schedule) -> MixtureField:
    """The exact field of a built-in data set under ``schedule`` (a Schedule), once a process
    per data set and schedule configuration."""
    key = ("exact", dataset, schedule.name, tuple(sorted(schedule.config().items())))   # vp, subvp: one config
    return _keep(key, lambda: MixtureField(dataset_mixture(dataset), schedule))


def is_shared(*fields) -> bool:
    """True when every field is one of this module's shared ones (so results computed from
    them alone may be shared too)."""
    with _lock:
        return all(id(f) in _shared_ids for f in fields)


def memo(key: Hashable, compute: Callable[[], Any], fields=()) -> Any:
    """``compute()``, remembered under ``key`` for the process when every one of ``fields``
    is shared (the key should name them, e.g. by ``id``, and every setting the result depends
    on); computed afresh otherwise. Keeps the newest MEMO_ENTRIES results."""
    if not is_shared(*fields):
        return compute()
    with _lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    result = compute()
    with _lock:
        _memo[key] = result
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return result


def warm_up() -> dict[str, float]:
    """Do before the first page what would otherwise stall the server's event loop while a
    class waits: import every page's modules, load the default model, and train two steps.

    A served process runs Python one thread at a time: a first import holds every session's
    page still while it runs. The first training in a process imported PyTorch's compiler
    stack (the optimiser's lazy import of ``torch._dynamo``), 2.4 s during which 20 users'
    updates waited in ``benchmarks/load.py`` (profiled with py-spy). ``python -m lab serve``
    runs this in each server process before it serves (``panel serve --setup``). Returns
    the seconds each part took.
    """
    import importlib
    import time

    import torch

    from lab.train import TrainConfig, train

    took, start = {}, time.perf_counter()
    for name in ("solver_view", "train_view", "curl_view", "gap_view", "hallucination_view",
                 "guidance_view", "race_view"):
        importlib.import_module(f"lab.app.{name}")
    took["imports"], start = time.perf_counter() - start, time.perf_counter()
    from lab.app.session import Session

    pretrained(Session.param.dataset.default)      # the model every page starts with
    took["model"], start = time.perf_counter() - start, time.perf_counter()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    train(x, TrainConfig(steps=2, batch_size=16, hidden=8, depth=1, log_every=1))
    took["training"] = time.perf_counter() - start
    return took
