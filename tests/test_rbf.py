"""The RBF std network: k-means, bandwidths, and sigma growing away from the data
(see ``uncertainty.py`` for how "the uncertainty term dominates" is measured)."""

import math

import pytest
import torch
from uncertainty import sigma_growth

from pullback_geom.vae import GaussianVAE
from pullback_geom.vae.rbf import RBFStd, kmeans, rbf_bandwidths


def blobs(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Latent codes in three well-separated clusters."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    pick = torch.randint(0, 3, (n,), generator=gen)
    return centres[pick] + 0.4 * torch.randn(n, 2, generator=gen)


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    truth = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = truth.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=gen)
    centres, assign = kmeans(x, 3, generator=gen)
    order = centres[:, 0].argsort(descending=False)
    dist = torch.cdist(centres, truth).min(1).values
    assert bool((dist < 0.1).all()), centres[order]
    assert len(set(assign.tolist())) == 3
    for k in range(3):  # each cluster is one blob
        assert len(set((assign[50 * k : 50 * (k + 1)]).tolist())) == 1


def test_kmeans_is_reproducible_and_never_leaves_a_cluster_empty():
    x = torch.cat([torch.zeros(40, 2), torch.ones(3, 2)])  # many duplicates
    centres, assign = kmeans(x, 5, generator=torch.Generator().manual_seed(1))
    assert bool((torch.bincount(assign, minlength=5) > 0).all())
    again = kmeans(x, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(centres, again[0]) and torch.equal(assign, again[1])
    with pytest.raises(ValueError, match="N >= k"):
        kmeans(torch.zeros(3, 2), 4)


def test_bandwidths_follow_the_papers_formula():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
    centres = torch.tensor([[1.0, 0.0], [10.0, 2.0]])
    assign = torch.tensor([0, 0, 1, 1])
    lam = rbf_bandwidths(x, centres, assign, a=1.5)
    torch.testing.assert_close(lam, 0.5 / (1.5 * torch.tensor([1.0, 2.0])) ** 2)
    # A one-point cluster has no spread: it gets a tenth of the median spread.
    lam = rbf_bandwidths(x[:3], torch.tensor([[1.0, 0.0], [10.0, 0.0]]), assign[:3], a=1.0)
    torch.testing.assert_close(lam[1], torch.tensor(0.5 / 0.1**2))


def test_zeta_must_be_positive():
    with pytest.raises(ValueError, match="zeta must be a finite number > 0"):
        RBFStd(2, 4, zeta=0.0)


def test_sigma_grows_away_from_synthetic_codes():
    codes = blobs()
    model = GaussianVAE(hidden=32, n_centres=16)
    assign = model.std.fit_centres(codes, generator=torch.Generator().manual_seed(0))
    assert assign.shape == (600,)
    with torch.no_grad():  # a precision of 1/0.05^2 at the data
        model.std.log_weight.fill_(math.log(1 / 0.05**2))
    growth = sigma_growth(model, codes)
    assert growth["sigma_ratio"] >= 5 and growth["sigma_ratio_worst_pixel"] >= 5
    assert growth["peak_ratio"] >= 10 and growth["length_ratio"] >= 5
    # Far away sigma is exactly 1/sqrt(zeta).
    far = model.decode_std(torch.tensor([[100.0, -100.0]]))
    torch.testing.assert_close(far, torch.full_like(far, 1 / math.sqrt(model.std.zeta)))


def test_sigma_grows_away_from_the_codes_of_a_trained_model():
    from synthetic import synthetic_digits, tiny_config

    from pullback_geom.training import encode_images, train_vae

    images, _ = synthetic_digits(512)
    model = train_vae(tiny_config(model="gaussian", epochs=3), images, progress=False).model
    codes = encode_images(model, images)
    growth = sigma_growth(model, codes)
    assert growth["sigma_ratio"] >= 5 and growth["sigma_ratio_worst_pixel"] >= 5
    assert growth["peak_ratio"] >= 10 and growth["length_ratio"] >= 5
