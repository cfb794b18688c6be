"""Class distance matrices (figure 6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ._common import new_figure, to_numpy


def _annotated(ax, values: np.ndarray, names: Sequence[str], title: str, cmap: str) -> None:
    im = ax.imshow(values, cmap=cmap, interpolation="nearest")
    k = values.shape[0]
    lo, hi = np.nanmin(values), np.nanmax(values)
    mid = (lo + hi) / 2
    for i in range(k):
        for j in range(k):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            # Dark text on the light (high) end of viridis, light text on the dark end.
            ax.text(
                j,
                i,
                f"{v:.2g}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if v > mid else "white",
            )
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="mean distance")


def distance_matrices(
    euclid,
    geodesic,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Average pairwise distances between classes, Euclidean and geodesic (figure 6).

    Parameters
    ----------
    euclid : Tensor or array, shape (K, K)
        Mean Euclidean latent distance between codes of class ``i`` and class ``j``.
    geodesic : Tensor or array, shape (K, K)
        The same with geodesic distances.
    class_names : sequence of K str, optional
        Tick labels; default ``0 .. K-1``.
    title : str, optional

    Returns
    -------
    Figure
        Two annotated heatmaps (values to 2 significant digits), each with a colour bar.
    """
    e = to_numpy(euclid, "euclid", "(K, K)", 2)
    g = to_numpy(geodesic, "geodesic", "(K, K)", 2)
    if e.shape[0] != e.shape[1]:
        raise ValueError(f"euclid must be square, shape (K, K); got {e.shape}")
    if g.shape != e.shape:
        raise ValueError(f"geodesic must have the shape of euclid, {e.shape}; got {g.shape}")
    k = e.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must have {k} entries; got {len(names)}")
    side = max(5.0, 0.5 * k + 1.5)
    fig = new_figure((2 * side + 1.0, side))
    axes = fig.subplots(1, 2)
    _annotated(axes[0], e, names, "Euclidean (latent)", "viridis")
    _annotated(axes[1], g, names, "geodesic", "viridis")
    fig.suptitle(title or "Average pairwise distance between classes")
    return fig
