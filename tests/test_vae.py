"""The VAE models: shapes, input handling, and their metrics against the core's oracles."""

import math

import pytest
import torch
from oracles import autograd_metric

from pullback_geom import PullbackMetric
from pullback_geom.vae import BernoulliVAE, Encoder, GaussianVAE, build_model, mean_decoder


def fitted_gaussian(hidden: int = 32, constant_std: bool = False) -> GaussianVAE:
    """A Gaussian VAE whose std network is fitted to random codes."""
    model = GaussianVAE(latent_dim=2, hidden=hidden, n_centres=6)
    codes = torch.randn(200, 2)
    model.std.fit_centres(codes, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.std.log_weight.normal_(4.0, 1.0)
        if constant_std:  # zero bandwidths: every RBF is 1 everywhere, so sigma is constant
            model.std.bandwidths.zero_()
    return model


def test_architecture_is_the_seeds():
    model = BernoulliVAE(latent_dim=3)
    enc, dec = model.encoder, model.decoder
    assert isinstance(enc, Encoder)
    assert [(m.in_features, m.out_features) for m in (enc.linear1, enc.linear2, enc.linear3)] == [
        (784, 512),
        (512, 3),
        (512, 3),
    ]
    assert [type(m).__name__ for m in dec] == ["Linear", "ReLU", "Linear", "Sigmoid", "Unflatten"]
    assert (dec[0].in_features, dec[2].out_features) == (3, 784)
    assert "log" in Encoder.__doc__ and "standard deviation" in Encoder.__doc__
    # The chain-rule Jacobian of the core applies to the decoder.
    assert model.pullback_metric().jacobian_method == "chain"


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_encode_accepts_images_in_any_layout(kind):
    model = BernoulliVAE() if kind == "bernoulli" else fitted_gaussian(hidden=512)
    x8 = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    codes = model.encode(x8)
    assert codes.shape == (5, 2)
    xf = x8.float() / 255
    for x in (xf, xf.reshape(5, 28, 28), xf.reshape(5, 784), x8.reshape(5, 784)):
        torch.testing.assert_close(model.encode(x), codes)
    mean, log_std = model.encode_distribution(x8)
    assert torch.equal(mean, codes) and log_std.shape == (5, 2)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\), \(B, 28, 28\) or \(B, 784\)"):
        model.encode(torch.zeros(5, 100))
    with pytest.raises(TypeError, match="images are torch.float64"):
        model.encode(xf.double())


def test_decode_shapes_and_checks():
    model = fitted_gaussian()
    z = torch.randn(7, 2)
    assert model.decode(z).shape == (7, 1, 28, 28)
    assert model.decode_std(z).shape == (7, 1, 28, 28)
    assert model.decode(z[0]).shape == (1, 28, 28)
    assert bool((model.decode(z) > 0).all() and (model.decode(z) < 1).all())
    assert bool((model.decode_std(z) > 0).all())
    with pytest.raises(ValueError, match="latent dimension 3"):
        model.decode(torch.randn(4, 3))
    with pytest.raises(TypeError, match="z is torch.float64"):
        model.decode(z.double())


def test_bernoulli_metric_is_the_mean_decoders():
    model = BernoulliVAE(hidden=64)
    z = torch.randn(6, 2, dtype=torch.float64)
    model.double()
    g = model.pullback_metric().metric_tensor(z)
    torch.testing.assert_close(g, PullbackMetric(model.decode).metric_tensor(z))
    torch.testing.assert_close(g, autograd_metric(model.decode, z))


def test_gaussian_metric_is_mean_plus_uncertainty_term():
    model = fitted_gaussian().double()
    z = 1.5 * torch.randn(6, 2, dtype=torch.float64)
    g = model.pullback_metric().metric_tensor(z)
    expected = autograd_metric(model.decode, z) + autograd_metric(model.decode_std, z)
    torch.testing.assert_close(g, expected)
    via_core = PullbackMetric.gaussian(model.decode, model.decode_std).metric_tensor(z)
    torch.testing.assert_close(g, via_core)


def test_gaussian_with_constant_std_has_the_means_metric():
    model = fitted_gaussian(constant_std=True).double()
    z = torch.randn(6, 2, dtype=torch.float64)
    sigma = model.decode_std(z)
    torch.testing.assert_close(sigma, sigma[:1].expand_as(sigma))
    torch.testing.assert_close(
        model.pullback_metric().metric_tensor(z), PullbackMetric(model.decoder).metric_tensor(z)
    )
    torch.testing.assert_close(
        model.pullback_metric().christoffel_symbols(z),
        PullbackMetric(model.decoder).christoffel_symbols(z),
    )


def test_unfitted_gaussian_refuses_to_evaluate_its_std():
    model = GaussianVAE(hidden=16)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.decode_std(torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="not fitted"):
        model.pullback_metric()


def test_negative_elbo_by_hand():
    model = BernoulliVAE(hidden=16)
    x = torch.rand(4, 784)
    gen = torch.Generator().manual_seed(3)
    got = model.negative_elbo(x, generator=gen)
    gen = torch.Generator().manual_seed(3)
    mean, log_std = model.encoder(x)
    z = mean + log_std.exp() * torch.randn(mean.shape, generator=gen)
    p = model.decoder(z).reshape(4, 784)
    rec = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    var = (2 * log_std).exp()
    kl = 0.5 * (mean**2 + var - 1 - var.log()).sum(-1)
    torch.testing.assert_close(got, rec + kl, rtol=1e-5, atol=1e-3)


def test_gaussian_nll_by_hand():
    model = fitted_gaussian()
    x, z = torch.rand(3, 784), torch.randn(3, 2)
    mu, sigma = model.decode(z).reshape(3, 784), model.decode_std(z).reshape(3, 784)
    ref = -torch.distributions.Normal(mu, sigma).log_prob(x).sum(-1)
    torch.testing.assert_close(model.gaussian_nll(x, z), ref, rtol=1e-5, atol=1e-2)


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'poisson'"):
        build_model("poisson", {})
    with pytest.raises(ValueError, match="28 x 28"):
        build_model("bernoulli", {"latent_dim": 2, "image_shape": [3, 32, 32]})
    with pytest.raises(ValueError, match="cannot build a bernoulli model"):
        build_model("bernoulli", {"latent_dim": 2, "depth": 3})
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        build_model("bernoulli", {"latent_dim": 0})
    assert mean_decoder(4)[0].in_features == 4
    assert math.isclose(GaussianVAE(hidden=8, zeta=0.25).architecture()["zeta"], 0.25)
