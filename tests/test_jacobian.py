"""Jacobians and metrics against reverse-mode autograd, for the chain rule and forward mode."""

import pytest
import torch
from oracles import (
    F64,
    IMAGE,
    ReshapeDecoder,
    autograd_jacobian,
    levi_civita,
    pullback_metric_at,
    seed_decoder,
    tanh_mlp,
)
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.chain import sequential_value_and_jacobian, supports_chain

TOL = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-12},
    torch.float32: {"rtol": 1e-4, "atol": 1e-6},
}
DTYPES = [torch.float32, torch.float64]


def latent(b, d=2, dtype=F64):
    return 2 * torch.randn(b, d, dtype=dtype)


# ------------------------------------------------------------------ the seed's architecture
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["forward", "chain"])
def test_seed_decoder_jacobian(method, dtype):
    decoder = seed_decoder(dtype)
    z = latent(4, dtype=dtype)
    assert decoder(z).shape == (4, *IMAGE)
    metric = PullbackMetric(decoder, jacobian=method)
    ref = autograd_jacobian(decoder, z)
    jac = metric.jacobian(z)
    assert jac.shape == (4, 784, 2) and jac.dtype == dtype
    torch.testing.assert_close(jac, ref, **TOL[dtype])
    torch.testing.assert_close(metric.metric_tensor(z), ref.mT @ ref, **TOL[dtype])
    torch.testing.assert_close(metric.jacobian(z[1]), ref[1], **TOL[dtype])
    value, jac2 = metric.evaluator.value_and_jacobian(z)
    torch.testing.assert_close(value, decoder(z).reshape(4, -1), **TOL[dtype])
    torch.testing.assert_close(jac2, ref, **TOL[dtype])


def test_seed_decoder_auto_uses_chain_and_agrees_with_forward():
    decoder = seed_decoder(F64)
    z = latent(6)
    auto = PullbackMetric(decoder)
    assert auto.jacobian_method == "chain"
    assert auto.latent_dim == 2
    fwd = PullbackMetric(decoder, jacobian="forward")
    torch.testing.assert_close(auto.jacobian(z), fwd.jacobian(z), **TOL[F64])
    assert auto.obs_dim == 784


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_sequential_decoder(dtype):
    decoder = ReshapeDecoder().to(dtype)
    z = latent(3, dtype=dtype)
    assert decoder(z).shape == (3, *IMAGE)
    metric = PullbackMetric(decoder)
    assert metric.jacobian_method == "forward"
    # Only an nn.Sequential says its input layer; any other module's d is learned at
    # the first call.
    assert metric.latent_dim is None
    ref = autograd_jacobian(decoder, z)
    torch.testing.assert_close(metric.jacobian(z), ref, **TOL[dtype])
    assert metric.latent_dim == 2
    torch.testing.assert_close(metric.metric_tensor(z), ref.mT @ ref, **TOL[dtype])
    with pytest.raises(TypeError, match="jacobian='chain' needs an nn.Sequential"):
        PullbackMetric(decoder, jacobian="chain")


def test_non_sequential_decoder_christoffels():
    decoder = ReshapeDecoder(width=16).double()
    z = latent(2)
    gam = PullbackMetric(decoder).christoffel_symbols(z)
    torch.testing.assert_close(gam, levi_civita(pullback_metric_at(decoder), z), **TOL[F64])


def test_plain_function_decoder():
    """Any callable works; the latent dimension is learnt on first use."""
    weight = torch.randn(5, 3, dtype=F64)

    def decoder(z):
        return torch.sin(z @ weight.T).reshape(-1, 5, 1)

    metric = PullbackMetric(decoder)
    assert metric.latent_dim is None and metric.jacobian_method == "forward"
    z = latent(4, 3)
    torch.testing.assert_close(metric.jacobian(z), autograd_jacobian(decoder, z), **TOL[F64])
    assert metric.latent_dim == 3 and metric.obs_dim == 5


# ------------------------------------------------------------------ every chain activation
ACTIVATIONS = {
    "relu": nn.ReLU(),
    "relu-inplace": nn.ReLU(inplace=True),
    "leaky": nn.LeakyReLU(0.2),
    "leaky-inplace": nn.LeakyReLU(0.05, inplace=True),
    "elu": nn.ELU(alpha=0.7),
    "elu-inplace": nn.ELU(alpha=1.3, inplace=True),
    "softplus": nn.Softplus(),
    "softplus-beta-threshold": nn.Softplus(beta=2.0, threshold=1.5),
    "silu": nn.SiLU(),
    "tanh": nn.Tanh(),
    "sigmoid": nn.Sigmoid(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_chain_activation_matches_autograd(name, dtype):
    act = ACTIVATIONS[name]
    decoder = nn.Sequential(
        nn.Linear(3, 32), act, nn.Linear(32, 16), act, nn.Linear(16, 2 * 3 * 2),
        nn.Unflatten(1, (2, 3, 2)),
    ).to(dtype)  # fmt: skip
    assert supports_chain(decoder)
    z = latent(5, 3, dtype=dtype)
    pre = decoder[0](z)
    # Both branches of piecewise activations are exercised.
    assert bool((pre > 1.5).any()) and bool((pre < 0).any())
    ref = autograd_jacobian(decoder, z)
    value, jac = sequential_value_and_jacobian(decoder, z)
    torch.testing.assert_close(value, decoder(z).reshape(5, -1), **TOL[dtype])
    torch.testing.assert_close(jac, ref, **TOL[dtype])
    metric = PullbackMetric(decoder, jacobian="chain")
    torch.testing.assert_close(metric.metric_tensor(z), ref.mT @ ref, **TOL[dtype])
    fwd = PullbackMetric(decoder, jacobian="forward")
    torch.testing.assert_close(fwd.jacobian(z), ref, **TOL[dtype])


def test_chain_rejects_unsupported_layers():
    assert not supports_chain(nn.Sequential(nn.Linear(2, 3), nn.GELU()))
    assert not supports_chain(
        nn.Sequential(nn.Linear(2, 8), nn.Unflatten(1, (2, 4)), nn.Linear(4, 3))
    )
    assert supports_chain(
        nn.Sequential(nn.Linear(2, 8), nn.Unflatten(1, (2, 4)), nn.Flatten(), nn.Linear(8, 3))
    )
    with pytest.raises(TypeError, match="chain rule needs an nn.Sequential"):
        sequential_value_and_jacobian(nn.Sequential(nn.GELU()), torch.zeros(1, 2))


def test_auto_falls_back_to_forward_for_linear_after_unflatten():
    """A Linear acting on unflattened features is not a flat chain: auto must use forward."""
    decoder = nn.Sequential(nn.Linear(2, 8), nn.Unflatten(1, (2, 4)), nn.Tanh(), nn.Linear(4, 3))
    decoder = decoder.double()
    metric = PullbackMetric(decoder)
    assert metric.jacobian_method == "forward"
    z = latent(3)
    torch.testing.assert_close(metric.jacobian(z), autograd_jacobian(decoder, z), **TOL[F64])


# ------------------------------------------------------------------ Christoffel symbols
@pytest.mark.parametrize("d", [2, 3])
def test_christoffel_matches_levi_civita_of_autograd_metric(d):
    decoder = tanh_mlp(d, 6)
    z = latent(3, d)
    gam = PullbackMetric(decoder).christoffel_symbols(z)
    ref = levi_civita(pullback_metric_at(decoder), z)
    torch.testing.assert_close(gam, ref, **TOL[F64])
    # Torsion-free: symmetric in the lower indices; and genuinely non-zero here.
    torch.testing.assert_close(gam, gam.transpose(-1, -2))
    assert float(gam.detach().abs().max()) > 1e-2


@pytest.mark.parametrize(
    "decoder",
    [lambda: tanh_mlp(3, 6), lambda: seed_decoder(F64), lambda: ReshapeDecoder().double()],
    ids=["tanh-mlp", "seed", "reshape-module"],
)
def test_geodesic_acceleration_is_minus_gamma_vv(decoder):
    decoder = decoder()
    d = 3 if isinstance(decoder, nn.Sequential) and decoder[0].in_features == 3 else 2
    z, v = latent(4, d), torch.randn(4, d, dtype=F64)
    metric = PullbackMetric(decoder)
    gam = metric.christoffel_symbols(z)
    acc = metric.geodesic_acceleration(z, v)
    torch.testing.assert_close(acc, -torch.einsum("bkij,bi,bj->bk", gam, v, v), **TOL[F64])
    assert float(acc.detach().abs().max()) > 1e-6


def test_seed_decoder_christoffels_vs_autograd():
    decoder = seed_decoder(F64)
    z = latent(2)
    gam = PullbackMetric(decoder).christoffel_symbols(z)
    torch.testing.assert_close(
        gam, levi_civita(pullback_metric_at(decoder), z), rtol=1e-8, atol=1e-10
    )


# ------------------------------------------------------------------ Gaussian decoders
def gaussian_parts():
    mean = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 12), nn.Unflatten(1, (3, 4)))
    std = nn.Sequential(nn.Linear(2, 8), nn.Softplus(), nn.Linear(8, 12), nn.Softplus())
    return mean.double(), std.double()


def test_gaussian_metric_is_sum_of_mean_and_std_metrics():
    mean, std = gaussian_parts()
    z = latent(4)
    metric = PullbackMetric.gaussian(mean, std)
    assert metric.latent_dim == 2
    j_mu, j_sigma = autograd_jacobian(mean, z), autograd_jacobian(std, z)
    ref = j_mu.mT @ j_mu + j_sigma.mT @ j_sigma
    torch.testing.assert_close(metric.metric_tensor(z), ref, **TOL[F64])
    torch.testing.assert_close(metric.jacobian(z), torch.cat([j_mu, j_sigma], dim=1), **TOL[F64])
    # The std term matters: the mean's metric alone differs.
    assert not torch.allclose(PullbackMetric(mean).metric_tensor(z), ref, rtol=1e-3)


def test_gaussian_christoffels_vs_autograd():
    mean, std = gaussian_parts()
    z = latent(2)
    metric = PullbackMetric.gaussian(mean, std, ridge=0.1)
    eye = torch.eye(2, dtype=F64)

    def metric_at(x):
        return pullback_metric_at(mean)(x) + pullback_metric_at(std)(x) + 0.1 * eye

    torch.testing.assert_close(metric.christoffel_symbols(z), levi_civita(metric_at, z), **TOL[F64])


def test_gaussian_rejects_non_callables():
    mean, _ = gaussian_parts()
    with pytest.raises(TypeError, match="std must be callable"):
        PullbackMetric.gaussian(mean, "sigma")
