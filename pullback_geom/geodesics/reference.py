"""Dense reference distances: what distance matrices, ``dist`` and the benchmarks are
checked against."""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from ._common import regrid_curves
from .api import connecting_geodesic
from .energy import BASIN_TOL, BEND_TOL

__all__ = ["REFERENCE_NODES", "reference_distances"]

#: Nodes of the reference curves.
REFERENCE_NODES = 64


def reference_distances(metric: PullbackMetric, p: Tensor, q: Tensor) -> Tensor:
    """Dense per-pair reference distances: the energy solver with 64 nodes (lengths refined
    8x) from a straight start, for d <= 3 a graph start, and the default solver's own
    curve (16 nodes, ``bend_tol`` and ``basin_tol`` as geomstats' ``dist`` solves it)
    resampled onto 64 nodes; the shortest kept.

    The third start keeps the reference from resting in a longer local minimum than the
    solution it checks: on the bundled ReLU model one of 64 random pairs had both 64-node
    starts (and ten more) 1 % longer than the curve ``dist`` found, whose dense length
    confirmed it. Slow (about a second a pair on the bundled model in float64), and free
    of the distance plans' shortcuts (what ``pullback-geom distances`` and the benchmarks
    compare with).

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d)

    Returns
    -------
    Tensor, shape (B,)
    """
    n = REFERENCE_NODES

    def solve(start) -> Tensor:
        return connecting_geodesic(
            metric,
            p,
            q,
            method="lm",
            n_points=n,
            init_curve=start,
            refine=8,
            max_iter=500,
            warn=False,
        ).length.detach()

    starts: list = ["straight", "graph"] if p.shape[-1] <= 3 else ["straight"]
    lengths = [solve(start) for start in starts]
    if p.shape[0]:
        coarse = connecting_geodesic(
            metric, p, q, method="lm", bend_tol=BEND_TOL, basin_tol=BASIN_TOL, warn=False
        ).points.detach()
        lengths.append(solve(regrid_curves(coarse, n)))
    return torch.stack(lengths).amin(0)
