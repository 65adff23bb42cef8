"""The ODE-SDE gap page (GapView), driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
from lab.app.gap_view import SESSION_MODEL, GapView, model_name
from lab.app.session import Session
from lab.pretrained import GAP_WEIGHTS


def test_gap_page_shows_the_regulariser_shrinking_the_residual():
    view = GapView(Session(dataset="ring"), n=1000, steps=110)
    assert {model_name("lab", w) for w in GAP_WEIGHTS} <= set(view.models)  # the pretrained OU models ship
    assert view.param.model.objects[-1] == SESSION_MODEL
    residual = {}
    for w in (0.0, 1.0):
        view.model = model_name("lab", w)
        residual[w] = view.numbers["residual"]
        assert all(0 <= view.numbers[k] < 1 for k in ("ode_truth", "sde_truth", "ode_sde", "floor"))
        assert view.numbers["n"] == 1000 and view.numbers["nfe"] == 110
    # the w = 1 model satisfies the Fokker-Planck equation far better at every t (measured 4-10x)
    assert all(residual[1.0][t] < 0.5 * residual[0.0][t] for t in residual[0.0]), residual
    assert "ODE to SDE" in view.message
    assert model_name('lab', 0) in view.table and model_name('lab', 1) in view.table   # the table so far


def test_gap_page_on_the_exact_score_has_no_residual_and_a_small_gap():
    session = Session(dataset="circles")
    view = GapView(session, n=2000, steps=200)
    session.model = session.exact                # the exact score as "this session's model"
    view.model = SESSION_MODEL
    # the exact score solves the score Fokker-Planck equation: R = 0 up to rounding
    assert max(view.numbers["residual"].values()) < 1e-12
    curve = view.figures["residual"].sources[SESSION_MODEL].data
    assert len(curve["x"]) == 5                  # the VP times up to t_max = 1
    # and its ODE and SDE agree up to sampling noise: within a small multiple of the W2^2
    # between two independent true draws (measured 0.8-1.5x at 2000 points, 200 steps)
    assert view.numbers["ode_sde"] < 3 * view.numbers["floor"]
    assert "two independent true draws" in view.message
