"""Results shared across sessions *and* processes: a bounded on-disk cache whose values cannot
run code.

A class repeats itself: twenty students step through the same lesson on the same shipped
models, so most of what a page computes, someone computed already, often in another process of
``panel serve --num-procs`` (``lab.app.shared.memo`` keeps a process's own in memory). This
module keeps those results on disk, for every process of a server (or several servers on one
file system), with a size bound.

**The store** is ``diskcache`` (SQLite and files): safe for many processes and threads at once
(SQLite's locking; no server to run or lose), bounded (``size_limit``, least-recently-used
eviction), and it stores ``bytes`` as they are. Redis or memcached would need a server beside
the lab; a plain folder of files would need its own locking and eviction.

**Values cannot run code.** diskcache pickles what is not bytes, and unpickling runs code, so
nothing reaches it but bytes made here, and its reader refuses any pickled entry (``_BytesOnly``:
one written by something else is dropped, never loaded): an ``.npz`` archive (``numpy.savez``, read back with
``allow_pickle=False``) of the value's arrays and tensors, with its structure (dicts, lists,
tuples, numbers, strings, None, SimpleNamespaces and the dataclasses named in ``DATACLASSES``) as
JSON inside it.
A value of any other type is not stored (``encode`` raises ``TypeError``; the memo keeps it in
memory only). An entry that cannot be read back, or was written by something else (another
format or version), is ignored and removed: the result is computed anew.

**Keys** are strings: a digest of the key's parts (the page's name for the result, its settings
and seed, and each field's ``lab.fields.fingerprint``: the weights, the schedule and its
settings, the data scaling, the class label), so results never cross models, schedules or labels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

__all__ = ["ResultCache", "encode", "decode", "key_of", "DATACLASSES", "FORMAT", "VERSION", "SIZE_LIMIT",
           "default_directory"]

FORMAT = "score-lab-result"
VERSION = 1
SIZE_LIMIT = 512 * 2**20        # bytes on disk before the least recently used entries go
LOCK_S = 300.0                  # how long one process's computation holds the others off (a dead holder's too)
log = logging.getLogger("lab.app")


def _dataclasses() -> dict:
    from lab.race import RaceResult
    from lab.solvers import Trajectory
    return {"Trajectory": Trajectory, "RaceResult": RaceResult}


DATACLASSES = ("Trajectory", "RaceResult")   # the dataclasses a stored value may hold (lab.solvers, lab.race)


def default_directory() -> Path:
    """``$LAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/score-lab/results`` (``~/.cache/...``)."""
    env = os.environ.get("LAB_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "score-lab" / "results"


# --- the codec: arrays in an .npz, the structure as JSON beside them ---------------------------------
def encode(value) -> bytes:
    """``value`` as bytes that ``decode`` reads back without running code. Raises TypeError for
    a type it does not store."""
    arrays: list[np.ndarray] = []

    def skeleton(v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            f = float(v)
            return f if np.isfinite(f) else {"__float__": repr(f)}      # JSON has no nan or inf
        if isinstance(v, torch.Tensor):
            arrays.append(v.detach().cpu().numpy())
            return {"__tensor__": len(arrays) - 1, "dtype": str(v.dtype).removeprefix("torch.")}
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise TypeError("an object array is not stored")
            arrays.append(v)
            return {"__array__": len(arrays) - 1}
        if isinstance(v, (list, tuple)):
            return {"__tuple__" if isinstance(v, tuple) else "__list__": [skeleton(x) for x in v]}
        if isinstance(v, dict):
            items = list(v.items())
            return {"__dict__": [[skeleton(k), skeleton(x)] for k, x in items]}
        if isinstance(v, SimpleNamespace):
            return {"__namespace__": {k: skeleton(x) for k, x in vars(v).items()}}
        if dataclasses.is_dataclass(v) and type(v).__name__ in DATACLASSES:
            return {"__dataclass__": type(v).__name__,
                    "fields": {f.name: skeleton(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        raise TypeError(f"a {type(v).__name__} is not stored in the result cache")

    meta = {"format": FORMAT, "version": VERSION, "value": skeleton(value)}
    buf = io.BytesIO()
    np.savez(buf, __skeleton__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             **{f"a{i}": a for i, a in enumerate(arrays)})
    return buf.getvalue()


def decode(data: bytes):
    """The value ``encode`` wrote. Raises ValueError for bytes it did not write (another
    format or version, a damaged archive)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["__skeleton__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__skeleton__"}
    except Exception as e:      # a damaged or foreign archive fails in many ways; all mean "not ours"
        raise ValueError(f"not a score-lab result: {type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError("not a score-lab result of this version")
    classes = _dataclasses()

    def build(v):
        if not isinstance(v, dict):
            return v
        if "__tensor__" in v:
            return torch.from_numpy(np.array(arrays[f"a{v['__tensor__']}"])).to(getattr(torch, v["dtype"]))
        if "__array__" in v:
            return arrays[f"a{v['__array__']}"]
        if "__float__" in v:
            return float(v["__float__"])
        if "__list__" in v:
            return [build(x) for x in v["__list__"]]
        if "__tuple__" in v:
            return tuple(build(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {build(k): build(x) for k, x in v["__dict__"]}
        if "__namespace__" in v:
            return SimpleNamespace(**{k: build(x) for k, x in v["__namespace__"].items()})
        if "__dataclass__" in v:
            cls = classes.get(v["__dataclass__"])
            if cls is None:
                raise ValueError(f"a stored {v['__dataclass__']!r} is not one this lab reads")
            return cls(**{k: build(x) for k, x in v["fields"].items()})
        raise ValueError("not a score-lab result: an unknown node")
    try:
        return build(meta["value"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a score-lab result: {type(e).__name__}: {e}") from None


def key_of(*parts) -> str:
    """A string key of ``parts`` (numbers, strings, tuples of them): its SHA-1 digest."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _bytes_only_disk():
    """A diskcache ``Disk`` that stores bytes alone and reads no pickle: an entry in pickle mode
    (written by another program into the same folder) reads as absent, since unpickling it
    could run its code."""
    import diskcache
    from diskcache.core import MODE_PICKLE

    class _BytesOnly(diskcache.Disk):
        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if not read and not isinstance(value, bytes):
                raise TypeError(f"the result cache stores bytes only, got a {type(value).__name__}")
            return super().store(value, read, key=key)

        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                return None
            return super().fetch(mode, filename, value, read)
    return _BytesOnly


class ResultCache:
    """Bytes-only diskcache at ``directory`` (default ``default_directory()``), at most
    ``size_limit`` bytes (least recently used go first). ``get`` returns ``(True, value)`` or
    ``(False, None)``; a broken entry is dropped and reads as absent. Every operation's failure
    (a full disk, a locked or damaged database) is logged and reads as a miss: the page computes
    instead of failing."""

    def __init__(self, directory=None, size_limit: int = SIZE_LIMIT):
        self.directory = Path(directory) if directory is not None else default_directory()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot make the result cache's folder {self.directory}: {e.strerror or e}") from None
        self.size_limit = int(size_limit)
        self._lock = threading.Lock()
        self._opened = None            # (pid, diskcache.Cache): a forked server process opens its own
        try:
            self._open()
        except Exception as e:         # an unwritable folder, a damaged database
            raise OSError(f"cannot open the result cache in {self.directory}: {type(e).__name__}: {e}") from None
        self.hits = self.misses = self.stored = self.refused = 0

    def _open(self):
        import diskcache

        cache = diskcache.Cache(str(self.directory), size_limit=self.size_limit,
                                eviction_policy="least-recently-used", disk=_bytes_only_disk())
        self._opened = (os.getpid(), cache)
        return cache

    @property
    def _cache(self):
        """This process's connection (SQLite's may not cross a fork: ``panel serve --num-procs``
        forks after its setup script has run)."""
        pid, cache = self._opened
        return cache if pid == os.getpid() else self._open()

    def get(self, key: str, count: bool = True):
        try:
            data = self._cache.get(key, default=None, retry=True)
        except Exception as e:     # the cache is a help, never a failure
            log.warning("score-lab: result cache read failed (%s); computing", e)
            data = None
        if data is None:
            if count:
                self._count("misses")
            return False, None
        try:
            if not isinstance(data, bytes):
                raise ValueError("not bytes")
            value = decode(data)
        except ValueError as e:
            log.warning("score-lab: ignored a result cache entry that could not be read (%s)", e)
            self.delete(key)
            self._count("misses")
            return False, None
        self._count("hits")
        return True, value

    def set(self, key: str, value) -> bool:
        """Store ``value`` (False: a type the cache does not store, or the store failed)."""
        try:
            data = encode(value)
        except TypeError:
            self._count("refused")
            return False
        try:
            self._cache.set(key, data, retry=True)
        except Exception as e:
            log.warning("score-lab: result cache write failed (%s)", e)
            return False
        self._count("stored")
        return True

    def get_or_compute(self, key: str, compute, wait: float = LOCK_S):
        """The value under ``key``, else ``compute()``'s, stored; while one process computes it,
        another asking waits for it: ``panel serve --num-procs`` runs the warm-up in every
        process at once, and each would otherwise compute every page's defaults. The lock is an
        entry in the cache holding its owner's token, expiring after ``wait`` seconds (a holder
        that died blocks no one longer); only its owner removes it. Past ``wait`` a waiter
        computes itself."""
        hit, value = self.get(key)
        if hit:
            return value
        lock, token = "lock:" + key, f"{os.getpid()}-{uuid.uuid4().hex}".encode()
        deadline, held = time.monotonic() + wait, False
        try:
            while not (held := self._cache.add(lock, token, expire=wait, retry=True)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
                hit, value = self.get(key, count=False)
                if hit:
                    return value
        except Exception as e:       # no lock to be had: compute anyway
            log.warning("score-lab: result cache lock failed (%s)", e)
        try:
            hit, value = self.get(key, count=False)
            if hit:
                return value
            value = compute()
            self.set(key, value)
            return value
        finally:
            if held:
                try:
                    with self._cache.transact(retry=True):
                        if self._cache.get(lock, retry=True) == token:
                            self._cache.delete(lock, retry=True)
                except Exception:
                    pass                 # it expires

    def delete(self, key: str) -> None:
        try:
            self._cache.delete(key, retry=True)
        except Exception:
            pass

    def raw_set(self, key: str, data: bytes) -> None:
        """Write the bytes ``data`` under ``key`` as they are (tests: a damaged entry)."""
        self._cache.set(key, data, retry=True)

    @property
    def volume(self) -> int:
        """Bytes on disk."""
        return int(self._cache.volume())

    def clear(self) -> None:
        self._cache.clear(retry=True)

    def close(self) -> None:
        self._cache.close()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def __len__(self) -> int:
        return len(self._cache)
