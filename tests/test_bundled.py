"""The bundled 2-D MNIST models load without a dataset and behave like trained models."""

import pytest
import torch
from uncertainty import sigma_growth

from pullback_geom import vae
from pullback_geom.vae.checkpoint import read_config


@pytest.fixture(scope="module")
def bundled():
    return {
        kind: (vae.load_default(kind), vae.load_latents(vae.default_checkpoint(kind)))
        for kind in ("bernoulli", "gaussian", "smooth")
    }


KINDS = {"bernoulli": "bernoulli", "gaussian": "gaussian", "smooth": "bernoulli"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_bundled_model_loads_and_decodes(bundled, kind):
    model, latents = bundled[kind]
    assert isinstance(model, vae.MODELS[KINDS[kind]]) and model.latent_dim == 2
    assert latents.codes.shape == (10000, 2)
    assert sorted(set(latents.labels.tolist())) == list(range(10))
    images = model.decode(latents.codes[:64])
    assert images.shape == (64, 1, 28, 28)
    assert bool(((images >= 0) & (images <= 1)).all())
    g = model.pullback_metric().metric_tensor(latents.codes[:256])
    assert g.shape == (256, 2, 2)
    assert bool((torch.linalg.eigvalsh(g)[:, 0] > 0).all())


@pytest.mark.parametrize("kind", list(KINDS))
def test_bundled_config_records_the_training(kind):
    config = read_config(vae.default_checkpoint(kind))
    assert config["dataset"]["name"] == "mnist" and config["dataset"]["train_size"] == 60000
    assert config["training"]["epochs_done"] == 30 and config["training"]["finished"]
    assert config["weights_dtype"] == "float16"
    assert (
        config["metrics"]["test_neg_elbo" if kind != "gaussian" else "test_neg_elbo_bernoulli"]
        < 160
    )
    assert "--compact" in config["command"]


def test_codes_separate_the_digits(bundled):
    """A trained encoder: nearest class centroid in the latent plane beats chance by far."""
    _, latents = bundled["bernoulli"]
    codes, labels = latents
    centroids = torch.stack([codes[labels == k].mean(0) for k in range(10)])
    predicted = torch.cdist(codes, centroids).argmin(1)
    assert float((predicted == labels).float().mean()) > 0.5


def test_bundled_models_share_their_mean(bundled):
    """Trained with the same seed, the Gaussian model's first stage is the Bernoulli VAE."""
    z = torch.randn(32, 2)
    torch.testing.assert_close(bundled["gaussian"][0].decode(z), bundled["bernoulli"][0].decode(z))


def test_bundled_gaussian_sigma_grows_away_from_the_data(bundled):
    model, latents = bundled["gaussian"]
    growth = sigma_growth(model, latents.codes, n_dirs=16, n_points=200)
    assert growth["sigma_ratio"] >= 5 and growth["sigma_ratio_worst_pixel"] >= 5
    assert growth["peak_ratio"] >= 10 and growth["length_ratio"] >= 2


def test_bundled_gaussian_wall_stands_where_the_data_ends(bundled):
    """The data gate's criterion (docs/models.md): off the data, in the holes between
    clusters (2 r95 from every test code) and clearly outside (2 r99), sigma is at least
    3x and 5x its median at the codes, and bounded by 1/sqrt(zeta) everywhere."""
    from pullback_geom.vae.rbf import sigma_wall

    model, latents = bundled["gaussian"]
    assert model.std.gate_points > 0
    wall = sigma_wall(model.decode_std, latents.codes.float())
    assert wall["ratio_2r95"] >= 3 and wall["ratio_2r99"] >= 5
    with torch.no_grad():
        far = model.decode_std(torch.tensor([[40.0, -60.0]]))
    assert float(far.max()) <= 1 / model.std.zeta**0.5 * (1 + 1e-3)


def test_the_smooth_model_is_smooth(bundled):
    """SiLU hidden units: the chain rule serves it and its metric is continuous across
    the units' zero crossings, where the ReLU model's jumps."""
    smooth, _ = bundled["smooth"]
    relu, _ = bundled["bernoulli"]
    assert smooth.activation == "silu" and isinstance(smooth.decoder[1], torch.nn.SiLU)
    assert read_config(vae.default_checkpoint("smooth"))["architecture"]["activation"] == "silu"
    jumps = {}
    for name, model in (("smooth", smooth), ("relu", relu)):
        metric = model.pullback_metric().to(dtype=torch.float64)
        w, b = model.decoder[0].weight.double(), model.decoder[0].bias.double()
        # Two points 1e-9 to either side of unit 0's hyperplane w.z + b = 0.
        normal = w[0] / w[0].norm()
        on = -b[0] / w[0].norm() * normal
        with torch.no_grad():
            g = metric.metric_tensor(torch.stack([on - 1e-9 * normal, on + 1e-9 * normal]))
        jumps[name] = float((g[0] - g[1]).norm() / g[0].norm())
    assert jumps["smooth"] < 1e-3 < jumps["relu"]


def test_unknown_default():
    with pytest.raises(ValueError, match="no bundled model 'vampprior'"):
        vae.load_default("vampprior")
