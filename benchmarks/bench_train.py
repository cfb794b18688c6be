"""Seconds per training epoch of the seed's VAE on the 60,000 MNIST training images.

Compares, in the same run and alternating epoch by epoch (so that load from other
processes hits both alike):

* ``pullback_geom``: :func:`pullback_geom.training.train_vae` for one epoch (the epoch
  loop's own timing, without checkpointing), and
* a plain reference loop written below: the seed's ``Encoder``/``Decoder`` classes,
  in-memory batches, ``binary_cross_entropy`` on the sigmoid output plus the KL, Adam.

Target: <= 6 s per epoch on 2 CPU cores. Prints the median over ``--repeats`` epochs
of each.

Usage::

    python benchmarks/bench_train.py --data-dir /path/to/data          # 3 + 3 epochs
    python benchmarks/bench_train.py --data-dir /path/to/data --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from pullback_geom.data.datasets import load_dataset, to_unit_float
from pullback_geom.training import TrainConfig, train_vae

BATCH = 128


# ---------------------------------------------------------------- the plain reference
class SeedEncoder(nn.Module):
    def __init__(self, latent_dims: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(784, 512)
        self.linear2 = nn.Linear(512, latent_dims)
        self.linear3 = nn.Linear(512, latent_dims)
        self.kl = torch.tensor(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.linear1(torch.flatten(x, start_dim=1)))
        mu = self.linear2(x)
        sigma = torch.exp(self.linear3(x))
        self.kl = (0.5 * (mu**2 + sigma**2 - 1) - torch.log(sigma)).sum()
        return mu + sigma * torch.randn_like(mu)


class SeedDecoder(nn.Module):
    def __init__(self, latent_dims: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(latent_dims, 512)
        self.linear2 = nn.Linear(512, 784)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.linear2(F.relu(self.linear1(z))))
        return z.reshape((-1, 1, 28, 28))


class SeedVAE(nn.Module):
    def __init__(self, latent_dims: int = 2) -> None:
        super().__init__()
        self.encoder = SeedEncoder(latent_dims)
        self.decoder = SeedDecoder(latent_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def plain_epoch(vae: SeedVAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    """One epoch of the plain loop; returns its seconds."""
    t0 = time.perf_counter()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), BATCH):
        xb = x[perm[i : i + BATCH]]
        x_hat = vae(xb)
        loss = F.binary_cross_entropy(x_hat.flatten(1), xb, reduction="sum") + vae.encoder.kl
        opt.zero_grad()
        (loss / len(xb)).backward()
        opt.step()
    return time.perf_counter() - t0


def ours_epoch(images: torch.Tensor, seed: int) -> float:
    """One epoch of ``train_vae``; returns the epoch loop's own seconds."""
    cfg = TrainConfig(model="bernoulli", epochs=1, batch_size=BATCH, seed=seed)
    result = train_vae(cfg, images, progress=False)
    return result.metrics["history"][0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--repeats", type=int, default=3, help="epochs of each (default 3)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images = load_dataset("mnist", args.data_dir, train=True).images
    x = to_unit_float(images)
    torch.manual_seed(0)
    vae = SeedVAE()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    ours, plain = [], []
    for r in range(args.repeats):
        ours.append(ours_epoch(images, seed=r))
        plain.append(plain_epoch(vae, opt, x))
        print(f"  epoch {r + 1}: pullback_geom {ours[-1]:.2f} s, plain loop {plain[-1]:.2f} s")
    result = {
        "images": len(x),
        "batch_size": BATCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "pullback_geom_s_per_epoch": statistics.median(ours),
        "plain_loop_s_per_epoch": statistics.median(plain),
    }
    print(
        f"seed VAE (784-512-2, batch {BATCH}) on {len(x)} MNIST images, "
        f"{result['threads']} threads: pullback_geom {result['pullback_geom_s_per_epoch']:.2f} "
        f"s/epoch, plain loop {result['plain_loop_s_per_epoch']:.2f} s/epoch (medians of "
        f"{args.repeats}; target <= 6 s)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
