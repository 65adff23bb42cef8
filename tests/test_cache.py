"""The shared result cache (lab.app.cache, issue 29 item 1): values that cannot run code, read
back equal; shared between processes; bounded; a damaged or foreign entry ignored; keys that
never cross models, schedules, data scalings or labels; a second session served from it."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from lab.app import shared
from lab.app.cache import ResultCache, decode, encode
from lab.data import dataset_mixture
from lab.fields import MixtureField, NetworkField, fingerprint
from lab.models import build_model
from lab.schedules import get_schedule
from lab.solvers import sample


def test_values_come_back_equal_and_nothing_else_is_stored():
    traj = sample(MixtureField(dataset_mixture("ring"), "vp"), n=50, steps=4, seed=0)
    value = {"traj": traj, 0.5: (torch.arange(3), torch.ones(2, dtype=torch.float64), torch.zeros(1, dtype=torch.bool)),
             "maps": [np.eye(2), {"x": np.arange(3.0)}], "nums": (1, 2.5, float("nan"), float("-inf"), None, True, "s")}
    got = decode(encode(value))
    assert torch.equal(got["traj"].samples, traj.samples) and got["traj"].nfe == traj.nfe
    assert [t.dtype for t in got[0.5]] == [torch.int64, torch.float64, torch.bool]
    np.testing.assert_array_equal(got["maps"][1]["x"], np.arange(3.0))
    assert got["nums"][:2] == (1, 2.5) and np.isnan(got["nums"][2]) and got["nums"][3:] == (float("-inf"), None, True, "s")
    for other in (object(), np.array([object()]), {"f": lambda: 1}):
        with pytest.raises(TypeError):
            encode(other)


def test_bytes_it_did_not_write_are_refused_without_running_them():
    class Evil:
        ran = []

        def __reduce__(self):
            return (Evil.ran.append, ("ran",))

    for data in (pickle.dumps(Evil()), b"", b"PK\x03\x04 not a zip", np.void(b"x").tobytes()):
        with pytest.raises(ValueError, match="not a score-lab result"):
            decode(data)
    import io
    buf = io.BytesIO()
    np.savez(buf, __skeleton__=np.frombuffer(b'{"format": "other", "version": 1, "value": 1}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a score-lab result of this version"):
        decode(buf.getvalue())
    assert Evil.ran == []


def test_the_cache_is_shared_between_processes_and_ignores_what_it_cannot_read(tmp_path):
    """A second process finds what the first stored (the processes of --num-procs); a damaged
    entry, and a pickle another program wrote into the same folder, read as absent, and the
    pickle's code never runs."""
    code = ("import torch; from lab.app.cache import ResultCache; "
            f"ResultCache({str(tmp_path)!r}).set('k', {{'x': torch.arange(4.0)}})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    cache = ResultCache(tmp_path)
    hit, value = cache.get("k")
    assert hit and torch.equal(value["x"], torch.arange(4.0))
    cache.raw_set("damaged", encode({"x": 1})[:-10])
    assert cache.get("damaged") == (False, None) and cache.get("absent") == (False, None)
    import diskcache

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))
    diskcache.Cache(str(tmp_path)).set("evil", Evil())     # another writer, pickling
    assert cache.get("evil") == (False, None) and not (tmp_path / "pwned").exists()
    assert cache.set("refused", object()) is False and cache.refused == 1


def test_the_cache_is_bounded(tmp_path):
    cache = ResultCache(tmp_path, size_limit=2_000_000)
    for i in range(100):
        cache.set(f"k{i}", {"x": torch.zeros(5_000, dtype=torch.float64)})     # 40 kB each: 7 MB on disk in all
    assert cache.volume < 4_000_000
    assert cache.get("k0") == (False, None) and cache.get("k99")[0]


def _net_field(schedule, data_std=1.0, n_classes=0, seed=0):
    torch.manual_seed(seed)
    return NetworkField(build_model("score_mlp", hidden=8, depth=1, n_classes=n_classes), schedule, data_std)


def test_fingerprints_never_cross_models_schedules_scalings_or_labels():
    vp = get_schedule("vp")
    base = _net_field(vp)
    assert fingerprint(base) == fingerprint(_net_field(vp))                        # the same weights
    different = [_net_field(vp, seed=1), _net_field(get_schedule("vp", beta1=200.0)), _net_field(vp, data_std=2.0),
                 _net_field(get_schedule("subvp"))]
    prints = {fingerprint(f) for f in different} | {fingerprint(base)}
    assert len(prints) == 5
    guided = _net_field(vp, n_classes=2)
    assert len({fingerprint(guided), fingerprint(guided.with_label(0)), fingerprint(guided.with_label(1))}) == 3
    ring = dataset_mixture("ring")
    assert fingerprint(MixtureField(ring, vp)) != fingerprint(MixtureField(ring, get_schedule("vp", beta1=200.0)))
    from lab.fields import SwirlField
    assert fingerprint(SwirlField(MixtureField(ring, vp), 1.0)) != fingerprint(SwirlField(MixtureField(ring, vp), 2.0))


def test_a_second_session_is_served_from_the_cache(tmp_path, monkeypatch):
    """The solver page's run: a session in a fresh process (the in-process memo emptied) with
    the same settings gets the stored result without sampling; another seed samples."""
    import lab.app.solver_view as solver_view
    from lab.app.session import Session
    from lab.app.solver_view import SolverView

    shared.use_cache(ResultCache(tmp_path))
    shared.forget()                           # a fresh process: what earlier tests computed is not in memory
    try:
        first = SolverView(Session(dataset="ring"))
        calls = []
        real = solver_view.sample
        monkeypatch.setattr(solver_view, "sample", lambda *a, **k: calls.append(k) or real(*a, **k))
        shared.forget()                       # another process: nothing in memory
        second = SolverView(Session(dataset="ring"))
        assert calls == [] and second.numbers["w2"] == first.numbers["w2"]
        second.seed = 1
        assert len(calls) == 1
    finally:
        shared.use_cache(None)


@pytest.mark.slow
def test_the_warm_up_fills_every_pages_defaults(tmp_path, monkeypatch):
    """After ``fill_defaults`` (what ``lab serve`` runs before serving), a new server process
    (memory emptied, the result cache kept) opens the hallucination and gap pages, the costly
    first visits (40 s and 9 s here), without sampling at all."""
    import lab.app.gap_view as gap_view
    import lab.app.hallucination_view as hallucination_view
    from lab.app.session import Session
    from lab.app.warmup import PAGES, fill_defaults

    shared.use_cache(ResultCache(tmp_path))
    shared.forget()
    try:
        took = fill_defaults()
        assert set(took) == {name for _, name in PAGES}
        calls = []
        monkeypatch.setattr(hallucination_view, "sample", lambda *a, **k: calls.append("sample"))
        monkeypatch.setattr(gap_view, "gap_binned", lambda *a, **k: calls.append("gap"))
        shared.forget()
        pages = [hallucination_view.HallucinationView(Session()), gap_view.GapView(Session())]
        assert calls == [] and not any(p.error for p in pages)
        assert "retention at 95% detection" in pages[0].message and "ODE to SDE" in pages[1].message
    finally:
        shared.use_cache(None)


def test_two_processes_asking_at_once_compute_once(tmp_path):
    """``get_or_compute`` from two processes at the same time (two server processes warming
    up): one computes, the other waits for its result."""
    code = ("import sys, time, torch; from lab.app.cache import ResultCache\n"
            "def slow():\n"
            f"    open({str(tmp_path / 'computed')!r}, 'a').write('x')\n"
            "    time.sleep(2)\n"
            "    return {'x': torch.arange(3.0)}\n"
            f"print(ResultCache({str(tmp_path / 'cache')!r}).get_or_compute('k', slow)['x'].tolist())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["[0.0, 1.0, 2.0]"] * 2 and (tmp_path / "computed").read_text() == "x"


def test_a_lock_left_by_a_dead_holder_delays_no_one_past_its_time_and_is_not_taken(tmp_path):
    cache = ResultCache(tmp_path)
    cache.raw_set("lock:k", b"another process's token")        # its holder died
    assert cache.get_or_compute("k", lambda: {"x": 1}, wait=0.3) == {"x": 1}
    assert cache.get("k") == (True, {"x": 1})
    assert cache._cache.get("lock:k") == b"another process's token"     # not ours to remove


def test_an_unusable_folder_is_an_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="a-file"):
        ResultCache(blocker / "cache")
