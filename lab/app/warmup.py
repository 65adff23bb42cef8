"""Warming a served process up before its first page (``python -m lab serve`` runs
``warm_up`` in each process through ``lab/app/serve_setup.py``)."""
from __future__ import annotations

import importlib
import time

import torch

from lab.app import shared
from lab.app.session import Session
from lab.train import TrainConfig, train

__all__ = ["warm_up", "PAGE_MODULES"]

PAGE_MODULES = ("solver_view", "train_view", "curl_view", "gap_view", "hallucination_view", "guidance_view",
                "race_view", "flows_view")


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
    took, start = {}, time.perf_counter()
    for name in PAGE_MODULES:
        importlib.import_module(f"lab.app.{name}")
    took["imports"], start = time.perf_counter() - start, time.perf_counter()
    shared.pretrained(Session.param.dataset.default)      # the model every page starts with
    took["model"], start = time.perf_counter() - start, time.perf_counter()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    train(x, TrainConfig(steps=2, batch_size=16, hidden=8, depth=1, log_every=1))
    took["training"] = time.perf_counter() - start
    return took
