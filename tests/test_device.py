"""Device choice: nothing touches CUDA at import; training runs where it is told."""
import subprocess
import sys

import pytest
import torch

import lab
from lab.data import make_dataset
from lab.train import TrainConfig, load, save, train


def test_import_does_not_touch_cuda():
    code = ("import torch, lab, lab.data, lab.schedules, lab.fields, lab.models, lab.train, "
            "lab.metrics, lab.cli; print(torch.cuda.is_initialized())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_training_on_cuda_keeps_everything_there(tmp_path):
    x = make_dataset("ring", n=5000, seed=0)
    field, history = train(x, TrainConfig(steps=200, device="cuda"))
    assert history["summary"]["device"].startswith("cuda")
    assert field.device.type == "cuda"
    q = torch.randn(16, 2, device="cuda")
    assert field.eps(q, 0.5).device.type == "cuda"
    back = load(save(field, tmp_path / "m.pt"), device="cuda")
    torch.testing.assert_close(back.eps(q, 0.5), field.eps(q, 0.5))
    cpu = load(tmp_path / "m.pt", device="cpu")
    torch.testing.assert_close(cpu.eps(q.cpu(), 0.5), field.eps(q, 0.5).cpu(), rtol=1e-4, atol=1e-5)
