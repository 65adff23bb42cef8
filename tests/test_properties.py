"""Hostile input (issue 8): property-based tests over the public API's numeric arguments.

Every public entry point either returns a result that holds up (the right shape, finite)
or refuses its input with a ValueError (a TypeError for a wrong type) whose message names
the offending argument: never an IndexError, RuntimeError, OverflowError or
ZeroDivisionError, a hang, or NaN returned in silence. Sizes above the library's caps
(MAX_POINTS, MAX_STEPS, ...) are checked for refusal, never run.

A test marked ``xfail(strict=True)`` reproduces an input that lab/ does not handle yet, its
reason saying what happens now; once lab/ is fixed the test passes, strict XPASS fails the
run, and the mark goes with the fix. (All the marks of the first round have gone.)
"""
import contextlib
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra.numpy import array_shapes, arrays

from lab.curl import circulation, curl, jacobian
from lab.data import DATASETS, MAX_POINTS, MIN_POINTS, GaussianMixture, dataset_mixture, load_points, make_dataset
from lab.fields import MixtureField
from lab.hallucination import filter_report
from lab.metrics import mmd, sliced_w2, w2
from lab.models import MODELS
from lab.schedules import SCHEDULES, get_schedule
from lab.solvers import MAX_STEPS, SOLVERS, SPACINGS, sample
from lab.train import TrainConfig, train

torch.set_num_threads(1)
# Hypothesis keeps caches (and, for failures, patches) under .hypothesis/ in the working
# directory: keep them out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "score-lab-hypothesis")

NAN, INF = float("nan"), float("inf")
HUGE_INT = 10**400          # a Python int beyond float64's range
SEED_RANGE = (-2**63, 2**64 - 1)   # the seeds torch.Generator.manual_seed takes
SAMPLE_MAX_N = 10_000_000   # sample()'s cap on n


def fast(n: int = 40):
    """Few examples, no deadline (the machine is shared), no example database on disk."""
    return settings(max_examples=n, deadline=None, database=None,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def hostile():
    """What a user, a form field or a config file might pass for a number."""
    return st.one_of(
        st.integers(-2**70, 2**70),
        st.integers(-3, 12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.sampled_from(["3", "", "nan", "1e3"]),
        st.integers(-10**6, 10**6).map(np.int64),
        st.floats(-1e6, 1e6, width=32).map(np.float32),
        st.just(1 + 2j),
    )


def is_int(v, low=-math.inf, high=math.inf, numpy_ok=False) -> bool:
    """v is an integer (not a bool) in [low, high]."""
    types = (int, np.integer) if numpy_ok else (int,)
    return isinstance(v, types) and not isinstance(v, (bool, np.bool_)) and low <= v <= high


def is_real(v, low=-math.inf, high=math.inf) -> bool:
    """v is a finite Python int or float (not a bool) in [low, high]."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and low <= v <= high)


@contextlib.contextmanager
def refused(*names):
    """Expect a ValueError (or a TypeError) whose message matches one of the regexes ``names``."""
    with pytest.raises((ValueError, TypeError)) as info:
        yield
    msg = str(info.value)
    assert any(re.search(n, msg) for n in names), f"the message does not name {names}: {msg!r}"


RING = dataset_mixture("ring")
FIELDS = {name: MixtureField(RING, name) for name in SCHEDULES}
DATA = make_dataset("ring", n=64, seed=0)


def t_in_range(schedule, u: float) -> float:
    """The time a fraction u of the way from the schedule's t_min to its t_max."""
    return schedule.t_min + u * (schedule.t_max - schedule.t_min)


def finite_points(max_n=16, low=-5.0, high=5.0):
    return arrays(np.float64, st.tuples(st.integers(1, max_n), st.just(2)),
                  elements=st.floats(low, high)).map(torch.as_tensor)


# --- lab.data: make_dataset, GaussianMixture.grid, load_points -------------------------
@fast()
@given(name=st.sampled_from(sorted(DATASETS)), n=st.integers(1, 64), seed=st.integers(*SEED_RANGE))
def test_make_dataset_gives_n_finite_reproducible_points(name, n, seed):
    """Any data set, n up to 64 (above that only costs time), any 64-bit seed."""
    x = make_dataset(name, n=n, seed=seed)
    assert x.shape == (n, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, make_dataset(name, n=n, seed=seed))


@fast(60)
@given(n=hostile().filter(lambda v: not is_int(v, 1, MAX_POINTS, numpy_ok=True)))
@example(n=MAX_POINTS + 1)
@example(n=0)
def test_make_dataset_refuses_a_bad_n_by_name(n):
    """Not an integer in [1, MAX_POINTS] (floats, bools, NaN, strings, above the cap)."""
    with refused(r"\bn\b"):
        make_dataset("ring", n=n, seed=0)


@pytest.mark.parametrize("seed", [NAN, INF, None, 2**64, -2**63 - 1, 1.5, True, "3"],
                         ids=["nan", "inf", "None", "2**64", "-2**63-1", "1.5", "True", "str"])
def test_make_dataset_refuses_a_bad_seed_by_name(seed):
    with refused(r"seed"):
        make_dataset("ring", n=10, seed=seed)


@fast()
@given(k=st.integers(1, 12), spacing=st.floats(-1e100, 1e100), std=st.floats(0, 1e100))
def test_grid_is_k_by_k_centred_and_samples_finite_points(k, spacing, std):
    """Negative and zero spacing, zero std (point masses) and values up to 1e100 included."""
    mix = GaussianMixture.grid(k=k, spacing=spacing, std=std)
    assert mix.n_components == k * k
    assert torch.isfinite(mix.means).all() and torch.isfinite(mix.covs).all()
    assert float(mix.means.mean(0).abs().max()) <= 1e-12 * (1 + abs(spacing) * k)
    x = mix.sample(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x.shape == (5, 2) and torch.isfinite(x).all()


@fast(25)
@given(std=st.floats(max_value=-1e-300, allow_infinity=False))
def test_grid_refuses_a_negative_std_by_name(std):
    with refused(r"\bstd\b|standard deviation"):
        GaussianMixture.grid(k=3, spacing=1.0, std=std)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k=-1), r"\bk\b"), (dict(k=0), r"\bk\b"), (dict(k=NAN), r"\bk\b"), (dict(k=INF), r"\bk\b"),
    (dict(k=1.5), r"\bk\b"), (dict(k=10**7), r"\bk\b"),
    (dict(k=3, spacing=NAN), r"spacing"), (dict(k=3, spacing=INF), r"spacing"),
    (dict(k=3, std=NAN), r"\bstd\b"), (dict(k=3, std=INF), r"\bstd\b"), (dict(k=3, std=1e200), r"\bstd\b"),
], ids=["k=-1", "k=0", "k=nan", "k=inf", "k=1.5", "k=10**7", "spacing=nan", "spacing=inf", "std=nan",
        "std=inf", "std=1e200"])
def test_grid_refuses_bad_arguments_by_name(kwargs, name):
    with refused(name):
        GaussianMixture.grid(**kwargs)


_ELEMENTS = st.one_of(st.floats(-1e3, 1e3),
                      st.sampled_from([NAN, INF, -INF, 1e300, -3.5e38, 3.4e38, 0.0]))
_ARRAYS = st.one_of(
    arrays(np.float64, st.tuples(st.integers(0, 20), st.just(2)), elements=_ELEMENTS),
    arrays(np.float64, array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=10), elements=_ELEMENTS),
)
_AS = st.sampled_from([np.asarray, torch.as_tensor, lambda a: a.tolist()])


@fast(60)
@given(arr=_ARRAYS, convert=_AS)
def test_load_points_takes_exactly_the_finite_n_by_2_arrays(arr, convert):
    """Arrays, tensors and nested lists of any shape, with NaN, inf and values beyond float32's
    range: (n, 2) with n >= MIN_POINTS and every value finite in float32, or a refusal."""
    with np.errstate(over="ignore"):
        ok = (arr.ndim == 2 and arr.shape[1] == 2 and MIN_POINTS <= arr.shape[0] <= MAX_POINTS
              and bool(np.isfinite(arr.astype(np.float32)).all()))
    if ok:
        x = load_points(convert(arr))
        assert x.shape == arr.shape and x.dtype == torch.float32
        assert torch.equal(x, torch.as_tensor(arr, dtype=torch.float32))
    else:
        with refused(r"points"):
            load_points(convert(arr))


def test_load_points_refuses_more_than_max_points():
    with refused(r"points"):
        load_points(np.zeros((MAX_POINTS + 1, 2), dtype=np.float32))


@pytest.mark.parametrize("points", [
    np.array([[1 + 1j, 2.0]] * 10),
    torch.ones(10, 2, dtype=torch.complex64),
    torch.ones(10, 2, dtype=torch.bfloat16),
], ids=["complex-array", "complex-tensor", "bfloat16-tensor"])
def test_load_points_complex_refused_bfloat16_taken(points):
    if points.dtype == torch.bfloat16:
        assert torch.equal(load_points(points), torch.ones(10, 2))
    else:
        with refused(r"points"):
            load_points(points)


# --- lab.schedules ----------------------------------------------------------------------
@fast(60)
@given(name=st.sampled_from(sorted(SCHEDULES)), u=st.floats(0, 1), v=st.floats(0, 1))
def test_schedule_is_consistent_on_its_range(name, u, v):
    """On [t_min, t_max]: 0 < alpha <= 1, sigma > 0, lambda = log(alpha/sigma) decreasing,
    t_of_lambda inverts it, f finite and g^2 >= 0."""
    s = get_schedule(name)
    t, t2 = sorted((t_in_range(s, u), t_in_range(s, v)))
    a, sg, lam = float(s.alpha(t)), float(s.sigma(t)), float(s.lambda_(t))
    assert 0 < a <= 1 + 1e-12 and 0 < sg < math.inf
    assert lam == pytest.approx(math.log(a / sg), rel=1e-9, abs=1e-9)
    assert float(s.t_of_lambda(lam)) == pytest.approx(t, rel=1e-6, abs=1e-9)
    assert float(s.lambda_(t2)) <= lam
    assert math.isfinite(float(s.f(t))) and 0 <= float(s.g2(t)) < math.inf


_ODD_T = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                   st.booleans(), st.floats(-10, 10, width=32).map(np.float32),
                   st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5).map(torch.tensor))


@fast(60)
@given(name=st.sampled_from(sorted(SCHEDULES)), t=_ODD_T)
@example(name="vp", t=NAN)
@example(name="linear", t=1.0)
@example(name="cosine", t=-INF)
def test_schedule_functions_do_not_raise_on_any_number(name, t):
    """alpha, sigma, lambda_, t_of_lambda, f, g2 are elementwise in t: any real t (NaN, inf,
    negative, past t_max) gives a tensor of t's shape, NaN where it has no meaning."""
    s = get_schedule(name)
    shape = t.shape if isinstance(t, torch.Tensor) else torch.Size([])
    for fn in (s.alpha, s.sigma, s.lambda_, s.t_of_lambda, s.f, s.g2):
        assert fn(t).shape == shape


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_at_t_zero_is_the_data(name):
    """At t = 0 the data is unnoised: alpha = 1 and sigma = 0 (VE: sigma_min), and the exact
    score of a non-singular mixture is finite there."""
    s = get_schedule(name)
    assert float(s.alpha(0.0)) == 1.0
    assert float(s.sigma(0.0)) == (s.sigma_min if name == "ve" else 0.0)
    assert torch.isfinite(FIELDS[name].score(torch.randn(8, 2, dtype=torch.float64), 0.0)).all()


@pytest.mark.parametrize("t", [0.0, 1e-300, 1e-16])
def test_cosine_sigma_near_zero_is_finite(t):
    s = get_schedule("cosine")
    assert 0 <= float(s.sigma(t)) < 1e-5 and not math.isnan(float(s.lambda_(t)))


_KWARGS = {"vp": ("beta0", "beta1", "t_min", "t_max"), "subvp": ("beta0", "beta1", "t_min", "t_max"),
           "ve": ("sigma_min", "sigma_max", "t_min", "t_max"), "cosine": ("s", "t_min", "t_max"),
           "linear": ("t_min", "t_max"), "ou": ("t_min", "t_max")}
_KW_VALUE = st.one_of(st.floats(1e-6, 100), st.floats(-100, -1e-6), st.sampled_from([NAN, 0.0, -1.0, 1.0]))


def usable_or_refused(name, kwargs):
    """get_schedule(name, **kwargs) refuses with a ValueError naming one of kwargs, or gives a
    schedule with 0 < alpha, sigma < inf at t_min and t_max and lambda decreasing between."""
    try:
        s = get_schedule(name, **kwargs)
    except ValueError as e:
        assert any(re.search(rf"\b{k}\b", str(e)) for k in kwargs), str(e)
        return
    for t in (s.t_min, s.t_max):
        a, sg = float(s.alpha(t)), float(s.sigma(t))
        assert 0 < a < math.inf and 0 < sg < math.inf, f"alpha({t}) = {a}, sigma({t}) = {sg}"
    assert float(s.lambda_(s.t_min)) > float(s.lambda_(s.t_max))


@fast(60)
@given(data=st.data(), name=st.sampled_from(sorted(_KWARGS)))
def test_get_schedule_arguments_give_a_usable_schedule_or_a_named_error(data, name):
    """Moderate numbers (NaN, zero and negatives included) for a schedule's arguments."""
    keys = data.draw(st.lists(st.sampled_from(_KWARGS[name]), unique=True, min_size=1))
    kwargs = {k: data.draw(_KW_VALUE if k != "s" else st.floats(0, 100), label=k) for k in keys}
    usable_or_refused(name, kwargs)


@pytest.mark.parametrize("name, kwargs", [
    ("cosine", dict(s=-1.0)), ("cosine", dict(s=-2.0)), ("cosine", dict(s=-0.5)), ("cosine", dict(s=NAN)),
    ("cosine", dict(s=INF)), ("ve", dict(sigma_max=INF)), ("ve", dict(sigma_min=1e-320)),
    ("vp", dict(beta1=INF)), ("subvp", dict(beta1=INF)), ("ou", dict(t_max=INF)), ("ou", dict(t_max=800.0)),
    ("cosine", dict(t_min=1e-300)), ("vp", dict(beta0=0.0, t_min=1e-200)),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x:g}" for k, x in v.items()))
def test_get_schedule_refuses_arguments_that_leave_no_usable_schedule(name, kwargs):
    usable_or_refused(name, kwargs)


# --- lab.fields: MixtureField.score --------------------------------------------------------
@fast(60)
@given(name=st.sampled_from(sorted(SCHEDULES)), u=st.floats(0, 1), x=finite_points(16, -100, 100),
       per_point=st.booleans(), float32=st.booleans())
def test_mixture_score_is_finite_on_the_schedule_range(name, u, x, per_point, float32):
    """Any t in [t_min, t_max] (a float or one per point), points up to 100 from the data."""
    field = FIELDS[name]
    t = t_in_range(field.schedule, u)
    x = x.float() if float32 else x
    tt = torch.full((x.shape[0],), t, dtype=x.dtype) if per_point else t
    s = field.score(x, tt)
    assert s.shape == x.shape and s.dtype == x.dtype
    assert torch.isfinite(s).all()


@fast(30)
@given(n=st.integers(1, 8), m=st.integers(2, 8))
def test_mixture_score_refuses_t_of_the_wrong_length_and_x_of_the_wrong_shape(n, m):
    field = FIELDS["vp"]
    x = torch.zeros(n, 2, dtype=torch.float64)
    assume(m != n)
    with refused(r"\bt\b"):
        field.score(x, torch.full((m,), 0.5))
    with refused(r"\bx\b"):
        field.score(torch.zeros(n, m + 1, dtype=torch.float64), 0.5)


@pytest.mark.parametrize("name, t", [
    ("vp", NAN), ("ve", NAN), ("vp", -0.5), ("ou", -0.5), ("vp", -INF),
    ("cosine", 2.0), ("linear", 2.0), ("ve", INF), ("vp", "a"), ("vp", None),
])
def test_mixture_score_refuses_a_time_outside_the_schedule_by_name(name, t):
    with refused(r"\bt\b"):
        FIELDS[name].score(torch.zeros(3, 2, dtype=torch.float64), t)


@pytest.mark.parametrize("x", [torch.full((2, 2), 1e30), torch.full((2, 2), 1e200, dtype=torch.float64)],
                         ids=["float32-1e30", "float64-1e200"])
def test_mixture_score_far_from_the_data_is_finite(x):
    s = FIELDS["vp"].score(x, 0.5)
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("call", ["score", "curl", "circulation"])
def test_no_points_give_an_empty_result(call):
    field, x = FIELDS["vp"], torch.zeros(0, 2, dtype=torch.float64)
    out = {"score": lambda: field.score(x, 0.5), "curl": lambda: curl(field, x, 0.5),
           "circulation": lambda: circulation(field, 0.5, np.zeros((0, 2)), 1.0)}[call]()
    assert out.shape[0] == 0


# --- lab.solvers.sample -------------------------------------------------------------------
@fast(40)
@given(schedule=st.sampled_from(sorted(SCHEDULES)), solver=st.sampled_from(sorted(SOLVERS)),
       spacing=st.sampled_from(sorted(SPACINGS)), steps=st.integers(1, 6), n=st.integers(1, 16),
       eta=st.one_of(st.none(), st.floats(0, 10), st.integers(0, 10)), seed=st.integers(*SEED_RANGE))
def test_sample_gives_finite_reproducible_samples(schedule, solver, spacing, steps, n, eta, seed):
    """Every schedule x solver x spacing, 1-6 steps, eta anywhere in [0, 10], any 64-bit seed."""
    eta = eta if SOLVERS[solver].takes_eta else None
    field = FIELDS[schedule]
    run = dict(n=n, solver=solver, steps=steps, spacing=spacing, eta=eta, seed=seed)
    traj = sample(field, **run)
    assert traj.samples.shape == (n, 2) and torch.isfinite(traj.samples).all()
    assert traj.xs.shape == (steps + 1, n, 2) and traj.x0_preds.shape == (steps, n, 2)
    assert float(traj.ts[0]) == field.schedule.t_max and float(traj.ts[-1]) == field.schedule.t_min
    assert traj.nfe >= steps
    assert torch.equal(sample(field, **run).samples, traj.samples)


_BASE = dict(n=4, solver="ddim", steps=2, seed=0)


@fast(60)
@given(n=hostile().filter(lambda v: not is_int(v, 1, SAMPLE_MAX_N) and v is not None))
@example(n=SAMPLE_MAX_N + 1)
def test_sample_refuses_a_bad_n_by_name(n):
    """Not an int in [1, 10**7] (NumPy integers included: sample() takes Python ints only)."""
    with refused(r"\bn\b"):
        sample(FIELDS["vp"], **{**_BASE, "n": n})


@fast(60)
@given(steps=hostile().filter(lambda v: not is_int(v, 1, MAX_STEPS)))
@example(steps=MAX_STEPS + 1)
def test_sample_refuses_bad_steps_by_name(steps):
    with refused(r"steps"):
        sample(FIELDS["vp"], **{**_BASE, "steps": steps})


@fast(60)
@given(eta=hostile().filter(lambda v: not is_real(v, 0, 10) and v is not None))
@example(eta=10.000001)
def test_sample_refuses_a_bad_eta_by_name(eta):
    with refused(r"\beta\b"):
        sample(FIELDS["vp"], **{**_BASE, "eta": eta})


@fast(30)
@given(solver=st.sampled_from(sorted(s for s, spec in SOLVERS.items() if not spec.takes_eta)),
       eta=st.floats(0, 10))
def test_ode_and_ancestral_solvers_refuse_another_eta_by_name(solver, eta):
    assume(eta != SOLVERS[solver].eta_default)
    with refused(r"\beta\b"):
        sample(FIELDS["vp"], **{**_BASE, "solver": solver, "eta": eta})


@fast(60)
@given(seed=hostile().filter(lambda v: v is not None and not is_int(v)))
def test_sample_refuses_a_seed_that_is_not_an_int_by_name(seed):
    with refused(r"seed"):
        sample(FIELDS["vp"], **{**_BASE, "seed": seed})


@fast(10)
@given(seed=st.one_of(st.integers(min_value=2**64), st.integers(max_value=-2**63 - 1)))
def test_sample_refuses_a_seed_beyond_64_bits_by_name(seed):
    with refused(r"seed"):
        sample(FIELDS["vp"], **{**_BASE, "seed": seed})


@pytest.mark.parametrize("name, kwargs, spacing", [
    ("ve", dict(sigma_min=1e-3, sigma_max=1e-3 * (1 + 1e-15)), "time_uniform"),
    ("vp", dict(beta0=0.0, t_min=1e-200), "time_uniform"),
    ("ou", dict(t_max=720.0), "karras"),
], ids=["ve-sigma_max~sigma_min", "vp-beta0=0,t_min=1e-200", "ou-t_max=720"])
def test_sample_on_a_schedule_get_schedule_takes_is_finite_or_a_value_error(name, kwargs, spacing):
    field = MixtureField(RING, get_schedule(name, **kwargs))
    try:
        traj = sample(field, n=4, steps=3, spacing=spacing, seed=0)
    except ValueError:  # NonFiniteError: the schedule is too steep for 3 steps
        return
    assert torch.isfinite(traj.samples).all()


# --- lab.train.TrainConfig (and a few steps of train) ------------------------------------
_INT_KNOBS = {"hidden": (1, 4096), "depth": (1, 64), "steps": (1, 10_000_000),
              "batch_size": (1, 1_000_000), "warmup": (0, 10_000_000), "log_every": (1, 10_000_000),
              "fp_points": (1, 1_000_000)}
_REAL_KNOBS = {"lr": (0, 10), "lr_final": (0, 1), "ema": (0, 1), "fp_weight": (0, 1e6),
               "fp_region": (1e-3, 1e3), "grad_clip": (0, math.inf)}


def _real_ok(knob, v) -> bool:
    low, high = _REAL_KNOBS[knob]
    if knob == "grad_clip" and v is None:
        return True
    if not is_real(v, low, high):
        return False
    return not ((knob in ("lr", "grad_clip") and v == 0) or (knob == "ema" and v == 1))


@fast(60)
@given(knob=st.sampled_from(sorted(_INT_KNOBS)), value=hostile())
def test_trainconfig_integer_knobs_are_checked_by_name(knob, value):
    """hidden, depth, steps, batch_size, warmup, log_every, fp_points: an int in range, or a
    ValueError naming TrainConfig.<knob>. Construction only: nothing is trained."""
    low, high = _INT_KNOBS[knob]
    if is_int(value, low, high):
        assert getattr(TrainConfig(**{knob: value}), knob) == value
    else:
        with refused(rf"TrainConfig\.{knob}\b"):
            TrainConfig(**{knob: value})


@fast(60)
@given(knob=st.sampled_from(sorted(_REAL_KNOBS)), value=hostile().filter(lambda v: not isinstance(v, bool)))
@example(knob="ema", value=1.0)
@example(knob="lr", value=0)
def test_trainconfig_real_knobs_are_checked_by_name(knob, value):
    """lr in (0, 10], lr_final in [0, 1], ema in [0, 1), fp_weight, fp_region, grad_clip
    (positive or None): finite numbers in range, or a ValueError naming TrainConfig.<knob>."""
    if _real_ok(knob, value):
        assert getattr(TrainConfig(**{knob: value}), knob) == value
    else:
        with refused(rf"TrainConfig\.{knob}\b"):
            TrainConfig(**{knob: value})


@pytest.mark.parametrize("knob, value", [("lr", True), ("lr_final", True), ("ema", False),
                                         ("fp_weight", True), ("fp_region", True), ("grad_clip", True)])
def test_trainconfig_real_knobs_refuse_bools_by_name(knob, value):
    with refused(rf"TrainConfig\.{knob}\b"):
        TrainConfig(**{knob: value})


def _tiny(**kwargs) -> TrainConfig:
    return TrainConfig(**{**dict(steps=1, batch_size=4, hidden=4, depth=1, log_every=1, device="cpu"),
                          **kwargs})


@fast(40)
@given(t_min=hostile())
def test_trainconfig_t_min_is_checked_by_name_by_the_time_train_starts(t_min):
    """A bad t_min is refused by TrainConfig, or else by train() before its first step."""
    try:
        cfg = _tiny(t_min=t_min)
    except (ValueError, TypeError) as e:
        assert "t_min" in str(e), str(e)
        return
    s = get_schedule(cfg.schedule)
    if t_min is None or (is_real(t_min) and s.t_min * 1e-3 <= t_min < s.t_max):
        field, history = train(DATA, cfg)
        assert history["summary"]["steps_done"] == 1
    else:
        with refused(r"t_min"):
            train(DATA, cfg)


@fast(15)
@given(seed=st.integers(*SEED_RANGE))
def test_train_takes_any_64_bit_seed(seed):
    field, history = train(DATA, _tiny(seed=seed))
    assert torch.isfinite(field.eps(DATA[:4], 0.5)).all()


@pytest.mark.parametrize("seed", [NAN, INF, 1.5, "1", 2**64], ids=["nan", "inf", "1.5", "str", "2**64"])
def test_trainconfig_refuses_a_bad_seed_by_name(seed):
    with refused(r"seed"):
        train(DATA, _tiny(seed=seed))


@fast(12)
@given(steps=st.integers(1, 5), batch_size=st.integers(1, 8), lr=st.floats(1e-4, 10),
       ema=st.floats(0, 0.999), grad_clip=st.one_of(st.none(), st.floats(1e-3, 1e3)),
       fp_weight=st.sampled_from([0.0, 0.1, 1e6]), model=st.sampled_from(sorted(MODELS)),
       schedule=st.sampled_from(sorted(SCHEDULES)), weighting=st.sampled_from(["eps", "min_snr", "likelihood"]),
       t_sampling=st.sampled_from(["uniform", "logsnr"]))
def test_a_few_training_steps_give_a_finite_field(steps, batch_size, lr, ema, grad_clip, fp_weight,
                                                  model, schedule, weighting, t_sampling):
    """Any valid knobs (the learning rate up to 10, the Fokker-Planck weight up to 1e6): the
    returned field is finite, even where the loss was not (train keeps the last good model)."""
    cfg = _tiny(steps=steps, batch_size=batch_size, lr=lr, ema=ema, grad_clip=grad_clip,
                fp_weight=fp_weight, fp_points=4, model=model, schedule=schedule,
                weighting=weighting, t_sampling=t_sampling, hidden=8)
    field, history = train(DATA, cfg)
    assert history["summary"]["steps_done"] <= steps
    t = t_in_range(field.schedule, 0.5)
    assert torch.isfinite(field.eps(DATA[:8], t)).all()


# --- lab.curl: curl, circulation -----------------------------------------------------------
@fast(40)
@given(name=st.sampled_from(sorted(SCHEDULES)), u=st.floats(0, 1), x=finite_points(12))
def test_curl_of_an_exact_score_is_finite_and_zero(name, u, x):
    """An exact score is a gradient: its curl vanishes to rounding, relative to its Jacobian."""
    field = FIELDS[name]
    t = t_in_range(field.schedule, u)
    c = curl(field, x, t)
    assert c.shape == (x.shape[0],) and torch.isfinite(c).all()
    scale = jacobian(field, x, t).abs().amax(dim=(1, 2))
    assert (c.abs() <= 1e-9 * (1 + scale)).all()


@fast(40)
@given(name=st.sampled_from(sorted(SCHEDULES)), u=st.floats(0, 1),
       centers=arrays(np.float64, st.tuples(st.integers(1, 3), st.just(2)), elements=st.floats(-3, 3)),
       radius=st.floats(1e-3, 10), n_points=st.integers(3, 256))
def test_circulation_of_an_exact_score_is_finite(name, u, centers, radius, n_points):
    field = FIELDS[name]
    circ = circulation(field, t_in_range(field.schedule, u), centers, radius, n_points=n_points)
    assert circ.shape == (centers.shape[0],) and torch.isfinite(circ).all()


@fast(60)
@given(radius=st.one_of(st.floats(max_value=0.0), st.just(NAN), st.just(INF), st.floats(1e-6, 1e3),
                        st.integers(-2**70, 0), st.integers(1, 100)))
def test_circulation_radius_is_checked_by_name(radius):
    if is_real(radius) and radius > 0:
        assert torch.isfinite(circulation(FIELDS["vp"], 0.5, [0.0, 0.0], radius, n_points=16)).all()
    else:
        with refused(r"radi"):
            circulation(FIELDS["vp"], 0.5, [0.0, 0.0], radius, n_points=16)


@fast(60)
@given(n_points=hostile())
@example(n_points=1_000_001)
def test_circulation_n_points_is_checked_by_name(n_points):
    if is_int(n_points, 3, 1_000_000):
        assume(n_points <= 4096)  # valid and larger only costs time
        assert torch.isfinite(circulation(FIELDS["vp"], 0.5, [0.0, 0.0], 1.0, n_points=n_points)).all()
    else:
        with refused(r"n_points"):
            circulation(FIELDS["vp"], 0.5, [0.0, 0.0], 1.0, n_points=n_points)


@pytest.mark.parametrize("call, names", [
    (lambda f: curl(f, torch.zeros(2, 2, dtype=torch.float64), NAN), r"\bt\b"),
    (lambda f: curl(f, torch.full((2, 2), NAN, dtype=torch.float64), 0.5), r"\bx\b|points"),
    (lambda f: circulation(f, NAN, [0.0, 0.0], 1.0), r"\bt\b"),
    (lambda f: circulation(f, 0.5, [0.0, 0.0], 1e300), r"radi"),
    (lambda f: circulation(f, 0.5, [1e300, 0.0], 1.0), r"cent"),
    (lambda f: circulation(f, 0.5, [0.0, 0.0], "1"), r"radi"),
], ids=["curl-t-nan", "curl-x-nan", "circulation-t-nan", "radius-1e300", "centre-1e300", "radius-str"])
def test_curl_and_circulation_refuse_what_gives_nan(call, names):
    try:
        out = call(FIELDS["vp"])
    except (ValueError, TypeError) as e:
        assert re.search(names, str(e)), str(e)
    else:
        assert torch.isfinite(out).all()


# --- lab.metrics: w2, sliced_w2, mmd --------------------------------------------------------
def _points(low=-1e3, high=1e3, min_n=1, max_n=30, unique=False):
    return arrays(np.float64, st.tuples(st.integers(min_n, max_n), st.just(2)),
                  elements=st.floats(low, high, allow_subnormal=False), unique=unique)


@fast(40)
@given(a=_points(), b=_points())
def test_w2_and_sliced_w2_are_finite_non_negative_and_zero_on_a_set_itself(a, b):
    """Sets of 1-30 points up to 1e3 from the origin, of unequal sizes."""
    for distance in (w2, sliced_w2):
        d = distance(a, b)
        assert math.isfinite(d) and d >= 0
        assert distance(a, a) <= 1e-6 * (1 + np.abs(a).max())
    # a shift moves every point by |v|: W2 is exactly |v|, within OT's rounding
    v = np.array([3.0, -4.0])
    assert w2(a, a + v) == pytest.approx(5.0, rel=1e-6, abs=1e-6 * (1 + np.abs(a).max()))


@fast(40)
@given(a=_points(min_n=2, unique=True), b=_points(min_n=2, unique=True),
       bandwidth=st.one_of(st.none(), st.floats(1e-2, 1e3)))
def test_mmd_is_finite_and_non_negative(a, b, bandwidth):
    d = mmd(a, b, bandwidth=bandwidth)
    assert math.isfinite(d) and d >= 0


_ANY_POINTS = arrays(np.float64, array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                     elements=st.one_of(st.floats(-10, 10), st.sampled_from([NAN, INF, -INF])))


@fast(60)
@given(a=_ANY_POINTS, b=_ANY_POINTS)
@example(a=np.zeros((0, 2)), b=np.zeros((3, 2)))
@example(a=np.zeros((3, 2)), b=np.zeros((3, 3)))
def test_distances_refuse_empty_non_finite_and_mismatched_sets_by_name(a, b):
    """Arrays of any shape with NaN and inf: two non-empty finite (n, d) sets of one d give a
    finite distance; anything else a ValueError naming a, b or their dimensions."""
    def good(p):
        return p.ndim == 2 and p.shape[0] > 0 and np.isfinite(p).all()
    if good(a) and good(b) and a.shape[1] == b.shape[1]:
        for distance in (w2, sliced_w2):
            assert math.isfinite(distance(a, b))
        return
    for distance in (w2, sliced_w2, mmd):
        with refused(r"\ba\b", r"\bb\b", r"dimension"):
            distance(a, b)


@fast(40)
@given(bandwidth=st.one_of(st.floats(max_value=0.0), st.just(NAN), st.floats(1e-2, 1e3)))
def test_mmd_bandwidth_is_checked_by_name(bandwidth):
    a, b = np.eye(3, 2), np.ones((4, 2))
    if bandwidth > 0:
        assert math.isfinite(mmd(a, b, bandwidth=bandwidth))
    else:
        with refused(r"bandwidth"):
            mmd(a, b, bandwidth=bandwidth)


@fast(40)
@given(n_projections=st.one_of(st.integers(-2**70, 0), st.integers(100_001, 2**70), st.just(NAN),
                               st.integers(1, 512)))
def test_sliced_w2_n_projections_is_checked_by_name(n_projections):
    a, b = np.eye(3, 2), np.ones((4, 2))
    if is_int(n_projections, 1, 100_000):
        assert math.isfinite(sliced_w2(a, b, n_projections=n_projections))
    else:
        with refused(r"n_projections"):
            sliced_w2(a, b, n_projections=n_projections)


@pytest.mark.parametrize("distance", [w2, sliced_w2, mmd], ids=["w2", "sliced_w2", "mmd"])
def test_distances_between_huge_points_are_right_or_refused_by_name(distance):
    a, b = np.array([[1e200, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])
    try:
        d = distance(a, b)
    except ValueError as e:
        assert re.search(r"\ba\b|points", str(e)), str(e)
    else:
        assert math.isfinite(d) and d > 1e150


@pytest.mark.parametrize("kwargs, names", [
    (dict(a=np.eye(3, 2), b=np.ones((4, 2)), bandwidth=1e-200), r"bandwidth"),
    (dict(a=np.eye(3, 2), b=np.ones((4, 2)), bandwidth=1e200), r"bandwidth"),
    (dict(a=np.eye(3, 2), b=np.ones((4, 2)), bandwidth="1"), r"bandwidth"),
    (dict(a=[[0.0, 0.0]], b=[[0.0, 0.0]]), r"two points"),
], ids=["bandwidth-1e-200", "bandwidth-1e200", "bandwidth-str", "one-point-sets"])
def test_mmd_odd_arguments_are_refused_by_name(kwargs, names):
    with refused(names):
        mmd(**kwargs)


@pytest.mark.parametrize("kwargs, name", [(dict(n_projections=2.5), "n_projections"),
                                          (dict(n_projections=True), "n_projections"),
                                          (dict(seed=-1), "seed"), (dict(seed=1.5), "seed")],
                         ids=["n_projections=2.5", "n_projections=True", "seed=-1", "seed=1.5"])
def test_sliced_w2_odd_arguments_are_refused_by_name(kwargs, name):
    with refused(name):
        sliced_w2(np.eye(3, 2), np.ones((4, 2)), **kwargs)


# --- lab.hallucination.filter_report --------------------------------------------------------
@fast(40)
@given(data=st.data(), n=st.integers(1, 30))
def test_filter_report_keeps_the_keep_lowest_scores(data, n):
    """keep in [1, n] (NumPy integers too): exactly keep kept, shares in [0, 1] or NaN."""
    scores = data.draw(arrays(np.float64, n, elements=st.floats(-1e6, 1e6)), label="scores")
    labels = data.draw(arrays(np.int64, n, elements=st.integers(0, 2)), label="labels")
    keep = data.draw(st.one_of(st.integers(1, n), st.integers(1, n).map(np.int64)), label="keep")
    r = filter_report(scores, labels, keep=keep)
    assert r.n_drawn == n and r.n_kept == keep
    assert r.threshold == np.nextafter(np.sort(scores)[keep - 1], np.inf)   # the cut just above the N-th
    for share in (r.detection, r.retention, r.rate_before, r.rate_after):
        assert math.isnan(share) or 0 <= share <= 1


@fast(60)
@given(keep=hostile().filter(lambda v: not is_int(v, 1, 10, numpy_ok=True)))
@example(keep=11)
def test_filter_report_refuses_a_bad_keep_by_name(keep):
    with refused(r"\bkeep\b"):
        filter_report(np.linspace(0, 1, 10), np.arange(10) % 3, keep=keep)


@fast(40)
@given(threshold=st.floats(allow_nan=True, allow_infinity=True))
def test_filter_report_threshold_is_checked_by_name(threshold):
    scores, labels = np.linspace(0, 1, 10), np.arange(10) % 3
    if math.isfinite(threshold):
        assert filter_report(scores, labels, threshold=threshold).n_kept == int((scores < threshold).sum())
    else:
        with refused(r"threshold"):
            filter_report(scores, labels, threshold=threshold)


@pytest.mark.parametrize("threshold", ["a", [0.5], HUGE_INT], ids=["str", "list", "10**400"])
def test_filter_report_odd_threshold_is_refused_by_name(threshold):
    with refused(r"threshold"):
        filter_report(np.linspace(0, 1, 10), np.arange(10) % 3, threshold=threshold)


# --- integers beyond float64's range ---------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: TrainConfig(lr=HUGE_INT), r"\blr\b"),
    (lambda: TrainConfig(grad_clip=HUGE_INT), r"grad_clip"),
    (lambda: sample(FIELDS["vp"], **{**_BASE, "eta": HUGE_INT}), r"\beta\b"),
    (lambda: sample(FIELDS["vp"], **{**_BASE, "solver": "pc", "snr": HUGE_INT}), r"\bsnr\b"),
    (lambda: GaussianMixture.grid(k=3, spacing=HUGE_INT), r"spacing"),
    (lambda: GaussianMixture.grid(k=3, std=HUGE_INT), r"\bstd\b"),
    (lambda: get_schedule("ve", sigma_max=HUGE_INT), r"sigma_max"),
    (lambda: get_schedule("ou", t_max=HUGE_INT), r"t_max"),
    (lambda: FIELDS["vp"].score(torch.zeros(2, 2), HUGE_INT), r"\bt\b"),
    (lambda: circulation(FIELDS["vp"], 0.5, [0.0, 0.0], HUGE_INT), r"radi"),
    (lambda: load_points([[HUGE_INT, 0]] * 10), r"points"),
    (lambda: mmd(np.eye(3, 2), np.ones((4, 2)), bandwidth=HUGE_INT), r"bandwidth"),
], ids=["TrainConfig.lr", "TrainConfig.grad_clip", "sample-eta", "sample-pc-snr", "grid-spacing",
        "grid-std", "ve-sigma_max", "ou-t_max", "score-t", "circulation-radius", "load_points",
        "mmd-bandwidth"])
def test_an_int_too_large_for_a_float_is_refused_by_name(call, name):
    with refused(name):
        call()
