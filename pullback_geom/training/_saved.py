"""What a run saves after every epoch: the record that ``config.json`` holds and the resume
state of ``training.pt``, and the check that a resumed run is the saved one.

:mod:`pullback_geom.vae.checkpoint` writes and reads the files; this module decides what
goes into them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import torch

from ._config import TrainConfig

__all__ = ["LIKELIHOOD", "check_resumable", "run_record", "training_state", "versions"]

#: ``config.json``'s ``likelihood``: what the model's negative ELBO measures.
LIKELIHOOD = {
    "bernoulli": "Bernoulli on pixel intensities in [0, 1]",
    "gaussian": "stage 1: Bernoulli on intensities (encoder and mean); stage 2: Gaussian "
    "with the RBF std, mean fixed; test_neg_elbo is the Gaussian one (a density, nats)",
    "ensemble": "Bernoulli on pixel intensities in [0, 1], averaged over the decoders; in "
    "training each decoder sees its own bootstrap (Poisson(1)) weights of each batch",
}


def versions() -> dict[str, str]:
    """The versions of the package, torch, torchvision (when installed) and Python."""
    from .. import __version__

    out = {"pullback_geom": __version__, "torch": torch.__version__}
    try:
        out["torchvision"] = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        pass
    out["python"] = platform.python_version()
    return out


def run_record(
    cfg: TrainConfig,
    *,
    done: dict[str, int],
    final: bool,
    metrics: dict[str, Any],
    dataset: dict[str, Any] | None,
    train_size: int,
    command: str | None,
) -> dict[str, Any]:
    """The ``config.json`` of a run after ``done["epochs"]`` and ``done["rbf_epochs"]``."""
    return {
        "model": cfg.model,
        "architecture": cfg.architecture(),
        "dataset": dataset or {"name": "in-memory", "train_size": train_size},
        "training": {
            **dataclasses.asdict(cfg),
            "epochs_done": done["epochs"],
            "rbf_epochs_done": done["rbf_epochs"],
            "finished": final,
        },
        "metrics": metrics,
        "versions": versions(),
        "command": command,
        "likelihood": LIKELIHOOD[cfg.model],
    }


def training_state(model, opt, gen, cfg, stage, done, history) -> dict[str, Any]:
    """What ``training.pt`` holds: enough to continue the run exactly (CPU tensors)."""
    return {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "stage": stage,
        "progress": dict(done),
        "history": list(history),
        "train_config": dataclasses.asdict(cfg),
    }


def check_resumable(saved: dict[str, Any], cfg: TrainConfig, folder: Path) -> None:
    """A resumed run may add epochs; anything else must match the saved run."""
    now = dataclasses.asdict(cfg)
    # Runs saved before a field existed used its default, or for the gate, none.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults["gate_points"] = 0
    defaults["activation"] = "relu"  # the MLP's, before the conv VAEs made it optional
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
