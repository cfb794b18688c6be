"""The MNIST loader on synthetic IDX files in torchvision's layout: reads, and clear errors."""

import struct

import pytest
import torch
from synthetic import synthetic_digits, write_idx, write_mnist

from pullback_geom.data.datasets import ENV_VAR, default_data_dir, load_dataset, to_unit_float


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_reads_both_splits(tmp_path, name, folder):
    write_mnist(tmp_path, n_train=40, n_test=12, folder=folder)
    train = load_dataset(name, tmp_path, train=True)
    test = load_dataset(name, tmp_path, train=False)
    images, labels = synthetic_digits(40, 0)
    assert torch.equal(train.images, images) and torch.equal(train.labels, labels)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert test.images.shape == (12, 28, 28) and test.labels.shape == (12,)


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message
    assert "--data-dir" in message and ENV_VAR in message and "--download" in message
    assert "shared" not in message  # no folder of the developers' machines


def test_default_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert default_data_dir() == tmp_path
    write_mnist(tmp_path, n_train=8, n_test=8)
    assert len(load_dataset("mnist").images) == 8
    monkeypatch.delenv(ENV_VAR)
    assert str(default_data_dir()) == "data"


def corrupt_truncated(raw):
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])


def corrupt_random(raw):
    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (5000,), generator=gen, dtype=torch.uint8)
    (raw / "train-labels-idx1-ubyte").write_bytes(noise.numpy().tobytes())


def corrupt_lengths(raw):
    write_idx(raw / "train-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8))


def corrupt_shape(raw):
    write_idx(raw / "train-images-idx3-ubyte", torch.zeros(40, 14, 14, dtype=torch.uint8))


def corrupt_labels(raw):
    write_idx(raw / "train-labels-idx1-ubyte", torch.full((40,), 12, dtype=torch.uint8))


def corrupt_header(raw):
    (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">I", 12345) + b"\0" * 64)


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_truncated,
        corrupt_random,
        corrupt_lengths,
        corrupt_shape,
        corrupt_labels,
        corrupt_header,
    ],
)
def test_corrupt_files_give_a_clear_error(tmp_path, corrupt):
    write_mnist(tmp_path, n_train=40, n_test=8)
    raw = tmp_path / "MNIST" / "raw"
    corrupt(raw)
    with pytest.raises(ValueError, match="(r|R)eplace them with the original files") as info:
        load_dataset("mnist", tmp_path)
    assert str(raw) in str(info.value)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (3, 28, 28), (3, 784)])
def test_to_unit_float(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = to_unit_float(x)
    assert out.shape == (3, 784) and out.dtype == torch.float32
    torch.testing.assert_close(out, x.reshape(3, 784).float() / 255)
    assert to_unit_float(out.double()).dtype == torch.float64
    with pytest.raises(ValueError, match=r"got \(3, 10\)"):
        to_unit_float(torch.zeros(3, 10))
    with pytest.raises(TypeError, match="uint8 or floating point"):
        to_unit_float(torch.zeros(3, 784, dtype=torch.int64))
