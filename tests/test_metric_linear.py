"""Linear decoders ``f(z) = A z + b``: constant metric ``A^T A``, flat connection."""

import pytest
import torch
from oracles import F64
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import LinearDecoder

TOL = {"rtol": 1e-12, "atol": 1e-12}


def linear_decoders(a, b):
    """The same affine map as a plain module (forward mode) and a Sequential (chain)."""
    seq = nn.Sequential(nn.Linear(a.shape[1], a.shape[0])).to(F64)
    with torch.no_grad():
        seq[0].weight.copy_(a)
        seq[0].bias.copy_(b)
    return [
        ("module-forward", LinearDecoder(a, b), "forward"),
        ("sequential-chain", seq, "chain"),
        ("sequential-forward", seq, "forward"),
    ]


CASES = ["module-forward", "sequential-chain", "sequential-forward"]


@pytest.fixture
def affine():
    a = torch.randn(6, 3, dtype=F64)
    b = torch.randn(6, dtype=F64)
    return a, b


def make(affine, case, **kwargs):
    decoder, method = {n: (d, m) for n, d, m in linear_decoders(*affine)}[case]
    metric = PullbackMetric(decoder, jacobian=method, **kwargs)
    assert metric.jacobian_method == method
    return metric


@pytest.mark.parametrize("case", CASES)
def test_jacobian_and_metric_are_constant(affine, case):
    a, _ = affine
    z = 3 * torch.randn(5, 3, dtype=F64)
    metric = make(affine, case)
    torch.testing.assert_close(metric.jacobian(z), a.expand(5, -1, -1), **TOL)
    torch.testing.assert_close(metric.metric_tensor(z), (a.T @ a).expand(5, -1, -1), **TOL)
    ref_logvol = 0.5 * torch.logdet(a.T @ a)
    torch.testing.assert_close(metric.log_volume(z), ref_logvol.expand(5), **TOL)


@pytest.mark.parametrize("case", CASES)
def test_flat_connection(affine, case):
    z, v = torch.randn(4, 3, dtype=F64), 10 * torch.randn(4, 3, dtype=F64)
    metric = make(affine, case)
    zero = torch.zeros(4, 3, 3, 3, dtype=F64)
    torch.testing.assert_close(metric.christoffel_symbols(z), zero, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        metric.geodesic_acceleration(z, v), zero[..., 0, 0], atol=1e-10, rtol=0
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n", [2, 9])
def test_straight_line_energy_and_length(affine, case, n):
    a, _ = affine
    p, q = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    t = torch.linspace(0, 1, n, dtype=F64)[None, :, None]
    curves = p[:, None] + t * (q - p)[:, None]  # (4, n, 3)
    metric = make(affine, case)
    chord = (p - q) @ a.T
    torch.testing.assert_close(metric.curve_energy(curves), chord.square().sum(-1), **TOL)
    torch.testing.assert_close(metric.curve_length(curves), chord.norm(dim=-1), **TOL)
    if n > 2:  # A detour with the same ends is longer and costs more energy.
        bent = curves.clone()
        bent[:, n // 2] += 0.5
        assert bool((metric.curve_length(bent) > chord.norm(dim=-1) + 1e-6).all())
        assert bool((metric.curve_energy(bent) > chord.square().sum(-1) + 1e-6).all())


def test_energy_of_non_uniform_line_exceeds_squared_length(affine):
    """E >= L^2 with equality only for constant speed: unequal steps on a line."""
    a, _ = affine
    p, q = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)
    t = torch.tensor([0.0, 0.1, 0.2, 1.0], dtype=F64)[:, None]
    metric = make(affine, "module-forward")
    curve = p + t * (q - p)
    length = ((p - q) @ a.T).norm()
    torch.testing.assert_close(metric.curve_length(curve), length, **TOL)
    # (N - 1) * sum |steps|^2 with steps 0.1, 0.1, 0.8 of the chord.
    torch.testing.assert_close(metric.curve_energy(curve), 3 * 0.66 * length**2, **TOL)


@pytest.mark.parametrize("case", CASES)
def test_ridge_adds_identity_keeps_flat_connection(affine, case):
    a, _ = affine
    ridge = 0.3
    z, v = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    metric = make(affine, case, ridge=ridge)
    eye = torch.eye(3, dtype=F64)
    torch.testing.assert_close(metric.metric_tensor(z), (a.T @ a + ridge * eye).expand(4, -1, -1))
    torch.testing.assert_close(metric.christoffel_symbols(z), torch.zeros(4, 3, 3, 3, dtype=F64))
    torch.testing.assert_close(metric.geodesic_acceleration(z, v), torch.zeros(4, 3, dtype=F64))
    p, q = z, v
    line = p[:, None] + torch.linspace(0, 1, 5, dtype=F64)[None, :, None] * (q - p)[:, None]
    ref = ((p - q) @ a.T).square().sum(-1) + ridge * (p - q).square().sum(-1)
    torch.testing.assert_close(metric.curve_energy(line), ref, **TOL)
    torch.testing.assert_close(metric.curve_length(line), ref.sqrt(), **TOL)
    assert metric.obs_dim == 6 + 3
