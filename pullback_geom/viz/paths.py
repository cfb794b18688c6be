"""Figures of curves over the latent space: geodesics, interpolations, the uncertainty term."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from ._common import (
    LINESTYLES,
    VOLUME_LABEL,
    Extent,
    as_images,
    check_extent,
    check_metric,
    check_resolution,
    decode_points,
    draw_curves,
    draw_field,
    draw_volume,
    extent_around,
    grid_values,
    latent_grid,
    like,
    log10_volume,
    new_figure,
    pair_colours,
    show_image,
    to_numpy,
)


def _curves(x, name: str, batch: int | None = None) -> np.ndarray:
    arr = to_numpy(x, name, "(B, N, 2)", 3, 2)
    if arr.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 points per curve; got shape {arr.shape}")
    if batch is not None and arr.shape[0] != batch:
        raise ValueError(f"{name} must hold {batch} curves like the others; got shape {arr.shape}")
    return arr


def _style_legend(ax, names_styles, loc="upper right") -> None:
    handles = [
        Line2D([], [], color="black", linestyle=ls, lw=2, label=name) for name, ls in names_styles
    ]
    handles += [
        Line2D([], [], marker="o", color="grey", mec="black", linestyle="", label="start"),
        Line2D([], [], marker="s", color="grey", mec="black", linestyle="", label="end"),
    ]
    ax.legend(handles=handles, loc=loc, fontsize=8, framealpha=0.85)


def geodesics_figure(
    metric,
    curves_by_method: Mapping[str, Tensor],
    end_images=None,
    *,
    extent: Extent | None = None,
    codes=None,
    resolution: int = 150,
    title: str | None = None,
) -> Figure:
    """Geodesics between pairs over the volume element, with the end-point images (figure 4).

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space; its volume element is the background.
    curves_by_method : dict of str to Tensor or array, each shape (B, N, 2)
        The same ``B`` pairs solved by each method (e.g. ``{"energy (LM)": ...,
        "ODE shooting": ...}``); each method gets its own line style, each pair a colour.
    end_images : Tensor or array, shape (B, 2, H, W) or (B, 2, 1, H, W), optional
        The start and end image of each pair, drawn beside in the pair's colour.
    extent : (xmin, xmax, ymin, ymax), optional
        Default: around the curves and codes.
    codes : Tensor or array, shape (n, 2), optional
        Data codes, drawn as small dots.
    resolution : int, default 150
    title : str, optional

    Returns
    -------
    Figure
        The heatmap axes and its colour bar, then ``2 B`` image axes when ``end_images``
        is given.
    """
    check_metric(metric)
    if not isinstance(curves_by_method, Mapping) or not curves_by_method:
        raise ValueError("curves_by_method must be a non-empty dict of name -> (B, N, 2) curves")
    curves, batch = {}, None
    for name, c in curves_by_method.items():
        curves[name] = _curves(c, f"curves_by_method[{name!r}]", batch)
        batch = curves[name].shape[0]
    ends = None
    if end_images is not None:
        arr = to_numpy(end_images, "end_images", "(B, 2, H, W) or (B, 2, 1, H, W)", (4, 5))
        if arr.shape[:2] != (batch, 2):
            raise ValueError(
                f"end_images must have shape ({batch}, 2, H, W) or ({batch}, 2, 1, H, W) for "
                f"{batch} pairs; got {arr.shape}"
            )
        ends = as_images(arr.reshape(batch * 2, *arr.shape[2:]), "end_images")
        ends = ends.reshape(batch, 2, *ends.shape[1:])
    codes = None if codes is None else to_numpy(codes, "codes", "(n, 2)", 2, 2)
    extent = check_extent(extent) if extent is not None else extent_around(*curves.values())
    colours = pair_colours(batch)

    if ends is None:
        fig = new_figure((7.0, 5.6))
        ax = fig.add_subplot()
    else:
        fig = new_figure((8.6, max(5.6, 1.1 * batch)))
        gs = fig.add_gridspec(batch, 3, width_ratios=[6.5, 1, 1])
        ax = fig.add_subplot(gs[:, 0])
    draw_volume(ax, metric, extent, codes=codes, resolution=resolution)
    styles = [LINESTYLES[i % len(LINESTYLES)] for i in range(len(curves))]
    for c, ls in zip(curves.values(), styles, strict=True):
        draw_curves(ax, c, colours, ls)
    _style_legend(ax, zip(curves, styles, strict=True))
    ax.set_title(title or f"Geodesics between {batch} pairs over the volume element")
    if ends is not None:
        for i in range(batch):
            for j, what in enumerate(("start", "end")):
                sub = fig.add_subplot(gs[i, 1 + j])
                show_image(sub, ends[i, j], colours[i], what if i == 0 else None)
    return fig


def _strip(images: np.ndarray) -> np.ndarray:
    """``(K, H, W[, 3])`` images side by side with a one-pixel grey gap."""
    k, h, w = images.shape[:3]
    gap = np.full((h, 1, *images.shape[3:]), 0.5)
    parts = []
    for i, img in enumerate(images):
        parts += [img] + ([gap] if i < k - 1 else [])
    return np.concatenate(parts, axis=1)


def _resample(curves: np.ndarray, k: int) -> np.ndarray:
    """``k`` nodes of each curve, evenly spaced in index (end points kept)."""
    idx = np.round(np.linspace(0, curves.shape[1] - 1, k)).astype(int)
    return curves[:, idx]


def interpolation_figure(
    decode: Callable[[Tensor], Tensor],
    straight,
    geodesic,
    metric,
    *,
    extent: Extent | None = None,
    codes=None,
    n_images: int = 8,
    resolution: int = 150,
    title: str | None = None,
) -> Figure:
    """Euclidean versus Riemannian interpolation (figure 5).

    Left: straight latent lines (dashed) and geodesics (solid) over the volume element.
    Right: per pair, the images decoded along the straight line ("Euclidean") and along the
    geodesic ("Riemannian"), framed in the pair's colour.

    Parameters
    ----------
    decode : callable
        Latent points ``(B, 2)`` to images ``(B, 1, H, W)`` or ``(B, H, W)`` in [0, 1].
    straight, geodesic : Tensor or array, shape (B, N, 2)
        The curves of the same ``B`` pairs (``N`` may differ between the two).
    metric : PullbackMetric
        Its volume element is the background.
    extent : (xmin, xmax, ymin, ymax), optional
        Default: around the curves.
    codes : Tensor or array, shape (n, 2), optional
    n_images : int, default 8
        Images per strip, at evenly spaced nodes of each curve.
    resolution : int, default 150
    title : str, optional

    Returns
    -------
    Figure
        The heatmap axes and its colour bar, then ``2 B`` strip axes.
    """
    check_metric(metric)
    straight = _curves(straight, "straight")
    geodesic = _curves(geodesic, "geodesic", straight.shape[0])
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 2:
        raise ValueError(f"n_images must be an integer >= 2; got {n_images!r}")
    codes = None if codes is None else to_numpy(codes, "codes", "(n, 2)", 2, 2)
    extent = check_extent(extent) if extent is not None else extent_around(straight, geodesic)
    batch = straight.shape[0]
    strips = {
        "Euclidean": decode_points(decode, _resample(straight, n_images)),
        "Riemannian": decode_points(decode, _resample(geodesic, n_images)),
    }
    colours = pair_colours(batch)
    fig = new_figure((12.0, max(4.8, 1.3 * batch)))
    gs = fig.add_gridspec(2 * batch, 2, width_ratios=[1, 1.5])
    ax = fig.add_subplot(gs[:, 0])
    draw_volume(ax, metric, extent, codes=codes, resolution=resolution)
    draw_curves(ax, straight, colours, "--", lw=1.5)
    draw_curves(ax, geodesic, colours, "-")
    _style_legend(ax, [("straight line (Euclidean)", "--"), ("geodesic (Riemannian)", "-")])
    ax.set_title("Latent paths over the volume element")
    for i in range(batch):
        for j, (name, imgs) in enumerate(strips.items()):
            sub = fig.add_subplot(gs[2 * i + j, 1])
            show_image(sub, _strip(imgs[i]), colours[i])
            sub.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
            if i == 0 and j == 0:
                sub.set_title("Decoded along each path (start → end)")
    fig.suptitle(title or "Euclidean vs Riemannian interpolation")
    return fig


def uncertainty_figure(
    mean_metric,
    std_metric,
    std_fn: Callable[[Tensor], Tensor],
    extent: Extent,
    codes=None,
    curves_with=None,
    curves_without=None,
    *,
    straight=None,
    resolution: int = 100,
    title: str | None = None,
) -> Figure:
    """The two terms of a Gaussian decoder's metric and ``sigma(z)`` (figure 7).

    ``G = J_mu^T J_mu + J_sigma^T J_sigma``. Panels: the volume element of the mean term
    (``PullbackMetric(model.decoder)``), that of the uncertainty term
    (``PullbackMetric(model.std)``), and ``sigma(z)`` averaged over pixels. Geodesics of the
    full metric (solid), of the mean term alone (dashed) and the straight lines between
    the same end points (dotted) are drawn on every panel.

    Parameters
    ----------
    mean_metric, std_metric : PullbackMetric
        The metrics of the mean and of the standard deviation, 2-D latent space.
    std_fn : callable
        Latent points ``(B, 2)`` to ``sigma(z)`` of any shape ``(B, ...)`` (e.g.
        ``model.decode_std``).
    extent : (xmin, xmax, ymin, ymax)
    codes : Tensor or array, shape (n, 2), optional
    curves_with, curves_without : Tensor or array, shape (B, N, 2), optional
        Geodesics with and without the uncertainty term.
    straight : Tensor or array, shape (B, N, 2), optional
        Straight lines between the same end points.
    resolution : int, default 100
    title : str, optional

    Returns
    -------
    Figure
        Three axes, each with a colour bar.
    """
    check_metric(mean_metric, "mean_metric")
    check_metric(std_metric, "std_metric")
    if not callable(std_fn):
        raise TypeError(f"std_fn must be callable; got {type(std_fn).__name__}")
    extent = check_extent(extent)
    resolution = check_resolution(resolution)
    codes = None if codes is None else to_numpy(codes, "codes", "(n, 2)", 2, 2)
    with_ = None if curves_with is None else _curves(curves_with, "curves_with")
    without = None
    if curves_without is not None:
        batch = None if with_ is None else with_.shape[0]
        without = _curves(curves_without, "curves_without", batch)
    lines = None
    if straight is not None:
        batch = None if with_ is None else with_.shape[0]
        lines = _curves(straight, "straight", batch)

    grid = latent_grid(extent, resolution)
    dtype, device = like(getattr(std_fn, "__self__", std_fn))

    def mean_sigma(z: Tensor) -> Tensor:
        s = torch.as_tensor(std_fn(z))
        if s.dim() < 1 or s.shape[0] != z.shape[0]:
            raise ValueError(
                f"std_fn must return shape (B, ...) for B = {z.shape[0]} points; "
                f"got {tuple(s.shape)}"
            )
        return s.reshape(s.shape[0], -1).mean(-1)

    sigma = grid_values(mean_sigma, grid, dtype, device)
    fig = new_figure((16.0, 4.8))
    axes = fig.subplots(1, 3)
    draw_field(
        axes[0],
        log10_volume(mean_metric, extent, resolution),
        extent,
        label=VOLUME_LABEL.replace("G(z)", r"J_\mu^T J_\mu"),
        codes=codes,
    )
    axes[0].set_title(r"Mean term: $\sqrt{\det J_\mu^T J_\mu}$")
    draw_field(
        axes[1],
        log10_volume(std_metric, extent, resolution),
        extent,
        label=VOLUME_LABEL.replace("G(z)", r"J_\sigma^T J_\sigma"),
        codes=codes,
        cmap="magma",
        # Where sigma has levelled off, J_sigma is zero up to round-off: 1e-30 and below
        # is noise, so the scale shows the top 8 decades.
        span=8.0,
    )
    axes[1].set_title(r"Uncertainty term: $\sqrt{\det J_\sigma^T J_\sigma}$")
    ax = axes[2]
    pos = sigma[np.isfinite(sigma) & (sigma > 0)]
    norm = LogNorm(pos.min(), pos.max()) if pos.size and pos.min() < pos.max() else None
    im = ax.imshow(
        sigma,
        origin="lower",
        extent=extent,
        cmap="cividis",
        norm=norm,
        aspect="auto",
        interpolation="nearest",
    )
    if codes is not None:
        ax.scatter(
            codes[:, 0], codes[:, 1], s=1, c="white", alpha=0.25, linewidths=0, rasterized=True
        )
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
    fig.colorbar(im, ax=ax, label=r"mean over pixels of $\sigma(z)$ (log scale)")
    ax.set_title(r"Decoder standard deviation $\sigma(z)$")
    styles = []
    for curves, ls, name in (
        (with_, "-", "with uncertainty term"),
        (without, "--", "mean term only"),
        (lines, ":", "straight line"),
    ):
        if curves is None:
            continue
        styles.append((name, ls))
        for a in axes:
            draw_curves(a, curves, pair_colours(curves.shape[0]), ls, lw=1.8)
    if styles:
        _style_legend(axes[0], styles, loc="lower left")
    for a in axes:
        a.set_xlim(extent[0], extent[1])
        a.set_ylim(extent[2], extent[3])
    fig.suptitle(title or r"Gaussian decoder: $G = J_\mu^T J_\mu + J_\sigma^T J_\sigma$")
    return fig
