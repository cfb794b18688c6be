"""The Gaussian curvature of a 2-D latent space as a map, with the data codes on top."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, SymLogNorm
from matplotlib.figure import Figure

from ._common import (
    Extent,
    check_extent,
    check_metric,
    check_resolution,
    extent_around,
    grid_values,
    latent_grid,
    like,
    new_figure,
    to_numpy,
)

__all__ = ["curvature_map", "curvature_grid"]

CURVATURE_LABEL = r"Gaussian curvature $K(z)$"


def curvature_grid(metric, extent: Extent, resolution: int = 200) -> np.ndarray:
    """Gaussian curvature of ``metric`` on a regular latent grid.

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space.
    extent : (xmin, xmax, ymin, ymax)
    resolution : int, default 200
        Grid points per axis.

    Returns
    -------
    ndarray, shape (resolution, resolution), float64
        Row 0 is ``ymin`` (``imshow(origin="lower")``), as
        :func:`~pullback_geom.viz._common.latent_grid`.
    """
    m = check_metric(metric).detached()
    extent, resolution = check_extent(extent), check_resolution(resolution)
    dtype, device = like(m)
    return grid_values(m.gaussian_curvature, latent_grid(extent, resolution), dtype, device)


def _norm(values: np.ndarray, linthresh: float | None) -> tuple[Normalize, bool]:
    """A colour scale centred on 0, symmetric; symmetric-log when ``|K|`` spans decades."""
    mag = np.abs(values[np.isfinite(values)])
    vmax = float(np.percentile(mag, 99.5)) if mag.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    # The 20th percentile of |K|: values below it are "nearly flat" and share the linear part.
    typical = float(np.percentile(mag, 20)) if mag.size else vmax
    if linthresh is None and typical > 0 and vmax / typical < 20:
        return Normalize(-vmax, vmax), False
    if linthresh is None:
        linthresh = max(typical, 1e-4 * vmax)
    if not (linthresh > 0):
        raise ValueError(f"linthresh must be a positive number; got {linthresh!r}")
    return SymLogNorm(linthresh, linscale=1.0, vmin=-vmax, vmax=vmax, base=10), True


def _symlog_ticks(norm: SymLogNorm) -> list[float]:
    """0 and the powers of ten above the linear part (matplotlib's default crowds 0)."""
    lo = int(np.floor(np.log10(norm.linthresh))) + 1
    hi = int(np.floor(np.log10(norm.vmax)))
    powers = [10.0**k for k in range(lo, hi + 1)]
    return [-p for p in reversed(powers)] + [0.0] + powers


def curvature_map(
    metric,
    extent: Extent | None = None,
    latents=None,
    labels=None,
    *,
    resolution: int = 200,
    linthresh: float | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Gaussian curvature of the pullback metric over a 2-D latent space.

    Red is positive (sphere-like: geodesics converge), blue negative (saddle-like:
    geodesics diverge), white flat. The colour scale is symmetric about 0 and clipped at
    the 99.5th percentile of ``|K|``; when that maximum is more than 20 times the 20th
    percentile of ``|K|``, the scale is symmetric-logarithmic, linear within
    ``+-linthresh`` (default that 20th percentile).

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space.
    extent : (xmin, xmax, ymin, ymax), optional
        Default: around ``latents``.
    latents : Tensor or array, shape (n, 2), optional
        Data codes, overlaid as small dots.
    labels : Tensor or array, shape (n,), optional
        Class of each code: each class's name is written at its codes' median.
    resolution : int, default 200
        Grid points per axis (``resolution**2`` curvature evaluations).
    linthresh : float, optional
        Half-width of the linear part of a symmetric-log scale (forces that scale).
    ax : matplotlib Axes, optional
        Draw there (with its colour bar); default a new figure.
    title : str, optional

    Returns
    -------
    Figure
        ``ax.figure`` when ``ax`` is given.
    """
    check_metric(metric)
    codes = None if latents is None else to_numpy(latents, "latents", "(n, 2)", 2, 2)
    if labels is not None:
        if codes is None:
            raise ValueError("labels need latents: the codes they label")
        labels = np.asarray(to_numpy(labels, "labels", "(n,)", 1))
        if labels.shape[0] != codes.shape[0]:
            raise ValueError(
                f"labels must have one entry per code ({codes.shape[0]}); got {labels.shape[0]}"
            )
    if extent is None:
        if codes is None:
            raise ValueError("pass extent=(xmin, xmax, ymin, ymax) or latents to frame the map")
        extent = extent_around(codes)
    extent = check_extent(extent)
    values = curvature_grid(metric, extent, resolution)
    norm, symlog = _norm(values, linthresh)

    if ax is None:
        fig = new_figure((6.6, 5.2))
        ax = fig.add_subplot()
    im = ax.imshow(
        values,
        origin="lower",
        extent=extent,
        cmap=colormaps["RdBu_r"].with_extremes(bad="lightgrey"),
        norm=norm,
        aspect="auto",
        interpolation="nearest",
    )
    if codes is not None:
        ax.scatter(
            codes[:, 0], codes[:, 1], s=0.6, c="black", alpha=0.18, linewidths=0, rasterized=True
        )
    if labels is not None:
        for c in np.unique(labels):
            centre = np.median(codes[labels == c], axis=0)
            name = str(int(c)) if float(c).is_integer() else str(c)
            ax.text(
                *centre,
                name,
                ha="center",
                va="center",
                fontsize=10,
                weight="bold",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
            )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
    label = CURVATURE_LABEL + (" (symmetric log scale)" if symlog else "")
    ticks = _symlog_ticks(norm) if symlog else None
    ax.figure.colorbar(im, ax=ax, label=label, ticks=ticks)
    ax.set_title(title or "Gaussian curvature of the pullback metric")
    return ax.figure
