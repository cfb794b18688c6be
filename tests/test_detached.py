"""``PullbackMetric.detached()``: same numbers, no autograd path to the decoder's weights."""

import pytest
import torch
from oracles import F64, ReshapeDecoder, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric

D = 2

CALLS = {
    "jacobian": lambda m, z, v: m.jacobian(z),
    "metric_tensor": lambda m, z, v: m.metric_tensor(z),
    "log_volume": lambda m, z, v: m.log_volume(z),
    "inner": lambda m, z, v: m.inner(z, v, v),
    "christoffel_symbols": lambda m, z, v: m.christoffel_symbols(z),
    "geodesic_acceleration": lambda m, z, v: m.geodesic_acceleration(z, v),
    "curve_energy": lambda m, z, v: m.curve_energy(z),
    "curve_length": lambda m, z, v: m.curve_length(z),
}


def metrics():
    mean = tanh_mlp(D, 6)
    std = nn.Sequential(nn.Linear(D, 6), nn.Softplus()).double()
    return {
        "chain": PullbackMetric(tanh_mlp(D, 6), jacobian="chain"),
        "forward": PullbackMetric(tanh_mlp(D, 6), jacobian="forward"),
        "module": PullbackMetric(ReshapeDecoder(D, width=8).double()),
        "gaussian": PullbackMetric.gaussian(mean, std, ridge=0.01),
    }


@pytest.mark.parametrize("case", ["chain", "forward", "module", "gaussian"])
def test_detached_same_values_no_parameter_graph(case):
    metric = metrics()[case]
    detached = metric.detached()
    z, v = torch.randn(4, D, dtype=F64), torch.randn(4, D, dtype=F64)
    for name, call in CALLS.items():
        ref, out = call(metric, z, v), call(detached, z, v)
        torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-15, msg=name)
        assert ref.requires_grad, name  # the original does track the weights ...
        assert not out.requires_grad, name  # ... the detached copy does not
    # Detaching returned a copy: the original still tracks its weights.
    assert metric.metric_tensor(z).requires_grad
    assert detached.ridge == metric.ridge and detached.jacobian_method == metric.jacobian_method


@pytest.mark.parametrize("case", ["chain", "forward", "module", "gaussian"])
def test_detached_gradients_flow_to_points_only(case):
    metric = metrics()[case]
    detached = metric.detached()
    params = list(metric.decoder.parameters())
    z, v = torch.randn(3, D, dtype=F64), torch.randn(3, D, dtype=F64)
    curve = torch.randn(5, D, dtype=F64)

    def loss(m, z, v, curve):
        return (
            m.metric_tensor(z).sum()
            + m.geodesic_acceleration(z, v).square().sum()
            + m.curve_energy(curve)
        )

    zs = [x.clone().requires_grad_(True) for x in (z, v, curve)]
    ref = torch.autograd.grad(loss(metric, *zs), zs)
    zd = [x.clone().requires_grad_(True) for x in (z, v, curve)]
    out = loss(detached, *zd)
    assert out.requires_grad
    out.backward()
    for a, b in zip(ref, zd, strict=True):
        torch.testing.assert_close(b.grad, a, rtol=1e-11, atol=1e-13)
        assert float(b.grad.abs().sum()) > 0
    assert all(p.grad is None for p in params)
    # The original metric does reach the weights.
    loss(metric, z, v, curve).backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in params)
