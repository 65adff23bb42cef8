"""The lab's files: model checkpoints, resumable training states, the gap protocol's counts.

Each is one dict of plain types and tensors holding a format marker and a version, written
atomically (a write that fails or is killed leaves the previous file whole) and read with
``torch.load(weights_only=True)``: nothing in a file is executed, so a checkpoint from
anywhere can be opened. ``lab.train`` (``save``, ``load``, ``train(state=...)``),
``lab.pretrained`` and ``lab.gap`` (``gap_binned(state=...)``) all go through here.
"""
from __future__ import annotations

import os
import tempfile

import torch

__all__ = ["write", "read", "VERSION"]

VERSION = 1     # the newest version of every format this score-lab writes and reads


def write(obj: dict, path, what: str) -> str:
    """torch.save ``obj`` to ``path`` through a temporary file in the same folder, renamed
    over it when complete. ``what`` names the file in errors. Returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a checkpoint is shared data
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(f"could not save the {what} to {path}: {e.strerror or e}") from None
    return path


def read(path, fmt: str, what: str, hint: str = "") -> dict:
    """The dict in ``path``, read with ``weights_only=True``, when it carries the marker
    ``fmt`` and a version this score-lab reads; else a ValueError naming the file and
    ``what`` it should have been (``hint``: what to do about it, e.g. for older files)."""
    path = os.fspath(path)
    more = f"; {hint}" if hint else ""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean: not our file
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise ValueError(f"{path} is not a score-lab {what} ({type(e).__name__}: {first}){more}") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ValueError(f"{path} is not a score-lab {what} (no '{fmt}' marker){more}")
    version = blob.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path} has {what} version {version!r}; this score-lab reads versions up to {VERSION}")
    return blob
