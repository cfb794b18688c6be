"""The energy family: geodesics as minimisers of the discrete curve energy measured in
observation space, ``E = (N - 1) sum_i ||f(x_{i+1}) - f(x_i)||^2`` over the ``N - 2`` free
nodes of a curve with fixed end points.

:func:`solve_energy` is the one driver every energy method runs through: it checks the
options, picks the starting curves (straight lines, or shortest paths on a latent grid
graph), cuts the pairs into memory-bounded chunks, hands each chunk to the method's
minimiser ``(metric, curves (B, N, d), max_iter, tol, **extra) -> CurveSolution``, measures
the lengths, and solves again the pairs whose start or discretisation was wrong.
:func:`energy_solver` makes a registry entry of a minimiser: the ``"lm"``
(:mod:`~pullback_geom.geodesics.chord`), ``"georce"`` and ``"lbfgs"`` methods.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .._core.checks import batch_curves
from ..metric import PullbackMetric
from ._common import (
    CurveSolution,
    _tolerance,
    initial_velocity,
    refined_length,
    regrid_curves,
    spline_points,
    straight_curves,
)
from ._solver import GeodesicResult, Solver
from .graph import START_GRAPH, LatentGraph, graph_geodesics, latent_graph

__all__ = [
    "BEND_TOL",
    "DISTANCE_TOL",
    "N_POINTS",
    "coarse_points",
    "energy_solver",
    "solve_energy",
]

#: Default nodes per curve.
N_POINTS = 16
#: The adapters' solver tolerance for a length in float64 (geomstats' ``dist``, stochman's
#: ``dist2``; the solver's own default is 1e-10, which the nodes of a logarithm need and a
#: length does not): on the bundled ReLU model lengths move by at most 5e-5 relative
#: against 1e-10 (150 pairs from one code; 1e-3 is the accuracy asked of them) and a batch
#: is solved ~25 % faster than at 1e-7 (~40 % than at 1e-10), as the solver no longer
#: creeps along the decoder's creases for a last 1e-6 of energy. At 1e-5 one length in 150
#: moved by 1e-3.
DISTANCE_TOL = 1e-6
#: The adapters' ``bend_tol`` (geomstats' ``dist``, stochman's ``dist2``): pairs whose
#: decoded curve bends between its 16 nodes by more than 8 % of its length are solved
#: again on 31. On the bundled ReLU model, 213 pairs (64 random ones and 149 from one code
#: to a k-means batch) had 15 more than 1 % too long at 16 nodes, the largest 2.2 %; with
#: it none, the largest 0.6 %, with 38 of the 213 solved again.
BEND_TOL = 0.08
#: The adapters' ``basin_tol`` (geomstats' ``dist``): with a graph start every pair is also
#: solved from its straight line, and pairs whose two solutions differ by more than 0.1 %
#: in length are solved again as bent ones are. On 192 random pairs of the bundled ReLU
#: model (three batches of 64) against a 64-node reference from twelve starts, the largest
#: relative error fell from 2.1e-2 (three pairs above 1e-2, eight above 5e-3) to 6.5e-3
#: (one above 5e-3), the median from 3.8e-4 to 3.1e-4, for ~3x the time.
BASIN_TOL = 1e-3
#: ``init_curve="coarse"`` (the ``"auto"`` start above 3 latent dimensions, where no grid
#: graph is built) stops its coarse solves at this relative energy decrease: a start
#: needs the curve's shape, not its last digits. Measured, 16 pairs of test codes, two
#: threads, 16 nodes from a 6-node solve against 16 from the straight line: a
#: ``16 -> 512 -> 784`` ReLU MLP 15.4 against 21.1 ms a pair, a convolutional MNIST
#: decoder at ``d = 16`` 82 against 118 ms, GEORCE's CelebA shape (``d = 32``) 0.67
#: against 0.83 s, its MNIST-8 shape 21.7 against 22.8 ms; median length errors against
#: the 64-node reference within 5 % of each other (tolerances 1e-3: up to 1.2x slower
#: than 1e-2 at the same errors).
COARSE_TOL = 1e-2
#: Fewest nodes of a coarse solve: below it the fine solve starts from straight lines.
COARSE_MIN_POINTS = 6

#: The options every energy method accepts, and their defaults.
#:
#: ``n_points``: ``N``, nodes per curve including the end points.
#: ``refine``: ``length`` is measured on the Catmull–Rom spline through the nodes,
#: ``refine`` decoded points per segment and Richardson-extrapolated
#: (:func:`~pullback_geom.geodesics._common.refined_length`); ``1`` gives the chord length
#: of the nodes. At the defaults the median relative length error is ~1e-5 on the sphere
#: and ~7e-4 on the write-up's decoder, against ~3e-3 and ~2e-2 for the chord length.
#: ``init_curve``: a tensor ``(B, N, d)``, a LatentGraph, ``"auto"``, ``"graph"``,
#: ``"coarse"`` or ``"straight"`` (see :func:`solve_energy`). ``max_iter``: iterations.
#: ``tol``: the relative energy-decrease (or gradient) criterion, default ``1e-10`` in
#: float64 and ``1e-4`` in float32. ``bend_tol``: pairs whose refined length exceeds the
#: chord length of their nodes by more than this fraction are solved again on ``2 N - 1``
#: nodes.
#: ``basin_tol``: from a graph start, every pair is also solved from its straight line,
#: and pairs whose two lengths differ by more than this fraction are solved again as bent
#: pairs are (the two starts found different basins: a third may find a better one).
ENERGY_OPTIONS: Mapping[str, Any] = {
    "n_points": N_POINTS,
    "refine": 4,
    "init_curve": "auto",
    "max_iter": 200,
    "tol": None,
    "bend_tol": None,
    "basin_tol": None,
}

Minimiser = Callable[..., CurveSolution]


def energy_solver(
    name: str,
    minimise: Minimiser,
    summary: str,
    *,
    options: Mapping[str, Any] | None = None,
    check_options: Mapping[str, Callable[[Any], Any]] | None = None,
    chunk_kind: str = "jacobian",
) -> Solver:
    """A boundary-value :class:`~pullback_geom.geodesics._solver.Solver` of the energy family.

    Parameters
    ----------
    name : str
    minimise : callable
        ``(metric, curves (B, N, d), max_iter, tol, **extra) -> CurveSolution`` on checked
        start curves whose end points are the pairs'.
    summary : str
    options : mapping, optional
        The minimiser's own options (``extra``) and their defaults, beside
        :data:`ENERGY_OPTIONS`.
    check_options : mapping, optional
        For each own option, a function that checks (and may convert) its value before any
        work.
    chunk_kind : str, default "jacobian"
        The evaluator kernel (:data:`~pullback_geom._core.evaluate.STREAMS`) whose memory
        a curve's node costs the minimiser: it sizes the chunks of pairs solved at once.
    """
    run = functools.partial(
        solve_energy,
        minimise=minimise,
        check_options=dict(check_options or {}),
        chunk_kind=chunk_kind,
    )
    return Solver(
        name,
        run,
        {**ENERGY_OPTIONS, **(options or {})},
        summary=summary,
        empty_info=lambda p: {"next_to_ends": p.new_zeros(0, 2, p.shape[1])},
    )


def solve_energy(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    minimise: Minimiser,
    check_options: Mapping[str, Callable[[Any], Any]],
    chunk_kind: str = "jacobian",
    n_points: int,
    refine: int,
    init_curve: Tensor | LatentGraph | str | None,
    max_iter: int,
    tol: float | None,
    bend_tol: float | None,
    basin_tol: float | None,
    **extra,
) -> GeodesicResult:
    """Shortest curves from ``p`` to ``q`` ``(B, d)``, ``B >= 1``, by ``minimise``.

    ``init_curve="graph"`` (2-D and 3-D latent spaces) starts from shortest paths on a
    coarse latent grid graph over the end points' box (48 x 48 nodes in 2-D, 16^3 in 3-D;
    below 16 pairs each pair's box widened to a square), which keeps the solver out of the
    longer local minima a straight start falls into on trained ReLU decoders (~1 pair in
    10 at ``N = 16``, up to 50 % longer; ``docs/geodesics.md``). ``init_curve="coarse"``
    starts from the same method's solution on :func:`coarse_points` ``(N)`` nodes (a third
    of the segments; itself started the same way, from straight lines at the coarsest),
    stopped at :data:`COARSE_TOL` and regridded to ``N`` nodes along the spline through
    them: the first long steps from a straight line are taken on a third of the nodes
    (1.0-1.5x faster at ``N = 16``, more at ``N = 100``; straight lines below
    :data:`COARSE_MIN_POINTS` coarse nodes). ``"auto"``: ``"graph"`` in 2-D and 3-D,
    else ``"coarse"``. From a graph start, pairs whose solution comes
    out longer than their straight line (below 16 pairs: every pair) are solved from the
    straight line too, and the shorter solution kept.

    With ``bend_tol``, pairs whose decoded curve bends between its nodes (its refined
    length exceeds its nodes' chord length by more than ``bend_tol`` of it) are solved
    again with ``2 N - 1`` nodes, from their curve resampled on the spline through its
    nodes and from a fresh start, and the shortest kept: on a ReLU decoder a long curve
    crosses many creases that 16 nodes cannot follow (on the bundled model pairs ~28 long
    came out up to 2.2 % too long; with ``bend_tol=0.08`` within 1 %). Such a pair's
    ``points`` are every other node of its finer curve, its length, energy and velocity
    the finer curve's, and ``info["next_to_ends"]`` ``(B, 2, d)`` holds the nodes next to
    ``p`` and ``q`` on the curve each length comes from (what a distance's gradient needs).

    With ``basin_tol`` and a graph start, every pair is also solved from its straight line
    (not only those whose solution came out longer than it), and the pairs whose two
    lengths differ by more than ``basin_tol`` of the shorter are solved again like bent
    pairs: the two starts led to different local minima, and on a ReLU decoder both can
    be longer than the geodesic (see :data:`BASIN_TOL`).
    """
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 1:
        raise ValueError(f"refine must be a positive integer; got {refine!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3; got {n_points!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if bend_tol is not None:
        bend_tol = _tolerance(torch.float64, bend_tol, 0.0, name="bend_tol")
    if basin_tol is not None:
        basin_tol = _tolerance(torch.float64, basin_tol, 0.0, name="basin_tol")
    extra = {k: check_options[k](v) if k in check_options else v for k, v in extra.items()}
    tol = _tolerance(p.dtype, tol, 1e-10, 1e-4)
    given_curves = isinstance(init_curve, Tensor)

    def minimised(start: Tensor, tol: float) -> list[CurveSolution]:
        """``minimise`` on memory-bounded chunks of the pairs of ``start`` (B, N, d)."""
        pairs_per_chunk = metric.evaluator.rows(chunk_kind, per_row=start.shape[1])
        return [
            minimise(metric, start[i : i + pairs_per_chunk].detach(), max_iter, tol, **extra)
            for i in range(0, start.shape[0], pairs_per_chunk)
        ]

    def coarse(p: Tensor, q: Tensor, n_points: int) -> Tensor | None:
        """Curves of ``n_points`` nodes regridded from a coarse solve (None: too few)."""
        n = coarse_points(n_points)
        if n is None:
            return None
        start = coarse(p, q, n)
        start = straight_curves(p, q, n) if start is None else start
        solutions = minimised(start, max(tol, COARSE_TOL))
        return regrid_curves(torch.cat([sol.points for sol in solutions]), n_points)

    start = _initial_curves(metric, p, q, n_points, init_curve, coarse)
    from_graph = _start_kind(init_curve, p.shape[1]) == "graph"
    if start is None:
        curve = straight_curves(p, q, n_points)
    else:
        curve, _ = batch_curves(start, metric.latent_dim, "init_curve")
        if curve.shape != (p.shape[0], n_points, p.shape[1]):
            raise ValueError(
                f"init_curve must have shape {(p.shape[0], n_points, p.shape[1])}; "
                f"got {tuple(curve.shape)}"
            )
        metric.evaluator.check_dtype_device(curve, "init_curve")
        curve = torch.cat([p[:, None], curve[:, 1:-1], q[:, None]], dim=1)

    def solved(start: Tensor) -> GeodesicResult:
        parts = []
        for sol in minimised(start, tol):
            length = sol.length
            if refine > 1:
                length = refined_length(metric, sol.points, refine, node_values=sol.decoded)
            parts.append((sol.points, length, sol.energy, sol.converged, sol.iterations))
        points, length, energy, converged, iterations = (
            torch.cat(x) for x in zip(*parts, strict=True)
        )
        return GeodesicResult(
            points, length, energy, converged, iterations, initial_velocity(points)
        )

    result = solved(curve)
    again = torch.zeros_like(result.converged)  # pairs to solve again on 2 N - 1 nodes
    if from_graph:
        result, differ = _no_longer_than_straight(
            metric, p, q, n_points, refine, result, solved, every_pair=basin_tol is not None
        )
        if basin_tol is not None:
            again |= differ > basin_tol
    result.info["next_to_ends"] = result.points[:, [1, -2]].clone()
    if bend_tol is not None:
        chord = refined_length(metric, result.points, 1)
        length = result.length.detach()
        again |= ((length - chord) > bend_tol * length) & torch.isfinite(length)
    if bool(again.any()):
        fresh = init_curve if not given_curves else "auto"
        result = _resolve_bent(metric, result, again, solved, fresh, coarse, refine)
    return result


def _resolve_bent(
    metric: PullbackMetric,
    result: GeodesicResult,
    bent: Tensor,
    solved: Callable[[Tensor], GeodesicResult],
    fresh: Any,
    coarse: Callable[[Tensor, Tensor, int], Tensor | None],
    refine: int,
) -> GeodesicResult:
    """``result`` with its ``bent`` pairs (bool, (B,)) solved again on ``2 N - 1`` nodes
    (see :func:`solve_energy`), the shorter curve kept.

    Lengths are compared at one sampling density: the ``N``-node curves measured at
    ``2 refine`` points a segment, as many as the finer curves' ``refine``. At ``refine``
    a curve that tunnels through a thin wall of the metric between its nodes reads short
    (bundled ReLU model: a 16-node curve read 31.0 at 4 points a segment, 34.0 at 8 and
    34.3 at 64, where the 31-node solve's curve measured 31.8), and kept over the
    honest finer curve it made ``dist`` 2 % too short. A kept curve's length stays the one
    measured at ``refine``.
    """
    points = result.points
    idx = bent.nonzero().squeeze(1)
    with torch.no_grad():
        best = refined_length(metric, points[idx], 2 * refine).to(result.length.dtype)
    p, q = points[idx, 0], points[idx, -1]
    fine = spline_points(points[idx].detach(), 2)
    n_fine = fine.shape[1]
    fresh_start = _initial_curves(metric, p, q, n_fine, fresh, coarse)
    # From the coarse curve resampled, and afresh: the resampled curve can rest in the
    # coarse solution's basin (one of four such pairs on the bundled model stayed 0.6 %
    # long from it, where a fresh start on 31 nodes came within 0.1 %).
    starts = [fine, straight_curves(p, q, n_fine) if fresh_start is None else fresh_start]
    for start in starts:
        again = solved(start)
        shorter = again.length < best
        best = torch.minimum(best, again.length.detach())
        rows = idx[shorter]
        if rows.numel() == 0:
            continue
        better = again.select(shorter)
        next_to_ends = better.points[:, [1, -2]]
        better.points = better.points[:, ::2]  # every other node: the coarse node count
        result = _with_rows(result, rows, better)
        result.info["next_to_ends"][rows] = next_to_ends
    return result


def _no_longer_than_straight(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    n_points: int,
    refine: int,
    result: GeodesicResult,
    solved: Callable[[Tensor], GeodesicResult],
    every_pair: bool = False,
) -> tuple[GeodesicResult, Tensor]:
    """Where a graph start's solution is longer than the straight line itself (for fewer
    than ``GRAPH_START_PAIRS`` pairs, or ``every_pair``: everywhere), the solution from the
    straight line too, and the shorter of the two; and the relative difference of the two
    lengths, ``(B,)`` (0 where the straight line was not solved).

    A coarse grid graph's path can cross a ReLU decoder's creases on the wrong side and
    lead the solver to a local minimum longer than the straight line (seen at ``N = 16``
    on the bundled model: 34.98 against 34.42). Measuring the straight line costs one
    decoding of ``B * N * refine`` points; only those pairs are solved again.
    """
    straight = straight_curves(p, q, n_points)
    differ = result.length.new_zeros(p.shape[0]).detach()
    if every_pair or p.shape[0] < GRAPH_START_PAIRS:  # few pairs: solving twice costs little
        worse = torch.arange(p.shape[0], device=p.device)
    else:
        worse = _longer_than_line(metric, straight, refine, result.length.detach())
    if len(worse) == 0:
        return result, differ
    again = solved(straight[worse])
    old_length, old_converged = result.length[worse], result.converged[worse]
    shorter = torch.minimum(again.length, old_length).detach()
    differ[worse] = ((again.length - old_length).abs().detach() / shorter).to(differ.dtype)
    take = (again.length < old_length) & (again.converged | ~old_converged)
    return _with_rows(result, worse[take], again.select(take)), differ


def _longer_than_line(metric: PullbackMetric, line: Tensor, refine: int, length: Tensor) -> Tensor:
    """Indices of the pairs whose ``length`` (B,) exceeds the refined length of their
    straight ``line`` (B, N, d).

    The chord length of the line's decoded nodes bounds its refined length from below (the
    finer polygons pass through the nodes, and the extrapolation adds ``(L - L_half) / 3 >=
    0``): only the pairs longer than that chord length have their line refined. At 24 pairs
    of the bundled model that skips most of the ``B * (N - 1) * (refine - 1)`` decoded
    points (13 ms of a 190 ms call, one thread).
    """
    b, n, d = line.shape
    with torch.no_grad():
        nodes = metric.evaluator.embed(line.reshape(-1, d)).reshape(b, n, -1)
        chord = torch.linalg.vector_norm(nodes.diff(dim=1), dim=-1).sum(-1)
        maybe = torch.nonzero(length > chord.to(length.dtype)).flatten()
        if refine == 1 or len(maybe) == 0:
            return maybe
        refined = refined_length(metric, line[maybe], refine, node_values=nodes[maybe])
    return maybe[length[maybe] > refined.to(length.dtype)]


def _with_rows(result: GeodesicResult, rows: Tensor, other: GeodesicResult) -> GeodesicResult:
    """``result`` with its ``rows`` taken from ``other`` (one row each), ``info`` kept.

    Each field is cloned, not written in place: the lengths may be in an autograd graph.
    """
    for name in ("points", "length", "energy", "converged", "iterations", "velocity"):
        value = getattr(result, name).clone()
        value[rows] = getattr(other, name).to(value.dtype)
        setattr(result, name, value)
    return result


#: Below this many pairs the start graph covers each pair's own neighbourhood (see
#: :func:`_start_box`) rather than the bounding box of all the end points.
GRAPH_START_PAIRS = 16
#: Below ``GRAPH_START_PAIRS`` pairs, every side of a pair's box is widened to at least
#: this fraction of its largest side.
PAIR_PAD = 1.0


def coarse_points(n_points: int) -> int | None:
    """Nodes of the coarse solve that starts an ``n_points``-node one under
    ``init_curve="coarse"``: a third of the segments (16 -> 6, 100 -> 34), or None below
    :data:`COARSE_MIN_POINTS`."""
    n = round((n_points - 1) / 3) + 1
    return n if n >= COARSE_MIN_POINTS else None


def _initial_curves(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    n_points: int,
    init_curve,
    coarse: Callable[[Tensor, Tensor, int], Tensor | None] | None = None,
) -> Tensor | None:
    """Resolve ``init_curve``: a tensor of curves, or None for straight lines; ``coarse``
    makes the ``"coarse"`` start (without it: straight lines)."""
    d = p.shape[1]
    kind = _start_kind(init_curve, d)
    if kind == "given":
        return init_curve
    if kind == "straight" or (kind == "coarse" and coarse is None):
        return None
    if kind == "coarse":
        return coarse(p, q, n_points)
    if not isinstance(init_curve, LatentGraph):
        init_curve = latent_graph(metric, _start_box(p, q), **START_GRAPH[d])
    return _graph_curves(metric, p, q, n_points, init_curve)


def _start_kind(init_curve, d: int) -> str:
    """What ``init_curve`` starts from in ``d`` latent dimensions: ``"given"`` curves (a
    tensor), ``"graph"`` paths (a LatentGraph, or ``"graph"``), a ``"coarse"`` solve or
    ``"straight"`` lines (also None); ``"auto"`` is ``"graph"`` in 2-D and 3-D, else
    ``"coarse"``."""
    if isinstance(init_curve, LatentGraph):
        return "graph"
    if init_curve is None:
        return "straight"
    if not isinstance(init_curve, str):
        return "given"
    if init_curve not in ("auto", "graph", "coarse", "straight"):
        raise ValueError(
            "init_curve must be a tensor, a LatentGraph, 'auto', 'graph', 'coarse', "
            f"'straight' or None; got {init_curve!r}"
        )
    if init_curve == "auto":
        return "graph" if d in (2, 3) else "coarse"
    return init_curve


def _start_box(p: Tensor, q: Tensor) -> Tensor:
    """Points whose bounding box the start graph covers, ``(M, d)``.

    Many pairs: their end points (a batch of codes spans the data). Fewer than
    ``GRAPH_START_PAIRS``: also the corners of each pair's box with every side widened to
    ``PAIR_PAD`` times its largest (a square in 2-D), as a lone pair's box is a sliver
    when its ends nearly share a coordinate, and geodesics bow out of it.
    """
    if p.shape[0] >= GRAPH_START_PAIRS:
        return torch.cat([p, q])
    mid, half = (p + q) / 2, (q - p).abs() / 2
    half = torch.maximum(half, PAIR_PAD * half.amax(-1, keepdim=True))
    return torch.cat([p, q, mid - half, mid + half])


def _graph_curves(
    metric: PullbackMetric, p: Tensor, q: Tensor, n_points: int, graph: LatentGraph
) -> Tensor:
    """Shortest grid-graph paths from ``p[i]`` to ``q[i]``, ``(B, n_points, d)``."""
    # Dijkstra's distance table is (sources, nodes): chunks of pairs bound its memory.
    parts = [
        graph_geodesics(
            metric, graph, p[i : i + 256], q[i : i + 256], n_points=n_points, paired=True
        )[1]
        for i in range(0, p.shape[0], 256)
    ]
    return torch.cat(parts)
