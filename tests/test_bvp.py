"""Multiple shooting on the geodesic ODE (``connecting_geodesic(method="multiple")``)
against closed forms (the sphere), and its verdicts: converged means reached."""

from __future__ import annotations

import warnings

import pytest
import torch
from oracles import tanh_mlp

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    GeodesicConvergenceWarning,
    connecting_geodesic,
    exp_map,
    log_map,
)
from pullback_geom.surfaces import InverseStereographic, sphere_distance

F64 = torch.float64


def _pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 0.8 * torch.randn(2, n, 2, generator=gen, dtype=F64)


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic(), latent_dim=2)


def test_great_circles(sphere):
    p, q = _pairs(4, seed=0)
    res = connecting_geodesic(sphere, p, q, method="multiple")
    assert bool(res.converged.all())
    truth = sphere_distance(p, q)
    # RK4 with 16 steps of 1/16: the initial speed is right to ~4e-6
    torch.testing.assert_close(sphere.norm(p, res.velocity), truth, rtol=2e-5, atol=0)
    assert res.points.shape == (4, 17, 2)
    torch.testing.assert_close(res.points[:, 0], p)
    torch.testing.assert_close(res.points[:, -1], q, rtol=0, atol=1e-8)
    # The same velocity shot by the adaptive integrator lands on q (RK4 with 16 steps
    # is accurate to ~1e-6 here).
    end = exp_map(sphere, p, res.velocity, method="dopri5")
    torch.testing.assert_close(end, q, rtol=0, atol=1e-5)
    torch.testing.assert_close(log_map(sphere, p, q, method="multiple"), res.velocity)


def test_smooth_mlp_agrees_with_the_energy_solver():
    torch.manual_seed(0)
    metric = PullbackMetric(tanh_mlp(d=2, out=6, width=16))
    p, q = _pairs(4, seed=1)
    res = connecting_geodesic(metric, p, q, method="multiple")
    assert bool(res.converged.all())
    with torch.no_grad():
        bvp = metric.curve_length(res.points)
    energy = connecting_geodesic(metric, p, q, n_points=64, refine=8).length
    assert float(((bvp - energy) / energy).abs().max()) < 1e-3


def test_reached_means_reached(sphere):
    """One Gauss-Newton iteration from a deliberately bad start cannot reach q."""
    p, q = _pairs(3, seed=2)
    t = torch.linspace(0, 1, 9, dtype=F64)[None, :, None]
    bent = p[:, None] + t * (q - p)[:, None] + 0.3 * torch.sin(torch.pi * t)
    with pytest.warns(
        GeodesicConvergenceWarning,
        match="connecting_geodesic: 3 of 3 pairs did not converge with method='multiple'",
    ):
        res = connecting_geodesic(sphere, p, q, method="multiple", init_curve=bent, max_iter=1)
    assert not bool(res.converged.any())
    assert bool((res.info["error"] > 1e-9).all())


def test_a_relu_decoder_is_reported_not_hidden():
    torch.manual_seed(3)
    decoder = torch.nn.Sequential(
        torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8), torch.nn.Sigmoid()
    ).double()
    metric = PullbackMetric(decoder)
    p, q = _pairs(6, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeodesicConvergenceWarning)
        res = connecting_geodesic(metric, p, q, method="multiple", max_iter=10)
    # Whatever it reached, the verdict is the residual's.
    assert bool((res.converged == (res.info["error"] <= 1e-9)).all())


def test_bad_input(sphere):
    p, q = _pairs(2, seed=4)
    with pytest.raises(ValueError, match="segments"):
        connecting_geodesic(sphere, p, q, method="multiple", segments=0)
    with pytest.raises(ValueError, match="same shape"):
        connecting_geodesic(sphere, p, q[:1], method="multiple")
