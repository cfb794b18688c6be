"""Training the VAEs of :mod:`pullback_geom.vae`: reproducible, resumable, atomic.

The whole training set sits in memory as one float tensor and is batched by indexing
with a seeded permutation: no ``DataLoader``, no worker processes. One
``torch.Generator`` seeded with ``seed`` draws every permutation and every latent
sample, and the weights are initialised under ``torch.manual_seed(seed)``, so the same
seed on the same machine gives identical weights. After every epoch the run is saved
(:mod:`pullback_geom.vae.checkpoint`) with the optimizer and generator states, and
``resume=True`` continues from there exactly as if never interrupted.

The Gaussian model trains in two stages: ``epochs`` of the Bernoulli VAE's objective
for the encoder and the mean, then the RBF std network (k-means centres of the training
codes, bandwidths from the cluster spreads, weights initialised from each cluster's
residual variance) for ``rbf_epochs`` maximising the Gaussian log-likelihood with
everything else fixed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._core.progress import progress_bar
from .data.datasets import to_unit_float
from .vae import VAE, GaussianVAE, build_model, check_activation
from .vae.checkpoint import read_training_state, save_checkpoint

__all__ = ["TrainConfig", "TrainResult", "encode_images", "evaluate", "train_vae"]

_EVAL_BATCH = 2000


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Parameters
    ----------
    model : {"bernoulli", "gaussian", "ensemble"}
    latent_dim : int, default 2
    hidden : int, default 512
    activation : {"relu", "elu", "softplus", "silu", "tanh"}, default "relu"
        The decoders' hidden activation (the write-up's is ReLU).
    epochs : int, default 30
        Epochs of the VAE objective (stage 1 of the Gaussian model).
    batch_size : int, default 128
    lr : float, default 1e-3
        Adam's learning rate.
    seed : int, default 0
    n_centres : int, default 64
        Gaussian model: RBF centres.
    bandwidth_scale : float, default 1.5
        Gaussian model: ``a`` in the bandwidths ``lambda_k = 1/2 (a * spread_k)^-2``.
    zeta : float, default 0.1
        Gaussian model: precision far from the data (``sigma -> 1/sqrt(zeta)``).
    min_std : float, default 0.01
        Gaussian model: each RBF weight is capped at ``1/min_std^2``, so that blank
        background pixels do not drive the precision to infinity.
    rbf_epochs : int, default 10
        Gaussian model: epochs of stage 2.
    rbf_lr : float, default 0.05
        Gaussian model: Adam's learning rate on the log-weights in stage 2.
    rbf_batch_size : int, default 512
    gate_points : int, default 1024
        Gaussian model: k-means centres of the std network's data gate, which lets
        ``sigma`` rise where the data ends (:mod:`pullback_geom.vae.rbf`); 0 for none,
        the plain RBF network of Latent Space Oddity.
    gate_bandwidth : float, default 0.6
        Gaussian model: the gate's kernel bandwidth, in units of the median distance
        between neighbouring gate centres.
    gate_quantile : float, default 3e-3
        Gaussian model: fraction of training codes where the gate is below 0.95.
    gate_width : float, default 1
        Gaussian model: e-folds of data density over which the gate opens.
    decoders : int, default 4
        Ensemble model: number of decoders (``>= 2``).
    """

    model: str = "bernoulli"
    latent_dim: int = 2
    hidden: int = 512
    activation: str = "relu"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    n_centres: int = 64
    bandwidth_scale: float = 1.5
    zeta: float = 0.1
    min_std: float = 0.01
    rbf_epochs: int = 10
    rbf_lr: float = 0.05
    rbf_batch_size: int = 512
    gate_points: int = 1024
    gate_bandwidth: float = 0.6
    gate_quantile: float = 3e-3
    gate_width: float = 1.0
    decoders: int = 4

    def __post_init__(self) -> None:
        if self.model not in ("bernoulli", "gaussian", "ensemble"):
            raise ValueError(
                f"model must be 'bernoulli', 'gaussian' or 'ensemble'; got {self.model!r}"
            )
        for name in ("latent_dim", "hidden", "batch_size", "n_centres", "rbf_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        check_activation(self.activation)
        k = self.decoders
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"decoders must be an integer >= 2; got {self.decoders!r}")
        for name in ("epochs", "rbf_epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        g = self.gate_points
        if isinstance(g, bool) or not isinstance(g, int) or g < 0:
            raise ValueError(f"gate_points must be an integer >= 0; got {g!r}")
        if not (isinstance(self.gate_quantile, (int, float)) and 0 < self.gate_quantile < 1):
            raise ValueError(f"gate_quantile must be in (0, 1); got {self.gate_quantile!r}")
        for name in (
            "lr",
            "bandwidth_scale",
            "zeta",
            "min_std",
            "rbf_lr",
            "gate_bandwidth",
            "gate_width",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")

    def architecture(self) -> dict[str, Any]:
        """The model's constructor arguments (what ``config.json`` stores)."""
        arch: dict[str, Any] = {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "activation": self.activation,
            "image_shape": [1, 28, 28],
        }
        if self.model == "gaussian":
            arch.update(n_centres=self.n_centres, zeta=self.zeta)
            if self.gate_points:  # configs without the key build the plain network
                arch["gate_points"] = self.gate_points
        if self.model == "ensemble":
            arch["decoders"] = self.decoders
        return arch


@dataclasses.dataclass
class TrainResult:
    """A finished run: the trained model (eval mode) and what ``config.json`` holds."""

    model: VAE
    config: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """``config["metrics"]``: test negative ELBO, seconds per epoch, history."""
        return self.config["metrics"]


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def encode_images(model: VAE, images: Tensor) -> Tensor:
    """Encoder means of many images, in batches.

    Parameters
    ----------
    images : Tensor, shape (N, 28, 28), (N, 1, 28, 28) or (N, 784)

    Returns
    -------
    Tensor, shape (N, d)
        On the model's device.
    """
    device = _device_of(model)
    return torch.cat(
        [
            model.encode(images[i : i + _EVAL_BATCH].to(device))
            for i in range(0, len(images), _EVAL_BATCH)
        ]
    )


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate(model: VAE, images: Tensor, *, seed: int = 0, bernoulli: bool = False) -> float:
    """Mean one-sample negative ELBO over ``images``, in nats per image.

    Parameters
    ----------
    images : Tensor, shape (N, 28, 28), (N, 1, 28, 28) or (N, 784)
    seed : int, default 0
        Seeds the latent samples, so repeated evaluations agree.
    bernoulli : bool, default False
        Use the Bernoulli likelihood of the mean whatever the model (the objective of
        the Gaussian model's first stage).
    """
    gen = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    total = 0.0
    for i in range(0, len(images), _EVAL_BATCH):
        x = to_unit_float(images[i : i + _EVAL_BATCH]).to(device)
        z, kl = model.sample_latent(x, gen)
        nll = model.bernoulli_nll(x, z) if bernoulli else model.reconstruction_nll(x, z)
        total += float((nll + kl).sum())
    return total / len(images)


# ---------------------------------------------------------------------- the loops
def _vae_epoch(model, opt, x, batch_size, gen, bar) -> float:
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


def _rbf_epoch(model, opt, x, batch_size, gen, max_log_weight, bar) -> float:
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
def _fit_rbf(model: GaussianVAE, x: Tensor, cfg: TrainConfig, gen: torch.Generator) -> None:
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
    for i in range(0, len(x), _EVAL_BATCH):
        z, a = codes[i : i + _EVAL_BATCH], assign[i : i + _EVAL_BATCH]
        res = (x[i : i + _EVAL_BATCH] - model.decoder(z).reshape(len(z), -1)).square()
        sq_res.index_add_(0, a, res)
        cover.index_add_(0, a, model.std.activations(z).sum(-1))
    counts = torch.bincount(assign, minlength=k).clamp_min(1).float()
    var = (sq_res / counts[:, None]).clamp_min(cfg.min_std**2)
    weight = 1 / (var * (cover / counts).clamp_min(1e-6)[:, None])
    model.std.log_weight.copy_(weight.log().clamp(max=-2 * math.log(cfg.min_std)))


# ---------------------------------------------------------------------- the run
def _versions() -> dict[str, str]:
    from . import __version__

    out = {"pullback_geom": __version__, "torch": torch.__version__}
    try:
        out["torchvision"] = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        pass
    out["python"] = platform.python_version()
    return out


def _new_optimizer(model: VAE, cfg: TrainConfig, stage: int) -> torch.optim.Optimizer:
    if stage == 1:
        params = [*model.encoder.parameters(), *model.decoder.parameters()]
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.Adam([model.std.log_weight], lr=cfg.rbf_lr)


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, folder: Path) -> None:
    """A resumed run may add epochs; anything else must match the saved run."""
    now = dataclasses.asdict(cfg)
    # Runs saved before a field existed used its default, or for the gate, none.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults["gate_points"] = 0
    differ = [
        f"{k}: saved {saved.get(k, defaults[k])!r}, now {v!r}"
        for k, v in now.items()
        if k not in ("epochs", "rbf_epochs") and saved.get(k, defaults[k]) != v
    ]
    if differ:
        raise ValueError(
            f"cannot resume the run in {folder} with different settings ("
            + "; ".join(differ)
            + "); use the same options, or a new --out folder"
        )


def _batch_bar(total: int, desc: str, progress: bool):
    """A per-epoch progress bar over batches, on stderr."""
    return progress_bar(total=total, show=progress, desc=desc, unit="batch")


def train_vae(
    cfg: TrainConfig,
    train_images: Tensor,
    test_images: Tensor | None = None,
    test_labels: Tensor | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    dataset: dict[str, Any] | None = None,
    command: str | None = None,
    compact: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a VAE on in-memory images, saving a checkpoint after every epoch.

    Parameters
    ----------
    cfg : TrainConfig
    train_images : Tensor, shape (N, 28, 28), (N, 1, 28, 28) or (N, 784)
        ``uint8`` or floats in [0, 1].
    test_images : Tensor, shape (M, 28, 28), optional
        For the test negative ELBO (after each epoch) and the stored latent codes.
    test_labels : Tensor, shape (M,), optional
        Stored with the test codes (``-1`` where not given).
    out : path, optional
        Checkpoint folder; nothing is written without it.
    resume : bool, default False
        Continue the run saved in ``out`` (``training.pt``); ``cfg`` may only raise the
        epoch counts. Without a saved run, start afresh.
    dataset : dict, optional
        Description of the data for ``config.json`` (name, sizes).
    command : str, optional
        The command line, for ``config.json``.
    compact : bool, default False
        When finished, store float16 weights and drop the resume state (``training.pt``):
        how the bundled defaults are made.
    progress : bool, default True
        A tqdm bar per epoch with the running loss (on stderr).
    log : callable, optional
        Receives one line per event (resuming, stage changes); default: nothing.
    device : str or torch.device, default "cpu"
        Where the model and the training images live (``"cuda"``, ...). Random draws come
        from one CPU generator whatever the device, so a run on CUDA draws the same noise
        (its results differ only by the devices' float rounding), and it resumes anywhere.
        Checkpoints are written with CPU tensors.

    Returns
    -------
    TrainResult
        Its model on ``device``.

    Raises
    ------
    FileExistsError
        ``out`` holds a run and ``resume`` is False.
    ValueError
        ``resume`` with settings that differ from the saved run.
    """
    say = log or (lambda _: None)
    device = torch.device(device)
    x = to_unit_float(train_images).contiguous().to(device)
    folder = Path(out) if out is not None else None
    if folder is not None and not resume and (folder / "config.json").exists():
        raise FileExistsError(
            f"{folder} already holds a checkpoint; pass --resume (resume=True) to continue "
            "it, or choose another --out folder"
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, cfg.architecture())
    model.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    stage = 1
    opt = _new_optimizer(model, cfg, stage)
    done = {"epochs": 0, "rbf_epochs": 0}
    history: list[dict[str, Any]] = []

    state = read_training_state(folder) if (resume and folder is not None) else None
    if state is not None:
        _check_resumable(state["train_config"], cfg, folder)
        model.load_state_dict(state["model"])
        done = dict(state["progress"])
        history = list(state["history"])
        stage = int(state["stage"])
        if stage == 2 and cfg.epochs != done["epochs"]:
            raise ValueError(
                f"the run in {folder} finished its {done['epochs']} VAE epochs and started "
                f"the std network's stage; it cannot change to {cfg.epochs} epochs"
            )
        opt = _new_optimizer(model, cfg, stage)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        say(f"resuming {folder}: {done['epochs']} epochs and {done['rbf_epochs']} RBF epochs done")
    elif resume and folder is not None and (folder / "config.json").exists():
        raise ValueError(
            f"{folder} holds a checkpoint without resume state (a --compact run, or files "
            "copied without training.pt), so it cannot be continued; choose another --out"
        )
    elif resume:
        say(f"nothing to resume in {folder}; starting from scratch")

    def save(final: bool = False) -> dict[str, Any]:
        if final and compact:
            # Round to what the float16 file holds first, so that the metrics and codes
            # saved with it are exactly those of the model that loads from it.
            with torch.no_grad():
                for t in [*model.parameters(), *model.buffers()]:
                    if t.is_floating_point():
                        t.copy_(t.half().float())
        metrics: dict[str, Any] = {}
        latents = None
        if test_images is not None:
            model.eval()
            if cfg.model == "gaussian":
                metrics["test_neg_elbo_bernoulli"] = evaluate(
                    model, test_images, seed=cfg.seed, bernoulli=True
                )
            if cfg.model != "gaussian" or model.std.is_fitted:
                metrics["test_neg_elbo"] = evaluate(model, test_images, seed=cfg.seed)
            # The history records the objective of the epoch's stage.
            stage_objective = "test_neg_elbo_bernoulli" if stage == 1 else "test_neg_elbo"
            if history and "test_neg_elbo" not in history[-1]:
                history[-1]["test_neg_elbo"] = metrics.get(
                    stage_objective, metrics.get("test_neg_elbo")
                )
            labels = test_labels if test_labels is not None else torch.full((len(test_images),), -1)
            latents = (encode_images(model, test_images).cpu(), labels.cpu())
            model.train()
        vae_epochs = [h for h in history if h["stage"] == 1]
        if vae_epochs:
            metrics["seconds_per_epoch"] = sum(h["seconds"] for h in vae_epochs) / len(vae_epochs)
            metrics["train_neg_elbo_last_epoch"] = vae_epochs[-1]["train_loss"]
        metrics["history"] = history
        config = {
            "model": cfg.model,
            "architecture": cfg.architecture(),
            "dataset": dataset or {"name": "in-memory", "train_size": len(x)},
            "training": {
                **dataclasses.asdict(cfg),
                "epochs_done": done["epochs"],
                "rbf_epochs_done": done["rbf_epochs"],
                "finished": final,
            },
            "metrics": metrics,
            "versions": _versions(),
            "command": command,
            "likelihood": _LIKELIHOOD[cfg.model],
        }
        if folder is not None:
            shrink = final and compact
            resume_state = _training_state(model, opt, gen, cfg, stage, done, history)
            save_checkpoint(
                folder,
                state_dict={k: v.cpu() for k, v in model.state_dict().items()},
                config=config,
                latents=latents,
                training_state=None if shrink else resume_state,
                weights_dtype=torch.float16 if shrink else torch.float32,
            )
        return config

    model.train()
    n_batches = math.ceil(len(x) / cfg.batch_size)
    for epoch in range(done["epochs"], cfg.epochs):
        bar = _batch_bar(n_batches, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        t0 = time.perf_counter()
        loss = _vae_epoch(model, opt, x, cfg.batch_size, gen, bar)
        seconds = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss:.2f}")
        bar.close()
        done["epochs"] = epoch + 1
        history.append({"stage": 1, "epoch": epoch + 1, "train_loss": loss, "seconds": seconds})
        save()

    if cfg.model == "gaussian":
        if stage == 1:
            say("stage 2: fitting the RBF std network (k-means of the training codes)")
            model.eval()
            _fit_rbf(model, x, cfg, gen)
            model.train()
            stage = 2
            opt = _new_optimizer(model, cfg, stage)
        max_log_weight = -2 * math.log(cfg.min_std)
        n_batches = math.ceil(len(x) / cfg.rbf_batch_size)
        for epoch in range(done["rbf_epochs"], cfg.rbf_epochs):
            bar = _batch_bar(n_batches, f"std network {epoch + 1}/{cfg.rbf_epochs}", progress)
            t0 = time.perf_counter()
            loss = _rbf_epoch(model, opt, x, cfg.rbf_batch_size, gen, max_log_weight, bar)
            bar.close()
            done["rbf_epochs"] = epoch + 1
            history.append(
                {
                    "stage": 2,
                    "epoch": epoch + 1,
                    "train_loss": loss,
                    "seconds": time.perf_counter() - t0,
                }
            )
            save()

    config = save(final=True)
    model.eval()
    return TrainResult(model, config)


_LIKELIHOOD = {
    "bernoulli": "Bernoulli on pixel intensities in [0, 1]",
    "gaussian": "stage 1: Bernoulli on intensities (encoder and mean); stage 2: Gaussian "
    "with the RBF std, mean fixed; test_neg_elbo is the Gaussian one (a density, nats)",
    "ensemble": "Bernoulli on pixel intensities in [0, 1], averaged over the decoders; in "
    "training each decoder sees its own bootstrap (Poisson(1)) weights of each batch",
}


def _training_state(model, opt, gen, cfg, stage, done, history) -> dict[str, Any]:
    return {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "stage": stage,
        "progress": dict(done),
        "history": list(history),
        "train_config": dataclasses.asdict(cfg),
    }
