"""Training against the exact score; callbacks, cancel, NaN; checkpoints."""
import threading

import pytest
import torch

from lab.data import dataset_mixture, make_dataset
from lab.fields import MixtureField, NetworkField
from lab.metrics import score_error
from lab.models import ScoreMLP
from lab.train import TrainConfig, load, save, train

# Relative L2(p_t) error of eps (= of the score) to the exact mixture score. An untrained
# network scores about 0.8-1.0 at every t. 0.25 means the learned score points the right
# way with a quarter of the exact score's size as error: samples from such a field already
# land on the ring's modes (see benchmarks/train_speed.py for how fast that is reached).
# Measured for the run below (ring, TrainConfig defaults: 2000 steps, batch 1024, width 64,
# about 8 s on 1 CPU thread): 0.12, 0.09, 0.03, 0.01, 0.01 at t = 0.05, 0.1, 0.25, 0.5, 0.9.
QUALITY_BOUND = 0.25
TIMES = (0.05, 0.1, 0.25, 0.5, 0.9)


@pytest.mark.slow
def test_training_brings_the_score_close_to_the_exact_one(ring_model):
    field, history = ring_model
    exact = MixtureField(dataset_mixture("ring"), "vp")
    errors = score_error(field, exact, TIMES, n=4000, seed=1)
    assert all(e < QUALITY_BOUND for e in errors.values()), errors
    torch.manual_seed(0)
    untrained = score_error(NetworkField(ScoreMLP(), "vp"), exact, TIMES, n=4000, seed=1)
    assert all(e > 2 * QUALITY_BOUND for e in untrained.values()), untrained
    assert history["summary"]["steps_done"] == 2000 and history["summary"]["stopped"] is None
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.slow
def test_potential_network_learns_too():
    x = make_dataset("ring", n=20_000, seed=0)
    field, _ = train(x, TrainConfig(model="potential_mlp", steps=600, batch_size=512, device="cpu"))
    errors = score_error(field, MixtureField(dataset_mixture("ring"), "vp"), (0.1, 0.25, 0.5, 0.9),
                         n=2000, seed=1)
    assert all(e < 0.5 for e in errors.values()), errors  # measured: 0.24, 0.06, 0.03, 0.02


def test_callback_reports_progress_and_can_stop():
    x = make_dataset("ring", n=1000, seed=0)
    seen = []

    def cb(p):
        seen.append(p)
        return p.step >= 20

    field, history = train(x, TrainConfig(steps=500, batch_size=64, log_every=10, device="cpu"),
                           callback=cb)
    assert [p.step for p in seen] == [10, 20]
    assert all(p.samples_per_s > 0 and p.loss > 0 and p.steps == 500 for p in seen)
    assert history["summary"]["steps_done"] == 20
    assert "callback" in history["summary"]["stopped"]
    assert history["step"] == [10, 20]


def test_cancel_event_stops_training():
    x = make_dataset("ring", n=1000, seed=0)
    cancel = threading.Event()
    cancel.set()
    _, history = train(x, TrainConfig(steps=500, batch_size=64, device="cpu"), cancel=cancel)
    assert history["summary"]["steps_done"] == 1 and "cancelled" in history["summary"]["stopped"]


def test_non_finite_loss_stops_and_keeps_the_last_good_model(monkeypatch):
    import lab.train as lt

    calls = {"n": 0}
    real_build = lt.build_model

    def poisoned(kind, **kw):
        model = real_build(kind, **kw)
        forward = model.forward

        def fwd(x, t):
            calls["n"] += 1
            out = forward(x, t)
            return out * float("nan") if calls["n"] > 25 else out
        model.forward = fwd
        return model

    monkeypatch.setattr(lt, "build_model", poisoned)
    x = make_dataset("ring", n=1000, seed=0)
    field, history = train(x, TrainConfig(steps=100, batch_size=64, log_every=10, device="cpu"))
    summary = history["summary"]
    assert summary["steps_done"] == 20 and "non-finite" in summary["stopped"]
    assert all(torch.isfinite(p).all() for p in field.model.parameters())


def test_same_seed_same_model():
    x = make_dataset("ring", n=1000, seed=0)
    cfg = TrainConfig(steps=30, batch_size=64, device="cpu")
    a, _ = train(x, cfg)
    b, _ = train(x, cfg)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kw, match", [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"batch_size": -1}, "batch_size"),
    ({"lr": float("nan")}, "lr"), ({"lr": 0.0}, "lr"), ({"ema": 1.0}, "ema"),
    ({"schedule": "nope"}, "schedule"), ({"model": "cnn"}, "model"),
    ({"weighting": "x"}, "weighting"), ({"grad_clip": -1.0}, "grad_clip"),
])
def test_bad_config_is_refused_with_its_name(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="finite"):
        train(torch.full((100, 2), float("nan")), TrainConfig(steps=1, device="cpu"))
    with pytest.raises(ValueError, match="all equal"):
        train(torch.ones(100, 2), TrainConfig(steps=1, device="cpu"))


@pytest.mark.parametrize("schedule", ["vp", "ve", "linear"])
@pytest.mark.parametrize("model", ["score_mlp", "potential_mlp"])
@pytest.mark.parametrize("weighting", ["eps", "likelihood"])
def test_every_setting_trains_a_few_steps(schedule, model, weighting):
    x = make_dataset("two_moons", n=500, seed=0)
    cfg = TrainConfig(schedule=schedule, model=model, weighting=weighting, steps=5,
                      batch_size=32, log_every=5, device="cpu", hidden=16, depth=1)
    field, history = train(x, cfg)
    assert len(history["loss"]) == 1 and history["loss"][0] > 0
    out = field.eps(torch.randn(4, 2), 0.5)
    assert out.shape == (4, 2) and torch.isfinite(out).all()


def test_save_load_round_trip(tmp_path):
    x = make_dataset("ring", n=500, seed=0)
    for schedule, model in [("ve", "score_mlp"), ("cosine", "potential_mlp")]:
        field, _ = train(x, TrainConfig(steps=5, batch_size=32, device="cpu", schedule=schedule,
                                        model=model, hidden=16))
        path = save(field, tmp_path / "sub" / f"{schedule}.pt", meta={"dataset": "ring"})
        back = load(path, device="cpu")
        q = torch.randn(8, 2)
        torch.testing.assert_close(back.eps(q, 0.3), field.eps(q, 0.3))
        assert back.schedule.config() == field.schedule.config()
        assert back.config == field.config and back.meta == {"dataset": "ring"}
        assert back.summary["steps_done"] == 5


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a score-lab checkpoint"):
        load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a score-lab checkpoint"):
        load(other)
    with pytest.raises(ValueError, match="no such"):
        load(tmp_path / "missing.pt")


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).touch()",))


def test_load_never_runs_code_from_the_file(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    evil = tmp_path / "evil.pt"
    torch.save({"format": "score-lab-checkpoint", "payload": _Exploit()}, evil)
    with pytest.raises(ValueError, match="not a score-lab checkpoint"):
        load(evil)
    assert not marker.exists()


def test_save_to_unwritable_place_says_so(tmp_path):
    x = make_dataset("ring", n=500, seed=0)
    field, _ = train(x, TrainConfig(steps=2, batch_size=16, device="cpu", hidden=8))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="could not save"):
        save(field, blocker / "model.pt")


def test_samples_per_second_is_steady_without_callback():
    x = make_dataset("ring", n=1000, seed=0)
    _, history = train(x, TrainConfig(steps=200, batch_size=64, log_every=20, device="cpu",
                                      hidden=16))
    rates = history["samples_per_s"]
    assert len(rates) == 10 and max(rates) < 5 * min(rates), rates


def test_bad_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA"):
            TrainConfig(device="cuda")


def test_meta_is_stored_as_plain_values(tmp_path):
    import numpy as np
    x = make_dataset("ring", n=200, seed=0)
    field, _ = train(x, TrainConfig(steps=2, batch_size=16, device="cpu", hidden=8))
    save(field, tmp_path / "m.pt", meta={"path": tmp_path, "n": np.int64(3), "name": "ring"})
    assert load(tmp_path / "m.pt").meta == {"path": str(tmp_path), "n": 3, "name": "ring"}


def test_training_does_not_reseed_the_callers_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(make_dataset("ring", n=200, seed=0), TrainConfig(steps=2, batch_size=16, device="cpu", hidden=8))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("model", ["score_mlp", "potential_mlp"])
def test_fokker_planck_regulariser_shrinks_the_residual(model):
    """Deveney et al.'s penalty on the OU schedule: the trained field's residual |sigma^3 R|^2
    on fresh points of the collocation square falls by at least 5x at every t (measured after
    300 steps: 13x to 500x), while the denoising loss stays where it was (within 5%)."""
    from lab.metrics import fokker_planck_norm

    x = make_dataset("circles", n=5000, seed=0)
    g = torch.Generator().manual_seed(3)
    xc = (2 * torch.rand(500, 2, generator=g) - 1) * 3.5
    runs = {w: train(x, TrainConfig(schedule="ou", model=model, steps=300, fp_weight=w,
                                     device="cpu", hidden=32)) for w in (0.0, 1.0)}

    def residual(field, t):
        return float(fokker_planck_norm(field, xc, t))

    for t in (0.05, 0.5, 3.0):
        assert residual(runs[1.0][0], t) < 0.2 * residual(runs[0.0][0], t), t
    assert runs[1.0][1]["loss"][-1] < 1.05 * runs[0.0][1]["loss"][-1]


def _weights(field):
    return [p.detach().clone() for p in field.model.state_dict().values()]


@pytest.mark.parametrize("stop_at", [50, 75])
def test_resume_gives_the_weights_of_one_uninterrupted_run(tmp_path, stop_at):
    """A run stopped at ``stop_at`` (by its callback, or by a cancel event) and resumed from
    its state file ends with the very weights, average and loss history of a run that was
    never stopped: optimiser, random generator and loss sums travel in the state."""
    x = make_dataset("ring", 2000, seed=0)
    cfg = TrainConfig(steps=120, batch_size=64, log_every=25, device="cpu", lr=3e-3)
    whole, whole_hist = train(x, cfg)
    state = tmp_path / "run.state.pt"
    cancel = threading.Event()

    def stop(p):
        if p.step >= stop_at:
            cancel.set()
    first, hist = train(x, cfg, callback=stop, cancel=cancel, state=state)
    assert hist["summary"]["steps_done"] == stop_at and "cancelled" in hist["summary"]["stopped"]
    assert not all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(whole)))
    resumed, resumed_hist = train(x, cfg, state=state, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(whole)))
    assert resumed_hist["loss"] == whole_hist["loss"] and resumed_hist["step"] == whole_hist["step"]
    assert resumed_hist["summary"]["steps_done"] == 120
    # a finished state gives its model at once; steps may grow, and go on from there
    again, _ = train(x, cfg, state=state, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(_weights(again), _weights(whole)))
    longer, longer_hist = train(x, TrainConfig(**{**cfg.__dict__, "steps": 150}), state=state, resume=True)
    assert longer_hist["step"][-1] == 150 and longer_hist["step"][:5] == whole_hist["step"]


def test_resume_refuses_another_config_or_other_data(tmp_path):
    x = make_dataset("ring", 500, seed=0)
    cfg = TrainConfig(steps=10, batch_size=32, log_every=5, device="cpu")
    state = tmp_path / "s.pt"
    train(x, cfg, state=state)
    with pytest.raises(ValueError, match="lr differ"):
        train(x, TrainConfig(**{**cfg.__dict__, "lr": 0.5}), state=state, resume=True)
    with pytest.raises(ValueError, match="other data"):
        train(make_dataset("ring", 500, seed=1), cfg, state=state, resume=True)
    (tmp_path / "junk.pt").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a score-lab training state"):
        train(x, cfg, state=tmp_path / "junk.pt", resume=True)
    # without resume, the state is written afresh
    field, hist = train(x, TrainConfig(**{**cfg.__dict__, "lr": 0.5}), state=state)
    assert hist["summary"]["steps_done"] == 10


def test_training_run_is_train_on_a_thread_with_its_progress_and_errors():
    """A TrainingRun ends with the weights and loss history of the same train() call made
    directly; it reports every log step, a rate and the time left, calls the preview every
    k reports; stop keeps the model so far; a failure becomes its error, not a dead thread."""
    from lab.train import TrainingRun

    x = make_dataset("ring", 2000, seed=0)
    cfg = TrainConfig(steps=120, batch_size=64, log_every=20, device="cpu")
    direct, hist = train(x, cfg)
    seen = []
    run = TrainingRun(x, cfg, preview=lambda f: seen.append(f) or len(seen), preview_every=2).start()
    run.join(60)
    assert run.done and not run.running and not run.error and run.stopped == ""
    assert all(torch.equal(a, b) for a, b in zip(_weights(run.result), _weights(direct)))
    assert run.steps == hist["step"] == list(range(20, 121, 20)) and run.losses == hist["loss"]
    assert len(seen) == 3 and run.preview == 3 and run.preview_step == 100   # reports 1, 3, 5
    assert run.rate > 0 and run.time_left == 0.0
    every = []
    TrainingRun(x, cfg, preview=every.append, preview_every=1).start().join(60)
    assert len(every) == 6                                   # a preview at every report

    long = TrainingRun(x, TrainConfig(steps=100_000, batch_size=64, log_every=10, device="cpu")).start()
    while long.step < 20 and long.running:
        long.join(0.05)
    assert long.time_left > 0
    long.stop()
    long.join(60)
    assert "cancelled" in long.stopped and long.result.summary["steps_done"] < 100_000

    bad = TrainingRun(torch.zeros(0, 2), cfg).start()    # no data: train() refuses it
    bad.join(60)
    assert bad.done and bad.result is None and bad.error


def test_a_training_run_sets_torch_threads_for_its_own_thread_only():
    """One intra-op thread for the run (its preview runs on its thread and sees it), the
    process's setting untouched: a served training page leaves the other cores alone."""
    from lab.train import TrainingRun

    x = make_dataset("ring", 500, seed=0)
    cfg = TrainConfig(steps=40, batch_size=64, log_every=10, device="cpu")
    torch.set_num_threads(2)
    try:
        seen = []
        TrainingRun(x, cfg, preview=lambda f: seen.append(torch.get_num_threads()), preview_every=1).start().join(60)
        assert seen == [1] * 4 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
