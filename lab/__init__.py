"""score-lab: diffusion (score) models in two dimensions, held to exact ground truth.

``import lab`` loads only torch and numpy; nothing here touches CUDA until
:func:`pick_device` is called (``panel serve --num-procs`` forks after import).
"""
from __future__ import annotations

import functools
import os

import torch

__version__ = "0.1.0"
__all__ = ["pick_device", "__version__"]


@functools.lru_cache(maxsize=None)
def pick_device() -> torch.device:
    """The device the lab computes on: cuda, else mps, else cpu; chosen once per process.

    The environment variable ``LAB_DEVICE`` (e.g. ``cpu``) overrides the choice.
    """
    forced = os.environ.get("LAB_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
