"""A model on many images, in batches: encoder means and the test negative ELBO."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.datasets import to_unit_float
from ..vae import VAE

__all__ = ["EVAL_BATCH", "encode_images", "evaluate"]

#: Images per batch wherever a run evaluates a model without training it.
EVAL_BATCH = 2000


@torch.no_grad()
def encode_images(model: VAE, images: Tensor) -> Tensor:
    """Encoder means of many images, in batches.

    Parameters
    ----------
    images : Tensor, shape (N, 28, 28), (N, 1, 28, 28) or (N, 784); (N, C, H, W) or
        (N, C H W) for a model of ``(C, H, W)`` images (``model.image_shape``)

    Returns
    -------
    Tensor, shape (N, d)
        On the model's device.
    """
    device = _device_of(model)
    return torch.cat(
        [
            model.encode(images[i : i + EVAL_BATCH].to(device))
            for i in range(0, len(images), EVAL_BATCH)
        ]
    )


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate(model: VAE, images: Tensor, *, seed: int = 0, bernoulli: bool = False) -> float:
    """Mean one-sample negative ELBO over ``images``, in nats per image.

    Parameters
    ----------
    images : Tensor, shape (N, 28, 28), (N, 1, 28, 28) or (N, 784); (N, C, H, W) or
        (N, C H W) for a model of ``(C, H, W)`` images (``model.image_shape``)
    seed : int, default 0
        Seeds the latent samples, so repeated evaluations agree.
    bernoulli : bool, default False
        Use the Bernoulli likelihood of the mean whatever the model (the objective of
        the Gaussian model's first stage).
    """
    gen = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    total = 0.0
    for i in range(0, len(images), EVAL_BATCH):
        x = to_unit_float(images[i : i + EVAL_BATCH], shape=model.image_shape).to(device)
        z, kl = model.sample_latent(x, gen)
        nll = model.bernoulli_nll(x, z) if bernoulli else model.reconstruction_nll(x, z)
        total += float((nll + kl).sum())
    return total / len(images)
