"""Warming a served process up before its first page (``python -m lab serve`` runs
``warm_up`` in each process through ``lab/app/serve_setup.py``)."""
from __future__ import annotations

import importlib
import time

import torch

from lab.app import shared
from lab.app.session import Session
from lab.train import TrainConfig, train

__all__ = ["warm_up", "fill_defaults", "PAGE_MODULES", "PAGES"]

PAGE_MODULES = ("solver_view", "train_view", "curl_view", "gap_view", "hallucination_view", "guidance_view",
                "race_view", "flows_view")
PAGES = (("solver_view", "SolverView"), ("curl_view", "CurlView"), ("hallucination_view", "HallucinationView"),
         ("gap_view", "GapView"), ("guidance_view", "GuidanceView"), ("flows_view", "FlowsView"))


def fill_defaults() -> dict[str, float]:
    """Open every page once, as a first student would, off any server: what each computes for
    its defaults from the shipped models goes into ``shared.memo`` (and the result cache, when
    one is in use), so the first real visit finds it. On a fresh server and an empty cache this
    is the cold start's whole cost (the hallucination page's 20,000 x 1,000-step runs, 40 s here;
    the gap page's, 9 s); with the cache kept from an earlier start, a second or two. Returns
    the seconds each page took."""
    took = {}
    for module, name in PAGES:
        start = time.perf_counter()
        view = getattr(importlib.import_module(f"lab.app.{module}"), name)(Session())
        view.session.close()
        took[name] = time.perf_counter() - start
    return took


def warm_up(prefill: bool = False) -> dict[str, float]:
    """Do before the first page what would otherwise stall the server's event loop while a
    class waits: import every page's modules, load the default model, and train two steps.

    A served process runs Python one thread at a time: a first import holds every session's
    page still while it runs. The first training in a process imported PyTorch's compiler
    stack (the optimiser's lazy import of ``torch._dynamo``), 2.4 s during which 20 users'
    updates waited in ``benchmarks/load.py`` (profiled with py-spy). ``python -m lab serve``
    runs this in each server process before it serves (``panel serve --setup``), with
    ``prefill``: ``fill_defaults``, every page's first result computed ahead. Returns the
    seconds each part took.
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
    if prefill:
        start = time.perf_counter()
        fill_defaults()
        took["pages' defaults"] = time.perf_counter() - start
    return took
