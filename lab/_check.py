"""Argument checks shared by the lab's public functions.

Each check returns the value in a plain Python type, or raises a ValueError whose message
names the argument and says what is wrong: a ValueError even for a value of the wrong type,
because the command line and the dashboards report ValueErrors to the user. The checks of
scalars are for entry points, not for inner loops; ``all_finite`` is cheap enough for them.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

SEED_MIN, SEED_MAX = -2**63, 2**64 - 1   # the seeds torch.Generator.manual_seed takes


def show(v) -> str:
    """repr(v), cut short (an int of 400 digits would flood the message)."""
    r = repr(v)
    return r if len(r) <= 40 else f"{r[:24]}...{r[-8:]} ({len(r)} characters)"


def _interval(low, high, low_open=False, high_open=False) -> str:
    if high == math.inf:
        return f"> {low:g}" if low_open else f">= {low:g}"
    if low == -math.inf:
        return f"< {high:g}" if high_open else f"<= {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def real(v, name: str, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False, numpy_ok: bool = False) -> float:
    """v as a float: a finite Python int or float (NumPy real scalars too with ``numpy_ok``),
    not a bool, in [low, high] (an end excluded with ``low_open`` / ``high_open``)."""
    types = numbers.Real if numpy_ok else (int, float)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, types):
        raise ValueError(f"{name} must be a number, got {show(v)}")
    try:
        f = float(v)
    except OverflowError:  # an int beyond float64's range
        raise ValueError(f"{name} must be a finite number, got an integer too large for a float: "
                         f"{show(v)}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {show(v)}")
    if f < low or f > high or (low_open and f == low) or (high_open and f == high):
        raise ValueError(f"{name} must be a number {_interval(low, high, low_open, high_open)}, "
                         f"got {show(v)}")
    return f


def integer(v, name: str, low: int | None = None, high: int | None = None, *,
            numpy_ok: bool = False) -> int:
    """v as an int: a Python int (NumPy integers too with ``numpy_ok``), not a bool, in
    [low, high]."""
    types = (int, np.integer) if numpy_ok else int
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, types):
        raise ValueError(f"{name} must be an integer, got {show(v)}")
    if (low is not None and v < low) or (high is not None and v > high):
        if high is None:
            what = f">= {low:,}"
        elif low is None:
            what = f"<= {high:,}"
        else:
            what = f"from {low:,} to {high:,}"
        raise ValueError(f"{name} must be an integer {what}, got {show(v)}")
    return int(v)


def seed(v, name: str = "seed", low: int = SEED_MIN, *, numpy_ok: bool = False) -> int:
    """A random seed: an integer (not a bool) in [low, 2**64), the range that
    torch.Generator.manual_seed takes (low = 0 for NumPy's generators)."""
    types = (int, np.integer) if numpy_ok else int
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, types):
        raise ValueError(f"{name} must be an integer, got {show(v)}")
    if not low <= v <= SEED_MAX:
        lo = "-2**63" if low == SEED_MIN else f"{low}"
        raise ValueError(f"{name} must be an integer in [{lo}, 2**64), got {show(v)}")
    return int(v)


def real_array(v, name: str) -> np.ndarray:
    """v (a tensor of any real dtype, an array, nested lists) as a float64 NumPy array, or a
    ValueError naming it: complex values are refused, not cut to their real part."""
    if isinstance(v, torch.Tensor):
        if v.is_complex():
            raise ValueError(f"{name} must be real numbers, got a {v.dtype} tensor")
        return v.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.asarray(v)
    except (TypeError, ValueError) as e:  # ragged nested lists
        raise ValueError(f"{name} must be numeric: {e}") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real numbers, got complex values ({arr.dtype})")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric: {e}") from None
    except OverflowError:  # a Python int beyond float64's range
        raise ValueError(f"{name} must be finite: some value is an integer too large for a float") from None


def all_finite(v: torch.Tensor) -> bool:
    """Whether v holds no NaN or infinity. One reduction and one sync in the common case,
    about a third of the cost of isfinite().all() on small tensors (the solvers ask it
    thousands of times): NaN and inf reach the sum, and a sum that only overflows is looked
    at again."""
    v = v.detach()
    return math.isfinite(float(v.sum())) or bool(torch.isfinite(v).all())


MAX_COORD = 1e150         # point sets beyond this are refused: squared distances would overflow


def points(x, name: str) -> np.ndarray:
    """``x`` as a float64 array of points (n, d), or a ValueError naming ``name``: empty,
    non-finite, or so large that squared distances overflow."""
    arr = real_array(x, name)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty array of points (n, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if np.abs(arr).max(initial=0.0) > MAX_COORD:
        raise ValueError(f"{name} holds points beyond {MAX_COORD:g} from the origin, where "
                         "squared distances overflow")
    return arr
