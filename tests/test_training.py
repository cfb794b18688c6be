"""Training: it learns, it is reproducible, it resumes exactly, it survives interruption;
and the ``pullback-geom train`` command end to end on IDX files in torchvision's layout."""

import csv
import json
import os

import pytest
import torch
from synthetic import synthetic_digits, tiny_config, write_mnist

from pullback_geom import PullbackMetric, vae
from pullback_geom.cli import main
from pullback_geom.training import TrainConfig, evaluate, train_vae
from pullback_geom.vae import checkpoint


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_digits(256)
    test_images, test_labels = synthetic_digits(64, seed=1)
    return images, test_images, test_labels


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_few_epochs_learn(data):
    images, test_images, _ = data
    cfg = tiny_config(epochs=4, lr=5e-3)
    untrained = evaluate(vae.BernoulliVAE(hidden=32), test_images)
    result = train_vae(cfg, images, test_images, progress=False)
    history = result.metrics["history"]
    assert len(history) == 4 and all(h["stage"] == 1 for h in history)
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < losses[0]
    assert result.metrics["test_neg_elbo"] < 0.9 * untrained
    assert result.metrics["seconds_per_epoch"] > 0


def test_same_seed_same_weights_and_the_global_rng_is_untouched(data):
    images = data[0]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train_vae(tiny_config(seed=5), images, progress=False).model
    assert torch.equal(torch.random.get_rng_state(), before)
    b = train_vae(tiny_config(seed=5), images, progress=False).model
    c = train_vae(tiny_config(seed=6), images, progress=False).model
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_gaussian_mean_is_the_bernoulli_models_with_the_same_seed(data):
    images = data[0]
    bern = train_vae(tiny_config(model="bernoulli"), images, progress=False).model
    gauss = train_vae(tiny_config(model="gaussian"), images, progress=False).model
    assert same_weights(bern.decoder, gauss.decoder) and same_weights(bern.encoder, gauss.encoder)
    assert gauss.std.is_fitted


@pytest.mark.parametrize(
    ("kind", "first", "full"),
    [
        ("bernoulli", {"epochs": 1}, {"epochs": 3}),
        ("gaussian", {"epochs": 2, "rbf_epochs": 1}, {"epochs": 2, "rbf_epochs": 3}),
    ],
)
def test_resume_continues_exactly(data, tmp_path, kind, first, full):
    images, test_images, test_labels = data
    straight = train_vae(tiny_config(model=kind, **full), images, progress=False).model
    out = tmp_path / "run"
    train_vae(
        tiny_config(model=kind, **first), images, test_images, test_labels, out=out, progress=False
    )
    lines = []
    resumed = train_vae(
        tiny_config(model=kind, **full),
        images,
        test_images,
        test_labels,
        out=out,
        resume=True,
        progress=False,
        log=lines.append,
    )
    assert lines and lines[0].startswith("resuming")
    assert same_weights(straight, resumed.model)
    assert same_weights(straight, vae.load(out))
    epochs = [h["epoch"] for h in resumed.metrics["history"]]
    assert len(epochs) == full["epochs"] + full.get("rbf_epochs", 0) * (kind == "gaussian")


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_to_overwrite(data, tmp_path):
    images = data[0]
    out = tmp_path / "run"
    train_vae(tiny_config(epochs=1), images, out=out, progress=False)
    with pytest.raises(FileExistsError, match="already holds a checkpoint; pass --resume"):
        train_vae(tiny_config(epochs=1), images, out=out, progress=False)
    with pytest.raises(ValueError, match=r"different settings \(lr: saved 0.001, now 0.01\)"):
        train_vae(tiny_config(epochs=2, lr=0.01), images, out=out, resume=True, progress=False)
    lines = []
    train_vae(
        tiny_config(epochs=1),
        images,
        out=tmp_path / "new",
        resume=True,
        progress=False,
        log=lines.append,
    )
    assert "starting from scratch" in lines[0]


def test_an_interrupted_save_is_detected_and_resume_repairs_it(data, tmp_path, monkeypatch):
    images = data[0]
    out = tmp_path / "run"
    train_vae(tiny_config(epochs=1), images, out=out, progress=False)
    real_write = checkpoint.atomic_write_bytes

    def write_but_die_before_the_config(path, payload):
        if path.name == "config.json":
            raise KeyboardInterrupt  # killed between two atomic writes
        real_write(path, payload)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", write_but_die_before_the_config)
    with pytest.raises(KeyboardInterrupt):
        train_vae(tiny_config(epochs=2), images, out=out, resume=True, progress=False)
    monkeypatch.undo()
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    with pytest.raises(ValueError, match="does not match"):  # model.pt is newer than config
        vae.load(out)
    result = train_vae(tiny_config(epochs=2), images, out=out, resume=True, progress=False)
    assert same_weights(vae.load(out), result.model)
    straight = train_vae(tiny_config(epochs=2), images, progress=False).model
    assert same_weights(straight, result.model)


def test_compact_checkpoints_store_float16_and_no_resume_state(data, tmp_path):
    images, test_images, test_labels = data
    out = tmp_path / "run"
    result = train_vae(
        tiny_config(epochs=1),
        images,
        test_images,
        test_labels,
        out=out,
        compact=True,
        progress=False,
    )
    assert sorted(os.listdir(out)) == ["config.json", "latents.pt", "model.pt"]
    raw = torch.load(out / "model.pt", weights_only=True)
    assert raw["decoder.0.weight"].dtype == torch.float16
    model = vae.load(out)
    assert model.decoder[0].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="without resume state"):
        train_vae(tiny_config(epochs=2), images, out=out, resume=True, progress=False)
    z = torch.randn(16, 2)
    assert torch.equal(model.decode(z), result.model.decode(z))  # rounded before the save


def test_config_validation():
    with pytest.raises(ValueError, match="model must be 'bernoulli', 'gaussian' or 'ensemble'"):
        TrainConfig(model="poisson")
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        TrainConfig(latent_dim=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        TrainConfig(lr=-1.0)


# ---------------------------------------------------------------------- the command
def test_train_command_end_to_end(tmp_path, capsys):
    root = write_mnist(tmp_path / "data", n_train=200, n_test=50)
    out = tmp_path / "out"
    argv = [
        "train",
        "--model",
        "bernoulli",
        "--epochs",
        "1",
        "--latent-dim",
        "2",
        "--seed",
        "3",
        "--data-dir",
        str(root),
        "--out",
        str(out),
        "--limit",
        "150",
        "--batch-size",
        "50",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test negative ELBO" in printed and str(out) in printed
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == {"name": "mnist", "train_size": 150, "test_size": 50, "limit": 150}
    assert config["training"]["seed"] == 3 and config["training"]["batch_size"] == 50
    assert config["command"].startswith("pullback-geom train --model bernoulli")
    latents = vae.load_latents(out)
    assert latents.codes.shape == (50, 2)
    model = vae.load(out)
    assert model.decode(latents.codes[:4]).shape == (4, 1, 28, 28)
    # The loss history beside the checkpoint: the CSV holds config.json's history.
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    history = config["metrics"]["history"]
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history] == [1]
    assert float(rows[0]["train_loss"]) == pytest.approx(history[0]["train_loss"], rel=1e-12)
    assert float(rows[0]["test_neg_elbo"]) == pytest.approx(history[0]["test_neg_elbo"])
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same command again refuses to overwrite; with --resume it has nothing left to do.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0


def test_train_command_reports_missing_data(tmp_path, capsys):
    code = main(["train", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty" / "MNIST" / "raw") in err and "--data-dir" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian", "ensemble"])
def test_activation_is_recorded_and_rebuilt(data, tmp_path, kind):
    """--activation reaches every model kind's decoders, config.json and vae.load, and
    the chain-rule Jacobian still serves the smooth decoders."""
    images, *_ = data
    out = tmp_path / kind
    cfg = tiny_config(model=kind, epochs=1, rbf_epochs=1, activation="silu", decoders=2)
    train_vae(cfg, images, out=out, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["activation"] == "silu"
    model = vae.load(out)
    assert model.activation == "silu"
    decoders = model.decoder.members if kind == "ensemble" else [model.decoder]
    assert all(isinstance(dec[1], torch.nn.SiLU) for dec in decoders)
    assert PullbackMetric(decoders[0]).jacobian_method == "chain"
    with pytest.raises(ValueError, match="activation"):
        TrainConfig(activation="swish")
