"""What determines a training run (:class:`TrainConfig`) and what a finished one returns
(:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..vae import VAE, check_activation

__all__ = ["TrainConfig", "TrainResult"]


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
