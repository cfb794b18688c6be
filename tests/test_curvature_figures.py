"""The curvature map and the curvature statistics, on the unit sphere (K = 1) and a tiny MLP."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.experiments.curvature_stats import curvature_statistics
from pullback_geom.surfaces import InverseStereographic
from pullback_geom.viz import curvature_map

matplotlib.use("Agg")


def two_clusters(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    # Near the origin: the short great-circle arcs between the clusters stay in the chart.
    codes = 0.2 * torch.randn(n, 2, generator=g, dtype=torch.float64) + (labels - 0.5)[:, None]
    return codes, labels


def test_curvature_map_sphere_and_labels():
    codes, labels = two_clusters()
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    fig = curvature_map(metric, latents=codes, labels=labels, resolution=12)
    assert isinstance(fig, Figure)
    ax, cbar = fig.axes
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), 1.0, rtol=1e-5)  # K = 1; float32 grid
    vmin, vmax = image.norm.vmin, image.norm.vmax
    assert vmin == -vmax  # centred on 0
    assert "Gaussian curvature" in cbar.get_ylabel() and ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1"]


def test_curvature_map_symlog_for_wide_ranges():
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 9), nn.Sigmoid())
    fig = curvature_map(PullbackMetric(dec), (-6.0, 6.0, -6.0, 6.0), resolution=16)
    norm = fig.axes[0].get_images()[0].norm
    assert isinstance(norm, SymLogNorm)
    assert "log" in fig.axes[1].get_ylabel()
    fig = curvature_map(PullbackMetric(dec), (-6.0, 6.0, -6.0, 6.0), resolution=8, linthresh=1.0)
    assert fig.axes[0].get_images()[0].norm.linthresh == 1.0


def test_curvature_map_bad_input():
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    with pytest.raises(ValueError, match="extent"):
        curvature_map(metric)
    with pytest.raises(ValueError, match="latents"):
        curvature_map(metric, (-1, 1, -1, 1), labels=[0, 1])
    with pytest.raises(ValueError, match="one entry per code"):
        curvature_map(metric, latents=torch.zeros(3, 2), labels=[0, 1])
    with pytest.raises(ValueError, match="2-D latent space"):
        curvature_map(PullbackMetric(InverseStereographic(), latent_dim=3), (-1, 1, -1, 1))


def test_statistics_on_the_sphere():
    """K = 1 everywhere: every region and every path has mean |K| = 1, all positive."""
    codes, labels = two_clusters()
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    stats = curvature_statistics(metric, codes, labels, resolution=16, n_pairs=3, n_points=16)
    assert set(stats.regions) == {"codes", "clusters", "overlaps", "gaps", "outside"}
    for name in ("codes", "clusters", "gaps"):
        r = stats.regions[name]
        assert r.n > 0
        assert math.isclose(r.mean_abs, 1.0, rel_tol=1e-5)
        assert r.positive == 1.0 and r.negative == 0.0
    paths = stats.paths
    assert paths.ratio.shape == (3,) and paths.converged.all()
    np.testing.assert_allclose(paths.geodesic_mean_abs, 1.0, rtol=1e-4)  # float32
    np.testing.assert_allclose(paths.ratio, 1.0, rtol=1e-4)
    # great circles are no longer than the images of straight chart lines
    assert (paths.length_ratio <= 1 + 1e-3).all()  # line length: 64-point chords
    assert "clusters" in stats.table() and "geodesic" in stats.table()


def test_statistics_bad_input():
    codes, labels = two_clusters()
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    with pytest.raises(ValueError, match="two classes"):
        curvature_statistics(metric, codes, torch.zeros(len(codes)), n_pairs=0)
    with pytest.raises(ValueError, match="one entry per code"):
        curvature_statistics(metric, codes, labels[:5], n_pairs=0)
