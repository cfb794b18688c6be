"""Convolutional VAEs: every preset at 28 x 28 x 1 and 64 x 64 x 3, trained by the same loop
(reproducible, resumable), saved and loaded, their metric evaluated in eval mode, and the
commands that take a checkpoint run on one. Synthetic images only, small widths."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from synthetic import synthetic_digits, write_mnist
from torch import nn

from pullback_geom import vae
from pullback_geom.cli import build_parser, main, options
from pullback_geom.data.datasets import (
    RESIZED,
    image_shape,
    load_splits,
    load_test_images,
    resize_images,
)
from pullback_geom.training import TrainConfig, train_vae
from pullback_geom.vae import ConvVAE
from pullback_geom.vae.conv_presets import CONV_PRESETS, NORMS, SameConvTranspose2d

GREY, RGB = (1, 28, 28), (3, 64, 64)
#: (preset, image shape, d): every preset, both image sizes, d from 3 to 8
CASES = [
    ("default", GREY, 3),
    ("default", RGB, 5),
    ("georce-mnist8", GREY, 8),
    ("georce-mnist8", RGB, 4),
    ("georce-celeba32", RGB, 6),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: two intra-op threads only contend with each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images_of(shape: tuple[int, int, int], n: int, seed: int = 0):
    """Synthetic digits (uint8), resized to ``shape`` as ``mnist-64-rgb`` is."""
    images, labels = synthetic_digits(n, seed)
    if shape != GREY:
        images = resize_images(images, shape[1], shape[0])
    return images, labels


def tiny(**kwargs) -> TrainConfig:
    return TrainConfig(**{"arch": "conv", "conv_width": 8, "epochs": 1, "batch_size": 32, **kwargs})


# ---------------------------------------------------------------------- architectures
@pytest.mark.parametrize("preset, shape, d", CASES)
def test_every_preset_decodes_images_and_gives_a_metric_in_eval_mode(preset, shape, d):
    model = ConvVAE(d, shape, preset=preset, width=8)
    z = torch.randn(4, d)
    images = model.eval().decode(z)
    assert images.shape == (4, *shape)
    assert images.min() >= 0 and images.max() <= 1
    x = images_of(shape, 3)[0]
    assert model.encode(x).shape == (3, d)
    model.train()
    metric = model.pullback_metric()
    # BatchNorm uses its running statistics: the decoder was put in eval mode.
    assert not model.decoder.training and not any(m.training for m in model.decoder.modules())
    g = metric.metric_tensor(z).detach()
    assert g.shape == (4, d, d) and torch.isfinite(g).all()
    assert torch.allclose(g, g.transpose(1, 2), atol=1e-6 * float(g.abs().max()))
    # Each point's metric is its own, not a function of its batch.
    torch.testing.assert_close(metric.metric_tensor(z[:1]), g[:1], rtol=1e-4, atol=1e-6)
    fr = model.pullback_metric("fisher-rao").metric_tensor(z)
    assert fr.shape == (4, d, d) and torch.isfinite(fr).all()
    assert metric.smooth  # GELU, BatchNorm in eval, ConvTranspose: C2


def test_the_georce_presets_have_the_shapes_of_their_repository():
    mnist8 = ConvVAE(8, GREY, preset="georce-mnist8").decoder
    layers = [m for m in mnist8 if isinstance(m, (nn.Linear, nn.ConvTranspose2d))]
    sizes = [
        (m.in_features, m.out_features) if isinstance(m, nn.Linear) else
        (m.in_channels, m.out_channels, m.stride[0])
        for m in layers
    ]  # fmt: skip
    assert sizes == [(8, 50), (50, 64, 2), (64, 32, 1), (32, 16, 1), (64, 784)]
    assert sum(isinstance(m, nn.GELU) for m in mnist8) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in mnist8)  # as in GEORCE's

    celeba = ConvVAE(32, RGB, preset="georce-celeba32").decoder
    convs = [m for m in celeba if isinstance(m, nn.ConvTranspose2d)]
    channels = [(m.in_channels, m.out_channels, m.stride[0]) for m in convs]
    assert channels == [(32, 64, 2), (64, 64, 2), (64, 32, 2), (32, 32, 2), (32, 3, 4)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in celeba) == 4
    assert sum(isinstance(m, nn.GELU) for m in celeba) == 4
    assert celeba.eval()(torch.zeros(1, 32)).shape == (1, *RGB)


@pytest.mark.parametrize("kernel, stride", [(4, 1), (4, 2), (4, 4), (3, 1), (5, 2)])
def test_same_conv_transpose_multiplies_the_side_by_the_stride(kernel, stride):
    layer = SameConvTranspose2d(2, 3, kernel, stride)
    assert layer(torch.randn(1, 2, 5, 7)).shape == (1, 3, 5 * stride, 7 * stride)


def test_bad_architectures_are_named():
    with pytest.raises(ValueError, match="64 x 64 images"):
        ConvVAE(4, GREY, preset="georce-celeba32")
    with pytest.raises(ValueError, match="28 x 28 or 64 x 64"):
        ConvVAE(4, (2, 28, 28))
    with pytest.raises(ValueError, match="unknown conv preset"):
        ConvVAE(4, GREY, preset="resnet")
    with pytest.raises(ValueError, match="norm"):
        ConvVAE(4, GREY, norm="layer")
    with pytest.raises(ValueError, match="arch='conv' only"):
        TrainConfig(conv_width=8)
    with pytest.raises(ValueError, match="use arch='conv'"):
        TrainConfig(image_shape=RGB)
    with pytest.raises(ValueError, match="Bernoulli VAEs only"):
        TrainConfig(arch="conv", model="gaussian")
    with pytest.raises(ValueError, match="conv VAEs are Bernoulli"):
        vae.build_model("ensemble", {"arch": "conv", "latent_dim": 2})


def test_the_config_fills_in_the_presets_defaults():
    cfg = TrainConfig(arch="conv", latent_dim=8, conv_preset="georce-mnist8")
    assert (cfg.activation, cfg.conv_width, cfg.conv_norm) == ("gelu", 64, "none")
    assert cfg.architecture() == ConvVAE(8, preset="georce-mnist8").architecture()
    assert TrainConfig().activation == "relu" and TrainConfig().conv_preset is None


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("shape", [GREY, RGB], ids=["28x28x1", "64x64x3"])
def test_one_epoch_trains_saves_and_loads(shape, tmp_path):
    images, _ = images_of(shape, 64)
    test_images, test_labels = images_of(shape, 16, seed=1)
    cfg = tiny(latent_dim=3, image_shape=shape, epochs=2)
    result = train_vae(cfg, images, test_images, test_labels, out=tmp_path, progress=False)
    history = result.metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0 < result.metrics["test_neg_elbo"] < float("inf")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "bernoulli"
    assert config["architecture"] == {
        "arch": "conv",
        "latent_dim": 3,
        "image_shape": list(shape),
        "preset": "default",
        "width": 8,
        "activation": "gelu",
        "norm": "batch",
    }
    loaded = vae.load(tmp_path)  # torch.load(weights_only=True) inside
    assert isinstance(loaded, ConvVAE) and not loaded.training
    z = torch.randn(5, 3)
    torch.testing.assert_close(loaded.decode(z), result.model.decode(z), rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode(test_images), result.model.encode(test_images))
    codes = vae.load_latents(tmp_path).codes
    torch.testing.assert_close(codes, loaded.encode(test_images), rtol=1e-5, atol=1e-5)


def test_same_seed_same_weights_and_resume_continues_exactly(tmp_path):
    images, _ = images_of(GREY, 48)
    cfg = tiny(latent_dim=4, epochs=2, conv_preset="georce-mnist8", conv_norm="batch")
    straight = train_vae(cfg, images, progress=False).model.state_dict()
    again = train_vae(cfg, images, progress=False).model.state_dict()
    first = train_vae(replace(cfg, epochs=1), images, out=tmp_path, progress=False)
    assert first.config["training"]["epochs_done"] == 1
    resumed = train_vae(cfg, images, out=tmp_path, resume=True, progress=False).model.state_dict()
    assert any("running_mean" in k for k in straight)  # BatchNorm's buffers too
    for key, value in straight.items():
        assert torch.equal(value, again[key]), key
        assert torch.equal(value, resumed[key]), key
    with pytest.raises(ValueError, match="conv_width"):
        train_vae(replace(cfg, conv_width=4), images, out=tmp_path, resume=True, progress=False)


# ---------------------------------------------------------------------- data
def test_mnist_64_rgb_is_mnist_resized_with_three_equal_channels(tmp_path):
    root = write_mnist(tmp_path / "data", n_train=20, n_test=10)
    train, test, description = load_splits("mnist-64-rgb", root)
    grey, _, _ = load_splits("mnist", root)
    assert train.images.shape == (20, *RGB) and train.images.dtype == torch.uint8
    assert torch.equal(train.labels, grey.labels)
    assert torch.equal(train.images[:, 0], train.images[:, 2])
    assert torch.equal(train.images, resize_images(grey.images, 64, 3))
    assert description["image_shape"] == list(RGB) and description["resized_from"] == "mnist"
    assert image_shape("mnist-64-rgb") == RGB and image_shape("digit-orbit") == GREY
    # Bilinear resizing keeps the intensities: the bright strokes, the mean.
    assert int(train.images.max()) > 200
    assert abs(train.images.float().mean() - grey.images.float().mean()) < 2
    # Without files: the bundled MNIST test images, resized.
    images, source = load_test_images("mnist-64-rgb", tmp_path / "nothing")
    assert images.images.shape[1:] == RGB and "resized" in source


# ---------------------------------------------------------------------- command line
def test_the_cli_parses_the_conv_options_and_mirrors_the_registries():
    args = build_parser().parse_args(
        ["train", "--arch", "conv", "--conv-preset", "georce-celeba32", "--conv-width", "16"]
        + ["--conv-norm", "none", "--activation", "silu", "--dataset", "mnist-64-rgb"]
    )
    assert (args.arch, args.conv_preset, args.conv_width) == ("conv", "georce-celeba32", 16)
    assert (args.conv_norm, args.activation, args.dataset) == ("none", "silu", "mnist-64-rgb")
    plain = build_parser().parse_args(["train"])
    assert (plain.arch, plain.conv_preset, plain.activation) == ("mlp", None, None)
    assert options.ARCH_NAMES == vae.ARCHS
    assert options.CONV_PRESET_NAMES == tuple(CONV_PRESETS)
    assert options.CONV_NORM_NAMES == NORMS
    assert "mnist-64-rgb" in options.DATASET_CHOICES and "mnist-64-rgb" in RESIZED


@pytest.fixture(scope="module")
def conv_data(tmp_path_factory):
    """Synthetic digits in MNIST's file layout."""
    return write_mnist(tmp_path_factory.mktemp("data"), n_train=96, n_test=40)


@pytest.fixture(scope="module")
def conv_checkpoint(conv_data, tmp_path_factory):
    """``pullback-geom train --arch conv`` on the synthetic MNIST files: d = 3 (a 2-D one
    would make ``compare`` draw its 200 x 200 volume map: seconds), width 8."""
    out = tmp_path_factory.mktemp("conv") / "ckpt"
    argv = ["train", "--arch", "conv", "--conv-width", "8", "--latent-dim", "3", "--epochs"]
    argv += ["1", "--data-dir", str(conv_data), "--out", str(out), "--batch-size", "32"]
    assert main([*argv, "--quiet"]) == 0
    return out


def test_train_command_writes_a_conv_checkpoint(conv_checkpoint):
    config = json.loads((conv_checkpoint / "config.json").read_text())
    assert config["architecture"]["arch"] == "conv" and config["training"]["arch"] == "conv"
    assert "--arch conv" in config["command"]
    assert isinstance(vae.load(conv_checkpoint), ConvVAE)


def test_compare_and_distances_take_a_conv_checkpoint(conv_checkpoint, tmp_path, capsys):
    ck = str(conv_checkpoint)
    argv = ["compare", "--checkpoint", ck, "--pairs", "2", "--methods", "lm,discrete"]
    assert main([*argv, "--out", str(tmp_path / "cmp")]) == 0, capsys.readouterr().err
    assert "| lm |" in (tmp_path / "cmp" / "compare.md").read_text()
    argv = ["distances", "--checkpoint", ck, "--points", "6", "--route", "solver"]
    argv += ["--block-size", "3", "--check-pairs", "2", "--out", str(tmp_path / "dist")]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "dist" / "distances.json").read_text())
    assert summary["converged_fraction"] > 0


def test_identifiability_trains_and_measures_conv_models(conv_data, tmp_path, capsys):
    out = tmp_path / "ident"
    argv = ["identifiability", "--seeds", "0,1,2", "--arch", "conv", "--conv-width", "8"]
    argv += ["--conv-preset", "georce-mnist8", "--epochs", "1", "--limit", "48"]
    argv += ["--data-dir", str(conv_data), "--metric", "mean,fisher-rao", "--pairs", "4"]
    argv += ["--nodes", "6", "--out", str(out), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((out / "identifiability.json").read_text())
    assert result["models"] == [f"bernoulli_conv_seed{s}" for s in range(3)]
    assert set(result["metrics"]) == {"mean", "fisher-rao"}
    model = vae.load(out / "models" / "bernoulli_conv_seed0")
    assert isinstance(model, ConvVAE) and model.preset == "georce-mnist8"
