"""A k-nearest-neighbour graph of data points, for distances in any latent dimension.

The grid graphs of :mod:`~pullback_geom.geodesics.graph` need a grid, so 2-D and 3-D
latent spaces only. Here the nodes are the points themselves (Chen et al., "Fast
Approximate Geodesics for Deep Generative Models", 2019; Arvanitidis et al., "Fast and
Robust Shortest Paths on Manifolds Learned from Data", AISTATS 2019): each is joined to its
``k`` nearest neighbours in latent space, each edge weighed by the decoded length of its
latent segment in ``subdivide`` pieces, and the distance between two points is the
shortest path (Dijkstra, scipy.sparse.csgraph). Paths run through other points, so a
distance depends on the whole point set: a block computed elsewhere must use the same
graph (:func:`~pullback_geom.geodesics.pairwise_distances` builds it once). Points in
different connected components are an infinite distance apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..metric import PullbackMetric
from .graph import segment_lengths

__all__ = ["KnnGraph", "knn_distances", "knn_graph"]

#: ``knn_graph`` defaults of ``pairwise_distances(route="knn")``: the complete graph.
#: In 8 and 16 latent dimensions a sparse graph's paths zig-zag through the other points
#: (1,000 test codes of a trained MNIST model, d = 8: +68 % median at k = 10, +17 % at
#: k = 100), where every pair's own straight line is within a few per cent of its
#: geodesic (docs/geodesics.md).
KNN_GRAPH = {"k": None, "subdivide": 4}


@dataclass(frozen=True)
class KnnGraph:
    """A k-nearest-neighbour graph over points (build it with :func:`knn_graph`).

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix, shape (n, n)
        Symmetric edge weights: the decoded lengths of the latent segments.
    k : int
        Neighbours per point (``n - 1``: the complete graph).
    subdivide : int
    components : int
        Connected components; above 1 some distances are infinite.
    """

    adjacency: object
    k: int
    subdivide: int
    components: int


def knn_graph(
    metric: PullbackMetric, z: Tensor, k: int | None = 10, subdivide: int = 4
) -> KnnGraph:
    """Join each point to its ``k`` nearest neighbours, edges weighed by decoded length.

    Parameters
    ----------
    metric : PullbackMetric
    z : Tensor, shape (n, d)
    k : int or None, default 10
        Neighbours per point (latent Euclidean distance); an edge is kept when either end
        chose the other. ``None``: every pair of points, the complete graph (``n (n - 1)
        / 2`` decoded segments: ~1 min for 1,000 points of an 8-D MNIST decoder on 2
        cores), whose distances are never longer than the straight lines.
    subdivide : int, default 4
        Pieces of each decoded segment.

    Returns
    -------
    KnnGraph
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    z, _ = metric.evaluator.check_points(z, "z")
    n = z.shape[0]
    for name, value in (("k", k), ("subdivide", subdivide)):
        if value is None and name == "k":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    k = max(n - 1, 0) if k is None else min(k, max(n - 1, 0))
    if k == n - 1:  # every pair, each once: no search for neighbours
        edges = torch.triu_indices(n, n, 1).T.cpu().numpy()
    else:
        edges = _neighbour_edges(z, k)
    with torch.no_grad():
        w = segment_lengths(metric.detached(), z, edges[:, 0], edges[:, 1], subdivide)
    adj = coo_matrix((w, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adj = (adj + adj.T).tocsr()
    components = connected_components(adj, directed=False)[0] if n else 0
    return KnnGraph(adj, k, subdivide, int(components))


def _neighbour_edges(z: Tensor, k: int) -> np.ndarray:
    """Each unordered edge ``(i, j)``, ``i < j``, once, where either end is among the
    other's ``k`` nearest points: shape (E, 2)."""
    n = z.shape[0]
    rows, cols = [], []
    with torch.no_grad():
        for i in range(0, n, 4096):
            d = torch.cdist(z[i : i + 4096], z)
            d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")
            nearest = d.topk(k, dim=1, largest=False).indices.cpu()
            rows.append(torch.arange(i, i + d.shape[0]).repeat_interleave(k))
            cols.append(nearest.reshape(-1))
    a = torch.cat(rows).cpu().numpy() if rows else np.zeros(0, dtype=np.int64)
    b = torch.cat(cols).cpu().numpy() if cols else np.zeros(0, dtype=np.int64)
    # One weight per unordered edge, whichever end chose it.
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.unique(np.stack([lo, hi], 1), axis=0) if len(lo) else np.zeros((0, 2), int)


def knn_distances(graph: KnnGraph, rows: slice, cols: slice) -> Tensor:
    """Shortest-path distances from the points ``rows`` to the points ``cols``.

    Returns
    -------
    Tensor, shape (len(rows), len(cols)), float64
        ``inf`` between points of different components.
    """
    from scipy.sparse.csgraph import dijkstra

    n = graph.adjacency.shape[0]
    sources = np.arange(n)[rows]
    dist = dijkstra(graph.adjacency, directed=False, indices=sources)
    return torch.from_numpy(np.ascontiguousarray(dist[:, cols]))
