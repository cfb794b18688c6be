"""Where a 2-D latent space curves: inside class clusters, between them, along geodesics.

:func:`curvature_statistics` splits a latent grid into regions by a kernel density
estimate of the data codes and their labels, summarises the Gaussian curvature ``K`` in
each, and compares ``|K|`` along energy-minimising geodesics
(:func:`~pullback_geom.geodesics.connecting_geodesic`) with ``|K|`` along the straight
lines between the same codes. ``docs/curvature.md`` reports the numbers for the bundled
models.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..geodesics import GeodesicConvergenceWarning, connecting_geodesic
from ..geodesics._common import resample_curves
from ..metric import PullbackMetric
from ..viz._common import (
    check_metric,
    extent_around,
    latent_grid,
    like,
    point_values,
    to_numpy,
)
from ..viz.curvature import curvature_grid
from ..viz.latent import kde_log_density

__all__ = ["RegionStats", "PathStats", "CurvatureStats", "curvature_statistics"]


@dataclass
class RegionStats:
    """Gaussian curvature over one region of the latent space.

    Attributes
    ----------
    n : int
        Grid points (or codes) in the region.
    mean_abs, median_abs : float
        Mean and median of ``|K|``.
    mean : float
        Mean of ``K``.
    positive, negative : float
        Fractions with ``K > 0`` and ``K < 0``.
    undefined : int
        Points of the region left out because ``K`` is not finite there (a metric
        numerically singular, or curvature past float range); not counted in ``n``.
    """

    n: int
    mean_abs: float
    median_abs: float
    mean: float
    positive: float
    negative: float
    undefined: int = 0

    @classmethod
    def of(cls, k: np.ndarray) -> RegionStats:
        finite = np.isfinite(k)
        undefined = int((~finite).sum())
        k = k[finite]
        if k.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, undefined)
        return cls(
            int(k.size),
            float(np.abs(k).mean()),
            float(np.median(np.abs(k))),
            float(k.mean()),
            float((k > 0).mean()),
            float((k < 0).mean()),
            undefined,
        )


@dataclass
class PathStats:
    """``|K|`` along geodesics and along straight lines between the same pairs of codes.

    Both kinds of curve are resampled at equal steps of latent arc length, so each
    number is an average over the latent length of the curve.

    Attributes
    ----------
    geodesic_mean_abs, line_mean_abs : ndarray, shape (P,)
        Mean ``|K|`` along each geodesic / straight line, over the points where ``K`` is
        finite.
    geodesic_high, line_high : ndarray, shape (P,)
        Fraction of each curve where ``|K|`` exceeds ``high_threshold``.
    high_threshold : float
        The 90th percentile of ``|K|`` over the grid points inside the data (see
        :class:`CurvatureStats`).
    length_ratio : ndarray, shape (P,)
        Observation-space length of the geodesic over that of the straight line.
    converged : ndarray, shape (P,), bool
    """

    geodesic_mean_abs: np.ndarray
    line_mean_abs: np.ndarray
    geodesic_high: np.ndarray
    line_high: np.ndarray
    high_threshold: float
    length_ratio: np.ndarray
    converged: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """Per pair, mean ``|K|`` along the geodesic over that along the line, shape (P,)."""
        return self.geodesic_mean_abs / self.line_mean_abs


@dataclass
class CurvatureStats:
    """Curvature inside class clusters, in the gaps between them and along paths.

    Attributes
    ----------
    regions : dict of str to RegionStats
        ``"codes"``: ``K`` at the data codes themselves. On the grid, with ``p`` the
        KDE density of all codes, its percentiles ``p_q`` over the codes, and
        ``purity`` the largest class posterior ``max_c n_c p_c / sum_c n_c p_c`` (one
        KDE per class): ``"clusters"``: ``p >= p_25`` and ``purity >= cluster_purity``
        (inside the cluster of one class); ``"overlaps"``: ``p >= p_25`` and ``purity
        < mixed_purity`` (dense, but classes mixed); ``"gaps"``: ``p_1 <= p < p_10``
        (sparse, yet among the data: between and around clusters); ``"outside"``:
        ``p < p_1`` (off the data).
    paths : PathStats or None
    """

    regions: dict[str, RegionStats]
    paths: PathStats | None

    def table(self) -> str:
        """The numbers as a plain-text table."""
        lines = [
            f"{'region':<9} {'n':>7} {'mean |K|':>10} {'median |K|':>11} {'mean K':>10} "
            f"{'K > 0':>6} {'K < 0':>6}"
        ]
        for name, r in self.regions.items():
            lines.append(
                f"{name:<9} {r.n:>7} {r.mean_abs:>10.2e} {r.median_abs:>11.2e} "
                f"{r.mean:>10.2e} {r.positive:>6.0%} {r.negative:>6.0%}"
            )
        undefined = {name: r.undefined for name, r in self.regions.items() if r.undefined}
        if undefined:
            lines.append(
                "K not finite (left out): "
                + ", ".join(f"{n} points in {name}" for name, n in undefined.items())
            )
        p = self.paths
        if p is not None:
            lines.append(
                f"\n{len(p.ratio)} pairs of codes of different classes "
                f"({int(p.converged.sum())} geodesics converged):\n"
                f"  mean |K| along the curve, median over pairs: geodesic "
                f"{np.median(p.geodesic_mean_abs):.2e}, straight line "
                f"{np.median(p.line_mean_abs):.2e}; geodesic/line ratio median "
                f"{np.median(p.ratio):.2f} (quartiles {np.percentile(p.ratio, 25):.2f}-"
                f"{np.percentile(p.ratio, 75):.2f}), geodesic lower in "
                f"{(p.ratio < 1).mean():.0%} of pairs\n"
                f"  share of the curve with |K| > {p.high_threshold:.2e} (90th percentile in "
                f"the data): geodesic {p.geodesic_high.mean():.1%}, straight line "
                f"{p.line_high.mean():.1%}\n"
                f"  observation-space length geodesic/line: median "
                f"{np.median(p.length_ratio):.2f}"
            )
        return "\n".join(lines)


def _log_densities(codes: np.ndarray, labels: np.ndarray, pts: np.ndarray):
    """Log KDE density of all codes and the largest class posterior at ``pts``."""
    classes = np.unique(labels)
    logs = torch.stack(
        [kde_log_density(codes[labels == c], pts) + math.log((labels == c).sum()) for c in classes]
    )  # log(n_c p_c), (C, m)
    log_p = torch.logsumexp(logs, 0) - math.log(len(codes))
    purity = torch.softmax(logs, 0).max(0).values
    return log_p.cpu().numpy(), purity.cpu().numpy()


def curvature_statistics(
    metric: PullbackMetric,
    codes,
    labels,
    *,
    resolution: int = 120,
    cluster_purity: float = 0.9,
    mixed_purity: float = 0.6,
    n_pairs: int = 32,
    n_points: int = 32,
    samples: int = 64,
    seed: int = 0,
) -> CurvatureStats:
    """Gaussian curvature inside class clusters, between them, and along geodesics.

    Parameters
    ----------
    metric : PullbackMetric
        With a 2-D latent space.
    codes : Tensor or array, shape (n, 2)
        Data codes.
    labels : Tensor or array, shape (n,)
        Their classes.
    resolution : int, default 120
        Grid points per axis over the box between the codes' 0.5th and 99.5th
        percentiles (plus a margin).
    cluster_purity, mixed_purity : float
        Class-posterior thresholds of the "clusters" and "overlaps" regions (see
        :class:`CurvatureStats`).
    n_pairs : int, default 32
        Pairs of codes of different classes, drawn at random, for the path comparison;
        0 skips it.
    n_points : int, default 32
        Nodes of each geodesic (:func:`~pullback_geom.geodesics.connecting_geodesic`).
    samples : int, default 64
        Points per curve, at equal latent arc length, where ``K`` is evaluated.
    seed : int, default 0
        Of the pair draw.

    Returns
    -------
    CurvatureStats
        ``.table()`` formats it.
    """
    check_metric(metric)
    codes = to_numpy(codes, "codes", "(n, 2)", 2, 2)
    labels = np.asarray(to_numpy(labels, "labels", "(n,)", 1))
    if labels.shape[0] != codes.shape[0]:
        raise ValueError(f"labels must have one entry per code; got {labels.shape[0]}")
    if len(np.unique(labels)) < 2:
        raise ValueError("labels must name at least two classes")
    dtype, device = like(metric)
    m = metric.detached()

    # The grid covers the bulk of the codes (a few far outliers would waste most of it).
    lo, hi = np.percentile(codes, 0.5, axis=0), np.percentile(codes, 99.5, axis=0)
    extent = extent_around(np.stack([lo, hi]))
    grid = latent_grid(extent, resolution).reshape(-1, 2)
    k_grid = curvature_grid(m, extent, resolution).reshape(-1)
    log_p, purity = _log_densities(codes, labels, grid)
    log_p_codes, _ = _log_densities(codes, labels, codes)
    q01, q10, q25 = np.percentile(log_p_codes, [1, 10, 25])
    k_codes = point_values(m.gaussian_curvature, torch.as_tensor(codes, dtype=dtype, device=device))
    regions = {
        "codes": RegionStats.of(k_codes),
        "clusters": RegionStats.of(k_grid[(log_p >= q25) & (purity >= cluster_purity)]),
        "overlaps": RegionStats.of(k_grid[(log_p >= q25) & (purity < mixed_purity)]),
        "gaps": RegionStats.of(k_grid[(log_p >= q01) & (log_p < q10)]),
        "outside": RegionStats.of(k_grid[log_p < q01]),
    }
    if n_pairs <= 0:
        return CurvatureStats(regions, None)

    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(codes), 4 * n_pairs)
    second = rng.integers(0, len(codes), 4 * n_pairs)
    keep = labels[first] != labels[second]
    first, second = first[keep][:n_pairs], second[keep][:n_pairs]
    p = torch.as_tensor(codes[first], dtype=dtype, device=device)
    q = torch.as_tensor(codes[second], dtype=dtype, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeodesicConvergenceWarning)  # reported below
        geo = connecting_geodesic(m, p, q, n_points=n_points)
    t = torch.linspace(0, 1, samples, dtype=dtype, device=device)[None, :, None]
    lines = p[:, None] + t * (q - p)[:, None]
    curves = torch.cat([resample_curves(geo.points.detach(), samples), lines])
    k_path = point_values(m.gaussian_curvature, curves.reshape(-1, 2))
    k_path = np.abs(k_path.reshape(2, len(p), samples))
    with torch.no_grad():
        line_length = m.curve_length(lines)
    inside = k_grid[(log_p >= q01) & np.isfinite(k_grid)]
    high = float(np.percentile(np.abs(inside), 90)) if inside.size else math.nan
    defined = np.isfinite(k_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a curve undefined all along: NaN
        mean_abs = np.nanmean(k_path, axis=2)
    high_share = (k_path > high).sum(2) / np.maximum(defined.sum(2), 1)
    paths = PathStats(
        geodesic_mean_abs=mean_abs[0],
        line_mean_abs=mean_abs[1],
        geodesic_high=high_share[0],
        line_high=high_share[1],
        high_threshold=high,
        length_ratio=(geo.length / line_length).double().cpu().numpy(),
        converged=geo.converged.cpu().numpy(),
    )
    return CurvatureStats(regions, paths)
