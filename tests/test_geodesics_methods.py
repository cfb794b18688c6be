"""Every energy method against the closed forms: the unit sphere and linear decoders."""

from __future__ import annotations

import copy

import pytest
import torch
from test_geodesics import _sphere_pairs

from pullback_geom import PullbackMetric, vae
from pullback_geom.geodesics import connecting_geodesic, geodesic_distance
from pullback_geom.geodesics.georce import metric_energy
from pullback_geom.surfaces import InverseStereographic, LinearDecoder, sphere_distance

F64 = torch.float64
METHODS = ["lm", "georce", "lbfgs"]


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic())


@pytest.mark.parametrize("method", METHODS)
def test_sphere_lengths(sphere, method):
    p, q = _sphere_pairs(6)
    result = connecting_geodesic(sphere, p, q, method=method, n_points=24, warn=False)
    torch.testing.assert_close(result.length, sphere_distance(p, q), rtol=1e-3, atol=1e-6)
    assert result.points.shape == (6, 24, 2)
    assert torch.equal(result.points[:, 0], p) and torch.equal(result.points[:, -1], q)


@pytest.mark.parametrize("method", ["lm", "georce"])
def test_sphere_converges(sphere, method):
    p, q = _sphere_pairs(6)
    assert bool(connecting_geodesic(sphere, p, q, method=method, n_points=16).converged.all())


@pytest.mark.parametrize("method", METHODS)
def test_linear_decoder_straight(method):
    a = torch.tensor([[2.0, 0.5], [0.0, 1.0], [1.0, -1.0]], dtype=F64)
    metric = PullbackMetric(LinearDecoder(a))
    p = torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=F64)
    q = torch.tensor([[1.0, 1.0], [-3.0, 0.5]], dtype=F64)
    result = connecting_geodesic(metric, p, q, method=method, n_points=10, warn=False)
    t = torch.linspace(0, 1, 10, dtype=F64)[None, :, None]
    torch.testing.assert_close(result.points, p[:, None] + t * (q - p)[:, None], atol=1e-6, rtol=0)
    torch.testing.assert_close(result.length, ((q - p) @ a.T).norm(dim=-1))


def test_georce_metric_energy_matches_chord_energy_at_convergence(sphere):
    """The left-point energy GEORCE minimises differs from the chord energy by O(1/N)."""
    p, q = _sphere_pairs(4)
    result = connecting_geodesic(sphere, p, q, method="georce", n_points=64)
    torch.testing.assert_close(
        metric_energy(sphere, result.points), result.energy, rtol=3e-2, atol=0
    )


@pytest.mark.parametrize("method", ["lm", "georce"])
def test_symmetry_and_identical_points(sphere, method):
    p, q = _sphere_pairs(4)
    d_pq = geodesic_distance(sphere, p, q, method=method, n_points=16)
    d_qp = geodesic_distance(sphere, q, p, method=method, n_points=16)
    torch.testing.assert_close(d_pq, d_qp, rtol=1e-6, atol=1e-9)
    same = connecting_geodesic(sphere, p, p, method=method)
    assert torch.equal(same.length, torch.zeros(4, dtype=F64))


def test_triangle_inequality(sphere):
    gen = torch.Generator().manual_seed(5)
    a, b, c = (torch.rand(3, 8, 2, generator=gen, dtype=F64) * 2 - 1) * 0.8
    d_ab, d_bc, d_ac = (
        geodesic_distance(sphere, x, y, n_points=16) for x, y in [(a, b), (b, c), (a, c)]
    )
    assert bool((d_ac <= d_ab + d_bc + 1e-4).all())


def test_unknown_method_is_named(sphere):
    p, q = _sphere_pairs(2)
    with pytest.raises(ValueError, match="unknown boundary-value method 'adam'; choose from"):
        connecting_geodesic(sphere, p, q, method="adam")


def test_lm_takes_newton_steps_on_a_smooth_chain_decoder():
    # The bundled smooth model (SiLU, nn.Sequential), float64: Gauss–Newton's neglected
    # curvature term slows it to linear convergence on these long curves (35 iterations
    # a pair on 16 random pairs); the chain rule's contracted second derivatives make the
    # diagonal blocks Newton's (3.6). Forward mode stays Gauss–Newton: the same curves.
    decoder = copy.deepcopy(vae.load_default("smooth").decoder).double()
    codes = vae.load_latents(vae.default_checkpoint("smooth")).codes.double()
    g = torch.Generator().manual_seed(0)
    i, j = torch.randint(0, len(codes), (2, 16), generator=g)
    newton, gauss_newton = (
        connecting_geodesic(metric, codes[i], codes[j], method="lm")
        for metric in (PullbackMetric(decoder), PullbackMetric(decoder, jacobian="forward"))
    )
    assert bool(newton.converged.all()) and bool(gauss_newton.converged.all())
    assert 3 * newton.iterations.sum() <= gauss_newton.iterations.sum()
    # Both to a relative energy decrease of 1e-10: nodes to about sqrt(1e-10); the
    # refined lengths, not stationary there, move by that times their O(1 / N^2) gap.
    torch.testing.assert_close(newton.length, gauss_newton.length, rtol=1e-5, atol=0)
