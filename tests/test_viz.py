"""Figure functions on a tiny decoder: the right axes, labels and colour bars; clear errors."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from pullback_geom import PullbackMetric, viz

matplotlib.use("Agg")

EXTENT = (-2.0, 2.0, -2.0, 2.0)


def tiny_decoder(seed: int = 0, out: int = 16) -> nn.Sequential:
    torch.manual_seed(seed)
    side = int(out**0.5)
    return nn.Sequential(
        nn.Linear(2, 16),
        nn.Tanh(),
        nn.Linear(16, out),
        nn.Sigmoid(),
        nn.Unflatten(1, (1, side, side)),
    )


@pytest.fixture(scope="module")
def decoder():
    return tiny_decoder()


@pytest.fixture(scope="module")
def metric(decoder):
    return PullbackMetric(decoder)


@pytest.fixture(scope="module")
def codes():
    g = torch.Generator().manual_seed(0)
    return torch.randn(60, 2, generator=g), torch.arange(60) % 10


def curves(b: int = 2, n: int = 6, bend: float = 0.0) -> torch.Tensor:
    t = torch.linspace(0, 1, n)[None, :, None]
    p = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [0.0, 1.0]])[:b, None]
    q = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]])[:b, None]
    c = p * (1 - t) + q * t
    return c + bend * (t * (1 - t))


def colorbars(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def plots(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_latent_scatter(codes):
    fig = viz.latent_scatter(*codes)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() and labelled(ax)
    assert len(ax.get_legend().get_texts()) == 10


def test_decoded_grid(decoder):
    fig = viz.decoded_grid(decoder, EXTENT, n=3)
    (ax,) = fig.axes
    assert ax.get_title() and labelled(ax)
    img = ax.get_images()[0].get_array()
    assert img.shape == (12, 12)  # 3 x 3 images of 4 x 4 pixels
    # Ticks in latent coordinates: the image spans the extent plus half a cell.
    assert ax.get_images()[0].get_extent()[0] == pytest.approx(-3.0)


def test_volume_heatmap(metric, codes):
    fig = viz.volume_heatmap(metric, EXTENT, codes[0], resolution=8)
    assert len(plots(fig)) == 1 and len(colorbars(fig)) == 1
    ax = plots(fig)[0]
    assert ax.get_title() and labelled(ax)
    assert colorbars(fig)[0].get_ylabel()
    expected = metric.log_volume(torch.tensor([[-2.0, -2.0]])).item() / np.log(10)
    assert ax.get_images()[0].get_array()[0, 0] == pytest.approx(expected, rel=1e-4)


def test_volume_heatmap_on_given_axes(metric):
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert viz.volume_heatmap(metric, EXTENT, resolution=4, ax=axes[1]) is fig
    assert axes[1].get_images() and not axes[0].get_images()


def test_geodesics_figure(metric, decoder):
    ends = decoder(curves()[:, [0, -1]].reshape(-1, 2)).detach().reshape(2, 2, 1, 4, 4)
    fig = viz.geodesics_figure(
        metric, {"energy": curves(), "ODE": curves(bend=0.3)}, ends, resolution=6
    )
    assert len(colorbars(fig)) == 1
    main, *images = plots(fig)
    assert len(images) == 4
    assert main.get_title() and labelled(main)
    assert [t.get_text() for t in main.get_legend().get_texts()][:2] == ["energy", "ODE"]
    styles = {line.get_linestyle() for line in main.get_lines() if len(line.get_xdata()) > 1}
    assert styles == {"-", "--"}
    without = viz.geodesics_figure(metric, {"energy": curves()}, resolution=6)
    assert len(plots(without)) == 1


def test_interpolation_figure(metric, decoder):
    fig = viz.interpolation_figure(
        decoder, curves(), curves(n=9, bend=0.3), metric, n_images=4, resolution=6
    )
    main, *strips = plots(fig)
    assert len(strips) == 4 and len(colorbars(fig)) == 1
    assert [s.get_ylabel() for s in strips] == ["Euclidean", "Riemannian"] * 2
    assert strips[0].get_images()[0].get_array().shape == (4, 4 * 4 + 3)
    assert main.get_title() and labelled(main)


def test_distance_matrices():
    e = np.random.default_rng(0).random((10, 10))
    fig = viz.distance_matrices(e, 2 * e)
    axes = plots(fig)
    assert [a.get_title() for a in axes] == ["Euclidean (latent)", "geodesic"]
    assert len(colorbars(fig)) == 2
    assert len(axes[0].texts) == 100
    assert axes[0].texts[0].get_text() == f"{e[0, 0]:.2g}"


def test_uncertainty_figure(decoder, codes):
    std = tiny_decoder(1)
    fig = viz.uncertainty_figure(
        PullbackMetric(decoder),
        PullbackMetric(std),
        std,
        EXTENT,
        codes[0],
        curves(),
        curves(bend=0.3),
        resolution=6,
    )
    axes = plots(fig)
    assert len(axes) == 3 and len(colorbars(fig)) == 3
    assert all(a.get_title() and labelled(a) for a in axes)
    assert axes[0].get_legend() is not None


def test_kde_of_two_points_in_1d_by_hand():
    # codes 0 and 2: unbiased variance 2, Scott's factor 2^(-1/5), so each kernel is a
    # normal of variance s2 = 2 * 2^(-2/5) and p(y) = (N(y; 0, s2) + N(y; 2, s2)) / 2.
    s2 = 2 * 2 ** (-2 / 5)
    y = np.array([-1.0, 0.0, 1.0, 3.5])

    def normal(mu):
        return np.exp(-((y - mu) ** 2) / (2 * s2)) / math.sqrt(2 * math.pi * s2)

    expected = np.log((normal(0.0) + normal(2.0)) / 2)
    ours = viz.kde_log_density([[0.0], [2.0]], y[:, None]).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_kde_is_the_mean_of_gaussian_kernels_on_the_codes():
    """The textbook mixture: kernel covariance ``h^2`` times the codes' covariance."""
    x = np.random.default_rng(0).normal(size=(50, 2)) * [1.0, 3.0]
    y = np.random.default_rng(1).normal(size=(7, 2))
    # Scott's rule in 2-D (the default), then a given bandwidth
    for h, bandwidth in ((50 ** (-1 / 6), None), (0.5, 0.5)):
        cov = h**2 * np.cov(x.T)
        diff = y[:, None, :] - x[None, :, :]  # (7, 50, 2)
        quad = np.einsum("mni,ij,mnj->mn", diff, np.linalg.inv(cov), diff)
        kernels = np.exp(-quad / 2) / (2 * math.pi * math.sqrt(np.linalg.det(cov)))
        expected = np.log(kernels.mean(1))
        ours = viz.kde_log_density(x, y, bandwidth=bandwidth).numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-10)
    # far from the codes the log density stays finite (no exp underflow)
    far = viz.kde_log_density(x, np.array([[80.0, 0.0]])).numpy()
    assert np.isfinite(far).all() and far[0] < -500


def test_density_connection(codes):
    lv = torch.randn(60)
    fig = viz.density_connection(lv, 2 * lv + 0.1 * torch.randn(60))
    (ax,) = fig.axes
    assert labelled(ax) and ax.get_title()
    assert "Spearman" in ax.get_legend().get_texts()[0].get_text()
    assert len(colorbars(viz.density_connection(lv, lv, labels=codes[1]))) == 1


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m, d: viz.latent_scatter(torch.zeros(5, 3), torch.zeros(5)), "codes"),
        (lambda m, d: viz.latent_scatter(torch.zeros(5, 2), torch.zeros(4)), "labels"),
        (lambda m, d: viz.decoded_grid(d, (1.0, 0.0, 0.0, 1.0)), "extent"),
        (lambda m, d: viz.volume_heatmap(m, EXTENT, torch.zeros(3, 3), resolution=4), "codes"),
        (lambda m, d: viz.volume_heatmap(m, EXTENT[:3]), "extent"),
        (lambda m, d: viz.geodesics_figure(m, {"a": torch.zeros(2, 5)}), "curves_by_method"),
        (
            lambda m, d: viz.geodesics_figure(m, {"a": curves(2), "b": curves(3)}),
            "curves_by_method['b']",
        ),
        (
            lambda m, d: viz.geodesics_figure(m, {"a": curves(2)}, torch.zeros(3, 2, 4, 4)),
            "end_images",
        ),
        (lambda m, d: viz.interpolation_figure(d, curves(2), curves(3), m), "geodesic"),
        (lambda m, d: viz.interpolation_figure(d, torch.zeros(2, 5), curves(2), m), "straight"),
        (lambda m, d: viz.distance_matrices(np.zeros((10, 9)), np.zeros((10, 9))), "euclid"),
        (lambda m, d: viz.distance_matrices(np.zeros((10, 10)), np.zeros((9, 9))), "geodesic"),
        (
            lambda m, d: viz.distance_matrices(np.zeros((3, 3)), np.zeros((3, 3)), "ab"),
            "class_names",
        ),
        (
            lambda m, d: viz.uncertainty_figure(m, m, d, EXTENT, curves_with=torch.zeros(2, 4)),
            "curves_with",
        ),
        (lambda m, d: viz.density_connection(torch.zeros(5), torch.zeros(4)), "log_density"),
        (lambda m, d: viz.density_connection(torch.zeros(5, 1), torch.zeros(5)), "log_volume"),
        (lambda m, d: viz.kde_log_density(torch.zeros(5, 2), torch.zeros(3, 3)), "points"),
    ],
)
def test_bad_shapes_name_the_argument(metric, decoder, call, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        call(metric, decoder)


def test_metric_must_be_2d():
    m3 = PullbackMetric(nn.Sequential(nn.Linear(3, 4)))
    with pytest.raises(ValueError, match="2-D latent space"):
        viz.volume_heatmap(m3, EXTENT, resolution=4)
    with pytest.raises(TypeError, match="PullbackMetric"):
        viz.volume_heatmap(lambda z: z, EXTENT, resolution=4)


def test_no_pyplot_state(metric, codes):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.latent_scatter(*codes)
    viz.volume_heatmap(metric, EXTENT, resolution=4)
    assert plt.get_fignums() == before


def test_figures_draw_themselves_in_a_notebook_without_pyplot():
    """IPython shows an object by its ``_repr_png_`` when no Figure formatter is
    registered (pyplot never imported): the figures must not print as text."""
    from pullback_geom.viz import training_curve

    history = [{"stage": 1, "epoch": e, "train_loss": 10.0 / e} for e in (1, 2, 3)]
    png = training_curve(history)._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
