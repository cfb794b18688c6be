"""Jacobians in a lower precision than the points (``tangent_dtype``, ``jacobian_dtype``):
approximate Gauss–Newton steps, exact energies and the same minimum."""

from __future__ import annotations

import pytest
import torch
from oracles import ReshapeDecoder, autograd_jacobian, seed_decoder, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.chain import sequential_value_and_jacobian
from pullback_geom.geodesics import connecting_geodesic

BF16 = torch.bfloat16
#: bfloat16 keeps 8 significant bits (unit roundoff 2^-8 ~ 4e-3); through two layers the
#: Jacobian's relative (Frobenius) error stays a few times that.
BF16_JACOBIAN_RTOL = 3e-2


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Per point, ``|approx - exact|_F / |exact|_F``."""
    diff = torch.linalg.matrix_norm(approx.to(exact.dtype) - exact)
    return diff / torch.linalg.matrix_norm(exact)


def test_chain_tangents_in_bfloat16_values_untouched():
    torch.manual_seed(0)
    decoder = seed_decoder(torch.float32)
    z = 2 * torch.randn(6, 2)
    value, jac = sequential_value_and_jacobian(decoder, z, tangent_dtype=BF16)
    exact_value, exact_jac = sequential_value_and_jacobian(decoder, z)
    assert jac.dtype == BF16 and value.dtype == torch.float32
    assert torch.equal(value, exact_value)
    assert bool((relative_error(jac, autograd_jacobian(decoder, z)) < BF16_JACOBIAN_RTOL).all())
    # Not merely a cast of the float32 Jacobian: the products ran in bfloat16.
    assert not torch.equal(jac, exact_jac.to(BF16))


def test_metric_tangent_dtype_with_ridge_and_chunks():
    torch.manual_seed(1)
    decoder = tanh_mlp(d=3, out=7, width=32, dtype=torch.float32)
    metric = PullbackMetric(decoder, ridge=0.25, chunk_size=4)
    z = torch.randn(10, 3)
    value, jac = metric.evaluator.value_and_jacobian(z, tangent_dtype=BF16)
    exact_value, exact_jac = metric.evaluator.value_and_jacobian(z)
    assert jac.shape == (10, 7 + 3, 3) and jac.dtype == BF16
    assert torch.equal(value, exact_value)
    assert bool((relative_error(jac, exact_jac) < BF16_JACOBIAN_RTOL).all())
    torch.testing.assert_close(jac[:, 7:].float(), 0.5 * torch.eye(3).expand(10, 3, 3))
    for bad in ("bfloat16", torch.int8):
        with pytest.raises(TypeError, match="tangent_dtype must be a floating-point"):
            metric.evaluator.value_and_jacobian(z, tangent_dtype=bad)


def test_forward_mode_jacobians_are_cast():
    metric = PullbackMetric(ReshapeDecoder(), jacobian="forward")
    z = torch.randn(5, 2)
    _, jac = metric.evaluator.value_and_jacobian(z, tangent_dtype=BF16)
    assert torch.equal(jac, metric.jacobian(z).to(BF16))


def test_linear_first_layer_gives_callers_their_own_memory():
    decoder = nn.Sequential(nn.Linear(3, 4))
    with torch.no_grad():
        _, jac = sequential_value_and_jacobian(decoder, torch.randn(5, 3))
        jac[0, 0, 0] = 123.0  # must not write into the weight or the other points
    assert float(jac[1, 0, 0]) != 123.0 and float(decoder[0].weight.detach()[0, 0]) != 123.0


@pytest.mark.parametrize("jacobian_dtype", [BF16, "bfloat16", torch.float32])
def test_lower_precision_steps_reach_the_minimum(jacobian_dtype):
    """float64 points: the energy of each converged curve lies between the minimum (found in
    full precision) and the minimum plus what the stopping rule leaves."""
    torch.manual_seed(2)
    metric = PullbackMetric(tanh_mlp(d=3, out=12, width=32)).detached()
    p, q = 1.5 * torch.randn(2, 16, 3, dtype=torch.float64)
    options = {"n_points": 8, "init_curve": "straight", "refine": 1}
    exact = connecting_geodesic(metric, p, q, tol=1e-12, **options)
    assert bool(exact.converged.all())
    approx = connecting_geodesic(metric, p, q, tol=1e-3, jacobian_dtype=jacobian_dtype, **options)
    assert bool(approx.converged.all())
    assert approx.points.dtype == torch.float64
    assert bool((approx.energy >= exact.energy * (1 - 1e-9)).all())
    assert bool((approx.energy <= exact.energy * (1 + 1e-2)).all())
    # The steps moved the curves: the straight lines are far longer than the minimum.
    # (max_iter must be >= 1 now: the straight start's energy, measured directly.)
    t = torch.linspace(0, 1, options["n_points"], dtype=torch.float64)[None, :, None]
    with torch.no_grad():
        straight = metric.curve_energy(p[:, None] + t * (q - p)[:, None])
    assert bool((straight > exact.energy * (1 + 1e-2)).any())


def test_jacobian_dtype_bad_input_is_named():
    metric = PullbackMetric(tanh_mlp(d=2, out=4, dtype=torch.float32))
    p, q = torch.zeros(2), torch.ones(2)
    for bad in ("bf16", torch.int32, 3):
        with pytest.raises(ValueError, match="jacobian_dtype must be a floating torch dtype"):
            connecting_geodesic(metric, p, q, jacobian_dtype=bad)
    with pytest.raises(
        TypeError, match="connecting_geodesic: method 'georce' got unknown option 'jacobian_dtype'"
    ):
        connecting_geodesic(metric, p, q, method="georce", jacobian_dtype=BF16)


class _ConvDecoder(nn.Module):
    """Linear -> ConvTranspose2d + BatchNorm2d (eval) + GELU -> ConvTranspose2d: forward mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(3, 16)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1),
            nn.BatchNorm2d(4),
            nn.GELU(),
            nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 4, 2, 2))


def test_forward_mode_jacobians_in_float32_through_a_converted_copy():
    """float64 points, float32 tangents: a forward-mode decoder's Jacobian is computed by a
    float32 copy (not the float64 one cast), the value stays float64 and exact, and the
    copy follows the decoder's parameters as they change."""
    decoder = _ConvDecoder().double().eval()
    metric = PullbackMetric(decoder)
    assert metric.jacobian_method == "forward"
    z = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        value, jac = metric.evaluator.value_and_jacobian(z, tangent_dtype=torch.float32)
        exact_value, exact = metric.evaluator.value_and_jacobian(z)
        assert jac.dtype == torch.float32 and torch.equal(value, exact_value)
        assert bool((relative_error(jac, exact) < 1e-5).all())
        assert not torch.equal(jac, exact.to(torch.float32))  # computed in float32
        decoder.fc.weight.mul_(2.0)  # the copy is rebuilt from the changed weights
        _, jac2 = metric.evaluator.value_and_jacobian(z, tangent_dtype=torch.float32)
        _, exact2 = metric.evaluator.value_and_jacobian(z)
    assert bool((relative_error(jac2, exact2) < 1e-5).all())
    assert not bool((relative_error(jac2, exact) < 1e-2).all())
    # Where autograd wants a graph to the parameters, the float64 Jacobian is cast.
    _, jac3 = metric.evaluator.value_and_jacobian(z, tangent_dtype=torch.float32)
    assert torch.equal(jac3, exact2.to(torch.float32))
