"""The library on a GPU: every result stays on the caller's device and agrees with the CPU.

Skipped where CUDA is absent (CI has none). On any CUDA machine::

    python -m pytest tests/test_cuda.py -q

``PULLBACK_GEOM_TEST_DEVICE=cpu`` runs the same tests on the CPU (against a second CPU
copy), which checks the tests themselves where no GPU is at hand.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.experiments.compare import compare_geodesics
from pullback_geom.geodesics import (
    connecting_geodesic,
    exp_map,
    log_map,
    pairwise_distances,
)

DEVICE = torch.device(os.environ.get("PULLBACK_GEOM_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="CUDA is not available"
)
F64 = torch.float64


def decoder() -> nn.Sequential:
    """A small smooth decoder 2 -> 32 -> 12, float64 (curvature and ODEs need smoothness)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 12)).to(F64)


@pytest.fixture(scope="module")
def metrics() -> tuple[PullbackMetric, PullbackMetric]:
    dec = decoder()
    return PullbackMetric(dec), PullbackMetric(dec).to(device=DEVICE)


@pytest.fixture(scope="module")
def points() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 2, generator=gen, dtype=F64), torch.randn(6, 2, generator=gen, dtype=F64)


def on_device(x: torch.Tensor) -> torch.Tensor:
    assert x.device.type == DEVICE.type
    return x.cpu()


@pytest.mark.parametrize(
    "name",
    ["metric_tensor", "volume_element", "christoffel_symbols", "scalar_curvature", "jacobian"],
)
def test_metric_quantities(metrics, points, name):
    cpu, dev = metrics
    z = points[0]
    ref = getattr(cpu, name)(z)
    torch.testing.assert_close(on_device(getattr(dev, name)(z.to(DEVICE))), ref)


def test_forward_mode_decoder_and_acceleration(points):
    weight = torch.randn(2, 7, dtype=F64)

    def plain(z):
        return torch.sin(z @ weight.to(z.device))

    z, v = points
    ref = PullbackMetric(plain).geodesic_acceleration(z, v)
    got = PullbackMetric(plain).geodesic_acceleration(z.to(DEVICE), v.to(DEVICE))
    torch.testing.assert_close(on_device(got), ref)


def test_curvature_of_a_plane(metrics):
    cpu, dev = metrics
    z = torch.zeros(3, 2, dtype=F64)
    u, v = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    ref = cpu.sectional_curvature(z, u, v)
    got = dev.sectional_curvature(z.to(DEVICE), u.to(DEVICE), v.to(DEVICE))
    torch.testing.assert_close(on_device(got), ref)


@pytest.mark.parametrize("method", ["lm", "georce", "lbfgs"])
def test_connecting_geodesic(metrics, points, method):
    cpu, dev = metrics
    p, q = points
    ref = connecting_geodesic(cpu, p, q, method=method, warn=False)
    got = connecting_geodesic(dev, p.to(DEVICE), q.to(DEVICE), method=method, warn=False)
    for name in ("points", "length", "converged", "iterations"):
        assert getattr(got, name).device.type == DEVICE.type
    torch.testing.assert_close(got.length.cpu(), ref.length, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["dopri5", "rk4", "discrete"])
def test_exp_and_log_maps(metrics, points, method):
    cpu, dev = metrics
    p, q = points
    v = 0.3 * (q - p)
    ref = exp_map(cpu, p, v, method=method)
    got = exp_map(dev, p.to(DEVICE), v.to(DEVICE), method=method)
    torch.testing.assert_close(on_device(got), ref, rtol=1e-6, atol=1e-8)
    log_method = "discrete" if method == "discrete" else "shooting"
    ref = log_map(cpu, p, ref, method=log_method)
    got = log_map(dev, p.to(DEVICE), got, method=log_method)
    torch.testing.assert_close(on_device(got), ref, rtol=1e-5, atol=1e-7)


def test_pairwise_distances(metrics, points):
    cpu, dev = metrics
    z = torch.cat(points)
    ref = pairwise_distances(cpu, z)
    torch.testing.assert_close(
        on_device(pairwise_distances(dev, z.to(DEVICE))), ref, rtol=1e-6, atol=1e-8
    )


def test_compare_geodesics_runs_our_methods(metrics, points):
    _, dev = metrics
    p, q = (x[:3].to(DEVICE) for x in points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compare_geodesics(dev, p, q, methods=["lm", "shooting", "multiple", "discrete"])
    for name, row in out.rows.items():
        assert row.error is None, f"{name}: {row.error}"
        assert bool(row.converged.any()), name


def test_geomstats_adapter(metrics, points):
    from pullback_geom.geomstats import latent_space

    cpu, dev = metrics
    p, q = points
    # The discrete solvers (the defaults before method="auto", which picks the ODE on this
    # smooth decoder; exp_map and log_map above cover those on the device).
    options = {"exp_options": {"method": "discrete"}, "log_options": {"method": "discrete"}}
    ref_space, space = latent_space(cpu, **options), latent_space(dev, **options)
    p_d, q_d = p.to(DEVICE), q.to(DEVICE)
    torch.testing.assert_close(
        on_device(space.metric.dist(p_d, q_d)), ref_space.metric.dist(p, q), rtol=1e-6, atol=1e-8
    )
    log = space.metric.log(q_d, p_d)
    torch.testing.assert_close(on_device(log), ref_space.metric.log(q, p), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(on_device(space.metric.exp(log, p_d)), q, rtol=1e-4, atol=1e-6)
