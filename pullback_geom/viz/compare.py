"""The figure of :func:`~pullback_geom.experiments.compare.compare_geodesics`: every
method's curves over the volume element."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._common import (
    VOLUME_LABEL,
    Extent,
    check_extent,
    check_metric,
    draw_volume,
    extent_around,
    new_figure,
    to_numpy,
)

__all__ = ["comparison_figure"]

# Methods are told apart by colour and dash pattern together, so overlapping curves (most
# methods agree to the line width) stay distinguishable where they part.
_DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 2)), (0, (1, 3)), "-"]


def _extent(p: np.ndarray, q: np.ndarray, curves: list[np.ndarray]) -> Extent:
    """Around the end points, widened for the curves that reach ``q`` but by at most half
    the span on each side: a diverged shot leaves the frame instead of shrinking the
    pairs to a dot (data codes are drawn where they fall, they do not set the frame)."""
    base = extent_around(p, q)
    span = max(base[1] - base[0], base[3] - base[2])
    pts = [np.array([[base[0], base[2]], [base[1], base[3]]])]
    for c in curves:
        reach = np.isfinite(c).all((1, 2)) & (np.abs(c[:, -1] - q).max(-1) < 1e-3 * span)
        pts.append(c[reach].reshape(-1, 2))
    pts = np.concatenate(pts)
    lo = np.maximum(pts.min(0), [base[0] - span / 2, base[2] - span / 2])
    hi = np.minimum(pts.max(0), [base[1] + span / 2, base[3] + span / 2])
    pad = 0.04 * (hi - lo).max()
    return (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)


def comparison_figure(
    metric,
    comparison,
    *,
    codes=None,
    extent: Extent | None = None,
    resolution: int = 200,
    title: str | None = None,
    figsize=(8.0, 6.5),
) -> Figure:
    """All methods' curves of a comparison
    (:class:`~pullback_geom.experiments.compare.GeodesicComparison`) over
    ``log10 sqrt(det G)``.

    One colour and dash pattern per method (the legend gives its converged count and
    median relative length difference to the reference); a dot marks each pair's start, a
    square its end. Methods that failed or produced no curve for a pair are left out of
    that pair and marked in the legend.

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space.
    comparison : GeodesicComparison
        From :func:`~pullback_geom.experiments.compare.compare_geodesics`; curves of shape
        ``(B, N, 2)``.
    codes : array or Tensor, shape (n, 2), optional
        Data codes drawn as small dots.
    extent : (xmin, xmax, ymin, ymax), optional
        Default: around the end points and the curves that reach ``q`` (at most half the
        end points' span beyond them).
    resolution : int, default 200
    title : str, optional
    figsize : (float, float), default (8, 6.5)

    Returns
    -------
    matplotlib.figure.Figure
    """
    metric = check_metric(metric)
    if not hasattr(comparison, "curves") or not hasattr(comparison, "rows"):
        raise TypeError(f"comparison must be a GeodesicComparison; got {type(comparison).__name__}")
    p = to_numpy(comparison.p, "comparison.p", "(B, 2)", 2, 2)
    q = to_numpy(comparison.q, "comparison.q", "(B, 2)", 2, 2)
    curves = {
        name: to_numpy(c, f"comparison.curves[{name!r}]", "(B, N, 2)", 3, 2)
        for name, c in comparison.curves.items()
    }
    codes = None if codes is None else to_numpy(codes, "codes", "(n, 2)", 2, 2)
    extent = _extent(p, q, list(curves.values())) if extent is None else extent
    extent = check_extent(extent)

    fig = new_figure(figsize)
    ax = fig.add_subplot()
    draw_volume(ax, metric, extent, codes=codes, resolution=resolution, label=VOLUME_LABEL)
    cmap = colormaps["tab10"]
    handles = []
    for k, (name, arr) in enumerate(curves.items()):
        row = comparison.rows[name]
        colour = cmap(k % cmap.N)
        style = _DASHES[k % len(_DASHES)]
        width = 3.2 - 2.2 * k / max(1, len(curves) - 1)  # later methods drawn thinner, on top
        drawn = 0
        for c in arr:
            if np.isfinite(c).all():
                ax.plot(c[:, 0], c[:, 1], color=colour, ls=style, lw=width, zorder=3 + k)
                drawn += 1
        if row.error is not None:
            label = f"{name}: failed"
        else:
            conv = int(row.converged.sum())
            rel = comparison.relative_length_difference(name).abs().nanmedian()
            label = f"{name}: {conv}/{len(p)} conv."
            if name != comparison.reference:
                label += f", median |ΔL|/L {float(rel):.0e}"
            if drawn < len(p):
                label += f", {len(p) - drawn} no curve"
        handles.append(Line2D([], [], color=colour, ls=style, lw=2, label=label))
    ax.plot(p[:, 0], p[:, 1], "o", color="white", mec="black", ms=7, zorder=20)
    ax.plot(q[:, 0], q[:, 1], "s", color="white", mec="black", ms=7, zorder=20)
    handles += [
        Line2D([], [], marker="o", color="white", mec="black", ls="", label="start p"),
        Line2D([], [], marker="s", color="white", mec="black", ls="", label="end q"),
    ]
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.legend(handles=handles, loc="best", fontsize=7.5, framealpha=0.85)
    ax.set_title(
        title or f"Geodesics by method, {len(p)} pairs (ΔL relative to {comparison.reference})",
        fontsize=10,
    )
    return fig
