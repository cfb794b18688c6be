"""Bad input fails loudly with a ValueError/TypeError that names the problem."""

import math

import numpy as np
import pytest
import torch
from oracles import F64, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric

D = 2


@pytest.fixture
def metric():
    return PullbackMetric(tanh_mlp(D, 5))


# ------------------------------------------------------------------ points
def test_wrong_latent_dimension(metric):
    with pytest.raises(ValueError, match=r"latent dimension 3 .* decoder takes d = 2"):
        metric.metric_tensor(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="latent dimension 3"):
        metric.geodesic_acceleration(torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="curve has latent dimension 3"):
        metric.curve_energy(torch.zeros(5, 3, dtype=F64))


def test_wrong_latent_dimension_unknown_in_advance():
    weight = torch.randn(5, 2, dtype=F64)
    metric = PullbackMetric(lambda z: z @ weight.T)
    with pytest.raises(ValueError, match=r"decoder failed on latent points of shape \(1, 3\)"):
        metric.metric_tensor(torch.zeros(4, 3, dtype=F64))


@pytest.mark.parametrize("shape", [(2, 3, D), (1, 1, 1, D), ()])
def test_wrong_number_of_axes(metric, shape):
    with pytest.raises(ValueError, match=r"must have shape \(d,\) or \(B, d\)"):
        metric.metric_tensor(torch.zeros(shape, dtype=F64))


def test_curve_axes_and_length(metric):
    with pytest.raises(ValueError, match=r"shape \(N, d\) or \(B, N, d\)"):
        metric.curve_length(torch.zeros(D, dtype=F64))
    with pytest.raises(ValueError, match="at least 2 points"):
        metric.curve_energy(torch.zeros(1, D, dtype=F64))
    with pytest.raises(ValueError, match="at least 2 points"):
        metric.curve_length(torch.zeros(3, 1, D, dtype=F64))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_points(metric, bad):
    z = torch.zeros(3, D, dtype=F64)
    z[1, 0] = bad
    with pytest.raises(ValueError, match=r"z contains NaN or inf .*first at index 1"):
        metric.metric_tensor(z)
    with pytest.raises(ValueError, match="v contains NaN or inf"):
        metric.geodesic_acceleration(torch.zeros(3, D, dtype=F64), z)
    with pytest.raises(ValueError, match="curve contains NaN or inf"):
        metric.curve_energy(z)


def test_non_float_points(metric):
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        metric.metric_tensor(torch.zeros(3, D, dtype=torch.int64))
    with pytest.raises(TypeError, match="z must be a torch.Tensor; got object"):
        metric.metric_tensor(object())


def test_dtype_mismatch():
    metric = PullbackMetric(tanh_mlp(D, 5, dtype=torch.float32))
    with pytest.raises(
        TypeError, match=r"z is torch.float64 .* decoder's parameters are torch.float32"
    ):
        metric.metric_tensor(torch.zeros(3, D, dtype=F64))
    with pytest.raises(TypeError, match="curve is torch.float64"):
        metric.curve_energy(torch.zeros(4, D, dtype=F64))


def test_mismatched_tangent_shapes(metric):
    z = torch.zeros(4, D, dtype=F64)
    with pytest.raises(ValueError, match="z and v must have the same shape"):
        metric.geodesic_acceleration(z, torch.zeros(3, D, dtype=F64))
    with pytest.raises(ValueError, match="u and z must have the same shape"):
        metric.inner(z, torch.zeros(3, D, dtype=F64), z)


# ------------------------------------------------------------------ decoders
def test_non_callable_decoder():
    with pytest.raises(TypeError, match="decoder must be callable; got int"):
        PullbackMetric(3)


def test_decoder_returns_wrong_batch_size():
    metric = PullbackMetric(lambda z: torch.cat([z, z]))  # 2B rows
    with pytest.raises(ValueError, match=r"decoder returned shape \(2, 2\) for a batch of 1"):
        metric.metric_tensor(torch.zeros(3, D, dtype=F64))
    # Right on the one-point probe, wrong on larger batches.
    metric = PullbackMetric(lambda z: z[:1] * 2, latent_dim=D)
    for call in (metric.metric_tensor, metric.christoffel_symbols):
        with pytest.raises(ValueError, match="for a batch of \\d+ points: it must map"):
            call(torch.zeros(4, D, dtype=F64))
    with pytest.raises(ValueError, match="for a batch of \\d+ points"):
        metric.curve_energy(torch.zeros(2, 2, D, dtype=F64))


def test_decoder_returns_non_tensor():
    with pytest.raises(TypeError, match="decoder output 0 must be a Tensor; got list"):
        PullbackMetric(lambda z: [[1.0]]).metric_tensor(torch.zeros(2, D, dtype=F64))


def nan_decoders():
    weighted = tanh_mlp(D, 5)
    with torch.no_grad():
        weighted[-1].weight[0, 0] = math.nan
    return {
        "sqrt": (lambda z: torch.cat([z.sqrt(), z], dim=-1), "forward"),
        "nan-weight-chain": (weighted, "chain"),
        "nan-weight-forward": (weighted, "forward"),
    }


@pytest.mark.parametrize("case", ["sqrt", "nan-weight-chain", "nan-weight-forward"])
def test_decoder_producing_nan_raises(case):
    decoder, method = nan_decoders()[case]
    metric = PullbackMetric(decoder, jacobian=method)
    z = torch.tensor([[1.0, 2.0], [-1.0, 2.0]], dtype=F64)  # sqrt is NaN at the second
    calls = {
        "jacobian": lambda: metric.jacobian(z),
        "metric_tensor": lambda: metric.metric_tensor(z),
        "log_volume": lambda: metric.log_volume(z),
        "inner": lambda: metric.inner(z, z, z),
        "christoffel_symbols": lambda: metric.christoffel_symbols(z),
        "geodesic_acceleration": lambda: metric.geodesic_acceleration(z, z),
        "curve_energy": lambda: metric.curve_energy(z),
        "curve_length": lambda: metric.curve_length(z),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="NaN or inf .* the decoder produced non-finite"):
            call()
            pytest.fail(f"{name} returned instead of raising")


def test_chain_needs_supported_sequential():
    with pytest.raises(TypeError, match="jacobian='chain' needs an nn.Sequential"):
        PullbackMetric(nn.Sequential(nn.Linear(D, 4), nn.GELU()), jacobian="chain")
    with pytest.raises(TypeError, match="jacobian='chain' needs"):
        PullbackMetric(lambda z: z, jacobian="chain")


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("jacobian", ["reverse", "Forward", None, ""])
def test_bad_jacobian_option(jacobian):
    with pytest.raises(ValueError, match="jacobian must be 'auto', 'forward' or 'chain'"):
        PullbackMetric(tanh_mlp(D, 5), jacobian=jacobian)


@pytest.mark.parametrize("ridge", [-1e-3, math.nan, math.inf])
def test_bad_ridge_value(ridge):
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0"):
        PullbackMetric(tanh_mlp(D, 5), ridge=ridge)


@pytest.mark.parametrize("ridge", ["0.1", None, torch.tensor([0.1, 0.2]), True])
def test_bad_ridge_type(ridge):
    with pytest.raises(TypeError, match="ridge must be a number"):
        PullbackMetric(tanh_mlp(D, 5), ridge=ridge)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, "7", True])
def test_bad_chunk_size(chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        PullbackMetric(tanh_mlp(D, 5), chunk_size=chunk_size)


def test_numpy_and_torch_scalars_are_accepted_options():
    metric = PullbackMetric(tanh_mlp(D, 5), ridge=np.float32(0.5), chunk_size=np.int64(3))
    assert metric.ridge == 0.5 and metric.chunk_size == 3
    assert PullbackMetric(tanh_mlp(D, 5), ridge=torch.tensor(0.25)).ridge == 0.25
    assert metric.metric_tensor(torch.zeros(7, D, dtype=F64)).shape == (7, D, D)
