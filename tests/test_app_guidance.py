"""The guidance page (GuidanceView), driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import pytest


@pytest.mark.slow
def test_guidance_page_shows_fkc_nearer_the_exact_target_than_the_naive_sampler():
    """The product and the annealed kinds at the page's defaults: FKC's samples
    end within twice the floor of the exact target, the naive sampler's over three times;
    the figures hold what was measured, the ESS curve one point a step."""
    from lab.app.guidance_view import GuidanceView

    view = GuidanceView(kind="product", n=1000, steps=500)
    for kind in ("product", "anneal"):
        view.kind = kind
        r = view.numbers
        assert not view.error and "FKC" in view.message and "the floor" in view.message
        assert r["fkc"] < 2 * r["floor"] < r["naive"] / 1.5, (kind, r)
        assert view.figures["fkc"].points("samples").shape == (1000, 2)
        assert len(view.figures["ess"].sources["ESS"].data["x"]) == 500
    view.ess_threshold = 0.0       # never resampled: the weights' ESS only reported
    assert view.numbers["resamples"] == 0
