"""The two stages of a run, one epoch at a time: the VAE objective (stage 1, every model)
and the Gaussian model's RBF std network (stage 2: fitted from the training codes, then
only its log-weights learn)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..vae import VAE, GaussianVAE
from ._config import TrainConfig
from ._evaluation import EVAL_BATCH, encode_images

__all__ = ["fit_rbf", "new_optimizer", "rbf_epoch", "vae_epoch"]


def new_optimizer(model: VAE, cfg: TrainConfig, stage: int) -> torch.optim.Optimizer:
    """Adam on what learns in ``stage``: encoder and decoder (1), the RBF log-weights (2)."""
    if stage == 1:
        params = [*model.encoder.parameters(), *model.decoder.parameters()]
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.Adam([model.std.log_weight], lr=cfg.rbf_lr)


def vae_epoch(model, opt, x, batch_size, gen, bar) -> float:
    """One epoch of the (Bernoulli) VAE objective; returns the mean loss per image."""
    perm = torch.randperm(len(x), generator=gen)
    total, seen = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = x[perm[i : i + batch_size]]
        z, kl = model.sample_latent(xb, gen)
        loss = (model.training_nll(xb, z, gen) + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        seen += len(xb)
        bar.update(1)
        if bar.n % 25 == 0:
            bar.set_postfix(loss=f"{total / seen:.2f}", refresh=False)
    return total / seen


def rbf_epoch(model, opt, x, batch_size, gen, max_log_weight, bar) -> float:
    """One epoch of stage 2: only the RBF log-weights learn."""
    perm = torch.randperm(len(x), generator=gen)
    total, seen = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = x[perm[i : i + batch_size]]
        with torch.no_grad():
            z, _ = model.sample_latent(xb, gen)
        loss = model.gaussian_nll(xb, z).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.std.log_weight.clamp_(max=max_log_weight)
        total += loss.item() * len(xb)
        seen += len(xb)
        bar.update(1)
        if bar.n % 25 == 0:
            bar.set_postfix(loss=f"{total / seen:.1f}", refresh=False)
    return total / seen


@torch.no_grad()
def fit_rbf(model: GaussianVAE, x: Tensor, cfg: TrainConfig, gen: torch.Generator) -> None:
    """Centres, bandwidths and initial weights of the std network from the training codes.

    Each weight starts at the inverse residual variance of its cluster (floored at
    ``min_std^2``) divided by the mean RBF coverage of the cluster's members, so that the
    initial precision at the data is about the per-cluster maximum-likelihood one.
    """
    device = x.device
    # k-means on the CPU, drawing from the run's CPU generator (as on any device).
    codes = encode_images(model, x).cpu()
    model.std.cpu()
    assign = model.std.fit_centres(codes, a=cfg.bandwidth_scale, generator=gen)
    if cfg.gate_points:
        model.std.fit_gate(
            codes,
            bandwidth=cfg.gate_bandwidth,
            quantile=cfg.gate_quantile,
            width=cfg.gate_width,
            generator=gen,
        )
    model.std.to(device)
    codes, assign = codes.to(device), assign.to(device)
    k = model.std.centres.shape[0]
    sq_res = torch.zeros(k, x.shape[1], device=device)
    cover = torch.zeros(k, device=device)
    for i in range(0, len(x), EVAL_BATCH):
        z, a = codes[i : i + EVAL_BATCH], assign[i : i + EVAL_BATCH]
        res = (x[i : i + EVAL_BATCH] - model.decoder(z).reshape(len(z), -1)).square()
        sq_res.index_add_(0, a, res)
        cover.index_add_(0, a, model.std.activations(z).sum(-1))
    counts = torch.bincount(assign, minlength=k).clamp_min(1).float()
    var = (sq_res / counts[:, None]).clamp_min(cfg.min_std**2)
    weight = 1 / (var * (cover / counts).clamp_min(1e-6)[:, None])
    model.std.log_weight.copy_(weight.log().clamp(max=-2 * math.log(cfg.min_std)))
