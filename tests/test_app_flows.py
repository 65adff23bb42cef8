"""The flows page (FlowsView) and what it gives the solver and curl tabs, driven in-process:
set parameters, press buttons, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources and held to the exact interpolant field.
"""
import numpy as np
import pytest
import torch

from lab.app.curl_view import CurlView
from lab.app.flows_view import NFES, FlowsView
from lab.app.session import Session
from lab.app.solver_view import SolverView
from lab.interpolants import InterpolantField, VelocityField
from lab.solvers import FLOW_SOLVERS


def image(fig) -> np.ndarray:
    return np.asarray(fig.image.data["image"][0])


def test_the_page_opens_on_the_shipped_flow_beside_the_exact_field():
    """Gaussian -> two_moons: the shipped velocity samples within 2x the floor, Euler's W2 falls
    as the steps grow, for the learned flow as for the exact one, and the exact velocity from
    N(0, I) has no curl (its map is white) while the learned one has some."""
    view = FlowsView(Session())
    n = view.numbers
    assert isinstance(view.session.flow, VelocityField) and not view.error
    assert n["w2"] < 2 * n["floor"]
    for name in ("learned", "exact"):
        curve = n["w2_curve"][name]
        assert len(curve) == len(NFES) and curve[0] > 4 * curve[-1], (name, curve)
    assert abs(n["w2_curve"]["learned"][-1] - n["w2_curve"]["exact"][-1]) < n["floor"]
    assert 0.5 < n["straightness"] < 1.2      # independent coupling: curved (the exact flow's 0.87)
    assert n["velocity_error"][0.5] < 0.1 and n["score_error"][0.1] < 0.05    # measured 0.05 and 0.003
    errors = view.figures["error"].sources["velocity"].data
    assert list(errors["x"]) == [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    assert np.abs(image(view.figures["exact"])).max() < 1e-8
    assert np.abs(image(view.figures["learned"])).max() > 1e-3
    assert "Straightness of the learned flow" in view.message


def test_the_eps_slider_keeps_the_exact_marginals_and_needs_a_score_for_a_learned_two_sided_flow():
    view = FlowsView(Session(), source="two_moons", target="circles", show="exact")
    assert view.session.flow is None and "press **Train**" in view.message
    view.eps = 1.0
    assert not view.error and view.numbers["w2"] < 1.5 * view.numbers["floor"]
    assert view.numbers["nfe"] == 200           # the SDE: a velocity and a score a step, 100 steps
    exact = view.session.flow_exact
    assert isinstance(exact, InterpolantField) and exact.source.n_components == 80


@pytest.mark.slow
def test_training_a_two_sided_flow_gives_it_a_denoiser_and_the_session_its_flow():
    """two_moons -> circles with a Brownian-bridge gamma: Train fits a velocity, then a
    denoiser of the latent noise, so the SDE at eps > 0 samples the learned flow."""
    view = FlowsView(Session(), source="two_moons", target="circles", gamma="brownian_bridge", steps=300)
    view.eps = 0.5
    view.start()
    view.join()
    flow = view.session.flow
    assert isinstance(flow, VelocityField) and flow.has_score and not view.error, view.error
    assert view.run.total == 450 and view.run.steps[-1] == 450       # 300 + 150 denoiser steps
    assert view.numbers["w2"] < 3 * view.numbers["floor"]
    view.gamma = "zero"                           # another setting: no flow yet, the exact one shown
    assert view.session.flow is None
    view.gamma = "brownian_bridge"                # back: the flow trained for it
    assert view.session.flow is flow


def test_a_reflow_straightens_the_shipped_flow_and_halves_one_step_w2():
    view = FlowsView(Session(), steps=300)
    before = view.numbers["w2_curve"]["learned"]
    view.start_reflow()
    view.join()
    after = view.numbers["w2_curve"]
    assert after["before reflow"] == pytest.approx(before)
    assert after["learned"][0] < 0.5 * before[0], (before, after["learned"])
    assert view.numbers["straightness"] < 0.1 and "1 reflow(s)" in view.message
    assert view.session.flow.config.coupling == "paired"


@pytest.mark.slow
def test_settings_that_make_no_interpolant_are_named_and_the_page_goes_on():
    view = FlowsView(Session())
    view.interpolant = "encoding_decoding"
    view.gamma = "zero"
    assert "sin2" in view.error
    view.gamma = "sin2"
    assert not view.error
    view.source, view.interpolant, view.gamma = "ring", "one_sided", "family's own"
    assert "N(0, I)" in view.error
    view.source = "gaussian"
    assert not view.error and view.numbers["w2"] < 2 * view.numbers["floor"]
    view.source, view.interpolant = "two_moons", "linear"
    view.eps = 0.5
    view.show = "learned"
    assert not view.error                         # no learned flow: the exact one is sampled
    view.start_reflow()                           # nothing learned for these settings
    assert "press Train first" in view.error


@pytest.mark.slow
def test_the_solver_tab_samples_the_flow_with_the_solvers_that_apply():
    session = Session()
    flows, solvers = FlowsView(session), SolverView(session)
    solvers.source = "flow"
    assert solvers.param.solver.objects == list(FLOW_SOLVERS) and solvers.solver == "ode_rk4"
    assert solvers.spacing == "time_uniform"
    assert "learned flow" in solvers.figures["samples"].title and not solvers.error
    assert solvers.numbers["w2"] < 2 * solvers.numbers["floor"]
    flows.source, flows.target = "two_moons", "circles"      # the flows tab's change reaches it
    assert "exact flow" in solvers.figures["samples"].title and not solvers.error
    solvers.source = "learned"
    assert "dpm++2m" in solvers.param.solver.objects and not solvers.error


def test_the_curl_tab_shows_the_flows_velocity():
    """The exact flow from N(0, I) is a gradient (no asymmetry, no circulation); between two
    data sets under independent coupling it is not (Benamou-Brenier's OT velocity would be)."""
    session = Session()
    flows, curl = FlowsView(session), CurlView(session)
    curl.of = "flow velocity"
    n = curl.numbers
    assert n["asymmetry_exact"] < 1e-10 and abs(n["circulation"]["exact"]) < 1e-8
    assert n["asymmetry"] > 1e-3                 # the learned one's is small, not zero
    assert "tau = 0.90" in curl.message
    flows.source, flows.target = "two_moons", "circles"
    assert curl.numbers["asymmetry_exact"] > 0.2 and not curl.error
    torch.testing.assert_close(torch.as_tensor(image(curl.figures["learned"])),
                               torch.as_tensor(image(curl.figures["exact"])))   # no learned flow: the exact one


def test_a_drawing_becomes_the_target():
    """Strokes on the page's canvas are the target (the session's points, as the Train tab's
    drawing makes them): the exact flow to their kernel density estimate is built and sampled
    at its floor, and the choice is offered as an end from then on."""
    from lab.app.session import UPLOADED

    view = FlowsView(Session())
    view.use_drawing([([-1.5, 0.0, 1.5], [-1.0, 1.5, -1.0])])          # a stroke: (xs, ys)
    assert view.target == UPLOADED and UPLOADED in view.param.source.objects and not view.error
    exact = view.session.flow_exact
    assert exact.target.n_components <= 200 and view.session.flow is None
    assert view.numbers["w2"] < 2 * view.numbers["floor"]
    view.use_drawing([])
    assert "could not use the drawing" in view.error.lower()
