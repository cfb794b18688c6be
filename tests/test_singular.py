"""Singular metrics: a decoder whose ReLUs are all dead has ``J = 0`` everywhere."""

import math
import warnings

import pytest
import torch
from oracles import F64
from torch import nn

from pullback_geom import PullbackMetric, SingularMetricWarning


def dead_relu_decoder(dtype, d=2):
    decoder = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        decoder[0].bias.fill_(-1e6)
    return decoder


def half_dead_decoder(dtype):
    """Ignores its second latent coordinate: ``G`` has rank 1 everywhere."""
    decoder = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        decoder[0].weight[:, 1] = 0
    return decoder


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["chain", "forward"])
def test_dead_relus(method, dtype):
    metric = PullbackMetric(dead_relu_decoder(dtype), jacobian=method)
    z, v = torch.randn(4, 2, dtype=dtype), torch.randn(4, 2, dtype=dtype)
    g = metric.metric_tensor(z)
    assert bool((g == 0).all())
    with pytest.warns(SingularMetricWarning, match="singular at 4 of 4 points"):
        acc = metric.geodesic_acceleration(z, v)
    assert acc.dtype == dtype and bool(torch.isfinite(acc).all())
    with pytest.warns(SingularMetricWarning):
        gam = metric.christoffel_symbols(z)
    assert bool(torch.isfinite(gam).all())
    log_vol = metric.log_volume(z)
    assert bool((log_vol == -math.inf).all())
    assert bool((metric.volume_element(z) == 0).all())
    assert float(metric.curve_energy(torch.randn(5, 2, dtype=dtype)).detach()) == 0.0


def test_only_singular_points_are_counted():
    """One dead point in a batch of three: the warning names it, the others are exact."""
    decoder = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        decoder[0].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [1, -1]]))
        decoder[0].bias.fill_(-1.0)
    z = torch.tensor([[-5.0, -5.0], [3.0, 2.0], [2.0, 4.0]], dtype=F64)
    v = torch.randn(3, 2, dtype=F64)
    metric = PullbackMetric(decoder)
    with pytest.warns(SingularMetricWarning, match="singular at 1 of 3 points"):
        acc = metric.geodesic_acceleration(z, v)
    assert bool(torch.isfinite(acc).all())
    # A piecewise-linear decoder away from kinks: straight lines are geodesics.
    torch.testing.assert_close(acc[1:], torch.zeros(2, 2, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_deficient_metric_is_finite(dtype):
    metric = PullbackMetric(half_dead_decoder(dtype))
    z, v = torch.randn(3, 2, dtype=dtype), torch.randn(3, 2, dtype=dtype)
    with pytest.warns(SingularMetricWarning):
        acc = metric.geodesic_acceleration(z, v)
    assert bool(torch.isfinite(acc).all())
    # Log volume: -inf, or at worst a rounding-level determinant.
    assert bool((metric.log_volume(z) < -10).all())


@pytest.mark.parametrize("method", ["chain", "forward"])
def test_ridge_regularises_without_warning(method):
    ridge = 0.25
    metric = PullbackMetric(dead_relu_decoder(F64), jacobian=method, ridge=ridge)
    z, v = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularMetricWarning)
        torch.testing.assert_close(
            metric.metric_tensor(z), ridge * torch.eye(2, dtype=F64).expand(3, 2, 2)
        )
        torch.testing.assert_close(metric.geodesic_acceleration(z, v), torch.zeros(3, 2, dtype=F64))
        torch.testing.assert_close(
            metric.christoffel_symbols(z), torch.zeros(3, 2, 2, 2, dtype=F64)
        )
        torch.testing.assert_close(
            metric.log_volume(z), torch.full((3,), math.log(ridge), dtype=F64)
        )
