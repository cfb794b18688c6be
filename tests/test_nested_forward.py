"""Second derivatives of decoders whose operations torch cannot nest in forward mode.

Geodesic accelerations, Christoffel symbols and curvature take second derivatives by
nested forward mode. torch refuses it for some operations: SiLU and Mish under
``no_grad`` (where the ODE solvers run; ``aten::silu_backward`` has no forward-mode
rule), Hardsigmoid in any mode. The metric then takes them another way; these tests
check the results against reverse-mode autograd on such decoders.
"""

from __future__ import annotations

import pytest
import torch
from oracles import F64, levi_civita, pullback_metric_at
from torch import nn
from torch.func import jvp

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import exp_map


class MappingDecoder(nn.Module):
    """``Linear -> act -> Linear -> tanh``, returned in a dict: not an ``nn.Sequential``,
    so the metric differentiates it by forward mode rather than the chain rule."""

    def __init__(self, act: nn.Module, d: int = 3, width: int = 8, out: int = 6) -> None:
        super().__init__()
        self.inner, self.act, self.outer = nn.Linear(d, width), act, nn.Linear(width, out)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": torch.tanh(self.outer(self.act(self.inner(z))))}


def decoder(act: nn.Module) -> MappingDecoder:
    torch.manual_seed(0)
    dec = MappingDecoder(act).to(F64).eval()
    with torch.no_grad():  # inside Hardsigmoid's linear piece (|x| < 3), where it is smooth
        dec.inner.weight.mul_(0.5)
    return dec


def flat_decoder(dec: MappingDecoder):
    return lambda x: dec(x)["mean"].reshape(x.shape[0], -1)


def nested_forward_runs(dec: MappingDecoder, grad: bool) -> bool:
    f, z = flat_decoder(dec), torch.randn(2, 3, dtype=F64)
    try:
        with torch.set_grad_enabled(grad):
            jvp(lambda x: jvp(f, (x,), (z,))[1], (z,), (z,))
    except RuntimeError:
        return False
    return True


class HardsigmoidLinearPiece(nn.Module):
    """Hardsigmoid on ``|x| < 3``, where the decoders here stay: autograd's oracle
    (reverse over reverse) has no double backward for Hardsigmoid itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 6 + 0.5


def oracle_decoder(dec: MappingDecoder) -> MappingDecoder:
    if not isinstance(dec.act, nn.Hardsigmoid):
        return dec
    twin = MappingDecoder(HardsigmoidLinearPiece()).to(F64)
    twin.load_state_dict(dec.state_dict())
    return twin


def acceleration_reference(dec: MappingDecoder, z: torch.Tensor, v: torch.Tensor):
    """``-G^{-1} J^T (D^2 f)[v, v]`` from reverse-mode derivatives (reverse over reverse
    for the second, batched by ``vmap``)."""
    twin = oracle_decoder(dec)
    assert bool((dec.inner(z).abs() < 3).all())  # where the twin is the decoder

    def one(x: torch.Tensor) -> torch.Tensor:
        return twin(x[None])["mean"].reshape(-1)

    jac = torch.func.vmap(torch.func.jacrev(one))(z)
    hess = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(one)))(z)
    hvv = torch.einsum("baij,bi,bj->ba", hess, v, v)
    return -torch.linalg.solve(jac.mT @ jac, (jac.mT @ hvv[..., None]))[..., 0]


@pytest.mark.parametrize(
    ("act", "grad"),
    [(nn.SiLU(), False), (nn.Mish(), False), (nn.Hardsigmoid(), True), (nn.Hardsigmoid(), False)],
)
def test_acceleration_and_christoffels_where_nested_forward_mode_is_refused(act, grad):
    dec = decoder(act)
    # The case under test: torch refuses nested forward mode on this decoder in this mode.
    assert not nested_forward_runs(dec, grad)
    metric = PullbackMetric(dec, output="mean")
    torch.manual_seed(1)
    z, v = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    with torch.set_grad_enabled(grad):
        acc = metric.geodesic_acceleration(z, v)
        gamma = metric.christoffel_symbols(z)
        curvature = metric.scalar_curvature(z)
    torch.testing.assert_close(acc, acceleration_reference(dec, z, v), rtol=1e-8, atol=1e-10)
    # Hardsigmoid's second derivatives come from central differences of first-order
    # forward mode: relative error ~eps^(2/3)
    reference = levi_civita(pullback_metric_at(flat_decoder(oracle_decoder(dec))), z)
    torch.testing.assert_close(gamma, reference, rtol=1e-7, atol=1e-8)
    assert torch.isfinite(curvature).all() and curvature.shape == (4,)
    if not grad:  # no graph kept where none was asked for
        assert not acc.requires_grad and not gamma.requires_grad


def test_exp_map_on_a_silu_decoder_follows_the_geodesic_equation():
    """The ODE solvers run under no_grad, where SiLU's nested rule is missing: ``exp``
    by Dormand–Prince must run and agree with a fine RK4 integration of the reference
    acceleration."""
    dec = decoder(nn.SiLU())
    metric = PullbackMetric(dec, output="mean")
    torch.manual_seed(2)
    z, v = 0.3 * torch.randn(3, 3, dtype=F64), 0.5 * torch.randn(3, 3, dtype=F64)
    end = exp_map(metric, z, v, method="dopri5", rtol=1e-8, atol=1e-10)
    x, u, h = z.clone(), v.clone(), 1.0 / 32
    for _ in range(32):  # RK4 on the autograd acceleration (error ~h^4)
        k1x, k1u = u, acceleration_reference(dec, x, u)
        k2x, k2u = u + h / 2 * k1u, acceleration_reference(dec, x + h / 2 * k1x, u + h / 2 * k1u)
        k3x, k3u = u + h / 2 * k2u, acceleration_reference(dec, x + h / 2 * k2x, u + h / 2 * k2u)
        k4x, k4u = u + h * k3u, acceleration_reference(dec, x + h * k3x, u + h * k3u)
        x = x + h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x)
        u = u + h / 6 * (k1u + 2 * k2u + 2 * k3u + k4u)
    torch.testing.assert_close(end, x, rtol=1e-6, atol=1e-7)
