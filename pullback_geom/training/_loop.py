"""The run: :func:`train_vae` builds the model, resumes a saved run or starts afresh,
trains stage 1 (and the Gaussian model's stage 2) and saves after every epoch."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._core.progress import progress_bar
from ..data.datasets import to_unit_float
from ..vae import build_model
from ..vae.checkpoint import read_training_state, save_checkpoint
from ._config import TrainConfig, TrainResult
from ._evaluation import encode_images, evaluate
from ._saved import check_resumable, run_record, training_state
from ._stages import fit_rbf, new_optimizer, rbf_epoch, vae_epoch

__all__ = ["train_vae"]


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
        ``uint8`` or floats in [0, 1]; of ``cfg.image_shape`` (e.g. (N, 3, 64, 64)) for
        conv models.
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
    x = to_unit_float(train_images, shape=cfg.image_shape).contiguous().to(device)
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
    opt = new_optimizer(model, cfg, stage)
    done = {"epochs": 0, "rbf_epochs": 0}
    history: list[dict[str, Any]] = []

    state = read_training_state(folder) if (resume and folder is not None) else None
    if state is not None:
        check_resumable(state["train_config"], cfg, folder)
        model.load_state_dict(state["model"])
        done = dict(state["progress"])
        history = list(state["history"])
        stage = int(state["stage"])
        if stage == 2 and cfg.epochs != done["epochs"]:
            raise ValueError(
                f"the run in {folder} finished its {done['epochs']} VAE epochs and started "
                f"the std network's stage; it cannot change to {cfg.epochs} epochs"
            )
        opt = new_optimizer(model, cfg, stage)
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
        config = run_record(
            cfg,
            done=done,
            final=final,
            metrics=metrics,
            dataset=dataset,
            train_size=len(x),
            command=command,
        )
        if folder is not None:
            shrink = final and compact
            resume_state = training_state(model, opt, gen, cfg, stage, done, history)
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
        loss = vae_epoch(model, opt, x, cfg.batch_size, gen, bar)
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
            fit_rbf(model, x, cfg, gen)
            model.train()
            stage = 2
            opt = new_optimizer(model, cfg, stage)
        max_log_weight = -2 * math.log(cfg.min_std)
        n_batches = math.ceil(len(x) / cfg.rbf_batch_size)
        for epoch in range(done["rbf_epochs"], cfg.rbf_epochs):
            bar = _batch_bar(n_batches, f"std network {epoch + 1}/{cfg.rbf_epochs}", progress)
            t0 = time.perf_counter()
            loss = rbf_epoch(model, opt, x, cfg.rbf_batch_size, gen, max_log_weight, bar)
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
