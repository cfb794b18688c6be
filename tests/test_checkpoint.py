"""Checkpoints: exact round trips, and clear errors for missing, corrupt or foreign files."""

import json
import os
import pickle

import pytest
import torch
from synthetic import synthetic_digits, tiny_config

from pullback_geom import vae
from pullback_geom.training import train_vae
from pullback_geom.vae.checkpoint import read_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One trained tiny checkpoint of each model (module scope: trained once)."""
    root = tmp_path_factory.mktemp("runs")
    images, labels = synthetic_digits(256)
    test_images, test_labels = synthetic_digits(64, seed=1)
    out = {}
    for kind in ("bernoulli", "gaussian"):
        cfg = tiny_config(model=kind, epochs=1, rbf_epochs=1)
        result = train_vae(cfg, images, test_images, test_labels, out=root / kind, progress=False)
        out[kind] = (root / kind, result, test_labels)
    return out


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_round_trip_gives_identical_outputs(runs, kind):
    folder, result, test_labels = runs[kind]
    z = torch.randn(9, 2)
    x = torch.rand(4, 784)
    for path in (folder, folder / "model.pt", str(folder)):
        model = vae.load(path)
        assert type(model) is type(result.model) and not model.training
        assert torch.equal(model.decode(z), result.model.decode(z))
        assert torch.equal(model.encode(x), result.model.encode(x))
        if kind == "gaussian":
            assert torch.equal(model.decode_std(z), result.model.decode_std(z))
    latents = vae.load_latents(folder)
    assert latents.codes.shape == (64, 2) and latents.codes.dtype == torch.float32
    assert torch.equal(latents.labels, test_labels)
    # The codes are the encoder means of the test images.
    test_images, _ = synthetic_digits(64, seed=1)
    torch.testing.assert_close(latents.codes, vae.load(folder).encode(test_images))


def test_config_records_the_run(runs):
    folder, result, _ = runs["gaussian"]
    config = read_config(folder)
    assert config["model"] == "gaussian"
    assert config["architecture"] == {
        "latent_dim": 2,
        "hidden": 32,
        "activation": "relu",
        "image_shape": [1, 28, 28],
        "n_centres": 8,
        "zeta": 0.1,
        "gate_points": 1024,
    }
    assert config["training"]["seed"] == 0 and config["training"]["epochs_done"] == 1
    assert {"pullback_geom", "torch", "python"} <= config["versions"].keys()
    assert isinstance(config["metrics"]["test_neg_elbo"], float)
    assert config["metrics"] == result.metrics
    assert sorted(config["files"]) == ["latents.pt", "model.pt", "training.pt"]
    # Every write went through a temporary file that was renamed: none is left over.
    assert sorted(os.listdir(folder)) == ["config.json", "latents.pt", "model.pt", "training.pt"]


def copy_run(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_files(runs, tmp_path):
    folder, _, _ = runs["bernoulli"]
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nowhere"):
        vae.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config.json is missing"):
        vae.load(tmp_path)
    run = copy_run(folder, tmp_path / "run")
    os.remove(run / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"model.pt is missing"):
        vae.load(run)
    os.remove(run / "latents.pt")
    with pytest.raises(FileNotFoundError, match=r"latents.pt is missing"):
        vae.load_latents(run)


def random_bytes(path):
    gen = torch.Generator().manual_seed(0)
    path.write_bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).numpy())


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def malicious_pickle(path):
    with open(path, "wb") as f:
        pickle.dump({"decoder.0.weight": _Evil()}, f, protocol=2)


def not_a_state_dict(path):
    torch.save([torch.zeros(3)], path)


@pytest.mark.parametrize("damage", [random_bytes, truncated, malicious_pickle, not_a_state_dict])
def test_corrupt_weights_give_a_clear_error(runs, tmp_path, monkeypatch, damage):
    run = copy_run(runs["bernoulli"][0], tmp_path / "run")
    damage(run / "model.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="model.pt") as info:
        vae.load(run)
    assert "Traceback" not in str(info.value) and "weights_only" not in str(info.value)
    assert not (tmp_path / "pwned").exists()  # weights_only: nothing was executed


@pytest.mark.parametrize("damage", [random_bytes, truncated])
def test_corrupt_latents_give_a_clear_error(runs, tmp_path, damage):
    run = copy_run(runs["bernoulli"][0], tmp_path / "run")
    damage(run / "latents.pt")
    with pytest.raises(ValueError, match="latents.pt is not a readable latents file"):
        vae.load_latents(run)


def edit_config(run, change):
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


def test_wrong_architecture_in_the_config(runs, tmp_path):
    run = copy_run(runs["bernoulli"][0], tmp_path / "run")
    edit_config(run, lambda c: c["architecture"].update(latent_dim=3))
    with pytest.raises(ValueError, match="model.pt does not fit the architecture") as info:
        vae.load(run)
    assert "size mismatch" in str(info.value)
    edit_config(run, lambda c: c.update(model="gaussian"))
    with pytest.raises(ValueError, match="does not fit the architecture"):
        vae.load(run)
    edit_config(run, lambda c: c.update(model="poisson"))
    with pytest.raises(ValueError, match="config.json: unknown model 'poisson'"):
        vae.load(run)


def test_foreign_or_broken_config(runs, tmp_path):
    run = copy_run(runs["bernoulli"][0], tmp_path / "run")
    (run / "config.json").write_text('{"model": "bernoulli"')
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        vae.load(run)
    (run / "config.json").write_text('{"model": "bernoulli"}')
    with pytest.raises(ValueError, match="not a pullback_geom VAE config"):
        vae.load(run)
    (run / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not valid JSON"):
        vae.load(run)


def test_files_from_different_runs_are_detected(runs, tmp_path):
    run = copy_run(runs["bernoulli"][0], tmp_path / "run")
    other = vae.BernoulliVAE(hidden=32)
    torch.save(other.state_dict(), run / "model.pt")  # valid weights, but not this run's
    with pytest.raises(ValueError, match="does not match .*config.json.*--resume"):
        vae.load(run)


def test_runs_without_labels_store_minus_one(tmp_path):
    images, _ = synthetic_digits(64)
    train_vae(tiny_config(epochs=1), images, images[:10], out=tmp_path / "run", progress=False)
    assert torch.equal(vae.load_latents(tmp_path / "run").labels, torch.full((10,), -1))
