"""Discrete geodesic calculus against closed forms: sphere, linear decoders, smooth and
ReLU MLPs (exp/log round trips, |log| against the distance, parallel transport)."""

from __future__ import annotations

import warnings

import pytest
import torch
from oracles import stereographic, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    GeodesicConvergenceWarning,
    connecting_geodesic,
    discrete_transport,
    exp_map,
    integrate_geodesic,
    log_map,
)
from pullback_geom.surfaces import InverseStereographic, LinearDecoder, sphere_distance

F64 = torch.float64


def _pairs(n: int, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(2, n, 2, generator=gen, dtype=F64)


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic(), latent_dim=2)


def test_round_trip_on_the_sphere(sphere):
    p, q = _pairs(8)
    result = connecting_geodesic(sphere, p, q, method="discrete")
    v = result.velocity
    assert bool(result.converged.all())
    end = exp_map(sphere, p, v, method="discrete")
    scale = 1 + (q - p).norm(dim=-1)
    assert float(((end - q).norm(dim=-1) / scale).max()) <= 1e-6  # the default tol


def test_log_norm_converges_to_the_distance_at_second_order(sphere):
    """With the Taylor start, |log_p q|_G(p) -> great-circle angle as O(1 / K^2)."""
    p, q = _pairs(8)
    truth = sphere_distance(p, q)
    errors = []
    for k in (8, 32):
        v = log_map(sphere, p, q, method="discrete", n_steps=k)
        errors.append(float(((sphere.norm(p, v) - truth) / truth).abs().max()))
    # Four times the steps: about 16 times smaller (first order would give 4).
    assert errors[1] < errors[0] / 8
    assert errors[1] < 1e-2


def test_exp_matches_the_great_circle(sphere):
    """The discrete exp of a velocity lands on the continuous geodesic to O(1 / K^2)."""
    p = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=F64)
    v = torch.tensor([[1.0, 0.5], [-0.2, 0.9]], dtype=F64)
    ref = exp_map(sphere, p, v, method="dopri5")
    errs = [
        float((exp_map(sphere, p, v, method="discrete", n_steps=k) - ref).norm(dim=-1).max())
        for k in (8, 32)
    ]
    assert errs[1] < errs[0] / 8


def test_linear_decoder_gives_straight_lines():
    gen = torch.Generator().manual_seed(3)
    metric = PullbackMetric(LinearDecoder(torch.randn(5, 3, generator=gen, dtype=F64)))
    z, v = torch.randn(2, 4, 3, generator=gen, dtype=F64)
    path = integrate_geodesic(metric, z, v, method="discrete", n_steps=5, path=True).path
    t = torch.linspace(0, 1, 6, dtype=F64)[None, :, None]
    torch.testing.assert_close(path, z[:, None] + t * v[:, None], rtol=0, atol=1e-10)
    # From a graph start the energy solver's nodes are exact to about the square root of
    # its 1e-16 tolerance; from the straight line (the solution here) exactly.
    torch.testing.assert_close(log_map(metric, z, z + v, method="discrete"), v, rtol=0, atol=1e-7)
    exact = log_map(metric, z, z + v, method="discrete", init_curve="straight")
    torch.testing.assert_close(exact, v, rtol=0, atol=1e-10)


def test_round_trip_on_a_smooth_mlp():
    torch.manual_seed(0)
    metric = PullbackMetric(tanh_mlp(d=2, out=6, width=16))
    p, q = _pairs(6, scale=0.7, seed=1)
    result = connecting_geodesic(metric, p, q, method="discrete")
    v, nodes = result.velocity, result.points
    assert bool(result.converged.all())
    end = exp_map(metric, p, v, method="discrete")
    scale = 1 + (q - p).norm(dim=-1)
    assert bool(((end - q).norm(dim=-1) <= 1e-6 * scale).all())  # the default tol
    # The discrete geodesic has (nearly) constant decoded speed, so |log|_G ~ its length.
    with torch.no_grad():
        length = metric.curve_length(nodes)
        rel = (metric.norm(p, v) - length).abs() / length
    assert float(rel.max()) < 0.05


def test_converged_means_converged_on_a_relu_mlp():
    """On a ReLU decoder the round trip may fail; where info says converged, it holds."""
    torch.manual_seed(2)
    decoder = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 8), nn.Sigmoid()).double()
    metric = PullbackMetric(decoder)
    p, q = _pairs(12, scale=1.0, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeodesicConvergenceWarning)
        info = connecting_geodesic(metric, p, q, method="discrete", tol=1e-7)
        v = info.velocity
        exp_info = integrate_geodesic(metric, p, v, method="discrete", warn=False)
        end = exp_info.point
    err = (end - q).norm(dim=-1) / (1 + (q - p).norm(dim=-1))
    assert bool(info.converged.any())
    assert bool((err[info.converged] <= 1e-7 * 1.01).all())
    assert bool((~info.converged | exp_info.converged).all())


def _sphere_transport(p: torch.Tensor, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed form: transport along the great circle from x to y of ambient w is
    w - <w, y> / (1 + <x, y>) (x + y); back to latent coordinates by G^{-1} J^T."""
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    x, y = stereographic(p), stereographic(q)
    w = (metric.jacobian(p) @ v.unsqueeze(-1)).squeeze(-1)
    coef = (w * y).sum(-1, keepdim=True) / (1 + (x * y).sum(-1, keepdim=True))
    moved = w - coef * (x + y)
    jq = metric.jacobian(q)
    return torch.linalg.solve(jq.mT @ jq, (jq.mT @ moved.unsqueeze(-1))).squeeze(-1)


def test_transport_on_the_sphere_converges_to_the_closed_form(sphere):
    p, q = _pairs(6, scale=0.8, seed=4)
    v = torch.randn(6, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    truth = _sphere_transport(p, q, v)
    errs = []
    for k in (8, 32):
        nodes = connecting_geodesic(sphere, p, q, method="discrete", n_steps=k).points
        moved = discrete_transport(sphere, nodes, v)[:, -1]
        errs.append(float((sphere.norm(q, moved - truth) / sphere.norm(p, v)).max()))
    # A first-order scheme: four times the nodes, about four times smaller.
    assert errs[1] < errs[0] / 3


def test_transport_keeps_the_norm_on_a_smooth_mlp():
    torch.manual_seed(0)
    metric = PullbackMetric(tanh_mlp(d=2, out=6, width=16))
    p, q = _pairs(4, scale=0.7, seed=6)
    v = torch.randn(4, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    nodes = connecting_geodesic(metric, p, q, method="discrete", n_steps=64).points
    path = discrete_transport(metric, nodes, v)
    assert path.shape == (4, 65, 2)
    torch.testing.assert_close(path[:, 0], v)
    ratio = metric.norm(q, path[:, -1]) / metric.norm(p, v)
    assert float((ratio - 1).abs().max().detach()) < 1e-2


def test_core_entry_points_and_empty_batches(sphere):
    p, q = _pairs(3)
    v = log_map(sphere, p, q, method="discrete")
    torch.testing.assert_close(v, connecting_geodesic(sphere, p, q, method="discrete").velocity)
    torch.testing.assert_close(
        exp_map(sphere, p, v, method="discrete"),
        integrate_geodesic(sphere, p, v, method="discrete").point,
    )
    assert log_map(sphere, p[0], q[0], method="discrete").shape == (2,)
    empty = torch.zeros(0, 2, dtype=F64)
    assert exp_map(sphere, empty, empty, method="discrete").shape == (0, 2)
    assert log_map(sphere, empty, empty, method="discrete").shape == (0, 2)
    with pytest.raises(ValueError, match="n_steps"):
        exp_map(sphere, p, v, method="discrete", n_steps=0)
    with pytest.raises(ValueError, match="unknown boundary-value method 'magic'"):
        log_map(sphere, p, q, method="magic")


class _Exponential(nn.Module):
    """f(z) = exp(z) per coordinate: geodesics z(t) = log(1 + v t) blow up at t = -1 / v."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.exp()


def test_rk4_divergence_is_nan_with_a_warning():
    metric = PullbackMetric(_Exponential(), latent_dim=2)
    z = torch.zeros(2, 2, dtype=F64)
    v = torch.tensor([[-3.0, 0.0], [0.5, 0.2]], dtype=F64)  # the first blows up at t = 1/3
    with pytest.warns(GeodesicConvergenceWarning, match="diverged"):
        out = exp_map(metric, z, v, method="rk4", n_steps=50)
    assert bool(torch.isnan(out[0]).all())
    assert bool(torch.isfinite(out[1]).all())
