"""GEORCE (``method="georce"``) against independent oracles: ``nu`` and the left-point energy
from autograd, the unit sphere's great circles, LM on a smooth MLP, and what ``converged``
means."""

from __future__ import annotations

import pytest
import torch
from oracles import autograd_hessian, autograd_jacobian, autograd_metric, tanh_mlp
from test_geodesics import _sphere_pairs

import pullback_geom.geodesics.georce as georce_module
from pullback_geom import PullbackMetric
from pullback_geom.geodesics import connecting_geodesic
from pullback_geom.geodesics.georce import metric_energy, metric_gradient
from pullback_geom.surfaces import InverseStereographic, sphere_distance

F64 = torch.float64
ENERGIES = ["chord", "metric"]


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic())


def _mlp_pairs(d: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, n, d, generator=gen, dtype=F64).unbind(0)


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_nu_matches_the_hessian_formula(ridge):
    """``nu_k = 2 sum_a (J u)_a sum_j H_akj u_j``, ``J`` and ``H`` by reverse-mode autograd;
    the ridge block is linear and adds nothing."""
    torch.manual_seed(0)
    decoder = tanh_mlp(d=3, out=5, width=8)
    metric = PullbackMetric(decoder, ridge=ridge)
    z, u = _mlp_pairs(3, 4, seed=1)
    metric.evaluator.check_points(z)
    jac, hess = autograd_jacobian(decoder, z), autograd_hessian(decoder, z)
    ju = torch.einsum("bak,bk->ba", jac, u)
    expected = 2 * torch.einsum("ba,bakj,bj->bk", ju, hess, u)
    torch.testing.assert_close(metric_gradient(metric, z, u), expected, rtol=1e-10, atol=1e-12)


def test_left_point_energy_matches_the_metric_tensor():
    torch.manual_seed(0)
    decoder = tanh_mlp(d=3, out=5, width=8)
    metric = PullbackMetric(decoder, ridge=0.3)
    curve = torch.randn(2, 6, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    metric.evaluator.check_curves(curve)
    u = curve.diff(dim=1)
    g = autograd_metric(decoder, curve[:, :-1].reshape(-1, 3)).reshape(2, 5, 3, 3)
    g = g + 0.3 * torch.eye(3, dtype=F64)
    expected = 5 * torch.einsum("bti,btij,btj->b", u, g, u)
    torch.testing.assert_close(metric_energy(metric, curve), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("energy", ENERGIES)
def test_sphere_lengths_are_great_circles(sphere, energy):
    p, q = _sphere_pairs(6)
    res = connecting_geodesic(sphere, p, q, method="georce", n_points=24, energy=energy)
    assert bool(res.converged.all())
    # The refined length of 24 nodes is within ~1e-6 of the great circle (LM's is too).
    torch.testing.assert_close(res.length, sphere_distance(p, q), rtol=1e-4, atol=1e-9)


def test_smooth_mlp_lengths_match_lm():
    """The chord energy is LM's: both solve one discrete problem, to ``tol = 1e-10`` of
    its energy, so their lengths agree far below its discretisation error (~1e-3)."""
    torch.manual_seed(3)
    metric = PullbackMetric(tanh_mlp(d=4, out=12, width=24))
    p, q = _mlp_pairs(4, 6, seed=4)
    lm = connecting_geodesic(metric, p, q, method="lm", n_points=16)
    geo = connecting_geodesic(metric, p, q, method="georce", n_points=16)
    assert bool(lm.converged.all()) and bool(geo.converged.all())
    torch.testing.assert_close(geo.length, lm.length, rtol=1e-5, atol=0)
    torch.testing.assert_close(geo.points, lm.points, rtol=0, atol=1e-3)


@pytest.mark.parametrize("energy", ENERGIES)
def test_one_iteration_is_not_convergence(sphere, energy):
    p, q = _sphere_pairs(4)
    res = connecting_geodesic(
        sphere, p, q, method="georce", n_points=16, max_iter=1, energy=energy, warn=False
    )
    assert not bool(res.converged.any())
    assert res.iterations.tolist() == [1, 1, 1, 1]


def test_a_failed_line_search_is_not_convergence(sphere, monkeypatch):
    """No halving allowed and a decrease twice the model's asked for: every line search
    fails, and the pairs stop unconverged after one iteration."""
    monkeypatch.setattr(georce_module, "LINE_SEARCH_HALVINGS", 0)
    monkeypatch.setattr(georce_module, "ARMIJO", 0.99)
    p, q = _sphere_pairs(3)
    res = connecting_geodesic(sphere, p, q, method="georce", warn=False)
    assert not bool(res.converged.any())
    assert res.iterations.tolist() == [1, 1, 1]


def test_no_second_derivatives(sphere, monkeypatch):
    """``nu`` comes from a JVP and a VJP; the decoder's Hessian is never formed."""

    def refuse(*args, **kwargs):
        raise AssertionError("GEORCE formed the decoder's Hessian")

    metric = PullbackMetric(InverseStereographic())
    monkeypatch.setattr(metric.evaluator.kernels, "second_derivatives", refuse)
    p, q = _sphere_pairs(2)
    res = connecting_geodesic(metric, p, q, method="georce", energy="metric", n_points=12)
    assert bool(res.converged.all())


def test_an_unknown_energy_is_named(sphere):
    p, q = _sphere_pairs(2)
    with pytest.raises(ValueError, match="energy must be one of \\['chord', 'metric'\\]"):
        connecting_geodesic(sphere, p, q, method="georce", energy="left")
