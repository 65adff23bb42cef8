"""Data sets and the Gaussian mixture, against closed forms."""
import math

import numpy as np
import pytest
import torch

from lab.data import (DATASETS, MIN_POINTS, PAPER_UNITS, GaussianMixture, dataset_mixture, load_points,
                      make_dataset)


def test_at_least_the_eight_named_data_sets():
    for name in ["gaussian_grid", "ring", "two_moons", "swiss_roll", "checkerboard",
                 "circles", "pinwheel", "spiral"]:
        assert name in DATASETS


@pytest.mark.parametrize("name", sorted(set(DATASETS) - PAPER_UNITS))
def test_make_dataset_is_reproducible_and_unit_scale(name):
    a = make_dataset(name, n=4000, seed=3)
    b = make_dataset(name, n=4000, seed=3)
    c = make_dataset(name, n=4000, seed=4)
    assert a.shape == (4000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.mean(0).abs().max() < 0.1
    assert 0.85 < float(a.var(0).mean()) < 1.15


def test_gaussian_grid_is_the_hallucination_papers_grid():
    mix = dataset_mixture("gaussian_grid")
    scale = 1 / math.sqrt(0.05**2 + 8)
    expected = {(2 * i * scale, 2 * j * scale) for i in range(-2, 3) for j in range(-2, 3)}
    got = {tuple(m) for m in mix.means.numpy().round(9)}
    assert got == {tuple(np.round(e, 9)) for e in expected}
    torch.testing.assert_close(mix.covs, (0.05 * scale) ** 2 * torch.eye(2, dtype=torch.float64).expand(25, 2, 2))
    torch.testing.assert_close(mix.weights, torch.full((25,), 1 / 25, dtype=torch.float64))


def test_log_prob_of_one_gaussian_is_the_closed_form(gen):
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    mix = GaussianMixture([[0.5, -1.0]], cov[None])
    x = torch.randn(100, 2, generator=gen, dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(torch.tensor([0.5, -1.0], dtype=torch.float64), cov)
    torch.testing.assert_close(mix.log_prob(x), ref.log_prob(x))


def test_mixture_log_prob_integrates_to_one():
    mix = GaussianMixture.ring(k=6, radius=1.0, std=0.2)
    u = torch.linspace(-2, 2, 401, dtype=torch.float64)
    gx, gy = torch.meshgrid(u, u, indexing="xy")
    p = mix.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
    assert float(p.sum() * (u[1] - u[0]) ** 2) == pytest.approx(1.0, abs=1e-4)


def test_sample_moments_match_the_mixture(gen):
    mix = GaussianMixture([[0.0, 0.0], [3.0, 1.0]],
                          torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.2, 0.0], [0.0, 0.1]]]),
                          weights=[1.0, 3.0])
    x = mix.sample(200_000, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(x.mean(0), mix.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), mix.cov(), atol=0.03, rtol=0)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 3)), "shape"),
    (np.zeros((MIN_POINTS - 1, 2)), "at least"),
    (np.array([[0.0, 1.0]] * 9 + [[np.nan, 0.0]]), "finite"),
    (np.array([[0.0, 1.0]] * 9 + [[np.inf, 0.0]]), "finite"),
    ([["a", "b"]] * 10, "numeric"),
])
def test_load_points_rejects_bad_arrays(bad, match):
    with pytest.raises(ValueError, match=match):
        load_points(bad)


def test_load_points_from_csv(tmp_path):
    ok = tmp_path / "ok.csv"
    ok.write_text("x,y\n" + "\n".join(f"{i},{-i / 2}" for i in range(20)))
    x = load_points(ok)
    assert x.shape == (20, 2) and float(x[3, 1]) == -1.5
    for text, match in [("x,y\n1,2\n3,oops\n" + "1,1\n" * 10, "not numeric"),
                        ("1,2,3\n" * 10, "3 values"), ("", "no data"),
                        ("1,2\n" * 10 + "nan,1\n", "finite")]:
        f = tmp_path / "bad.csv"
        f.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_points(f)
    with pytest.raises(ValueError, match="no such file"):
        load_points(tmp_path / "missing.csv")


def test_mixture_rejects_bad_parameters():
    with pytest.raises(ValueError, match="shape"):
        GaussianMixture(torch.zeros(3))
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianMixture([[0.0, 0.0]], torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], 0.1, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="unknown data set"):
        make_dataset("nope", 10)
    with pytest.raises(ValueError, match="n must be"):
        make_dataset("ring", 0)


def test_csv_header_and_line_numbers(tmp_path):
    f = tmp_path / "pts.csv"
    f.write_text("# my points\nx,y\n" + "1,2\n" * 9 + "3,oops\n")
    with pytest.raises(ValueError, match="line 12 is not numeric"):
        load_points(f)
    f.write_text("1,2\n" * 9 + "3\n")  # a numeric first row is data, not a header
    with pytest.raises(ValueError, match="line 10 has 1 values"):
        load_points(f)


def test_csv_rows_are_counted_before_parsing(tmp_path):
    """A file over the row cap is refused for its count, before any row is parsed: the last
    row is not even a number, and the message is about the count, not that line."""
    from lab.data import MAX_POINTS
    f = tmp_path / "huge.csv"
    f.write_text("x,y\n" + "0,0\n" * MAX_POINTS + "not,numbers\n")
    with pytest.raises(ValueError, match=f"{MAX_POINTS + 1:,} rows, more than {MAX_POINTS:,}"):
        load_points(f)


def test_csv_separators_and_values(tmp_path):
    f = tmp_path / "mixed.csv"
    f.write_text("1.5, -2\n3;4e-1\n  5\t6  \n\n# comment\n-0.25 1e2\n" * 2)
    x = load_points(f)
    want = torch.tensor([[1.5, -2.0], [3.0, 0.4], [5.0, 6.0], [-0.25, 100.0]] * 2)
    torch.testing.assert_close(x, want)


def test_float32_overflow_is_not_finite():
    with pytest.raises(ValueError, match="finite"):
        load_points(np.array([[0.0, 1.0]] * 9 + [[1e300, 0.0]]))


def test_standardize_gives_unit_scale(gen):
    from lab.data import standardize
    x = 5 + 30 * torch.randn(1000, 2, generator=gen)
    z = standardize(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert float(z.var(0).mean()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="all equal"):
        standardize(torch.ones(10, 2))


def test_wrong_number_of_stds():
    with pytest.raises(ValueError, match="1 or 2 standard deviations"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [0.1, 0.2, 0.3])


def test_kde_is_the_mean_of_gaussian_kernels_at_the_points(gen):
    import math
    pts = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    h = 0.3
    kde = GaussianMixture.kde(pts, bandwidth=h)
    q = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    d2 = ((q[:, None, :] - pts[None, :, :].float().double()) ** 2).sum(-1)
    expected = torch.logsumexp(-d2 / (2 * h * h), 1) - math.log(50 * 2 * math.pi * h * h)
    torch.testing.assert_close(kde.log_prob(q), expected, rtol=1e-5, atol=1e-5)  # points pass float32


def test_kde_keeps_a_subset_and_picks_a_bandwidth(gen):
    pts = torch.randn(5000, 2, generator=gen)
    kde = GaussianMixture.kde(pts, max_components=400)
    assert kde.n_components == 400
    std = float(kde.covs[0, 0, 0].sqrt())
    assert std == pytest.approx(0.5 * 400 ** (-1 / 6), rel=0.1)   # half Silverman, unit-variance points
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bandwidth"):
            GaussianMixture.kde(pts, bandwidth=bad)
    with pytest.raises(ValueError, match="all equal"):
        GaussianMixture.kde(torch.ones(10, 2))


def test_a_drawing_becomes_points_along_its_strokes_and_dots():
    """Points from a drawing lie on it, up to the pen's Gaussian width: along a unit
    segment their x is uniform on [0, 1] (mean 1/2, variance 1/12) and their y has the pen's
    std; a dot gets the share of a stroke of 4 widths; empty or broken drawings are refused."""
    from lab.data import points_from_drawing

    x = points_from_drawing([([0.0, 0.5, 1.0], [0.0, 0.0, 0.0])], n=40_000, width=0.02, seed=1).double()
    assert x.shape == (40_000, 2)
    assert abs(float(x[:, 0].mean()) - 0.5) < 0.01 and abs(float(x[:, 0].var()) - (1 / 12 + 0.02**2)) < 0.003
    assert abs(float(x[:, 1].std()) - 0.02) < 0.001
    y = points_from_drawing([([0.0, 1.0], [0.0, 0.0])], dots=[(5.0, 5.0)], n=40_000, width=0.05, seed=2)
    share = float((y[:, 0] > 3).double().mean())               # 0.2 / (1 + 0.2)
    assert abs(share - 0.2 / 1.2) < 0.01
    assert torch.equal(points_from_drawing(dots=[(1, 2)], n=100, seed=3),
                       points_from_drawing(dots=[(1, 2)], n=100, seed=3))
    for strokes, dots, words in (((), (), "empty"), ([([0, 1], [0])], (), "as many x as y"),
                                 ([([0, float("nan")], [0, 1])], (), "non-finite"),
                                 ([([1, 1], [2, 2])], (), "no length")):
        with pytest.raises(ValueError, match=words):
            points_from_drawing(strokes, dots, n=100)
