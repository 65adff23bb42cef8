"""The test command runs the lessons with nbval in the quick setting: ``LAB_QUICK=1``
shrinks their training runs and sample sizes (each lesson reads it in its first cell).
``LAB_QUICK=0 pytest notebooks`` runs them at their classroom setting instead. The
kernels nbval starts inherit this process's environment. The lessons are marked ``slow``:
``pytest -m "not slow"`` (the quick tier) leaves them out."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("LAB_QUICK", "1")
os.environ.setdefault("LAB_DEVICE", "cpu")        # as the tests: the CPU even where there is a GPU
os.environ.setdefault("OMP_NUM_THREADS", "1")     # a shared 2-core machine: one torch thread each


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(pytest.mark.slow)
