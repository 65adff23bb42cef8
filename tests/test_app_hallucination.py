"""The hallucination page (HallucinationView), driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import math

import numpy as np
import pytest
import torch

from lab.app.hallucination_view import SESSION_MODEL as HALLUCINATION_SESSION
from lab.app.hallucination_view import AT_DETECTION, UNDERTRAINED_MODEL, WELL_TRAINED, HallucinationView
from lab.app.session import Session
from lab.data import dataset_mixture
from lab.hallucination import (IN_SUPPORT, end_law, kept_share, operating_points, support_labels,
                               trajectory_variance)
from lab.pretrained import GRID_SCHEDULE
from lab.schedules import get_schedule


@pytest.mark.slow
def test_hallucination_page_shows_the_papers_operating_points():
    """The page opens on the grid model trained at the paper's setting, with the paper's
    protocol (1000 ancestral steps, last 10, labels at 6 std)."""
    view = HallucinationView(Session(dataset="two_moons"))    # 20,000 samples, as the paper
    assert (view.model, view.steps, view.last_k, view.k_std, view.n) == (WELL_TRAINED, 1000, 10, 6.0, 20_000)
    # 6 std hold all but exp(-18) of each noised mode: the exact score never leaves them
    assert view.numbers["rate_exact"] == 0.0 and view.numbers["rate_learned"] > 0
    # the numbers are those of the samples shown, scored again here
    law = end_law(dataset_mixture("gaussian_grid"), get_schedule("vp", **GRID_SCHEDULE))
    labels = support_labels(view.runs["learned"].samples, law, 6.0)
    scores = trajectory_variance(view.runs["learned"], 10)
    op = operating_points(scores, labels)
    assert view.points == op and view.numbers["rate_learned"] == op.rate
    assert f"{op.retention_at_detection:.1%}" in view.message and "paper" in view.message
    assert all(0 <= f < 0.2 for f in view.numbers["floor"].values())   # a bootstrap std
    # the same cut on the exact score: its samples never leave the modes, and it removes them
    # as often as the model's good ones (measured on 100k samples each: 95.7 % and 95.6 %)
    exact_kept = kept_share(trajectory_variance(view.runs["exact"], 10), op.threshold_at_detection)
    assert view.numbers["exact_kept"] == exact_kept and f"{exact_kept:.1%}" in view.message
    assert view.numbers["good_kept"] == op.retention_at_detection
    assert abs(exact_kept - op.retention_at_detection) < 0.01
    # the pictures hold what the numbers say
    shown = {name: len(src.data["x"]) for name, src in view.figures["learned"].sources.items()}
    assert sum(shown.values()) == 20_000 and shown["in support"] == (labels == IN_SUPPORT).sum()
    kept = sum(len(src.data["x"]) for src in view.figures["kept"].sources.values())
    assert kept == int((scores < op.threshold_at_detection).sum())
    assert int(((scores < op.threshold_at_detection) & (labels == IN_SUPPORT)).sum()) == round(
        op.retention_at_detection * int((labels == IN_SUPPORT).sum()))
    assert view.figures["roc"].sources[AT_DETECTION].data["y"][0] == 0.95
    counts = sum(np.asarray(src.data["top"]).sum() for src in view.figures["histogram"].sources.values())
    assert counts == 20_000
    assert view.figures["histogram"].cut.location == pytest.approx(math.log10(op.threshold_at_detection + 1e-12))
    view.cut = "96% retention"
    assert view.figures["kept"].title.startswith("after the cut at 96% retention")
    assert view.figures["histogram"].cut.location == pytest.approx(math.log10(op.threshold_at_retention + 1e-12))


@pytest.mark.slow
def test_hallucination_page_switches_to_the_undertrained_run_which_blurs():
    view = HallucinationView(Session(dataset="gaussian_grid"))   # the runs above, from the cache
    trained = dict(view.numbers)
    view.model = UNDERTRAINED_MODEL
    under = view.numbers
    # stopped at 2,000 steps the model leaves the modes far more often, and the detector
    # tells those samples apart less well (blur settles early, as good samples do)
    assert under["rate_learned"] > 3 * trained["rate_learned"]
    assert under["auc"] < trained["auc"] and "blur" in view.message
    # blur is the model's: its cut removes far more of its good samples than of the exact score's
    assert under["good_kept"] < under["exact_kept"] - 0.2, under


def test_hallucination_page_with_nothing_to_detect_says_so():
    session = Session(dataset="ring", pretrained=False)   # learned = the exact score
    view = HallucinationView(session, model=HALLUCINATION_SESSION, n=500, steps=100)
    assert view.numbers["rate_learned"] == 0.0 and view.points is None
    assert "nothing for the detector" in view.message


def test_sample_again_draws_anew():
    view = HallucinationView(Session(dataset="gaussian_grid"), n=500, steps=20)
    first = view.runs["learned"].samples
    view.sample_again()
    assert view.seed == 1 and not torch.equal(view.runs["learned"].samples, first)
