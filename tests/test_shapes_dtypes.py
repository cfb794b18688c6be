"""Single points vs batches, chunking, and dtype preservation for every method."""

import pytest
import torch
from oracles import F64, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic

D = 2


def small_image_decoder(dtype):
    """The seed's layer pattern at a tenth of the width: ``(B, 2) -> (B, 1, 4, 4)``."""
    return nn.Sequential(
        nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4))
    ).to(dtype)


def decoders(dtype):
    return {
        "tanh-chain": (tanh_mlp(D, 5, dtype=dtype), "chain"),
        "tanh-forward": (tanh_mlp(D, 5, dtype=dtype), "forward"),
        "image-chain": (small_image_decoder(dtype), "chain"),
        "sphere": (InverseStereographic(), "forward"),
    }


CASES = ["tanh-chain", "tanh-forward", "image-chain", "sphere"]

# name -> (call on a batch, per-point output shape)
POINT_METHODS = {
    "jacobian": (lambda m, z, v: m.jacobian(z), lambda m: (m.obs_dim, D)),
    "metric_tensor": (lambda m, z, v: m.metric_tensor(z), lambda m: (D, D)),
    "log_volume": (lambda m, z, v: m.log_volume(z), lambda m: ()),
    "volume_element": (lambda m, z, v: m.volume_element(z), lambda m: ()),
    "inner": (lambda m, z, v: m.inner(z, v, 2 * v + 1), lambda m: ()),
    "norm": (lambda m, z, v: m.norm(z, v), lambda m: ()),
    "christoffel_symbols": (lambda m, z, v: m.christoffel_symbols(z), lambda m: (D, D, D)),
    "geodesic_acceleration": (lambda m, z, v: m.geodesic_acceleration(z, v), lambda m: (D,)),
}
CURVE_METHODS = {
    "decode_curve": (lambda m, c: m.decode_curve(c), lambda m, n: (n, m.obs_dim)),
    "curve_energy": (lambda m, c: m.curve_energy(c), lambda m, n: ()),
    "curve_length": (lambda m, c: m.curve_length(c), lambda m, n: ()),
}


def make(case, dtype=F64, **kwargs):
    decoder, method = decoders(dtype)[case]
    return PullbackMetric(decoder, jacobian=method, **kwargs)


@pytest.mark.parametrize("case", CASES)
def test_single_point_equals_batch_row(case):
    metric = make(case)
    z, v = torch.randn(3, D, dtype=F64), torch.randn(3, D, dtype=F64)
    for name, (call, shape) in POINT_METHODS.items():
        batch = call(metric, z, v)
        assert batch.shape == (3, *shape(metric)), name
        for b in range(3):
            single = call(metric, z[b], v[b])
            assert single.shape == shape(metric), name
            torch.testing.assert_close(single, batch[b], rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("case", CASES)
def test_single_curve_equals_batch_row(case):
    metric = make(case)
    curves = torch.randn(2, 6, D, dtype=F64)
    for name, (call, shape) in CURVE_METHODS.items():
        batch = call(metric, curves)
        assert batch.shape == (2, *shape(metric, 6)), name
        for b in range(2):
            single = call(metric, curves[b])
            assert single.shape == shape(metric, 6), name
            torch.testing.assert_close(single, batch[b], rtol=1e-12, atol=1e-14, msg=name)


def test_inner_broadcasts_a_single_tangent():
    metric = make("tanh-forward")
    z, u = torch.randn(4, D, dtype=F64), torch.randn(D, dtype=F64)
    v = torch.randn(4, D, dtype=F64)
    ref = metric.inner(z, u.expand(4, D), v)
    torch.testing.assert_close(metric.inner(z, u, v), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_chunking_gives_identical_results(case):
    """``chunk_size=7`` on 20 points (and 3 x 9 curve points) equals one unchunked pass."""
    whole = make(case)
    chunked = PullbackMetric(whole.decoder, jacobian=whole.jacobian_method, chunk_size=7)
    z, v = torch.randn(20, D, dtype=F64), torch.randn(20, D, dtype=F64)
    for name, (call, _) in POINT_METHODS.items():
        torch.testing.assert_close(
            call(chunked, z, v), call(whole, z, v), rtol=1e-13, atol=1e-15, msg=name
        )
    val_w, jac_w = whole.evaluator.value_and_jacobian(z)
    val_c, jac_c = chunked.evaluator.value_and_jacobian(z)
    torch.testing.assert_close(val_c, val_w, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(jac_c, jac_w, rtol=1e-13, atol=1e-15)
    curves = torch.randn(3, 9, D, dtype=F64)
    for name, (call, _) in CURVE_METHODS.items():
        torch.testing.assert_close(
            call(chunked, curves), call(whole, curves), rtol=1e-13, atol=1e-15, msg=name
        )


def test_chunked_evaluation_really_splits_the_batch():
    """The decoder sees batches of at most ``chunk_size`` points after the first probe."""
    seen = []
    inner = tanh_mlp(D, 5)

    def decoder(z):
        seen.append(z.shape[0])
        return inner(z)

    metric = PullbackMetric(decoder, chunk_size=7)
    metric.metric_tensor(torch.randn(20, D, dtype=F64))
    assert seen[0] == 1  # the probe
    assert seen[1:] == [7, 7, 6]
    seen.clear()
    metric.curve_energy(torch.randn(3, 9, D, dtype=F64))
    assert seen == [7, 7, 7, 6]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_dtype_is_preserved(case, dtype):
    metric = make(case, dtype=dtype, ridge=0.01)
    z, v = torch.randn(3, D, dtype=dtype), torch.randn(3, D, dtype=dtype)
    for name, (call, _) in POINT_METHODS.items():
        assert call(metric, z, v).dtype == dtype, name
    value, jac = metric.evaluator.value_and_jacobian(z)
    assert value.dtype == jac.dtype == dtype
    curves = torch.randn(2, 5, D, dtype=dtype)
    for name, (call, _) in CURVE_METHODS.items():
        assert call(metric, curves).dtype == dtype, name


def test_float32_agrees_with_float64():
    m64 = make("tanh-chain")
    m32 = PullbackMetric(tanh_mlp(D, 5, dtype=torch.float32), jacobian="chain")
    m32.decoder.load_state_dict({k: v.float() for k, v in m64.decoder.state_dict().items()})
    z = torch.randn(4, D, dtype=F64)
    torch.testing.assert_close(
        m32.christoffel_symbols(z.float()).double(),
        m64.christoffel_symbols(z),
        rtol=1e-3,
        atol=1e-4,
    )
    torch.testing.assert_close(
        m32.metric_tensor(z.float()).double(), m64.metric_tensor(z), rtol=1e-4, atol=1e-5
    )


def test_default_dtype_is_not_used():
    """Outputs follow the inputs even when torch's default dtype differs."""
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        metric = PullbackMetric(tanh_mlp(D, 5, dtype=torch.float32), jacobian="chain", ridge=0.1)
        z = torch.randn(3, D, dtype=torch.float32)
        assert metric.metric_tensor(z).dtype == torch.float32
        assert metric.christoffel_symbols(z).dtype == torch.float32
        assert metric.curve_energy(torch.randn(4, D, dtype=torch.float32)).dtype == torch.float32
    finally:
        torch.set_default_dtype(old)
