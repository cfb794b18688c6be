"""Convolutional VAEs of 1- or 3-channel images (28 x 28, 64 x 64): a conv encoder, a
ConvTranspose decoder from :mod:`~pullback_geom.vae.conv_presets`, Bernoulli likelihood.

:class:`ConvVAE` is a :class:`~pullback_geom.vae.models.VAE` like the write-up's: the same
``encode``, ``decode``, ``negative_elbo`` and ``pullback_metric(kind)`` (``"mean"``,
``"fisher-rao"``), trained by the same loop (``pullback-geom train --arch conv``) and
rebuilt by :func:`~pullback_geom.vae.load` from ``config.json``'s architecture
(``"arch": "conv"``). Its decoder is an ``nn.Sequential`` with ConvTranspose and (by
default) BatchNorm layers, so :class:`~pullback_geom.PullbackMetric` differentiates it in
forward mode. BatchNorm must use its running statistics there, or a point's metric would
depend on the other points of its batch: :meth:`ConvVAE.pullback_metric` puts the decoder
in eval mode.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from ..metric import PullbackMetric
from .conv_presets import conv_decoder, down_sizes, resolve_conv
from .fisher_rao import fisher_rao_metric, logit_decoder
from .models import ACTIVATIONS, VAE

__all__ = ["ConvEncoder", "ConvVAE", "check_image_shape"]


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``(C, H, W)`` as a tuple of ints if ``C`` is 1 or 3 and ``H = W`` is 28 or 64."""
    try:
        c, h, w = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (C, H, W); got {image_shape!r}") from None
    if c not in (1, 3) or h != w or h not in (28, 64):
        raise ValueError(
            f"conv VAEs take 1- or 3-channel images of 28 x 28 or 64 x 64 pixels; got "
            f"image_shape {tuple(image_shape)}"
        )
    return (c, h, w)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (kernel 4), each followed by BatchNorm (``norm="batch"``) and
    the activation, then two Linear layers: ``x (B, C H W) -> (mean, log_std)``, each (B, d).

    The sides halve as long as they stay even and at least 4 (28 -> 14 -> 7,
    64 -> 32 -> 16 -> 8 -> 4); the first convolution has ``width // 2`` channels, the
    others ``width``.

    Parameters
    ----------
    latent_dim : int
    image_shape : (C, H, W)
    width : int, default 64
    activation : str, default "gelu"
        A key of :data:`~pullback_geom.vae.ACTIVATIONS`.
    norm : {"batch", "none"}, default "batch"
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        width: int = 64,
        activation: str = "gelu",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        c, h, _ = image_shape
        sizes = down_sizes(h)
        layers: list[nn.Module] = [nn.Unflatten(1, tuple(image_shape))]
        c_in = c
        for i in range(len(sizes)):
            c_out = max(width // 2, 1) if i == 0 else width
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(ACTIVATIONS[activation]())
            c_in = c_out
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        features = c_in * sizes[-1] ** 2
        self.mean = nn.Linear(features, latent_dim)
        self.log_std = nn.Linear(features, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` of shape (B, C H W) in [0, 1] -> ``mean, log_std`` of shape (B, d)."""
        h = self.features(x)
        return self.mean(h), self.log_std(h)


class ConvVAE(VAE):
    """A convolutional VAE with a Bernoulli likelihood on pixel intensities in [0, 1].

    Parameters
    ----------
    latent_dim : int, default 2
    image_shape : (C, H, W), default (1, 28, 28)
        ``C`` is 1 or 3, ``H = W`` is 28 or 64.
    preset : {"default", "georce-mnist8", "georce-celeba32"}, default "default"
        The decoder's architecture (:data:`~pullback_geom.vae.conv_presets.CONV_PRESETS`).
    width : int, optional
        The first ConvTranspose layer's output channels (the others keep the preset's
        ratios); the encoder's widest convolution. Default: the preset's, 64.
    activation : str, optional
        A key of :data:`~pullback_geom.vae.ACTIVATIONS` (``"gelu"``, ``"silu"``,
        ``"relu"``, ...), in encoder and decoder. Default: the preset's, ``"gelu"``.
    norm : {"batch", "none"}, optional
        BatchNorm2d after the hidden convolutions. Default: the preset's (``"batch"``;
        ``"none"`` for ``"georce-mnist8"``, whose decoder has none).

    Examples
    --------
    >>> import torch
    >>> from pullback_geom.vae import ConvVAE
    >>> model = ConvVAE(latent_dim=8, image_shape=(3, 64, 64), width=16).eval()
    >>> model.decode(torch.zeros(2, 8)).shape
    torch.Size([2, 3, 64, 64])
    >>> model.pullback_metric().metric_tensor(torch.zeros(2, 8)).shape
    torch.Size([2, 8, 8])
    """

    kind = "bernoulli"
    metric_kinds = ("mean", "fisher-rao")

    def __init__(
        self,
        latent_dim: int = 2,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        preset: str = "default",
        width: int | None = None,
        activation: str | None = None,
        norm: str | None = None,
    ) -> None:
        # nn.Module's constructor, not VAE's: VAE's builds the write-up's MLP networks,
        # which this model replaces; everything else of VAE applies as it is.
        nn.Module.__init__(self)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer; got {latent_dim!r}")
        self.latent_dim = latent_dim
        self.image_shape = check_image_shape(image_shape)
        self.conv_options = resolve_conv(preset, width, activation, norm)
        self.activation = self.conv_options["activation"]
        width, act, norm = (self.conv_options[k] for k in ("width", "activation", "norm"))
        self.encoder = ConvEncoder(latent_dim, self.image_shape, width, act, norm)
        self.decoder = conv_decoder(latent_dim, self.image_shape, **self.conv_options)

    @property
    def preset(self) -> str:
        """The decoder's preset name."""
        return self.conv_options["preset"]

    def pullback_metric(self, kind: str | None = None, **kwargs: Any) -> PullbackMetric:
        """The pullback through the decoded mean (``kind="mean"``, the default) or the
        Bernoulli Fisher–Rao pullback (``"fisher-rao"``); ``kwargs`` go to
        :class:`PullbackMetric`.

        **Puts the decoder in eval mode** (``model.decoder.eval()``): BatchNorm then uses
        its running statistics, so that each point's metric is its own and not a function
        of the batch it is evaluated in. ``model.train()`` before training again.
        """
        return super().pullback_metric(kind, **kwargs)

    def _metric(self, kind: str, **kwargs: Any) -> PullbackMetric:
        self.decoder.eval()
        kwargs.setdefault("latent_dim", self.latent_dim)
        if kind == "fisher-rao":
            return fisher_rao_metric(self.decoder, **kwargs)
        return PullbackMetric(self.decoder, **kwargs)

    def logits(self, z: Tensor) -> Tensor:
        """The decoder's Bernoulli logits, ``(B, d) -> (B, C H W)``."""
        return logit_decoder(self.decoder)(z).reshape(len(z), -1)

    def bernoulli_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log p(x | z)`` under a Bernoulli likelihood with the decoded mean, (B,) nats.

        Parameters
        ----------
        x : Tensor, shape (B, C H W), floats in [0, 1]
        z : Tensor, shape (B, d)
        """
        logits = self.logits(z)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        return self.bernoulli_nll(x, z)

    def architecture(self) -> dict[str, Any]:
        """The constructor's arguments, as stored in a checkpoint's ``config.json``."""
        return {
            "arch": "conv",
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            **self.conv_options,
        }

    def _reference(self) -> Tensor:
        return next(self.decoder.parameters())
