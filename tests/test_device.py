"""Device choice: the core imports no UI library; the lab picks cuda, then mps, then cpu, unless
told. (That nothing touches CUDA at import: tests/test_serve.py, which can fail without a GPU.)"""
import subprocess
import sys

import torch

import lab


def test_core_import_needs_no_ui_libraries():
    code = ("import sys, lab, lab.data, lab.schedules, lab.fields, lab.models, lab.train, "
            "lab.metrics; print(sorted(m for m in ('panel', 'holoviews', 'bokeh', 'ot', "
            "'torchdiffeq') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_pick_device_honours_override_and_prefers_cuda(monkeypatch):
    lab.pick_device.cache_clear()
    try:
        monkeypatch.setenv("LAB_DEVICE", "cpu")
        assert lab.pick_device() == torch.device("cpu")
        lab.pick_device.cache_clear()
        monkeypatch.delenv("LAB_DEVICE")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert lab.pick_device() == torch.device("cuda")
    finally:
        lab.pick_device.cache_clear()


# Training, sampling and the protocols on a GPU: tests/test_cuda.py (marked cuda).
