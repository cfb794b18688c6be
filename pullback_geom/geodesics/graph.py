"""Graph initialisation: shortest paths on a latent grid weighted by decoded distances.

A regular grid covers the points' bounding box (plus a margin); each grid node is joined to
its neighbours by an edge weighted with the observation-space chord ``||f(a) - f(b)||``:
all primitive offsets with coordinates up to ``reach`` (``reach=1``: 8 neighbours in 2-D,
26 in 3-D; ``reach=3``, the 2-D default: 32, whose finer set of directions cuts the grid's
bias from ~5% to ~0.5%). Each start point becomes an extra node with edges to the corners of
its grid cell, each end point one with edges from its corners, and a start within
``reach`` cells of an end gets a direct edge: no path passes through a third point, so a
distance depends on its two points and the grid alone.
:func:`scipy.sparse.csgraph.dijkstra` from the points then gives graph distances (upper
bounds on geodesic distances, as in stochman's ``DiscretizedManifold``) and paths that,
resampled to ``N`` nodes at constant decoded speed, start the energy solver.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..metric import PullbackMetric

if TYPE_CHECKING:  # scipy is imported where the graph is built, not with the solvers
    from scipy.sparse import csr_matrix

__all__ = ["LatentGraph", "graph_geodesics", "latent_graph", "segment_lengths"]

#: ``latent_graph`` options by latent dimension for graphs that only start the energy
#: solver: coarse, so that Dijkstra stays cheap (48 x 48: ~0.4 ms per pair).
START_GRAPH = {2: {"resolution": 48, "reach": 1}, 3: {"resolution": 16, "reach": 1}}
#: ... and for graphs whose distances are the answer (``route="graph"``): fine, with
#: subdivided edges (median ~0.4 % from the solver on the bundled model in 2-D).
DISTANCE_GRAPH = {
    2: {"resolution": 192, "reach": 3, "subdivide": 4},
    3: {"resolution": 32, "reach": 1, "subdivide": 4},
}


@dataclass(frozen=True)
class LatentGraph:
    """A latent grid graph (build it with :func:`latent_graph`).

    Attributes
    ----------
    lower, upper : Tensor, shape (d,)
        Corners of the grid's box.
    shape : tuple of int
        Nodes per axis.
    nodes : Tensor, shape (M, d)
        Grid nodes, C order over ``shape``.
    embedded : Tensor, shape (M, D)
        ``f(nodes)``.
    adjacency : scipy.sparse.csr_matrix, shape (M, M)
        Symmetric edge weights.
    reach : int
        Largest coordinate of a neighbour offset, in cells.
    """

    lower: Tensor
    upper: Tensor
    shape: tuple[int, ...]
    nodes: Tensor
    embedded: Tensor
    adjacency: csr_matrix
    reach: int = 1


def _offsets(d: int, reach: int) -> np.ndarray:
    """Half of the primitive grid offsets with entries in ``[-reach, reach]`` (one per +/- pair)."""
    out = []
    for off in itertools.product(range(-reach, reach + 1), repeat=d):
        if not any(off) or math.gcd(*map(abs, off)) != 1:
            continue
        if next(o for o in off if o != 0) > 0:
            out.append(off)
    return np.array(out, dtype=np.int64)


def latent_graph(
    metric: PullbackMetric,
    points: Tensor,
    *,
    resolution: int | None = None,
    margin: float = 0.1,
    reach: int | None = None,
    subdivide: int = 1,
) -> LatentGraph:
    """Build the grid graph over the bounding box of ``points``.

    Parameters
    ----------
    metric : PullbackMetric
    points : Tensor, shape (n, d)
        Points the graph must cover; ``d`` must be 2 or 3.
    resolution : int, optional
        Nodes per axis (default 128 in 2-D, 32 in 3-D).
    margin : float, default 0.1
        Extra fraction of the box's extent on every side.
    reach : int, optional
        Neighbour offsets with entries up to ``reach`` (default 3 in 2-D, 1 in 3-D).
    subdivide : int, default 1
        Weigh each edge by the decoded length of its latent segment split into
        ``subdivide`` pieces instead of by its chord. Chords skip the bends of the decoded
        edge, so on trained ReLU decoders chord-weighted graph distances come out ~3 %
        below the geodesic; ``subdivide=4`` costs ``subdivide - 1`` decoder evaluations
        per edge and brings them within ~1 % (``docs/geodesics.md``).

    Returns
    -------
    LatentGraph
    """
    z, _ = metric.evaluator.check_points(points, "points")
    d = z.shape[1]
    if d not in (2, 3):
        raise ValueError(
            f"the graph route needs a 2-D or 3-D latent space; got d = {d}: "
            "use route='solver' for higher dimensions"
        )
    resolution = resolution or (128 if d == 2 else 32)
    reach = reach or (3 if d == 2 else 1)
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2; got {resolution}")
    if isinstance(subdivide, bool) or not isinstance(subdivide, int) or subdivide < 1:
        raise ValueError(f"subdivide must be a positive integer; got {subdivide!r}")
    lo, hi = z.amin(0), z.amax(0)
    extent = (hi - lo).clamp_min(1e-3 * (1 + z.abs().max()))
    lo, hi = lo - margin * extent, hi + margin * extent
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution, dtype=z.dtype) for i in range(d)]
    nodes = torch.cartesian_prod(*axes).reshape(-1, d).to(z.device)
    with torch.no_grad():
        emb = metric.evaluator.embed(nodes)
    shape = (resolution,) * d
    index = np.arange(resolution**d).reshape(shape)
    rows, cols, chords = [], [], []
    grid = emb.reshape(*shape, -1)
    for off in _offsets(d, reach):
        src = tuple(slice(max(0, -o), resolution - max(0, o)) for o in off)
        dst = tuple(slice(max(0, o), resolution - max(0, -o)) for o in off)
        rows.append(index[src].ravel())
        cols.append(index[dst].ravel())
        if subdivide == 1:
            chords.append(_grid_chords(grid, src, dst))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    with torch.no_grad():
        if subdivide == 1:
            w = np.concatenate(chords)
        else:
            w = segment_lengths(metric, nodes, rows, cols, subdivide)
    from scipy.sparse import coo_matrix

    m = resolution**d
    adj = coo_matrix((w, (rows, cols)), shape=(m, m)).tocsr()
    return LatentGraph(lo, hi, shape, nodes, emb, (adj + adj.T).tocsr(), reach)


def _edge_weights(parts: list[Tensor]) -> np.ndarray:
    """Edge lengths computed in chunks as one float64 array for a sparse graph."""
    if not parts:
        return np.zeros(0)
    # Zero-length edges would vanish from a sparse matrix; keep them as tiny weights.
    return torch.cat(parts).double().clamp_min(1e-300).cpu().numpy()


def _grid_chords(grid: Tensor, src: tuple[slice, ...], dst: tuple[slice, ...]) -> np.ndarray:
    """``|grid[dst] - grid[src]|`` over the last axis, raveled in C order: the chords of
    one neighbour offset's edges, by slicing the decoded grid (gathering the edges' end
    points by index, ~9,000 rows of 784 per graph, cost as much as decoding the grid).

    Parameters
    ----------
    grid : Tensor, shape (n, ..., D)
        Decoded grid nodes.
    src, dst : tuple of slice
        The edges' source and target blocks of the grid, one slice per grid axis.

    Returns
    -------
    ndarray, shape (E,), float64
        At least 1e-300 (a sparse graph drops zero weights).
    """
    a, b = grid[src], grid[dst]
    # Slabs along the first axis bound the difference's memory and keep C order.
    per_slab = max(1, 65536 // max(1, a[0, ..., 0].numel()))
    parts = [
        torch.linalg.vector_norm(b[i : i + per_slab] - a[i : i + per_slab], dim=-1).reshape(-1)
        for i in range(0, a.shape[0], per_slab)
    ]
    return _edge_weights(parts)


def _chord(emb: Tensor, a: Tensor, b: Tensor) -> np.ndarray:
    a, b = a.to(emb.device), b.to(emb.device)
    parts = [
        torch.linalg.vector_norm(emb[a[i : i + 65536]] - emb[b[i : i + 65536]], dim=-1)
        for i in range(0, a.numel(), 65536)
    ]
    return _edge_weights(parts)


def segment_lengths(
    metric: PullbackMetric, nodes: Tensor, rows: np.ndarray, cols: np.ndarray, k: int
) -> np.ndarray:
    """Decoded lengths of the latent segments ``nodes[rows] -> nodes[cols]`` in ``k`` steps.

    Parameters
    ----------
    metric : PullbackMetric
    nodes : Tensor, shape (M, d)
    rows, cols : ndarray of int, shape (E,)
    k : int
        Pieces per segment: the length of the decoded polyline through ``k + 1`` points.

    Returns
    -------
    ndarray, shape (E,), float64
        At least 1e-300 (a sparse graph drops zero weights).
    """
    t = torch.linspace(0, 1, k + 1, dtype=nodes.dtype, device=nodes.device)[None, :, None]
    step = max(1, 65536 // (k + 1))
    out = []
    for i in range(0, len(rows), step):
        a = nodes[torch.as_tensor(rows[i : i + step], device=nodes.device)]
        b = nodes[torch.as_tensor(cols[i : i + step], device=nodes.device)]
        pts = (a[:, None] + t * (b - a)[:, None]).reshape(-1, nodes.shape[1])
        x = metric.evaluator.embed(pts).reshape(len(a), k + 1, -1)
        out.append(torch.linalg.vector_norm(x.diff(dim=1), dim=-1).sum(-1))
    return _edge_weights(out)


def _cell_corners(graph: LatentGraph, z: Tensor) -> Tensor:
    """Grid indices of the ``2^d`` corners of each point's cell, shape ``(n, 2^d)``."""
    res = torch.tensor(graph.shape, device=z.device)
    rel = (z - graph.lower) / (graph.upper - graph.lower) * (res - 1)
    base = rel.floor().long().clamp(torch.zeros_like(res), res - 2)
    corners = torch.tensor(list(itertools.product((0, 1), repeat=z.shape[1])), device=z.device)
    idx = base[:, None] + corners[None]  # (n, 2^d, d)
    strides = torch.tensor(
        [int(np.prod(graph.shape[i + 1 :])) for i in range(z.shape[1])], device=z.device
    )
    return (idx * strides).sum(-1)


def graph_geodesics(
    metric: PullbackMetric,
    graph: LatentGraph,
    a: Tensor,
    b: Tensor,
    *,
    n_points: int | None = None,
    paired: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Graph distances (and, optionally, initial curves) from every ``a`` to every ``b``.

    Parameters
    ----------
    metric : PullbackMetric
    graph : LatentGraph
        From :func:`latent_graph`; points outside its box are joined to the nearest cell.
    a : Tensor, shape (r, d)
    b : Tensor, shape (c, d)
    n_points : int, optional
        If given, also return the shortest paths resampled to ``n_points`` nodes at
        constant decoded speed, end points exactly ``a[i]`` and ``b[j]``.
    paired : bool, default False
        Only the pairs ``(a[i], b[i])`` (``r == c``): ``dist`` of shape (r,) and
        ``curves`` of shape (r, n_points, d).

    Returns
    -------
    dist : Tensor, shape (r, c), or (r,) if ``paired``
        Graph distances (observation-space lengths of the grid paths).
    curves : Tensor, shape (r, c, n_points, d) or (r, n_points, d) if ``paired``; or None
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    a, _ = metric.evaluator.check_points(a, "a")
    b, _ = metric.evaluator.check_points(b, "b")
    if paired and a.shape != b.shape:
        raise ValueError(f"paired=True needs a and b of one shape; got {a.shape} and {b.shape}")
    m = graph.nodes.shape[0]
    pts = torch.cat([a, b])
    r, k = a.shape[0], pts.shape[0]
    # Every ``a`` is a source node with outgoing edges only and every ``b`` a target node
    # with incoming edges only, so no path runs through a third point: a distance depends
    # on its two points and the grid, not on which other points share the call.
    with torch.no_grad():
        emb = metric.evaluator.embed(pts)
        corners = _cell_corners(graph, pts)  # (k, 2^d)
        w = torch.linalg.vector_norm(emb[:, None] - graph.embedded[corners], dim=-1)
    w = _edge_weights([w])
    corners = corners.cpu().numpy()
    point = np.repeat(np.arange(m, m + k), corners.shape[1]).reshape(k, -1)
    src = np.concatenate([point[:r].ravel(), corners[r:].ravel()])
    dst = np.concatenate([corners[:r].ravel(), point[r:].ravel()])
    w = np.concatenate([w[:r].ravel(), w[r:].ravel()])
    # Points within ``reach`` cells of each other: a direct edge, or the detour through
    # the cell corners would dominate their (short) distance.
    cell = (graph.upper - graph.lower) / (torch.tensor(graph.shape, device=pts.device) - 1)
    gap = ((a[:, None] - b[None]).abs() / cell).amax(-1)
    pi, pj = torch.nonzero(gap <= graph.reach, as_tuple=True)
    with torch.no_grad():
        wd = _chord(emb, pi, pj + r)
    src = np.concatenate([src, m + pi.cpu().numpy()])
    dst = np.concatenate([dst, m + r + pj.cpu().numpy()])
    w = np.concatenate([w, wd])
    link = coo_matrix((w, (src, dst)), shape=(m + k, m + k)).tocsr()
    adj = graph.adjacency.tocoo()
    base = coo_matrix((adj.data, (adj.row, adj.col)), shape=(m + k, m + k)).tocsr()
    full = (base + link).tocsr()
    sources = np.arange(m, m + r)
    targets = np.arange(m + r, m + k)
    out = dijkstra(full, directed=True, indices=sources, return_predecessors=n_points is not None)
    dist_all, pred = out if n_points is not None else (out, None)
    if paired:
        dist = dist_all[np.arange(r), targets]
    else:
        dist = dist_all[:, targets]
    # Zero-length edges were stored as 1e-300 (a sparse matrix drops zeros): back to 0.
    dist = torch.as_tensor(np.where(dist < 1e-290, 0.0, dist), dtype=a.dtype, device=a.device)
    if n_points is None:
        return dist, None
    curves = _paths(graph, pts, dist_all, pred, targets, n_points, paired).to(a.device)
    if paired:
        return dist, curves
    return dist, curves.reshape(a.shape[0], b.shape[0], n_points, a.shape[1])


def _paths(
    graph: LatentGraph,
    pts: Tensor,
    dist_all: np.ndarray,
    pred: np.ndarray,
    targets: np.ndarray,
    n_points: int,
    paired: bool = False,
) -> Tensor:
    """Walk the predecessor trees for all (source, target) pairs at once and resample.

    ``paired``: only source ``i`` to target ``i``."""
    r = pred.shape[0]
    coords = torch.cat([graph.nodes, pts]).double().cpu().numpy()
    if paired:
        row, cur = np.arange(r), targets.copy()
    else:
        row = np.repeat(np.arange(r), targets.size)
        cur = np.tile(targets, r)
    walk = [cur]
    while True:
        nxt = pred[row, cur]
        alive = nxt >= 0
        if not alive.any():
            break
        cur = np.where(alive, nxt, cur)
        walk.append(cur)
    nodes = np.stack(walk[::-1], axis=1)  # (P, L): source first, padded at the start
    s = dist_all[row[:, None], nodes]  # cumulative decoded length along the path
    s = np.where(np.isfinite(s), s, 0.0)
    xyz = coords[nodes]  # (P, L, d)
    total = s[:, -1:]
    goal = np.linspace(0.0, 1.0, n_points)[None] * total  # (P, n_points)
    s_t, goal_t = torch.as_tensor(s), torch.as_tensor(goal)
    hi = torch.searchsorted(s_t.contiguous(), goal_t.contiguous(), right=False)
    hi = hi.clamp(1, s.shape[1] - 1)
    lo = hi - 1
    s_lo, s_hi = s_t.gather(1, lo), s_t.gather(1, hi)
    frac = ((goal_t - s_lo) / (s_hi - s_lo).clamp_min(1e-300)).clamp(0, 1)
    x = torch.as_tensor(xyz)
    x_lo = x.gather(1, lo[..., None].expand(-1, -1, x.shape[2]))
    x_hi = x.gather(1, hi[..., None].expand(-1, -1, x.shape[2]))
    out = x_lo + frac[..., None] * (x_hi - x_lo)
    out[:, 0] = x[:, 0]
    out[:, -1] = x[:, -1]
    return out.to(pts.dtype)
