"""Files a user hands the served lab, and the one it hands back: uploaded points (CSV),
uploaded checkpoints, and the session's model as a checkpoint to download. Each refusal is
a ValueError (or OSError, when the server cannot store the file) whose text names the problem
without the server's temporary path."""
from __future__ import annotations

import contextlib
import os
import tempfile

from lab.data import MAX_CSV_BYTES, load_points
from lab.fields import NetworkField
from lab.train import load, save

__all__ = ["points_from_upload", "field_from_upload", "checkpoint_bytes"]


@contextlib.contextmanager
def _stored(data: bytes, suffix: str, what: str, called: str = "the file"):
    """``data`` in a temporary file (its path), deleted afterwards; the path never shows in
    an error (it becomes ``called``)."""
    path = None
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False) as fh:
            path = fh.name
            fh.write(data)
        yield path
    except ValueError as e:
        text = str(e).replace(f"{path}: ", "").replace(path, called) if path else str(e)
        raise ValueError(text) from None
    except OSError as e:                    # a full disk or an unwritable temp folder
        raise OSError(f"could not store the uploaded {what} on the server: {e.strerror or e}") from None
    finally:
        if path is not None and os.path.exists(path):
            os.unlink(path)


def points_from_upload(data: bytes):
    """The points (n, 2) of an uploaded CSV (``lab.data.load_points``); over MAX_CSV_BYTES it
    is refused before anything is written or parsed."""
    if len(data) > MAX_CSV_BYTES:
        raise ValueError(f"it holds {len(data) / 2**20:.0f} MiB, more than the {MAX_CSV_BYTES >> 20} MiB "
                         "a CSV of points may hold")
    with _stored(data, ".csv", "file") as path:
        return load_points(path)


def field_from_upload(data: bytes) -> NetworkField:
    """The model of an uploaded checkpoint (``lab.train.load``, weights only: nothing in the
    file runs)."""
    with _stored(data, ".pt", "checkpoint", "the uploaded file") as path:
        return load(path, device="cpu")


def checkpoint_bytes(field, meta: dict | None = None) -> bytes:
    """``field`` as the bytes of a checkpoint file (``lab.train.save``)."""
    if not isinstance(field, NetworkField):
        raise ValueError("there is no trained model to download yet (the exact score needs no file)")
    with tempfile.TemporaryDirectory() as folder:
        path = save(field, os.path.join(folder, "model.pt"), meta=meta)
        with open(path, "rb") as fh:
            return fh.read()
