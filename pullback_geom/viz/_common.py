"""Shared pieces of the figures: input checks, the latent grid and the volume heatmap."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from torch import Tensor

from .._core.checks import NonFiniteOutputError
from .._core.modules import reference_tensor
from ..metric import PullbackMetric

Extent = tuple[float, float, float, float]
"""``(xmin, xmax, ymin, ymax)`` of a 2-D latent region, matplotlib's ``imshow`` order."""

#: Line styles given to the methods of a figure, in order.
LINESTYLES = ("-", "--", ":", "-.")
VOLUME_LABEL = r"$\log_{10}\sqrt{\det G(z)}$"


def to_numpy(x, name: str, shape: str, ndim: int | Sequence[int], last: int | None = None):
    """``x`` (tensor, array or list) as a float numpy array, or a ValueError naming ``name``.

    ``shape`` is the expected shape as written in the docstring, used in the message.
    """
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be an array of shape {shape}; got {type(x).__name__}"
        ) from err
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in ndims or (last is not None and arr.shape[-1] != last):
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}")
    return arr


def check_extent(extent) -> Extent:
    """``extent`` as four floats with ``xmin < xmax`` and ``ymin < ymax``, else a ValueError."""
    try:
        vals = tuple(float(v) for v in extent)
    except (TypeError, ValueError) as err:
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax); got {extent!r}") from err
    if len(vals) != 4 or not all(map(math.isfinite, vals)):
        raise ValueError(
            f"extent must be four finite numbers (xmin, xmax, ymin, ymax); got {extent!r}"
        )
    if not (vals[0] < vals[1] and vals[2] < vals[3]):
        raise ValueError(f"extent needs xmin < xmax and ymin < ymax; got {extent!r}")
    return vals  # type: ignore[return-value]


def check_resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2; got {resolution!r}")
    return resolution


def extent_around(*point_sets: np.ndarray | None, margin: float = 0.08) -> Extent:
    """A square-ish extent holding every point of the ``(..., 2)`` arrays, plus a margin."""
    pts = np.concatenate([p.reshape(-1, 2) for p in point_sets if p is not None])
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * (hi - lo).max() + 1e-6
    return (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)


def latent_grid(extent: Extent, resolution: int) -> np.ndarray:
    """Grid points, shape ``(resolution, resolution, 2)``; row 0 is ``ymin`` (origin lower)."""
    xs = np.linspace(extent[0], extent[1], resolution)
    ys = np.linspace(extent[2], extent[3], resolution)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], -1)


def like(metric_or_module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device points must have for a metric or decoder module."""
    decoder = getattr(metric_or_module, "decoder", metric_or_module)
    ref = reference_tensor(decoder)
    return (ref.dtype, ref.device) if ref is not None else (torch.get_default_dtype(), "cpu")


def point_values(fn: Callable[[Tensor], Tensor], pts: Tensor) -> np.ndarray:
    """``fn`` on points ``(B, d) -> (B,)`` under ``no_grad``, as float64 numpy.

    Where the core reports non-finite values (a metric numerically singular far from the
    data, say), those points are NaN and the others are evaluated again without them.
    """
    with torch.no_grad():
        try:
            out = fn(pts)
        except NonFiniteOutputError as err:
            keep = ~err.rows.to(pts.device)
            out = torch.full((len(pts),), float("nan"), dtype=torch.float64)
            if bool(keep.any()):
                out[keep.cpu()] = torch.from_numpy(point_values(fn, pts[keep]))
    return out.detach().cpu().double().numpy()


def grid_values(fn: Callable[[Tensor], Tensor], grid: np.ndarray, dtype, device) -> np.ndarray:
    """``fn`` on the flattened grid under ``no_grad``, reshaped to the grid, as numpy.

    A map may cover points where ``fn`` is undefined: those are NaN (drawn blank), as in
    :func:`point_values`.
    """
    pts = torch.as_tensor(grid.reshape(-1, 2), dtype=dtype, device=device)
    return point_values(fn, pts).reshape(grid.shape[:2])


def check_metric(metric, name: str = "metric") -> PullbackMetric:
    if not isinstance(metric, PullbackMetric):
        raise TypeError(f"{name} must be a PullbackMetric; got {type(metric).__name__}")
    if metric.latent_dim not in (None, 2):
        raise ValueError(
            f"{name} must have a 2-D latent space to be drawn; got d = {metric.latent_dim}"
        )
    return metric


def log10_volume(metric: PullbackMetric, extent: Extent, resolution: int) -> np.ndarray:
    """``log10 sqrt(det G)`` on the grid, shape ``(resolution, resolution)``; -inf if singular."""
    m = check_metric(metric).detached()
    dtype, device = like(m)
    vals = grid_values(m.log_volume, latent_grid(extent, resolution), dtype, device) / math.log(10)
    vals[np.isnan(vals) | (vals == np.inf)] = np.nan
    return vals


def draw_field(
    ax: Axes,
    values: np.ndarray,
    extent: Extent,
    *,
    label: str,
    codes: np.ndarray | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    span: float | None = None,
) -> AxesImage:
    """Draw a grid of values with a labelled colour bar and the data codes as small dots.

    ``span`` caps the colour range at ``span`` below the largest value (e.g. 8 decades of
    a log10 field), so that round-off noise far below it does not take over the scale.
    """
    finite = values[np.isfinite(values)]
    vmin, vmax = np.percentile(finite, [0.5, 100]) if finite.size else (0.0, 1.0)
    clipped = span is not None and vmin < vmax - span
    if clipped:
        vmin = vmax - span
    # A singular metric (log volume -inf) is the bottom of the scale, not missing data.
    values = np.where(values == -np.inf, vmin, values)
    im = ax.imshow(
        values,
        origin="lower",
        extent=extent,
        cmap=colormaps[cmap].with_extremes(bad="lightgrey"),
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    if codes is not None:
        ax.scatter(
            codes[:, 0],
            codes[:, 1],
            s=1,
            c="white",
            alpha=0.25,
            linewidths=0,
            rasterized=True,
            label="data codes",
        )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label, extend="min" if clipped else "neither")
    return im


def draw_volume(
    ax: Axes,
    metric: PullbackMetric,
    extent: Extent,
    *,
    codes=None,
    resolution: int = 200,
    colorbar: bool = True,
    label: str = VOLUME_LABEL,
) -> AxesImage:
    """Draw ``log10 sqrt(det G)`` of ``metric`` over ``extent`` on ``ax``.

    Parameters
    ----------
    ax : matplotlib Axes
    metric : PullbackMetric
        With a 2-D latent space.
    extent : (xmin, xmax, ymin, ymax)
    codes : array or Tensor, shape (n, 2), optional
        Data codes, drawn as small semi-transparent dots.
    resolution : int, default 200
        Grid points per axis.
    colorbar : bool, default True
    label : str
        The colour bar's label.

    Returns
    -------
    AxesImage
    """
    extent = check_extent(extent)
    resolution = check_resolution(resolution)
    codes = None if codes is None else to_numpy(codes, "codes", "(n, 2)", 2, 2)
    values = log10_volume(metric, extent, resolution)
    return draw_field(ax, values, extent, label=label, codes=codes, colorbar=colorbar)


def pair_colours(n: int) -> list:
    """One colour per pair: tab10, then tab20 beyond ten pairs."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def draw_curves(ax: Axes, curves: np.ndarray, colours, linestyle: str = "-", lw: float = 2.0):
    """Draw ``(B, N, 2)`` curves, one colour each; a dot marks the start, a square the end."""
    for c, col in zip(curves, colours, strict=True):
        ax.plot(c[:, 0], c[:, 1], linestyle=linestyle, color=col, lw=lw)
        ax.plot(*c[0], "o", color=col, mec="black", ms=6, zorder=5)
        ax.plot(*c[-1], "s", color=col, mec="black", ms=6, zorder=5)


def show_image(ax: Axes, img: np.ndarray, colour=None, title: str | None = None) -> None:
    """An image without ticks, framed in ``colour``."""
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if colour is not None:
        for s in ax.spines.values():
            s.set_color(colour)
            s.set_linewidth(3)
    if title:
        ax.set_title(title, fontsize=8)


def as_images(x, name: str) -> np.ndarray:
    """Decoder output ``(B, 1, H, W)``, ``(B, H, W)`` or ``(B, 3, H, W)`` as ``(B, H, W[, 3])``."""
    arr = to_numpy(x, name, "(B, H, W) or (B, C, H, W)", (3, 4))
    if arr.ndim == 4:
        if arr.shape[1] == 1:
            arr = arr[:, 0]
        elif arr.shape[1] == 3:
            arr = arr.transpose(0, 2, 3, 1)
        else:
            raise ValueError(f"{name} must have 1 or 3 channels; got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


def decode_points(decode: Callable[[Tensor], Tensor], points: np.ndarray, name: str = "decode"):
    """``decode`` on ``(..., 2)`` points under ``no_grad``, as images ``(..., H, W[, 3])``."""
    if not callable(decode):
        raise TypeError(f"{name} must be callable; got {type(decode).__name__}")
    dtype, device = like(getattr(decode, "__self__", decode))
    flat = torch.as_tensor(points.reshape(-1, 2), dtype=dtype, device=device)
    with torch.no_grad():
        imgs = as_images(decode(flat), f"the output of {name}")
    return imgs.reshape(*points.shape[:-1], *imgs.shape[1:])


class _ShownFigure(Figure):
    """A Figure that a notebook draws as an image even where pyplot was never imported
    (IPython registers its Figure formatter only with pyplot's inline backend)."""

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def new_figure(figsize) -> Figure:
    """A figure outside pyplot's global state (nothing to close, safe with any backend)."""
    return _ShownFigure(figsize=figsize, layout="constrained")
