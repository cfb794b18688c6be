"""The convolutional decoders by name: ``"default"``, ``"georce-mnist8"`` and
``"georce-celeba32"``, each a function that builds an ``nn.Sequential``
``(B, d) -> (B, C, H, W)`` ending in a sigmoid, kept in one table (:data:`CONV_PRESETS`).

- ``"default"``: ``Linear d -> width x s x s``, then stride-2 ``ConvTranspose2d`` layers
  (kernel 4) that double the side up to the image's, with BatchNorm and the activation
  after every hidden layer. ``s = 7`` for 28 x 28 images (two layers, 64 -> 32 -> C
  channels at the default width 64), ``s = 4`` for 64 x 64 (four layers, 64 -> 32 -> 16 ->
  16 -> C). The encoder of :class:`~pullback_geom.vae.conv.ConvVAE` mirrors it.
- ``"georce-mnist8"``: the MNIST decoder of GEORCE's public repository (Rygaard & Hauberg,
  2025; their latent ``d = 8``): ``Linear d -> 50``, GELU, three ``ConvTranspose`` layers
  ``50 -> 64`` (stride 2, ``1 x 1 -> 2 x 2``), ``64 -> 32``, ``32 -> 16`` (stride 1), GELU
  after each, then ``Linear 64 -> C H W`` (784 for MNIST). No normalisation by default.
- ``"georce-celeba32"``: their CelebA decoder (``d = 32``): ``z`` as a ``d x 1 x 1`` image
  through five ``ConvTranspose`` layers ``d -> 64 -> 64 -> 32 -> 32 -> C`` (strides 2, 2,
  2, 2, 4: ``1 -> 2 -> 4 -> 8 -> 16 -> 64`` pixels a side), BatchNorm and GELU after the
  first four. 64 x 64 images only.

GEORCE's layers are Haiku ``Conv2DTranspose`` with ``padding="SAME"`` (the output side is
the input's times the stride) and no bias; :class:`SameConvTranspose2d` is that layer in
torch. ``width`` scales a preset's channels: it is the first ``ConvTranspose`` layer's
output channels, and every other hidden width keeps its ratio to it (the presets' own
widths at the default ``width = 64``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .models import ACTIVATIONS, check_activation

__all__ = [
    "CONV_PRESETS",
    "NORMS",
    "ConvPreset",
    "SameConvTranspose2d",
    "conv_decoder",
    "down_sizes",
    "resolve_conv",
]

#: ``norm`` values: BatchNorm2d after every hidden convolution, or nothing
NORMS = ("batch", "none")


class SameConvTranspose2d(nn.ConvTranspose2d):
    """A ``ConvTranspose2d`` whose output side is exactly the input's times the stride
    (TensorFlow's and Haiku's ``padding="SAME"``), for any kernel size.

    torch's ``padding`` is symmetric, so a kernel 4, stride 1 layer cannot keep the size;
    this one computes the full transposed convolution and crops ``kernel - stride``
    pixels, the odd one at the far end.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride : int
    bias : bool, default False
        GEORCE's layers have none.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias=False
    ) -> None:
        if kernel_size < stride:
            raise ValueError(f"kernel_size must be >= stride; got {kernel_size} < {stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.crop = (kernel_size - stride) // 2

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """``(B, C_in, H, W) -> (B, C_out, H s, W s)``."""
        h, w = x.shape[-2] * self.stride[0], x.shape[-1] * self.stride[1]
        out = super().forward(x)
        return out[..., self.crop : self.crop + h, self.crop : self.crop + w]


def down_sizes(side: int) -> list[int]:
    """The sides of the default encoder's stride-2 stages: halve while the side is even and
    the half at least 4 (``28 -> [14, 7]``, ``64 -> [32, 16, 8, 4]``)."""
    sizes = []
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        sizes.append(side)
    return sizes


def _scaled(widths: tuple[int, ...], width: int, first: int) -> list[int]:
    return [max(1, round(w * width / first)) for w in widths]


def _norm(channels: int, norm: str) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if norm == "batch" else []


def _default(d: int, shape: tuple[int, int, int], width: int, act, norm: str) -> list[nn.Module]:
    c, h, _ = shape
    sizes = down_sizes(h)
    if not sizes:
        raise ValueError(f"the default preset needs an even side >= 8; got {h} x {h}")
    s = sizes[-1]
    widths = [width]
    for _ in range(len(sizes) - 1):
        widths.append(max(widths[-1] // 2, max(width // 4, 1)))
    layers: list[nn.Module] = [
        nn.Linear(d, width * s * s, bias=norm != "batch"),
        nn.Unflatten(1, (width, s, s)),
        *_norm(width, norm),
        act(),
    ]
    for c_in, c_out in zip(widths, widths[1:], strict=False):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=norm != "batch")]
        layers += [*_norm(c_out, norm), act()]
    layers += [nn.ConvTranspose2d(widths[-1], c, 4, 2, 1), nn.Sigmoid()]
    return layers


def _georce_mnist8(
    d: int, shape: tuple[int, int, int], width: int, act, norm: str
) -> list[nn.Module]:
    stem, *hidden = _scaled((50, 64, 32, 16), width, 64)
    layers: list[nn.Module] = [nn.Linear(d, stem), act(), nn.Unflatten(1, (stem, 1, 1))]
    for c_in, c_out, stride in zip([stem, *hidden], hidden, (2, 1, 1), strict=False):
        layers += [SameConvTranspose2d(c_in, c_out, 4, stride), *_norm(c_out, norm), act()]
    c, h, w = shape
    return [
        *layers,
        nn.Flatten(),
        nn.Linear(hidden[-1] * 2 * 2, c * h * w),  # the 2 x 2 maps of 16: 64 -> 784 for MNIST
        nn.Sigmoid(),
        nn.Unflatten(1, shape),
    ]


def _georce_celeba32(
    d: int, shape: tuple[int, int, int], width: int, act, norm: str
) -> list[nn.Module]:
    if shape[1:] != (64, 64):
        raise ValueError(f"the georce-celeba32 preset makes 64 x 64 images; got {shape}")
    widths = [d, *_scaled((64, 64, 32, 32), width, 64)]
    layers: list[nn.Module] = [nn.Unflatten(1, (d, 1, 1))]
    for c_in, c_out in zip(widths, widths[1:], strict=False):
        layers += [SameConvTranspose2d(c_in, c_out, 4, 2), *_norm(c_out, norm), act()]
    return [*layers, SameConvTranspose2d(widths[-1], shape[0], 4, 4), nn.Sigmoid()]


@dataclasses.dataclass(frozen=True)
class ConvPreset:
    """One named decoder architecture and its defaults.

    Attributes
    ----------
    build : callable
        ``(latent_dim, image_shape, width, activation class, norm) -> list of layers``.
    summary : str
    activation, norm : str
        The defaults of ``activation`` and ``norm``.
    width : int
        The default ``width`` (the first ConvTranspose layer's output channels).
    """

    build: Callable[..., list[nn.Module]]
    summary: str
    activation: str = "gelu"
    norm: str = "batch"
    width: int = 64


#: preset name -> :class:`ConvPreset` (``--conv-preset``)
CONV_PRESETS: dict[str, ConvPreset] = {
    "default": ConvPreset(
        _default, "Linear, then stride-2 ConvTranspose layers, BatchNorm and GELU (any d)"
    ),
    "georce-mnist8": ConvPreset(
        _georce_mnist8,
        "GEORCE's MNIST-8 decoder: Linear d->50, 3 ConvTranspose 50->64->32->16, Linear 64->CHW",
        norm="none",
    ),
    "georce-celeba32": ConvPreset(
        _georce_celeba32,
        "GEORCE's CelebA-32 decoder: 5 ConvTranspose d->64->64->32->32->C, BatchNorm, 64 x 64",
    ),
}


def resolve_conv(
    preset: str | None = None,
    width: int | None = None,
    activation: str | None = None,
    norm: str | None = None,
) -> dict[str, Any]:
    """A conv architecture's options with the preset's defaults filled in, checked.

    Returns
    -------
    dict
        ``preset``, ``width``, ``activation``, ``norm``: what ``config.json`` records.
    """
    preset = "default" if preset is None else preset
    if preset not in CONV_PRESETS:
        raise ValueError(f"unknown conv preset {preset!r}; choose one of {list(CONV_PRESETS)}")
    spec = CONV_PRESETS[preset]
    width = spec.width if width is None else width
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width (--conv-width) must be a positive integer; got {width!r}")
    norm = spec.norm if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"norm (--conv-norm) must be one of {list(NORMS)}; got {norm!r}")
    activation = check_activation(spec.activation if activation is None else activation)
    return {"preset": preset, "width": width, "activation": activation, "norm": norm}


def conv_decoder(
    latent_dim: int,
    image_shape: tuple[int, int, int],
    preset: str = "default",
    width: int | None = None,
    activation: str | None = None,
    norm: str | None = None,
) -> nn.Sequential:
    """A preset's decoder, ``(B, d) -> (B, C, H, W)`` in (0, 1): the layers, then a sigmoid
    (then, for ``"georce-mnist8"``, the reshape to the image).

    Parameters
    ----------
    latent_dim : int
    image_shape : (C, H, W)
    preset : {"default", "georce-mnist8", "georce-celeba32"}
    width, activation, norm
        ``None``: the preset's (:data:`CONV_PRESETS`).
    """
    opts = resolve_conv(preset, width, activation, norm)
    spec = CONV_PRESETS[opts["preset"]]
    act = ACTIVATIONS[opts["activation"]]
    return nn.Sequential(
        *spec.build(latent_dim, tuple(image_shape), opts["width"], act, opts["norm"])
    )
