"""Synthetic MNIST-like data for the model tests: nothing is downloaded or read from disk.

``synthetic_digits`` draws 28 x 28 images around ten prototypes (one per label), so a
VAE finds clusters in them; ``write_mnist`` writes them in torchvision's raw IDX layout
(big-endian; magic 2051 for images, 2049 for labels) to test the real loader.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from torch import Tensor

from pullback_geom.training import TrainConfig

#: a small, fast configuration: 32 hidden units instead of 512
TINY = {"hidden": 32, "batch_size": 64, "n_centres": 8, "rbf_batch_size": 128}


def tiny_config(**kwargs) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "rbf_epochs": 2, **TINY, **kwargs})


def synthetic_digits(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` images (n, 28, 28) uint8 and labels (n,) int64 around ten blob prototypes."""
    gen = torch.Generator().manual_seed(1234)  # the prototypes are the same for every seed
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = 6 + 16 * torch.rand(10, 3, 2, generator=gen)
    protos = torch.zeros(10, 28, 28)
    for k in range(10):
        for cy, cx in centres[k]:
            protos[k] += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
    protos = protos.clamp(0, 1)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    noise = 0.15 * torch.rand(n, 28, 28, generator=gen)
    images = ((protos[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


def write_idx(path: Path, data: Tensor) -> None:
    """A uint8 tensor as an IDX file: magic ``0x0000080N`` (N dims), sizes, then bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | data.dim()) + struct.pack(f">{data.dim()}I", *data.shape)
    path.write_bytes(header + data.to(torch.uint8).contiguous().numpy().tobytes())


def write_mnist(root: Path, n_train: int = 256, n_test: int = 64, folder: str = "MNIST") -> Path:
    """Write a synthetic dataset in torchvision's layout under ``root``; returns ``root``."""
    raw = root / folder / "raw"
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root
