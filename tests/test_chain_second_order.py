"""The chain rule's second-order propagation against generic forward mode, per activation."""

from __future__ import annotations

import pytest
import torch
from oracles import autograd_hessian
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.chain import sequential_second_derivatives

F64 = torch.float64
ACTIVATIONS = [
    nn.ReLU(),
    nn.LeakyReLU(0.1),
    nn.ELU(0.7),
    nn.Softplus(beta=2.0, threshold=1.0),
    nn.Tanh(),
    nn.Sigmoid(),
    nn.SiLU(),
]


def _decoder(act: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(3, 16),
        act,
        nn.Linear(16, 12),
        nn.Tanh(),
        nn.Linear(12, 6),
        nn.Sigmoid(),
        nn.Unflatten(1, (2, 3)),
    ).to(F64)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_chain_christoffels_and_acceleration_match_forward_mode(act, ridge):
    dec = _decoder(act)
    chain = PullbackMetric(dec, ridge=ridge)
    forward = PullbackMetric(dec, ridge=ridge, jacobian="forward")
    assert chain.jacobian_method == "chain"
    z, v = torch.randn(2, 9, 3, dtype=F64)
    torch.testing.assert_close(chain.christoffel_symbols(z), forward.christoffel_symbols(z))
    torch.testing.assert_close(
        chain.geodesic_acceleration(z, v), forward.geodesic_acceleration(z, v)
    )


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_chain_hessian_matches_autograd(act):
    dec = _decoder(act)
    z, v = torch.randn(2, 4, 3, dtype=F64)
    _, _, hess = sequential_second_derivatives(dec, z)
    expected = autograd_hessian(lambda x: dec(x).reshape(x.shape[0], -1), z)
    torch.testing.assert_close(hess, expected)
    _, _, hvv = sequential_second_derivatives(dec, z, v)
    torch.testing.assert_close(hvv, torch.einsum("baij,bi,bj->ba", expected, v, v))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_curvature_tape_contracts_the_hessian(act, ridge):
    dec = _decoder(act)
    chain = PullbackMetric(dec, ridge=ridge)
    forward = PullbackMetric(dec, ridge=ridge, jacobian="forward")
    z = torch.randn(5, 3, dtype=F64)
    value, jac, contract = chain.evaluator.curvature_tape(z)
    expected_value, expected_jac = forward.evaluator.value_and_jacobian(z)
    torch.testing.assert_close(value, expected_value)
    torch.testing.assert_close(jac, expected_jac)
    # The Hessian of <a, f>: the decoder's second derivatives (the ridge block has none).
    a = torch.randn(value.shape, dtype=F64)
    hess = autograd_hessian(lambda x: dec(x).reshape(x.shape[0], -1), z)
    expected = torch.einsum("ba,baij->bij", a[:, : hess.shape[1]], hess)
    torch.testing.assert_close(contract(a), expected)
    with pytest.raises(TypeError, match="chain-rule decoder"):
        forward.evaluator.curvature_tape(z)
    # float32 tangents: the value stays float64 and exact, the rest float32's rounding.
    value32, jac32, contract32 = chain.evaluator.curvature_tape(z, tangent_dtype=torch.float32)
    assert value32.dtype == F64 and jac32.dtype == contract32(a).dtype == torch.float32
    assert torch.equal(value32, value)
    torch.testing.assert_close(jac32.double(), expected_jac, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(contract32(a).double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="tangent_dtype must be a floating-point"):
        chain.evaluator.curvature_tape(z, tangent_dtype="float32")
