"""The ensemble curve energy (Syrota et al.): its closed form against the expectation over
decoder pairs, its minimiser against the mean image's geodesics and a disagreement wall."""

import itertools

import pytest
import torch
from torch import nn

from pullback_geom import PullbackMetric, vae
from pullback_geom.geodesics import connecting_geodesic
from pullback_geom.geodesics.ensemble import ensemble_curve_energy, ensemble_geodesic

F64 = torch.float64


def members(k: int = 3, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return list(vae.EnsembleVAE(hidden=16, decoders=k).to(F64).decoder.members)


class Bump(nn.Module):
    """``z -> (z, sign * a * exp(-|z|^2 / 0.1))``: members agree except near the origin."""

    def __init__(self, sign: float, a: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor(sign * a, dtype=F64))

    def forward(self, z):
        return torch.cat([z, self.c * torch.exp(-z.square().sum(-1, keepdim=True) / 0.1)], -1)


def test_energy_is_the_expectation_over_independent_decoder_pairs():
    decs = members(3)
    curves = torch.randn(2, 6, 2, dtype=F64)
    x = [torch.stack([m(c).reshape(6, -1) for m in decs]) for c in curves]  # (K, N, D) each
    pairs = list(itertools.product(range(3), repeat=2))  # (end's decoder, start's decoder)
    expected = torch.stack(
        [
            5
            * sum((xc[a, t + 1] - xc[b, t]).square().sum() for t in range(5) for a, b in pairs)
            / 9
            for xc in x
        ]
    )
    torch.testing.assert_close(ensemble_curve_energy(decs, curves), expected)
    # weight 0: the mean image's discrete energy
    mean_metric = PullbackMetric(lambda z: torch.stack([m(z) for m in decs]).mean(0), latent_dim=2)
    torch.testing.assert_close(
        ensemble_curve_energy(decs, curves, weight=0.0), mean_metric.curve_energy(curves)
    )


def test_without_the_potential_it_is_the_mean_images_geodesic():
    decs = members(3)
    p, q = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    got = ensemble_geodesic(decs, p, q, n_points=10, weight=0.0)
    mean_metric = PullbackMetric(lambda z: torch.stack([m(z) for m in decs]).mean(0), latent_dim=2)
    ref = connecting_geodesic(mean_metric, p, q, n_points=10, init_curve="straight")  # as got
    assert got.converged.all()
    torch.testing.assert_close(got.points, ref.points, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.mean_length, ref.length, atol=1e-8, rtol=1e-6)


def test_minimiser_is_stationary_and_no_worse_than_the_straight_line():
    torch.manual_seed(1)  # smooth members: a ReLU kink has no zero gradient to reach
    decs = [
        nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 5), nn.Sigmoid()).to(F64)
        for _ in range(4)
    ]
    p, q = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    res = ensemble_geodesic(decs, p, q, n_points=8, tol=1e-14)
    assert res.converged.all()
    inner = res.points[:, 1:-1].clone().requires_grad_(True)
    curves = torch.cat([res.points[:, :1], inner, res.points[:, -1:]], dim=1)
    (grad,) = torch.autograd.grad(ensemble_curve_energy(decs, curves).sum(), inner)
    assert float(grad.abs().max()) < 1e-6 * float(res.energy.max())
    line = p[:, None] + torch.linspace(0, 1, 8, dtype=F64)[None, :, None] * (q - p)[:, None]
    assert (res.energy <= ensemble_curve_energy(decs, line) + 1e-12).all()
    torch.testing.assert_close(res.energy, ensemble_curve_energy(decs, res.points))
    # the expected segment length is at least the mean image's (Jensen), chord for chord
    single = ensemble_geodesic(decs, p[0], q[0], n_points=8)
    assert single.points.shape == (8, 2) and single.length >= single.mean_length * 0.99


def test_disagreement_walls_curves_in():
    # the mean image is the identity (flat), but the members disagree near the origin:
    # the straight line through it is the mean image's geodesic, the ensemble goes round
    decs = [Bump(1.0), Bump(-1.0)]
    p = torch.tensor([[-1.0, 0.01]], dtype=F64)
    q = torch.tensor([[1.0, 0.01]], dtype=F64)
    flat = ensemble_geodesic(decs, p, q, n_points=16, weight=0.0)
    walled = ensemble_geodesic(decs, p, q, n_points=16)
    assert float(flat.points[..., 1].abs().max()) < 0.02
    assert float(walled.points[..., 1].abs().max()) > 0.3
    # the detour is longer in the mean image, far shorter in expectation over the members
    assert walled.mean_length > 1.1 * flat.mean_length
    assert walled.length < 0.5 * flat.length


def test_bad_arguments():
    decs = members(2)
    p = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="at least 2 decoders"):
        ensemble_geodesic(decs[:1], p, p + 1)
    with pytest.raises(ValueError, match="n_points must be at least 3"):
        ensemble_geodesic(decs, p, p + 1, n_points=2)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ensemble_geodesic(decs, p, p + 1, weight=-1.0)


def test_chunks_of_pairs_give_the_same_curves(monkeypatch):
    from pullback_geom._core.memory import ENV_VAR, activation_bytes

    decs = members(3)
    p, q = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    whole = ensemble_geodesic(decs, p, q, n_points=8)
    # A budget of 2 pairs: 8 nodes of 3 members, 3 Jacobian streams (d + 1) each.
    per_point = activation_bytes(lambda z: decs[0](z).flatten(1), p[:1])
    monkeypatch.setenv(ENV_VAR, str(2 * 8 * 3 * 3 * per_point + 1))
    chunked = ensemble_geodesic(decs, p, q, n_points=8)
    rows = PullbackMetric(decs[0])
    rows.evaluator.check_points(p)
    assert rows.evaluator.rows("jacobian", per_row=8 * 3) == 2
    torch.testing.assert_close(chunked.points, whole.points)
    torch.testing.assert_close(chunked.length, whole.length)
