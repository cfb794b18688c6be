"""Metric options of the models: the Fisher–Rao pullback of a Bernoulli decoder and the
expected metric of a decoder ensemble, against direct computations."""

import math

import pytest
import torch
from synthetic import synthetic_digits, tiny_config

from pullback_geom import PullbackMetric, vae
from pullback_geom.training import evaluate, train_vae
from pullback_geom.vae.fisher_rao import (
    BernoulliFisherRaoEmbedding,
    fisher_rao_metric,
    logit_decoder,
)

F64 = torch.float64


def direct_fisher_rao(decoder, z):
    """``J^T diag(1/(mu(1-mu))) J`` from autograd on the means."""
    jac = torch.func.vmap(torch.func.jacrev(lambda x: decoder(x[None]).reshape(-1)))(z)
    mu = decoder(z).reshape(len(z), -1)
    return jac.mT @ (jac / (mu * (1 - mu))[..., None])


def test_embedding_is_twice_arcsin_sqrt_sigmoid():
    logits = torch.linspace(-12, 12, 101, dtype=F64)
    expected = 2 * torch.asin(torch.sigmoid(logits).sqrt())
    torch.testing.assert_close(BernoulliFisherRaoEmbedding()(logits), expected)


def test_fisher_rao_equals_the_direct_formula():
    model = vae.BernoulliVAE(hidden=16).to(F64)
    z = torch.randn(7, 2, dtype=F64)
    expected = direct_fisher_rao(model.decoder, z)
    got = model.pullback_metric(kind="fisher-rao").metric_tensor(z)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # ... and differs from the plain metric, which the default still is
    plain = model.pullback_metric().metric_tensor(z)
    torch.testing.assert_close(plain, PullbackMetric(model.decoder).metric_tensor(z))
    assert not torch.allclose(got, plain, rtol=0.1)


def test_fisher_rao_is_finite_where_the_sigmoid_saturates():
    model = vae.BernoulliVAE(hidden=16)
    with torch.no_grad():
        model.decoder[2].bias.fill_(40.0)  # float32 sigmoid(40) == 1 exactly
    z = torch.randn(5, 2)
    assert bool((model.decode(z) == 1).all())
    naive = direct_fisher_rao(model.decoder, z)
    assert not bool(naive.isfinite().all())
    metric = model.pullback_metric(kind="fisher-rao")
    g = metric.metric_tensor(z)
    assert bool(g.isfinite().all()) and bool((g.diagonal(dim1=-2, dim2=-1) >= 0).all())
    # the stable derivative 1 / (2 cosh(l / 2)) is tiny but positive there
    assert float(g.detach().abs().max()) < 1e-10


def test_function_form_and_bad_decoders():
    model = vae.BernoulliVAE(hidden=16).to(F64)
    z = torch.randn(3, 2, dtype=F64)
    from_logits = fisher_rao_metric(logit_decoder(model.decoder), from_logits=True)
    torch.testing.assert_close(
        from_logits.metric_tensor(z), fisher_rao_metric(model.decoder).metric_tensor(z)
    )
    with pytest.raises(ValueError, match="ending in nn.Sigmoid"):
        fisher_rao_metric(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh()))
    with pytest.raises(ValueError, match="no 'ensemble' metric"):
        model.pullback_metric(kind="ensemble")


def test_ensemble_metric_is_the_mean_of_the_members():
    model = vae.EnsembleVAE(hidden=16, decoders=3).to(F64)
    z = torch.randn(6, 2, dtype=F64)
    members = model.decoder.members
    expected = sum(PullbackMetric(m).metric_tensor(z) for m in members) / 3
    torch.testing.assert_close(model.pullback_metric().metric_tensor(z), expected)
    fr = sum(direct_fisher_rao(m, z) for m in members) / 3
    got = model.pullback_metric(kind="fisher-rao").metric_tensor(z)
    torch.testing.assert_close(got, fr)
    # the members differ (own initialisation), so the expected metric is not one of theirs
    assert not torch.allclose(expected, PullbackMetric(members[0]).metric_tensor(z))
    mean_image = torch.stack([m(z) for m in members]).mean(0)
    torch.testing.assert_close(model.decode(z), mean_image)
    # a decoded curve has the energy of its K decodings, averaged
    curve = torch.randn(2, 5, 2, dtype=F64)
    per_member = torch.stack([PullbackMetric(m).curve_energy(curve) for m in members])
    torch.testing.assert_close(model.pullback_metric().curve_energy(curve), per_member.mean(0))


def test_ensemble_bad_size():
    with pytest.raises(ValueError, match="decoders must be an integer >= 2"):
        vae.EnsembleVAE(decoders=1)
    with pytest.raises(ValueError, match="decoders must be an integer >= 2"):
        tiny_config(model="ensemble", decoders=1)


def test_tiny_ensemble_learns_and_round_trips(tmp_path):
    images, _ = synthetic_digits(256)
    test_images, test_labels = synthetic_digits(64, seed=1)
    cfg = tiny_config(model="ensemble", decoders=2, epochs=2, lr=1e-2)
    untrained = evaluate(vae.EnsembleVAE(hidden=32, decoders=2), test_images)
    result = train_vae(cfg, images, test_images, test_labels, out=tmp_path, progress=False)
    assert result.metrics["test_neg_elbo"] < 0.9 * untrained
    loaded = vae.load(tmp_path)
    assert isinstance(loaded, vae.EnsembleVAE) and loaded.n_decoders == 2
    z = torch.randn(4, 2)
    torch.testing.assert_close(loaded.decode(z), result.model.decode(z))
    g = loaded.pullback_metric().metric_tensor(z)
    torch.testing.assert_close(g, result.model.pullback_metric().metric_tensor(z))
    # the decoders disagree: their decodings differ by more than rounding
    with torch.no_grad():
        spread = torch.stack([m(z) for m in loaded.decoder.members]).std(0).mean()
    assert float(spread) > 1e-3
    assert math.isfinite(result.metrics["test_neg_elbo"])
