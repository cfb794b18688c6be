"""Figures of the latent space itself: codes, decoded grid, volume element, density."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ._common import Extent, check_extent, decode_points, draw_volume, new_figure, to_numpy


def latent_scatter(
    codes, labels, *, class_names: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """Latent codes coloured by class (figure 1).

    Parameters
    ----------
    codes : Tensor or array, shape (n, 2)
    labels : Tensor or array of int, shape (n,)
        Class of each code; up to 10 classes get tab10 colours, more get tab20.
    class_names : sequence of str, optional
        Legend entries, indexed by label. Default: the labels themselves.
    title : str, optional

    Returns
    -------
    Figure
        One axes with a legend of the classes.
    """
    codes = to_numpy(codes, "codes", "(n, 2)", 2, 2)
    labels = to_numpy(labels, "labels", "(n,)", 1).astype(int)
    if labels.shape[0] != codes.shape[0]:
        raise ValueError(
            f"labels must have shape (n,) with n = {codes.shape[0]} codes; got {labels.shape}"
        )
    classes = np.unique(labels)
    from matplotlib import colormaps

    cmap = colormaps["tab10" if classes.max(initial=0) < 10 else "tab20"]
    fig = new_figure((6.4, 5.6))
    ax = fig.add_subplot()
    for k in classes:
        sel = labels == k
        name = class_names[k] if class_names is not None else str(k)
        ax.scatter(
            codes[sel, 0],
            codes[sel, 1],
            s=3,
            color=cmap(k % cmap.N),
            alpha=0.6,
            linewidths=0,
            label=name,
            rasterized=True,
        )
    leg = ax.legend(
        title="class", markerscale=4, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False
    )
    for h in leg.legend_handles:
        h.set_alpha(1)
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or f"Latent codes of {codes.shape[0]:,} images, by class")
    return fig


def decoded_grid(
    decode: Callable[[Tensor], Tensor], extent: Extent, n: int = 15, *, title: str | None = None
) -> Figure:
    """Images decoded from a regular ``n x n`` grid over the latent space (figure 2).

    Parameters
    ----------
    decode : callable
        Latent points ``(B, 2)`` to images ``(B, 1, H, W)``, ``(B, H, W)`` or
        ``(B, 3, H, W)`` with values in [0, 1] (e.g. ``model.decode``).
    extent : (xmin, xmax, ymin, ymax)
        The grid's outer points.
    n : int, default 15
        Images per side.
    title : str, optional

    Returns
    -------
    Figure
        One axes holding the mosaic, ticks in latent coordinates.
    """
    extent = check_extent(extent)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    xs = np.linspace(extent[0], extent[1], n)
    ys = np.linspace(extent[3], extent[2], n)  # top row of the mosaic = largest z_2
    gx, gy = np.meshgrid(xs, ys)
    imgs = decode_points(decode, np.stack([gx, gy], -1))  # (n, n, H, W[, 3])
    h, w = imgs.shape[2:4]
    mosaic = imgs.swapaxes(1, 2).reshape(n * h, n * w, *imgs.shape[4:])
    # Each image is centred on its grid point.
    dx = (extent[1] - extent[0]) / max(n - 1, 1) / 2 if n > 1 else 0.5
    dy = (extent[3] - extent[2]) / max(n - 1, 1) / 2 if n > 1 else 0.5
    fig = new_figure((6.4, 6.4))
    ax = fig.add_subplot()
    ax.imshow(
        mosaic,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(extent[0] - dx, extent[1] + dx, extent[2] - dy, extent[3] + dy),
        aspect="auto",
    )
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
    ax.set_title(title or f"Images decoded from a {n} x {n} latent grid")
    return fig


def volume_heatmap(
    metric,
    extent: Extent,
    codes=None,
    resolution: int = 200,
    ax: Axes | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The volume element ``sqrt(det G(z))`` over the latent space, log scale (figure 3).

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space.
    extent : (xmin, xmax, ymin, ymax)
    codes : Tensor or array, shape (n, 2), optional
        Data codes, overlaid as small semi-transparent dots.
    resolution : int, default 200
        Grid points per axis (``resolution**2`` metric evaluations).
    ax : matplotlib Axes, optional
        Draw there (with its colour bar); default a new figure.
    title : str, optional

    Returns
    -------
    Figure
        ``ax.figure`` when ``ax`` is given.
    """
    if ax is None:
        fig = new_figure((6.4, 5.2))
        ax = fig.add_subplot()
    draw_volume(ax, metric, extent, codes=codes, resolution=resolution)
    ax.set_title(title or r"Volume element $\sqrt{\det G(z)}$ (log scale)")
    return ax.figure


def kde_log_density(codes, points, bandwidth: float | None = None) -> Tensor:
    """Log density of a Gaussian kernel density estimate of ``codes`` at ``points``.

    scipy's ``gaussian_kde``: the kernel covariance is ``bandwidth**2`` times the
    (unbiased) covariance of the codes, Scott's rule ``bandwidth = n**(-1 / (d + 4))`` by
    default.

    Parameters
    ----------
    codes : Tensor or array, shape (n, d)
    points : Tensor or array, shape (m, d)
    bandwidth : float, optional
        Scale factor of the kernel (scipy's ``bw_method`` as a number); default Scott's
        rule.

    Returns
    -------
    Tensor, shape (m,), float64
        ``log p(points)`` in nats.
    """
    from scipy import stats

    x = to_numpy(codes, "codes", "(n, d)", 2)
    y = to_numpy(points, "points", "(m, d)", 2)
    n, d = x.shape
    if y.shape[1] != d:
        raise ValueError(f"points must have shape (m, {d}) like codes; got {y.shape}")
    if n < 2:
        raise ValueError(f"codes needs at least 2 points for a covariance; got shape {(n, d)}")
    if bandwidth is None:
        bandwidth = n ** (-1.0 / (d + 4))
    if not (isinstance(bandwidth, (int, float)) and bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"bandwidth must be a positive number; got {bandwidth!r}")
    kde = stats.gaussian_kde(x.T, bw_method=float(bandwidth))
    return torch.from_numpy(kde.logpdf(y.T))


def density_connection(log_volume, log_density, *, labels=None, title: str | None = None) -> Figure:
    """Log volume element against log latent density, with their correlation (figure 8).

    Lebanon (UAI 2003) learns metrics whose inverse volume element models the density,
    ``1 / sqrt(det G) ∝ p``: a slope of -1 here. A volume element that is larger where the
    data is dense gives a positive slope instead. The least-squares slope is drawn.

    Parameters
    ----------
    log_volume : Tensor or array, shape (n,)
        ``log sqrt(det G(z))`` at n points (e.g. ``metric.log_volume(codes)``).
    log_density : Tensor or array, shape (n,)
        Log latent density at the same points (e.g. :func:`kde_log_density`).
    labels : Tensor or array of int, shape (n,), optional
        Colour the points by class.
    title : str, optional

    Returns
    -------
    Figure
        One axes; Pearson and Spearman correlations in the legend.
    """
    from scipy import stats

    lv = to_numpy(log_volume, "log_volume", "(n,)", 1)
    ld = to_numpy(log_density, "log_density", "(n,)", 1)
    if lv.shape != ld.shape:
        raise ValueError(
            "log_volume and log_density must have the same shape (n,); "
            f"got {lv.shape} and {ld.shape}"
        )
    keep = np.isfinite(lv) & np.isfinite(ld)
    if keep.sum() < 3:
        raise ValueError(f"log_volume and log_density need >= 3 finite pairs; got {keep.sum()}")
    fig = new_figure((6.4, 5.2))
    ax = fig.add_subplot()
    if labels is not None:
        lab = to_numpy(labels, "labels", "(n,)", 1).astype(int)
        if lab.shape != lv.shape:
            raise ValueError(f"labels must have shape {lv.shape}; got {lab.shape}")
        sc = ax.scatter(
            ld[keep],
            lv[keep],
            c=lab[keep],
            cmap="tab10",
            vmin=-0.5,
            vmax=9.5,
            s=4,
            alpha=0.5,
            linewidths=0,
            rasterized=True,
        )
        fig.colorbar(sc, ax=ax, label="class", ticks=range(10))
    else:
        ax.scatter(ld[keep], lv[keep], s=4, alpha=0.4, linewidths=0, rasterized=True)
    pearson = stats.pearsonr(ld[keep], lv[keep])[0]
    spearman = stats.spearmanr(ld[keep], lv[keep])[0]
    slope, intercept = np.polyfit(ld[keep], lv[keep], 1)
    xs = np.linspace(ld[keep].min(), ld[keep].max(), 2)
    ax.plot(
        xs,
        slope * xs + intercept,
        "k-",
        lw=1.5,
        label=f"least squares, slope {slope:.2f}\nPearson r = {pearson:.2f}, "
        f"Spearman ρ = {spearman:.2f}",
    )
    ax.legend(loc="best")
    ax.set_xlabel(r"log latent density $\log \hat p(z)$ (KDE)")
    ax.set_ylabel(r"log volume element $\log\sqrt{\det G(z)}$")
    ax.set_title(title or f"Volume element vs latent density ({int(keep.sum()):,} points)")
    return fig
