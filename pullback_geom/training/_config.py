"""What determines a training run (:class:`TrainConfig`) and what a finished one returns
(:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..vae import ARCHS, VAE, check_activation
from ..vae.conv import check_image_shape
from ..vae.conv_presets import resolve_conv

__all__ = ["TrainConfig", "TrainResult"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Parameters
    ----------
    model : {"bernoulli", "gaussian", "ensemble"}
    latent_dim : int, default 2
    hidden : int, default 512
    activation : {"relu", "elu", "softplus", "silu", "tanh", "gelu"}, optional
        The decoders' hidden activation. Default: the write-up's ReLU for ``arch="mlp"``,
        the preset's (GELU) for ``arch="conv"``.
    arch : {"mlp", "conv"}, default "mlp"
        The write-up's MLP networks, or a convolutional VAE
        (:class:`~pullback_geom.vae.ConvVAE`; Bernoulli models only).
    image_shape : (C, H, W), default (1, 28, 28)
        Of the training images; ``(3, 64, 64)`` for ``"mnist-64-rgb"`` (conv only).
    conv_preset : {"default", "georce-mnist8", "georce-celeba32"}, optional
        ``arch="conv"``: the decoder's architecture
        (:data:`~pullback_geom.vae.conv_presets.CONV_PRESETS`); default ``"default"``.
    conv_width : int, optional
        ``arch="conv"``: the first ConvTranspose layer's channels; default the preset's.
    conv_norm : {"batch", "none"}, optional
        ``arch="conv"``: BatchNorm2d after the hidden convolutions; default the preset's.
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
    activation: str | None = None
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
    arch: str = "mlp"
    image_shape: tuple[int, int, int] = (1, 28, 28)
    conv_preset: str | None = None
    conv_width: int | None = None
    conv_norm: str | None = None

    def __post_init__(self) -> None:
        if self.model not in ("bernoulli", "gaussian", "ensemble"):
            raise ValueError(
                f"model must be 'bernoulli', 'gaussian' or 'ensemble'; got {self.model!r}"
            )
        self._resolve_architecture()
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

    def _resolve_architecture(self) -> None:
        """Check ``arch`` and its options; fill in the defaults (frozen: by ``__setattr__``
        of ``object``), so that a run records, and a resumed run compares, what it built."""
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {list(ARCHS)}; got {self.arch!r}")
        conv = {"conv_preset": self.conv_preset, "conv_width": self.conv_width}
        conv["conv_norm"] = self.conv_norm
        if self.arch == "mlp":
            given = [k for k, v in conv.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply to arch='conv' only")
            if tuple(self.image_shape) != (1, 28, 28):
                raise ValueError(
                    f"the MLP VAEs take 1 x 28 x 28 images; got image_shape "
                    f"{tuple(self.image_shape)}: use arch='conv' (--arch conv)"
                )
            object.__setattr__(self, "image_shape", (1, 28, 28))
            object.__setattr__(self, "activation", self.activation or "relu")
            return
        if self.model != "bernoulli":
            raise ValueError(f"arch='conv' trains Bernoulli VAEs only; got model {self.model!r}")
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))
        opts = resolve_conv(self.conv_preset, self.conv_width, self.activation, self.conv_norm)
        for key in ("preset", "width", "norm"):
            object.__setattr__(self, f"conv_{key}", opts[key])
        object.__setattr__(self, "activation", opts["activation"])

    def architecture(self) -> dict[str, Any]:
        """The model's constructor arguments (what ``config.json`` stores)."""
        if self.arch == "conv":
            return {
                "arch": "conv",
                "latent_dim": self.latent_dim,
                "image_shape": list(self.image_shape),
                "preset": self.conv_preset,
                "width": self.conv_width,
                "activation": self.activation,
                "norm": self.conv_norm,
            }
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
