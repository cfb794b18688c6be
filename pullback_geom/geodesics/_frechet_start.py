"""The joint Fréchet solve's start (:func:`~pullback_geom.geodesics.frechet.frechet_mean`'s
``init_curve``): each set's mean, its Euclidean mean or, with a graph start, its graph
medoid where that is lower, and the curves from it to every point, straight or shortest
paths on the energy solvers' latent grid graph, whichever has the lower chord energy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from ._common import straight_curves
from .graph import START_GRAPH, graph_geodesics, latent_graph

__all__ = ["initial_state"]


def initial_state(
    metric: PullbackMetric,
    start: Tensor,
    given: Tensor,
    owner: Tensor,
    ends: Tensor,
    w: Tensor,
    n_points: int,
    how: str,
) -> tuple[Tensor, Tensor]:
    """Start means (k, d) and interior nodes (P, N - 2, d) of the curves from them to
    ``ends`` (see ``init_curve`` of :func:`frechet_mean`); ``given`` (k,) marks the sets
    whose start the caller chose."""
    p, d = ends.shape
    if how == "straight" or (how == "auto" and d not in START_GRAPH):
        return start, straight_curves(start[owner], ends, n_points)[:, 1:-1]
    if d not in START_GRAPH:
        raise ValueError(f"init_curve='graph' needs a 2-D or 3-D latent space; got d = {d}")
    graph = latent_graph(metric, torch.cat([start, ends]), **START_GRAPH[d])
    if not bool(given.all()):
        start = _graph_medoid_start(metric, graph, start, given, owner, ends, w)
    # One Dijkstra run per mean: every curve of a set shares its source.
    _, paths = graph_geodesics(metric, graph, start, ends, n_points=n_points)
    paths = paths[owner, torch.arange(p, device=ends.device)]
    straight = straight_curves(start[owner], ends, n_points)
    # As the energy solvers do after solving, keep the straight line where it is better:
    # a coarse graph's path can cross a ReLU decoder's creases on the wrong side.
    with torch.no_grad():
        both = metric.evaluator.embed(torch.cat([paths, straight]).reshape(-1, d))
        energy = both.reshape(2, p, n_points, -1).diff(dim=2).square().sum((2, 3))
    nodes = torch.where((energy[0] < energy[1])[:, None, None], paths, straight)
    return start, nodes[:, 1:-1]


def _graph_medoid_start(
    metric: PullbackMetric,
    graph,
    start: Tensor,
    given: Tensor,
    owner: Tensor,
    ends: Tensor,
    w: Tensor,
) -> Tensor:
    """The start means (k, d): where a set's start was not ``given``, its point of lowest
    Fréchet function on the ``graph`` if that is lower there than at the start.

    On ReLU decoders the Fréchet function has local minima, and the Euclidean mean can lie
    in a worse basin than the points' graph medoid (bundled model, 50 codes of a digit 3:
    44.04 from the mean).
    """
    p = ends.shape[0]
    sites = torch.cat([ends, start])
    dist, _ = graph_geodesics(metric, graph, ends, sites)
    frechet = torch.zeros(start.shape[0], sites.shape[0], dtype=dist.dtype, device=dist.device)
    frechet.index_add_(0, owner, w[:, None] * dist.square())
    k = start.shape[0]
    own = frechet[torch.arange(k), p + torch.arange(k)]
    # Only a set's own points are candidates for its start.
    mine = owner[None, :] == torch.arange(k, device=owner.device)[:, None]
    best, site = torch.where(mine, frechet[:, :p], float("inf")).min(1)
    return torch.where(((best < own) & ~given)[:, None], ends[site], start)
