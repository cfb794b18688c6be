"""Digit orbits: one MNIST digit rotated and scaled, an image manifold whose dimension
and metric are known exactly.

MNIST's digits do not lie on a 2-D manifold, so a 2-D VAE must fold them into a plane,
and each retraining folds them differently (see ``docs/identifiability.md``). The
images of *one* digit under rotations by ``angle`` and scalings by ``exp(log_scale)``
do lie on a 2-D manifold, parametrised by ``(angle, log_scale)``: every retraining of a
2-D VAE can learn the same manifold, only in other coordinates. And the parametrisation
is a known differentiable map, so the manifold's own metric (the pullback through the
renderer) gives the true geodesic distances that the models' geodesics should find.

The renderer samples the (slightly blurred) base digit bilinearly at the rotated and
scaled pixel grid, written with plain tensor indexing rather than
``torch.nn.functional.grid_sample``, because ``grid_sample`` has no forward-mode
derivative and :class:`~pullback_geom.PullbackMetric` differentiates in forward mode.
The dataset is ``pullback-geom train --dataset digit-orbit``: 60,000 training and
10,000 test images with parameters drawn uniformly, the base digit taken from the MNIST
test images bundled with the package, so it needs no data files.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ..metric import PullbackMetric

__all__ = ["DigitOrbit", "digit_orbit"]

_SIDE = 28
_CENTRE = (_SIDE - 1) / 2
#: (seed, size) of each split's parameters; fixed so every model sees the same images.
_SPLITS = {True: (0, 60_000), False: (1, 10_000)}


@dataclasses.dataclass(frozen=True, eq=False)
class DigitOrbit:
    """The images of one digit under rotation and scaling about the image centre.

    Parameters
    ----------
    base : Tensor, shape (28, 28)
        The digit, floats in [0, 1].
    label : int
        Its class, stored as every image's label.
    max_angle : float, default pi/4
        Angles are drawn from ``[-max_angle, max_angle]`` (radians).
    scale_range : (float, float), default (0.6, 1.1)
        Scales are drawn log-uniformly from this range.

    Notes
    -----
    Parameters are ``(angle, log_scale)``, shape ``(..., 2)``; the rendered image shows
    the base digit turned anticlockwise by ``angle`` and enlarged by ``exp(log_scale)``.
    """

    base: Tensor
    label: int
    max_angle: float = math.pi / 4
    scale_range: tuple[float, float] = (0.6, 1.1)

    def __post_init__(self) -> None:
        if not isinstance(self.base, Tensor) or tuple(self.base.shape) != (_SIDE, _SIDE):
            shape = tuple(self.base.shape) if isinstance(self.base, Tensor) else type(self.base)
            raise ValueError(f"base must be a (28, 28) tensor; got {shape}")
        if not (0 < self.max_angle <= math.pi):
            raise ValueError(f"max_angle must be in (0, pi]; got {self.max_angle}")
        low, high = self.scale_range
        if not (0 < low < high and math.isfinite(high)):
            raise ValueError(f"scale_range must be 0 < low < high; got {self.scale_range}")

    def render(self, params: Tensor) -> Tensor:
        """The images at ``params``.

        Parameters
        ----------
        params : Tensor, shape (..., 2)
            ``(angle, log_scale)``, floating point.

        Returns
        -------
        Tensor, shape (..., 784)
            Pixel intensities in [0, 1], of ``params``' dtype; differentiable in
            forward and reverse mode (piecewise smooth: bilinear interpolation).
        """
        if params.shape[-1:] != (2,):
            raise ValueError(
                f"params must have shape (..., 2) (angle, log_scale); got {tuple(params.shape)}"
            )
        # Pixels beyond the base image are zero; pad so that the smallest scale at any
        # angle still samples inside the padded image.
        pad = math.ceil(_CENTRE * math.sqrt(2) / self.scale_range[0] - _CENTRE) + 2
        image = torch.nn.functional.pad(self.base.to(params), (pad,) * 4)
        side = image.shape[-1]
        axis = torch.arange(_SIDE, dtype=params.dtype, device=params.device) - _CENTRE
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        rows, cols = rows.reshape(-1), cols.reshape(-1)
        angle, log_scale = params[..., :1], params[..., 1:]
        # Inverse map: output pixel -> where it comes from in the base image.
        shrink = torch.exp(-log_scale)
        cos, sin = torch.cos(angle) * shrink, torch.sin(angle) * shrink
        u = (cos * cols - sin * rows + _CENTRE + pad).clamp(0, side - 1.001)
        v = (sin * cols + cos * rows + _CENTRE + pad).clamp(0, side - 1.001)
        u0, v0 = u.detach().floor(), v.detach().floor()
        wu, wv = u - u0, v - v0
        flat = image.reshape(-1)
        corner = (v0 * side + u0).long()
        top = (1 - wu) * flat[corner] + wu * flat[corner + 1]
        bottom = (1 - wu) * flat[corner + side] + wu * flat[corner + side + 1]
        return (1 - wv) * top + wv * bottom

    def sample_params(self, n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` parameters drawn uniformly in angle and log-scale.

        Returns
        -------
        Tensor, shape (n, 2)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0; got {n!r}")
        gen = torch.Generator().manual_seed(seed)
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        low, high = math.log(self.scale_range[0]), math.log(self.scale_range[1])
        params = torch.stack([(2 * u[:, 0] - 1) * self.max_angle, low + u[:, 1] * (high - low)], -1)
        return params.to(dtype)

    def split_params(self, train: bool = True) -> Tensor:
        """The parameters of :meth:`split`'s images, float64 ``(N, 2)``."""
        seed, n = _SPLITS[train]
        return self.sample_params(n, seed, torch.float64)

    def split(self, train: bool = True, limit: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The dataset: 60,000 training or 10,000 test images, the same on every call.

        Parameters
        ----------
        train : bool, default True
        limit : int, optional
            Render only the first ``limit`` images (the same as the full split's first).

        Returns
        -------
        params : Tensor, shape (N, 2), float64
        images : Tensor, shape (N, 28, 28), uint8
            The rendered images rounded to 8 bits, as MNIST's.
        labels : Tensor, shape (N,), int64
            ``label`` everywhere.
        """
        params = self.split_params(train)[:limit]
        n = len(params)
        images = torch.cat([self.render(p.float()) for p in params.split(4096)])
        images = (images * 255).round().to(torch.uint8).reshape(n, _SIDE, _SIDE)
        return params, images, torch.full((n,), self.label, dtype=torch.int64)

    def metric(self) -> PullbackMetric:
        """The manifold's own metric: the pullback of pixel space through :meth:`render`.

        Its geodesic distances between parameters are the true distances on the image
        manifold, against which a model's geodesic distances between the codes of the
        same images can be checked.
        """
        return PullbackMetric(self.render, latent_dim=2, jacobian="forward")

    def true_distances(self, a: Tensor, b: Tensor, *, n_points: int = 32) -> Tensor:
        """Geodesic distances on the true manifold (float64 Levenberg–Marquardt, started
        as :func:`~pullback_geom.geodesics.connecting_geodesic`'s ``init_curve="auto"``).

        Parameters
        ----------
        a, b : Tensor, shape (P, 2)
            Parameters of the end images.
        n_points : int, default 32

        Returns
        -------
        Tensor, shape (P,), float64
        """
        from ..geodesics import connecting_geodesic

        metric = self.metric()
        result = connecting_geodesic(metric, a.double(), b.double(), n_points=n_points, warn=False)
        return result.length.detach()


def digit_orbit(index: int = 1, *, blur: float = 0.7, **options) -> DigitOrbit:
    """The orbit of one of the MNIST test images bundled with the package.

    Parameters
    ----------
    index : int, default 1
        Which of the first 2,000 test images (1 is a "2": no symmetry, so different
        parameters give different images).
    blur : float, default 0.7
        Std in pixels of a Gaussian blur applied first, so that interpolated images vary
        smoothly.
    **options
        ``max_angle``, ``scale_range`` of :class:`DigitOrbit`.

    Returns
    -------
    DigitOrbit
    """
    from .bundled import bundled_test_images

    if not (math.isfinite(blur) and blur >= 0):
        raise ValueError(f"blur must be a finite number >= 0; got {blur}")
    images = bundled_test_images()
    if not 0 <= index < len(images.images):
        raise ValueError(f"index must be in [0, {len(images.images)}); got {index}")
    base = images.images[index].double()[None, None] / 255
    if blur > 0:
        radius = max(1, math.ceil(3 * blur))
        k = torch.arange(-radius, radius + 1, dtype=torch.float64)
        w = torch.exp(-(k**2) / (2 * blur**2))
        w = w / w.sum()
        base = torch.nn.functional.conv2d(base, w.view(1, 1, 1, -1), padding=(0, radius))
        base = torch.nn.functional.conv2d(base, w.view(1, 1, -1, 1), padding=(radius, 0))
    base = base[0, 0] / base.max()
    return DigitOrbit(base.float(), int(images.labels[index]), **options)
