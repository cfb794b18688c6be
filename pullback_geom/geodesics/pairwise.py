"""Geodesic distance matrices, computed in deterministic blocks.

:func:`distance_block` is the unit of work: all distances between a block of rows and a
block of columns, with no randomness, so a block computed anywhere (another process, GPU
or node) equals the same block computed here. :func:`pairwise_distances` runs the units
of the upper triangle, each unordered pair once: one after the other, or as tasks on a
Dask cluster (``client=``, :mod:`~pullback_geom.geodesics.cluster`), optionally written
to a resumable zarr store as they finish (``store=``,
:mod:`~pullback_geom.geodesics.distance_store`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from .._core.progress import progress_bar
from ..metric import PullbackMetric
from ._common import GeodesicConvergenceWarning, trailing_dim
from .api import connecting_geodesic
from .energy import N_POINTS
from .graph import DISTANCE_GRAPH, START_GRAPH, LatentGraph, graph_geodesics, latent_graph
from .knn import KNN_GRAPH, KnnGraph, knn_distances, knn_graph
from .reference import reference_distances
from .registry import PAIRWISE_ROUTES, resolve

__all__ = [
    "PairwiseResult",
    "block_slices",
    "compute_unit",
    "distance_block",
    "distance_matrix",
    "pairwise_distances",
    "reference_distances",
]


@dataclass
class PairwiseResult:
    """A distance matrix and how :func:`distance_matrix` computed it.

    Attributes
    ----------
    distances : Tensor, shape (n, n)
        Symmetric, zero diagonal.
    route : {"graph", "graph+solver", "solver", "knn"}
        ``"graph"``: grid-graph distances only; ``"knn"``: a nearest-neighbour graph's;
        ``"graph+solver"``: graph paths refined by the energy solver; ``"solver"``: the
        energy solver from straight lines.
    converged : Tensor, shape (n, n), bool
        Per pair (always True on the graph route and the diagonal).
    blocks : int
        Work units of the plan: blocks on the solver routes, strips on the graph route.
    computed : int or None
        Units this call computed: fewer than ``blocks`` when a ``store`` held the others.
    """

    distances: Tensor
    route: str
    converged: Tensor
    blocks: int
    computed: int | None = None


#: Above this many pairs ``route="auto"`` takes the graph's distances instead of refining
#: every pair with the solver (~3 ms a pair on the write-up's decoder, 2 cores: ~2.5 min).
AUTO_SOLVER_PAIRS = 50_000
#: In more than 3 dimensions, above this many pairs ``route="auto"`` takes the complete
#: graph of the points' straight lines (``"knn"`` with ``k=None``) instead of the solver
#: (~40 ms a pair at d = 8: 5,000 pairs ~3.5 min on 2 cores, 1,000 points ~5.5 hours).
AUTO_SOLVER_PAIRS_HIGH_D = 5_000


def _check_route_name(route: str) -> None:
    if route != "auto" and route not in PAIRWISE_ROUTES:
        choices = ", ".join(map(repr, ["auto", *PAIRWISE_ROUTES]))
        raise ValueError(f"route must be one of {choices}; got {route!r}")


def _resolve_route(route: str, d: int, n_pairs: int = 0) -> str:
    _check_route_name(route)
    if route != "auto" and PAIRWISE_ROUTES[route].grid and d > 3:
        raise ValueError(f"route={route!r} needs d <= 3; got d = {d}: use route='solver'")
    if route == "auto":
        if d > 3:
            return "solver" if n_pairs <= AUTO_SOLVER_PAIRS_HIGH_D else "knn"
        return "graph+solver" if n_pairs <= AUTO_SOLVER_PAIRS else "graph"
    return route


def _check_options(metric: PullbackMetric, route: str, options: dict, caller: str, z=None) -> dict:
    """The solver options of ``route`` checked before any work: a route without a solver
    takes none, a solver route (and ``"auto"``, which may become one) takes ``method`` and
    that method's options. An unknown option is a ``TypeError`` naming it."""
    _check_route_name(route)
    if route != "auto" and not PAIRWISE_ROUTES[route].solver:
        if options:
            raise TypeError(
                f"{caller}: route={route!r} runs no geodesic solver, so it takes no solver "
                f"options; got {', '.join(map(repr, sorted(options)))} (graph_options= "
                "sets its graph)"
            )
        return options
    options = dict(options)
    solver = resolve(options.pop("method", "auto"), "curve", metric, trailing_dim(z), options)
    solver.with_defaults(options, f"{caller} (route={route!r})")
    return {"method": solver.name, **options}


def _route_graph(
    metric: PullbackMetric, z: Tensor, kind: str, graph_options: dict | None
) -> LatentGraph | KnnGraph:
    """The graph a route needs over ``z``: fine for ``"graph"``, coarse to start the solver,
    the points' neighbours for ``"knn"``."""
    options = _graph_options(kind, z.shape[1], graph_options)
    return (knn_graph if kind == "knn" else latent_graph)(metric, z, **options)


def _graph_options(kind: str, d: int, graph_options: dict | None) -> dict:
    """The route's graph defaults updated by the caller's ``graph_options`` (empty for
    the solver route): what builds the graph, and what a store records of it."""
    if kind == "solver":
        return dict(graph_options or {})
    base = KNN_GRAPH if kind == "knn" else (DISTANCE_GRAPH if kind == "graph" else START_GRAPH)[d]
    return {**base, **(graph_options or {})}


def distance_block(
    metric: PullbackMetric,
    z_rows: Tensor,
    z_cols: Tensor,
    *,
    route: str = "auto",
    graph: LatentGraph | None = None,
    upper: bool = False,
    **options,
) -> tuple[Tensor, Tensor]:
    """Geodesic distances between every row point and every column point.

    Deterministic and seed-free: the same inputs (and ``graph``) give the same block
    wherever it is computed.

    Parameters
    ----------
    metric : PullbackMetric
    z_rows : Tensor, shape (r, d)
    z_cols : Tensor, shape (c, d)
    route : {"auto", "graph", "graph+solver", "solver"}, default "auto"
        See :func:`pairwise_distances`; ``"auto"`` decides by the block's own number of
        pairs, so pass the route that :func:`pairwise_distances` reports
        (``PairwiseResult.route``) to make blocks match a single-process run.
    graph : LatentGraph, optional
        For the graph routes; default one built over the block's points. Pass the graph of
        all points (:func:`~pullback_geom.geodesics.graph.latent_graph` with the route's
        options, ``graph.DISTANCE_GRAPH`` or ``graph.START_GRAPH``) to make blocks match a
        single-process run.
    upper : bool, default False
        ``z_rows`` and ``z_cols`` are the same points (a diagonal block): compute only the
        pairs ``i < j``, fill the lower triangle by symmetry and the diagonal with 0.
    **options
        Passed to :func:`~pullback_geom.geodesics.connecting_geodesic` (``method`` and its
        options, e.g. ``n_points``, ``max_iter``, ``tol``); checked before any work.

    Returns
    -------
    dist : Tensor, shape (r, c)
    converged : Tensor, shape (r, c), bool
    """
    options = _check_options(metric, route, options, "distance_block", z_rows)
    z_rows, _ = metric.evaluator.check_points(z_rows, "z_rows")
    z_cols, _ = metric.evaluator.check_points(z_cols, "z_cols")
    if upper and z_rows.shape != z_cols.shape:
        raise ValueError(
            f"upper=True needs z_rows and z_cols to be the same points; got shapes "
            f"{tuple(z_rows.shape)} and {tuple(z_cols.shape)}"
        )
    r, c = z_rows.shape[0], z_cols.shape[0]
    n_pairs = r * (r - 1) // 2 if upper else r * c
    kind = _resolve_route(route, z_rows.shape[1], n_pairs)
    if not PAIRWISE_ROUTES[kind].solver:
        options = {}  # "auto" became a route without a solver
    if kind == "knn":
        raise ValueError(
            "route='knn' runs paths through the other points, so a block depends on all of "
            "them: use pairwise_distances(metric, z, route='knn')"
        )
    if upper:
        ii, jj = torch.triu_indices(r, c, offset=1, device=z_rows.device)
    else:
        ii, jj = (
            x.reshape(-1)
            for x in torch.meshgrid(
                torch.arange(r, device=z_rows.device),
                torch.arange(c, device=z_rows.device),
                indexing="ij",
            )
        )
    dist = torch.zeros(r, c, dtype=z_rows.dtype, device=z_rows.device)
    conv = torch.ones(r, c, dtype=torch.bool, device=z_rows.device)
    if ii.numel() == 0:
        return dist, conv
    if kind == "solver":
        # Above 3 dimensions a coarse solve bends the straight lines first (1.0-1.5x
        # faster at 16 nodes; see energy.COARSE_TOL); below, no graph per block.
        start = "coarse" if z_rows.shape[-1] > 3 else "straight"
        options = {"init_curve": start, **options}
        res = connecting_geodesic(metric, z_rows[ii], z_cols[jj], warn=False, **options)
        dist[ii, jj], conv[ii, jj] = res.length, res.converged
    else:
        if graph is None:
            graph = _route_graph(metric, torch.cat([z_rows, z_cols]), kind, None)
        n_points = options.get("n_points", N_POINTS) if kind == "graph+solver" else None
        options = {k: v for k, v in options.items() if k != "init_curve"}
        gdist, curves = graph_geodesics(metric, graph, z_rows, z_cols, n_points=n_points)
        if kind == "graph":
            dist[ii, jj] = gdist[ii, jj]
        else:
            res = connecting_geodesic(
                metric, z_rows[ii], z_cols[jj], init_curve=curves[ii, jj], warn=False, **options
            )
            dist[ii, jj], conv[ii, jj] = res.length, res.converged
    if upper:
        dist = dist + dist.T
        conv = conv & conv.T
    return dist, conv


def block_slices(n: int, block_size: int) -> list[tuple[slice, slice]]:
    """The upper-triangular blocks ``(rows, cols)`` that cover an ``n x n`` matrix.

    Parameters
    ----------
    n : int
    block_size : int

    Returns
    -------
    list of (slice, slice)
        Diagonal blocks (``rows == cols``: call :func:`distance_block` with
        ``upper=True``) and the blocks above them, in a fixed order.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size}")
    starts = range(0, n, block_size)
    return [
        (slice(i, min(i + block_size, n)), slice(j, min(j + block_size, n)))
        for i in starts
        for j in starts
        if j >= i
    ]


def pairwise_distances(metric: PullbackMetric, z: Tensor, **options) -> Tensor:
    """The ``n x n`` matrix of geodesic distances between the points ``z``:
    ``distance_matrix(metric, z, **options).distances``.

    Parameters
    ----------
    metric : PullbackMetric
    z : Tensor, shape (n, d)
    **options
        See :func:`distance_matrix`.

    Returns
    -------
    Tensor, shape (n, n)
        Symmetric, zero diagonal.
    """
    return distance_matrix(metric, z, **options).distances


def distance_matrix(
    metric: PullbackMetric,
    z: Tensor,
    *,
    route: str = "auto",
    block_size: int = 64,
    progress: bool | None = None,
    warn: bool = True,
    graph_options: dict | None = None,
    client=None,
    store: str | os.PathLike | None = None,
    threads_per_task: int = 1,
    **options,
) -> PairwiseResult:
    """The ``n x n`` matrix of geodesic distances between the points ``z``, with how it
    was computed.

    Each unordered pair is computed once, in work units of a fixed plan (memory is bounded
    by a unit, whatever ``n``): blocks of ``block_size x block_size`` pairs on the solver
    routes, strips of ``block_size`` rows against all later columns on the graph route.
    Units are deterministic, so where they run does not change the matrix.

    Parameters
    ----------
    metric : PullbackMetric
    z : Tensor, shape (n, d)
    route : {"auto", "graph", "graph+solver", "solver", "knn"}, default "auto"
        ``"graph"`` (d <= 3): shortest paths on a fine latent grid graph whose edges are
        decoded in 4 pieces (``graph.DISTANCE_GRAPH``: 192 x 192, 32 directions in 2-D);
        a 1000 x 1000 matrix in well under a minute, median ~0.4 % from the solver on
        the bundled ReLU model (graph distances are upper bounds up to the edges'
        discretisation). ``"graph+solver"`` (d <= 3): paths of a coarse graph
        (``graph.START_GRAPH``), resampled to ``n_points`` nodes and refined by
        :func:`~pullback_geom.geodesics.connecting_geodesic` (~3 ms a pair on the write-up's
        decoder, 2 cores). ``"solver"``: the solver from straight lines (above 3
        dimensions, from a coarse solve's curves: ``init_curve="coarse"``). ``"auto"``:
        ``"graph+solver"`` up to ``AUTO_SOLVER_PAIRS`` (50,000) pairs, ``"graph"`` above,
        when ``d <= 3``; for ``d > 3``, ``"solver"`` up to ``AUTO_SOLVER_PAIRS_HIGH_D``
        (5,000) pairs, ``"knn"`` above. ``result.route`` tells which was used.
        ``"knn"`` (any ``d``): shortest paths on a graph of the points themselves, edges
        weighed by their decoded segments (:func:`~pullback_geom.geodesics.knn.knn_graph`);
        by default the complete graph (``k=None``: every pair's straight line, and paths
        through other points where shorter; 1,000 points of an 8-D MNIST model in about a
        minute, median 2-4 % from per-pair solutions at d = 8 and 16), with
        ``graph_options={"k": k}`` each point's ``k`` nearest neighbours only (points in
        different components are then ``inf`` apart, not converged).
    block_size : int, default 64
        Points per block side (and the chunks of ``store``).
    progress : bool, optional
        A tqdm bar over units; default on when there is more than one.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` when pairs did not converge.
    graph_options : dict, optional
        Passed to :func:`~pullback_geom.geodesics.graph.latent_graph` (``resolution``,
        ``margin``, ``reach``, ``subdivide``) over the route's defaults; on the knn route
        to :func:`~pullback_geom.geodesics.knn.knn_graph` (``k``, ``subdivide``).
    client : dask.distributed.Client, optional
        Run the units as tasks on its cluster (a ``LocalCluster``, dask-jobqueue's SLURM
        or PBS clusters, dask-cuda's GPUs): the metric, the points and the graph go to
        every worker once. The matrix equals the single-process one (bit for bit on the
        graph route; on the solver routes up to the rounding of the workers' torch
        threads). Needs the ``distributed`` extra; the metric must pickle.
    store : path, optional
        A zarr group (``distributed`` extra) where finished units are written as they
        arrive. Called again with the same arguments, a run computes only the units the
        store lacks, so a killed run resumes. A store of other points, another model or
        other options is a ``ValueError``. See
        :class:`~pullback_geom.geodesics.distance_store.DistanceStore`.
    threads_per_task : int, default 1
        Torch threads of each task on a cluster.
    **options
        Passed to :func:`~pullback_geom.geodesics.connecting_geodesic` on the solver
        routes (``method`` and its options); checked before any work, and refused on the
        ``"graph"`` and ``"knn"`` routes, which run no solver. Above 3
        dimensions, ``route="solver", n_points=4, tol=1e-2,
        jacobian_dtype=torch.bfloat16`` is a coarse solve (by ``"lm"``) that stays within
        ~1.6 % of per-pair references at d = 16 (the knn route: ~4 %) for ~0.52 ms a pair
        on 2 cores with bfloat16 units (1,000 codes in 260 s; ``n_points=5``: ~1.3 % at
        ~0.73 ms; ``docs/geodesics.md``).

    Returns
    -------
    PairwiseResult
        ``distances (n, n)``, ``route``, ``converged (n, n)``, ``blocks``, ``computed``.
    """
    options = _check_options(metric, route, options, "pairwise_distances", z)
    z, single = metric.evaluator.check_points(z, "z")
    if single:
        raise ValueError(f"z must have shape (n, d); got {tuple(z.shape)}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    n, d = z.shape
    # No points, no graph to build: the solver route gives the empty matrix.
    kind = _resolve_route(route, d, n * (n - 1) // 2) if n else "solver"
    if not PAIRWISE_ROUTES[kind].solver:
        options = {}  # "auto" became a route without a solver
    units = _plan(n, block_size, kind)

    if store is not None:
        from .distance_store import DistanceStore, job_fingerprint

        job = job_fingerprint(
            metric, z, route=kind, block_size=block_size, options=options,
            graph_options=_graph_options(kind, z.shape[1], graph_options),
        )  # fmt: skip
        disk = DistanceStore.open(store, job)
        todo = [i for i in range(len(units)) if i not in disk.finished]
        sink = disk.write
    else:
        dist = torch.zeros(n, n, dtype=z.dtype, device=z.device)
        conv = torch.ones(n, n, dtype=torch.bool, device=z.device)
        todo = list(range(len(units)))

        def sink(i: int, rows: slice, cols: slice, block: Tensor, ok: Tensor) -> None:
            dist[rows, cols], conv[rows, cols] = block, ok
            if rows != cols:
                dist[cols, rows], conv[cols, rows] = block.T, ok.T

    graph = None
    if kind != "solver" and todo:
        graph = _route_graph(metric, z, kind, graph_options)
    show = len(todo) > 1 if progress is None else progress
    if client is not None:
        from .cluster import run_units

        run_units(
            client, compute_unit, metric, z, units, todo, kind, graph, options, sink,
            progress=show, threads=threads_per_task,
        )  # fmt: skip
    else:
        desc = "geodesic blocks" if PAIRWISE_ROUTES[kind].solver else "graph strips"
        for i in progress_bar(todo, show=show, desc=desc):
            rows, cols = units[i]
            sink(i, rows, cols, *compute_unit(metric, z, rows, cols, kind, graph, options))
    if store is not None:
        stored, stored_conv = disk.read()
        dist = torch.from_numpy(stored).to(device=z.device, dtype=z.dtype)
        conv = torch.from_numpy(stored_conv).to(z.device)
    if warn and not bool(conv.all()):
        bad = int((~conv).triu(1).sum())
        warnings.warn(
            f"pairwise_distances: {bad} of {n * (n - 1) // 2} pairs did not converge "
            "(see distance_matrix(...).converged); raise max_iter or n_points"
            + (
                "; on the knn route they lie in different components of the graph "
                "(infinite distance): raise graph_options['k']"
                if kind == "knn"
                else ""
            ),
            GeodesicConvergenceWarning,
            stacklevel=2,
        )
    return PairwiseResult(dist, kind, conv, len(units), len(todo))


def _plan(n: int, block_size: int, kind: str) -> list[tuple[slice, slice]]:
    """The work units of a matrix: ``(rows, cols)``, each unordered pair in one of them.

    The graph route runs one Dijkstra search per row point, which costs the same whatever
    the columns, so its units are strips of rows against all later columns; the solver
    routes' cost is per pair, so theirs are the blocks of :func:`block_slices`.
    """
    if not PAIRWISE_ROUTES[kind].solver:
        return [(slice(i, min(i + block_size, n)), slice(i, n)) for i in range(0, n, block_size)]
    return block_slices(n, block_size)


def compute_unit(
    metric: PullbackMetric,
    z: Tensor,
    rows: slice,
    cols: slice,
    kind: str,
    graph: LatentGraph | None,
    options: dict,
) -> tuple[Tensor, Tensor]:
    """One unit of the plan, ``(dist, converged)`` of shape ``(len(rows), len(cols))``.

    A unit whose columns start at its rows (a diagonal block, or a strip) holds a square
    diagonal part: its pairs ``i < j`` are computed and mirrored, its diagonal is 0.
    """
    if not PAIRWISE_ROUTES[kind].solver:
        if kind == "knn":
            block = knn_distances(graph, rows, cols).to(dtype=z.dtype, device=z.device)
            ok = None
        else:
            block, ok = distance_block(metric, z[rows], z[cols], route=kind, graph=graph)
        b = rows.stop - rows.start
        # Graph distances are symmetric only up to Dijkstra's summation order: mirror the
        # upper triangle so that the matrix is exactly symmetric.
        upper = block[:, :b].triu(1)
        block = torch.cat([upper + upper.T, block[:, b:]], dim=1)
        if kind == "knn":
            ok = torch.isfinite(block)  # inf: the points' components are not connected
        return block, ok
    diag = rows == cols
    return distance_block(metric, z[rows], z[cols], route=kind, graph=graph, upper=diag, **options)
