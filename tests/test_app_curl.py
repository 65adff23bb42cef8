"""The curl page (CurlView), driven in-process: set
parameters, assert results (no browser).

Views built outside a server compute at once on the caller's thread (``Worker``), so each
assertion sees the state a browser would be sent. What the figures hold is read back from
their Bokeh data sources: the page shows what the lab computed, and that is held to the
exact field.
"""
import math

import numpy as np
import pytest
from bokeh.events import Tap

from lab.app.curl_view import CurlView
from lab.app.session import Session
from lab.fields import SwirlField


def test_curl_page_exact_is_conservative_and_learned_is_not():
    view = CurlView(Session(dataset="ring"))   # the pretrained ring model
    n = view.numbers
    assert abs(n["circulation"]["exact"]) < 1e-8
    assert abs(n["circulation"]["learned"]) > 1e-4 and n["asymmetry"] > 1e-3
    assert n["grad_share"] + n["rest_share"] == pytest.approx(1.0, abs=1e-9)
    assert 0.5 < n["grad_share"] < 1.0          # mostly a gradient, not only
    exact_map = np.asarray(view.figures["exact"].image.data["image"][0])
    learned_map = np.asarray(view.figures["learned"].image.data["image"][0])
    diff_map = np.asarray(view.figures["difference"].image.data["image"][0])
    assert np.abs(exact_map).max() < 1e-6 and np.abs(learned_map).max() > 0.1
    np.testing.assert_allclose(diff_map, learned_map - exact_map)
    view.t = 0.5
    assert "t = 0.50" in view.message


def test_curl_page_loop_is_a_circle_that_follows_clicks_and_sliders():
    view = CurlView(Session(dataset="ring"))
    maps = view.maps
    view.move_loop(Tap(model=None, x=1.234, y=-0.46))
    assert (view.loop_x, view.loop_y) == (1.2, -0.5)
    assert view.maps is maps                    # only the circulation was recomputed
    view.loop_r = 0.4
    loop = view.figures["learned"].loop.data
    radius = np.hypot(np.asarray(loop["x"]) - 1.2, np.asarray(loop["y"]) + 0.5)
    np.testing.assert_allclose(radius, 0.4, rtol=1e-9)
    assert "radius 0.40" in view.message and abs(view.numbers["circulation"]["exact"]) < 1e-8
    view.move_loop(Tap(model=None, x=9.0, y=-9.0))  # outside the sliders' range: clipped
    assert (view.loop_x, view.loop_y) == (2.5, -2.5)


def test_curl_page_against_a_field_of_known_curl():
    session = Session(dataset="ring")
    view = CurlView(session, loop_r=0.8)
    session.model = SwirlField(session.exact, c=0.5)   # curl 2c = 1, circulation 2c pi r^2
    learned = np.asarray(view.figures["learned"].image.data["image"][0])
    np.testing.assert_allclose(learned, 1.0, atol=1e-6)                   # 2c
    np.testing.assert_allclose(np.asarray(view.figures["difference"].image.data["image"][0]), 1.0, atol=1e-6)
    assert view.figures["learned"].clim == pytest.approx(1.0, abs=1e-6)            # the map's range is +-1
    assert view.numbers["circulation"]["learned"] == pytest.approx(2 * 0.5 * math.pi * 0.8**2, rel=1e-6)
    # positive curl (counter-clockwise, as here) is drawn red, negative blue, as the page says
    from lab.app.figures import CURL_PALETTE
    red, blue = (int(c[1:3], 16) - int(c[5:7], 16) for c in (CURL_PALETTE[-1], CURL_PALETTE[0]))
    from lab.app.curl_view import READING
    assert red > 0 > blue and "red counter-clockwise" in READING


def test_curl_page_without_a_model_shows_the_exact_field_twice():
    view = CurlView(Session(dataset="ring", pretrained=False))
    assert abs(view.numbers["circulation"]["learned"]) < 1e-8 and view.numbers["asymmetry"] < 1e-10
    assert "no model" in view.figures["learned"].title
