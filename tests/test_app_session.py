"""The session (Session) and what sessions share, driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import math
import subprocess
import sys

import panel as pn
import pytest
import torch

from lab.app import shared
from lab.app.gap_view import GapView
from lab.app.session import UPLOADED, Session
from lab.app.solver_view import SolverView
from lab.data import dataset_mixture
from lab.fields import NetworkField


def test_sessions_do_not_share_state():
    a, b = SolverView(Session(dataset="ring")), SolverView(Session(dataset="two_moons"))
    a.solver = "ddim"
    assert b.solver == "dpm++2m"
    assert a.session.exact.mixture.n_components != b.session.exact.mixture.n_components
    assert a.figures["samples"].fig is not b.figures["samples"].fig


def test_sessions_share_the_shipped_models_and_their_pictures_but_not_their_own():
    """A class opening one page: the shipped model and the built-in exact field are one copy a
    process, and what a page computes from them alone is computed once; a session's own
    model, or uploaded points, is its own."""
    from lab.app import shared

    a, b = Session(), Session()
    assert a.model is b.model and a.exact is b.exact
    va, vb = SolverView(a), SolverView(b)
    assert vb.last is va.last                          # the same first run, computed once
    assert torch.equal(vb.last.samples, va.last.samples)
    calls = []
    assert shared.memo(("test", id(a.model)), lambda: calls.append(1) or len(calls), [a.model]) == 1
    assert shared.memo(("test", id(a.model)), lambda: calls.append(1) or len(calls), [a.model]) == 1
    own = NetworkField(a.model.model, a.model.schedule)    # a model of the session's own
    assert not shared.is_shared(own)
    assert shared.memo(("test", id(own)), lambda: calls.append(1) or len(calls), [own]) == 2
    assert shared.memo(("test", id(own)), lambda: calls.append(1) or len(calls), [own]) == 3
    b.use_points(dataset_mixture("ring").sample(500, generator=torch.Generator().manual_seed(0)))
    assert b.exact is not a.exact and not shared.is_shared(b.exact)
    # sub-VP has VP's arguments: still its own field
    assert Session(schedule="subvp").exact.schedule.name == "subvp" and a.exact.schedule.name == "vp"


def test_uploaded_points_become_the_sessions_data_set():
    session, other = Session(dataset="ring"), Session(dataset="ring")
    g = torch.Generator().manual_seed(0)
    raw = torch.cat([torch.randn(300, 2, generator=g) * 0.1 + torch.tensor([10.0, 5.0]),
                     torch.randn(300, 2, generator=g) * 0.1 + torch.tensor([14.0, 5.0])])
    x = session.use_points(raw)
    assert session.dataset == UPLOADED and session.model is None and "density estimate" in session.message
    assert x.mean(0).abs().max() < 1e-5 and float(x.var(0).mean()) == pytest.approx(1.0, rel=1e-4)
    assert UPLOADED not in other.param.dataset.objects       # only this session offers them
    # the exact field is the KDE's: its samples hold the two clusters, standardised: centres
    # +-2 / sqrt(mean variance 2.01), spread by the points' 0.1 and the kernel's ~0.17
    s = session.exact.mixture.sample(4000, generator=g)
    assert abs(float((s[:, 0] > 0).double().mean()) - 0.5) < 0.05
    assert (s[:, 0].abs() - 2 / math.sqrt(2.01)).abs().median() < 0.2
    with pytest.raises(ValueError, match="all equal"):
        session.use_points(torch.ones(20, 2))
    assert session.points is x                                # refused: nothing changed


def test_a_second_upload_redraws_the_pages():
    session = Session(dataset="ring")
    page = SolverView(session, source="exact")
    g = torch.Generator().manual_seed(1)
    session.use_points(torch.randn(400, 2, generator=g) * torch.tensor([3.0, 0.1]))   # a flat band
    band = page.last
    session.use_points(torch.randn(400, 2, generator=g) * torch.tensor([0.1, 3.0]))   # upright
    assert page.last is not band
    x = page.last.samples
    assert float(x[:, 1].var()) > 5 * float(x[:, 0].var())   # the page samples the new points


def test_the_gap_pages_models_are_one_copy_a_process():
    """Every session's gap page shows the same eight shipped checkpoints: loaded once (they
    were loaded per session), so what is computed from them alone is shared too."""
    a, b = GapView(Session(), n=1000, steps=110), GapView(Session(), n=1000, steps=110)
    assert a.models and a.models.keys() == b.models.keys()
    assert all(a.models[k] is b.models[k] and shared.is_shared(a.models[k]) for k in a.models)
    assert a.exact is b.exact


def test_the_shared_store_does_not_import_the_pages():
    """No import circle in the app layer: the shared store needs neither the session nor a view
    (only the cluster seam, a leaf that imports nothing of the lab)."""
    code = "import sys, lab.app.shared; print(sorted(m for m in sys.modules if m.startswith('lab.app.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['lab.app.cluster', 'lab.app.shared']"


def test_a_bounded_number_is_a_slider_that_recomputes_on_release():
    view = SolverView(Session(dataset="ring"), source="exact")
    steps = view.controls("solver", "steps").widget("steps")
    assert isinstance(steps, pn.widgets.IntSlider)
    before = view.last
    steps._process_events({"value": 7})             # a drag (as a browser sends it): nothing is sampled
    assert view.steps == 20 and view.last is before
    steps._process_events({"value_throttled": 7})   # released
    assert view.steps == 7 and view.last is not before and view.last.nfe > 0
