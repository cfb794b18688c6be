"""Energy family: minimise the discrete curve energy measured in observation space.

``E = (N - 1) sum_i ||f(x_{i+1}) - f(x_i)||^2`` over the ``N - 2`` free nodes of a discrete
curve with fixed end points. The default method is a batched Levenberg–Marquardt /
Gauss–Newton method: the energy is a sum of squares whose Gauss–Newton matrix is
block-tridiagonal with ``d x d`` blocks ``J_k^T J_l``.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor

from .._core.checks import batch_curves
from ..metric import PullbackMetric
from ._common import (
    CurveSolution,
    GeodesicConvergenceWarning,
    GeodesicResult,
    _pair,
    _tolerance,
    empty_result,
    refined_length,
    spline_points,
    straight_curves,
)
from .georce import georce
from .graph import START_GRAPH, LatentGraph, graph_geodesics, latent_graph
from .lbfgs import lbfgs
from .lm import levenberg_marquardt

__all__ = ["connecting_geodesic", "geodesic_distance"]

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
#: The adapters' ``bend_tol`` for :func:`geodesic_distance` (geomstats' ``dist``,
#: stochman's ``dist2``): pairs whose decoded curve bends between its 16 nodes by more
#: than 8 % of its length are solved again on 31. On the bundled ReLU model, 213 pairs
#: (64 random ones and 149 from one code to a k-means batch) had 15 more than 1 % too
#: long at 16 nodes, the largest 2.2 %; with it none, the largest 0.6 %, with 38 of the
#: 213 solved again.
BEND_TOL = 0.08


def connecting_geodesic(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "lm",
    n_points: int = N_POINTS,
    refine: int = 4,
    init_curve: Tensor | LatentGraph | str | None = "auto",
    max_iter: int = 200,
    tol: float | None = None,
    jacobian_dtype: torch.dtype | str | None = None,
    warn: bool = True,
) -> GeodesicResult:
    """Shortest curves from ``p`` to ``q`` by minimising the observation-space energy.

    Levenberg–Marquardt on the ``N - 2`` free nodes of a discrete curve, each pair with
    its own damping and stopping test; pairs are processed in chunks so that memory is
    bounded whatever their number.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
        End points.
    method : {"lm", "georce", "lbfgs"}, default "lm"
        ``"lm"``: batched Levenberg–Marquardt on the chord energy (see the module
        docstring). ``"georce"``: :mod:`~pullback_geom.geodesics.georce`, which minimises
        the left-point metric energy ``T sum u_t^T G(z_t) u_t`` instead. ``"lbfgs"``:
        ``torch.optim.LBFGS`` on the chord energy of all pairs summed (a baseline).
    n_points : int, default 16
        ``N``, nodes per curve including the end points.
    refine : int, default 4
        ``length`` is measured on the Catmull–Rom spline through the nodes, ``refine``
        decoded points per segment and Richardson-extrapolated
        (:func:`~pullback_geom.geodesics._common.refined_length`); ``1`` gives the chord
        length of the nodes. At the defaults the median relative length error is ~1e-5
        on the sphere and ~7e-4 on the write-up's decoder, against ~3e-3 and ~2e-2 for the
        chord length (``benchmarks/bench_geodesics.py``); raise ``n_points`` for more
        (32: ~1e-6 and ~3e-4).
    init_curve : Tensor of shape (B, N, d), LatentGraph, "auto", "graph" or "straight"
        Starting curves. ``"straight"`` (or ``None``): straight lines. ``"graph"`` (2-D
        and 3-D latent spaces): shortest paths on a coarse latent grid graph over the end
        points' box (:mod:`~pullback_geom.geodesics.graph`; 48 x 48 nodes in 2-D, 16^3 in
        3-D, ``reach=1``; below 16 pairs each pair's box widened to a square), which
        keeps the solver out of the longer local minima a straight start falls into on
        trained ReLU decoders (on ~1 pair in 10 at ``N = 16``, up to 50 % longer;
        ``docs/geodesics.md``); it costs ~0.03 s for the graph and ~0.4 ms per pair for
        Dijkstra. A :class:`~pullback_geom.geodesics.graph.LatentGraph`: the
        same with this graph (it must cover the end points). ``"auto"`` (default):
        ``"graph"`` in 2-D and 3-D, else ``"straight"``. From a graph start, pairs whose
        solution comes out longer than their straight line (below 16 pairs: every pair)
        are solved from the straight line too, and the shorter solution kept.
    max_iter : int, default 200
    tol : float, optional
        Stop when the predicted relative energy decrease of a step is below ``tol``
        (default ``1e-10`` in float64, ``1e-4`` in float32: lengths then converge to
        ~``tol / 2``, well under float32 curves' discretisation error).
    jacobian_dtype : torch.dtype or str, optional
        ``method="lm"`` only: form the Gauss–Newton system from Jacobians in this dtype,
        e.g. ``torch.bfloat16`` (or ``"bfloat16"``), whose chain-rule matrix products run
        ~3x faster than float32 on CPUs with AVX-512 BF16 or AMX units (and slower on CPUs
        without them). Only the step direction is approximate (its gradient carries
        relative errors near 4e-3): the energy that accepts each step, the lengths and the
        values stay in the points' dtype. For coarse solves (``tol >= 1e-3``); below that
        the rounded gradient can keep pairs from converging. Default: the points' dtype.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` when pairs did not converge.

    Returns
    -------
    GeodesicResult
        ``points (B, N, d)``, ``length (B,)``, ``energy (B,)``, ``converged (B,)``,
        ``iterations (B,)``; unbatched if ``p`` was ``(d,)``.
    """
    p, q, single = _pair(metric, p, q)
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {method!r}")
    solve = METHODS[method]
    jacobian_dtype = _jacobian_dtype(jacobian_dtype)
    if jacobian_dtype is not None:
        if method != "lm":
            raise ValueError(f"jacobian_dtype is an option of method='lm', not {method!r}")
        solve = functools.partial(_levenberg_marquardt, jacobian_dtype=jacobian_dtype)
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 1:
        raise ValueError(f"refine must be a positive integer; got {refine!r}")
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3; got {n_points}")
    if p.shape[0] == 0:
        return empty_result(p, n_points)
    given_curves = isinstance(init_curve, Tensor)
    init_curve = _initial_curves(metric, p, q, n_points, init_curve)
    from_graph = init_curve is not None and not given_curves
    if init_curve is None:
        curve = straight_curves(p, q, n_points)
    else:
        curve, _ = batch_curves(init_curve, metric.latent_dim, "init_curve")
        if curve.shape != (p.shape[0], n_points, p.shape[1]):
            raise ValueError(
                f"init_curve must have shape {(p.shape[0], n_points, p.shape[1])}; "
                f"got {tuple(curve.shape)}"
            )
        curve = torch.cat([p[:, None], curve[:, 1:-1], q[:, None]], dim=1)
    tol = _tolerance(p.dtype, tol, 1e-10, 1e-4)

    def solved(start: Tensor) -> GeodesicResult:
        pairs_per_chunk = metric.evaluator.rows("jacobian", per_row=n_points)
        outs = []
        for i in range(0, start.shape[0], pairs_per_chunk):
            sol = solve(metric, start[i : i + pairs_per_chunk].detach(), max_iter, tol)
            length = sol.length
            if refine > 1:
                length = refined_length(metric, sol.points, refine, node_values=sol.decoded)
            outs.append((sol.points, length, sol.energy, sol.converged, sol.iterations))
        return GeodesicResult(*(torch.cat(parts) for parts in zip(*outs, strict=True)))

    result = solved(curve)
    if from_graph:
        result = _no_longer_than_straight(metric, p, q, n_points, refine, result, solved)
    if warn and not bool(result.converged.all()):
        bad = int((~result.converged).sum())
        warnings.warn(
            f"connecting_geodesic: {bad} of {p.shape[0]} pairs did not converge in "
            f"{max_iter} iterations (see result.converged); raise max_iter or n_points",
            GeodesicConvergenceWarning,
            stacklevel=2,
        )
    if single:
        result = GeodesicResult(*(getattr(result, k)[0] for k in result.__dataclass_fields__))
    return result


def _jacobian_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``dtype`` as a floating ``torch.dtype`` (names such as ``"bfloat16"`` accepted)."""
    if dtype is None:
        return None
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(
            f"jacobian_dtype must be a floating torch dtype or its name (e.g. 'bfloat16'); "
            f"got {dtype!r}"
        )
    return resolved


def _no_longer_than_straight(
    metric: PullbackMetric, p: Tensor, q: Tensor, n_points: int, refine: int, result, solved
) -> GeodesicResult:
    """Where a graph start's solution is longer than the straight line itself (for fewer
    than ``GRAPH_START_PAIRS`` pairs: everywhere), the solution from the straight line
    too, and the shorter of the two.

    A coarse grid graph's path can cross a ReLU decoder's creases on the wrong side and
    lead the solver to a local minimum longer than the straight line (seen at ``N = 16``
    on the bundled model: 34.98 against 34.42). Measuring the straight line costs one
    decoding of ``B * N * refine`` points; only those pairs are solved again.
    """
    straight = straight_curves(p, q, n_points)
    if p.shape[0] < GRAPH_START_PAIRS:  # a few pairs: solving them twice costs little
        worse = torch.arange(p.shape[0], device=p.device)
    else:
        with torch.no_grad():
            line = refined_length(metric, straight, refine).to(result.length.dtype)
        worse = torch.nonzero(result.length.detach() > line).flatten()
    if len(worse) == 0:
        return result
    again = solved(straight[worse])
    old_length, old_converged = result.length[worse], result.converged[worse]
    take = (again.length < old_length) & (again.converged | ~old_converged)
    keep = worse[take]
    fields = {}
    for name in result.__dataclass_fields__:
        value = getattr(result, name).clone()
        value[keep] = getattr(again, name)[take].to(value.dtype)
        fields[name] = value
    return GeodesicResult(**fields)


#: Below this many pairs the start graph covers each pair's own neighbourhood (see
#: :func:`_start_box`) rather than the bounding box of all the end points.
GRAPH_START_PAIRS = 16
#: Below ``GRAPH_START_PAIRS`` pairs, every side of a pair's box is widened to at least
#: this fraction of its largest side.
PAIR_PAD = 1.0


def _initial_curves(
    metric: PullbackMetric, p: Tensor, q: Tensor, n_points: int, init_curve
) -> Tensor | None:
    """Resolve ``init_curve``: a tensor of curves, or None for straight lines."""
    if isinstance(init_curve, LatentGraph):
        return _graph_curves(metric, p, q, n_points, init_curve)
    if not isinstance(init_curve, str):
        return init_curve
    if init_curve not in ("auto", "graph", "straight"):
        raise ValueError(
            "init_curve must be a tensor, a LatentGraph, 'auto', 'graph', 'straight' or "
            f"None; got {init_curve!r}"
        )
    d = p.shape[1]
    if init_curve == "auto":
        init_curve = "graph" if d in (2, 3) else "straight"
    if init_curve == "straight":
        return None
    graph = latent_graph(metric, _start_box(p, q), **START_GRAPH[d])
    return _graph_curves(metric, p, q, n_points, graph)


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


class ChordEnergy:
    """The chord energy's sum of squares ``S = sum_k ||f(z_k+1) - f(z_k)||^2 = E / (N - 1)``
    as a :class:`~pullback_geom.geodesics.lm.CurveProblem`.

    Half the Gauss–Newton matrix has the diagonal blocks ``2 G_k`` and the couplings
    ``J_k^T J_k+1``; half the gradient is ``J_k^T (2 f_k - f_k-1 - f_k+1)``. The state is
    the free nodes' values (b, m, D) and that system, formed as the nodes are decoded: the
    Jacobians (b, m, d, D), the largest tensors by far, are dropped at once instead of
    being carried (selected, indexed) through the solver's iterations.

    With ``jacobian_dtype`` (e.g. ``torch.bfloat16``) the Jacobians and their products are
    formed in that dtype and the system returned in the nodes' dtype: an approximate
    Gauss–Newton system, while the energy that accepts or rejects each step stays exact.
    """

    def __init__(
        self, metric: PullbackMetric, curve: Tensor, jacobian_dtype: torch.dtype | None = None
    ) -> None:
        self.metric, self.jacobian_dtype = metric, jacobian_dtype
        b, _, self.d = curve.shape
        self.ends = metric.embed(curve[:, [0, -1]].reshape(-1, self.d)).reshape(b, 2, -1)

    def decode(self, free: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, m, d = free.shape
        val, jac = self.metric.value_and_jacobian(
            free.reshape(-1, d), tangent_dtype=self.jacobian_dtype
        )
        val, jt = val.reshape(b, m, -1), jac.mT.reshape(b, m, d, -1)
        ends = self.ends[idx]
        ar = torch.arange(m, device=val.device)
        # 2 x_k - x_{k-1} - x_{k+1}, i.e. -(1/2) dS/dx_k before the Jacobian.
        lap = 2 * val
        lap[:, 1:] -= val[:, :-1]
        lap[:, :-1] -= val[:, 1:]
        lap[:, 0] -= ends[:, 0]
        lap[:, -1] -= ends[:, 1]
        # One product of all the nodes' Jacobians gives the diagonal blocks G_k and the
        # couplings J_k^T J_{k+1} (faster than two products of strided slices).
        stacked = jt.reshape(b, m * d, -1)
        full = (stacked @ stacked.mT).to(val.dtype).reshape(b, m, d, m, d)
        gram = full[:, ar, :, ar].transpose(0, 1)  # G_k
        couple = full[:, ar[:-1], :, ar[1:]].transpose(0, 1)  # J_k^T J_{k+1}
        grad = (jt @ lap.to(jt.dtype).unsqueeze(-1)).squeeze(-1).to(val.dtype)
        return val, 2 * gram, couple, grad

    def decode_values(self, free: Tensor, idx: Tensor) -> Tensor:
        b, m, d = free.shape
        return self.metric.embed(free.reshape(-1, d)).reshape(b, m, -1)

    def nodes(self, val: Tensor, idx: Tensor) -> Tensor:
        """All decoded nodes (b, N, D), end points included."""
        ends = self.ends[idx]
        return torch.cat([ends[:, :1], val, ends[:, 1:]], dim=1)

    def objective(self, state: tuple[Tensor, ...], idx: Tensor) -> Tensor:
        return self.nodes(state[0], idx).diff(dim=1).square().sum((1, 2))

    def system(self, state: tuple[Tensor, ...], idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return state[1], state[2], state[3]


def _levenberg_marquardt(
    metric: PullbackMetric,
    curve: Tensor,
    max_iter: int,
    tol: float,
    jacobian_dtype: torch.dtype | None = None,
) -> CurveSolution:
    """The ``"lm"`` method: :func:`~pullback_geom.geodesics.lm.levenberg_marquardt` on
    :class:`ChordEnergy`."""
    n_pts = curve.shape[1]
    problem = ChordEnergy(metric, curve, jacobian_dtype)
    idx = torch.arange(curve.shape[0], device=curve.device)
    out = levenberg_marquardt(problem, curve[:, 1:-1], max_iter, tol)
    points = torch.cat([curve[:, :1], out.free, curve[:, -1:]], dim=1)
    decoded = problem.nodes(out.values, idx)
    steps = decoded.diff(dim=1)
    length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
    energy = (n_pts - 1) * steps.square().sum((1, 2))
    return CurveSolution(points, length, energy, out.converged, out.iterations, decoded)


def geodesic_distance(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    bend_tol: float | None = None,
    return_converged: bool = False,
    return_end_nodes: bool = False,
    **options,
) -> Tensor | tuple[Tensor, ...]:
    """Geodesic distance: the length of :func:`connecting_geodesic`'s curve.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    bend_tol : float, optional
        Pairs whose decoded curve bends between its nodes, its refined length exceeding
        the chord length of its nodes by more than this fraction, are solved again with
        twice the segments (``2 N - 1`` nodes), from their curve resampled on the spline
        through its nodes and from a fresh start, and the shortest length kept. On a ReLU
        decoder a long curve crosses many creases, and 16 nodes then cannot follow its
        geodesic: on the bundled model pairs ~28 long came out up to 2.2 % too long, and
        with ``bend_tol=0.08`` (a sixth of the pairs solved again) within 1 %.
    return_converged : bool, default False
        Also return whether the solve each length comes from converged.
    return_end_nodes : bool, default False
        Also return the nodes next to ``p`` and to ``q`` on the curve each length comes
        from, ``c_1`` and ``c_{N-2}``, shape (B, d) or (d,) each: what the distance's
        gradient needs, ``-J(p)^T u`` at ``p`` with ``u`` the unit chord from ``f(p)``
        to ``f(c_1)`` (the derivative of the decoded polygon's length in its end point,
        right on ReLU decoders too; on the sphere within 0.6 % of the exact gradient at
        16 nodes, where ``G(p)`` times the first step is 6 % off).
    **options
        Passed to :func:`connecting_geodesic`.

    Returns
    -------
    Tensor, shape (B,) or ()
        With ``return_converged`` or ``return_end_nodes``, a tuple: the length, then
        ``converged``, then the nodes next to ``p`` and to ``q``, as asked for.
    """
    if bend_tol is not None:  # checked before the solve it would follow
        bend_tol = _tolerance(torch.float64, bend_tol, 0.0, name="bend_tol")
    result = connecting_geodesic(metric, p, q, **options)
    single = result.length.dim() == 0
    points = result.points[None] if single else result.points
    length = result.length.reshape(-1).clone()
    converged = result.converged.reshape(-1).clone()
    ends = [points[:, 1].clone(), points[:, -2].clone()]
    bent = torch.zeros_like(converged)
    if bend_tol is not None:
        chord = refined_length(metric, points, 1)
        bent = ((length - chord) > bend_tol * length) & torch.isfinite(length)
    if bool(bent.any()):
        a, b = points[bent, 0], points[bent, -1]
        fine = spline_points(points[bent].detach(), 2)
        n_fine = fine.shape[1]
        # From the coarse curve resampled, and afresh: the resampled curve can rest in the
        # coarse solution's basin (one of four such pairs on the bundled model stayed
        # 0.6 % long from it, where a fresh start on 31 nodes came within 0.1 %).
        for start in (fine, options.get("init_curve", "auto")):
            if isinstance(start, Tensor) and start.shape[1] != n_fine:
                continue  # the caller's own start curves have the coarse node count
            again = connecting_geodesic(
                metric, a, b, **{**options, "n_points": n_fine, "init_curve": start}
            )
            shorter = again.length < length[bent]
            length[bent] = torch.where(shorter, again.length, length[bent])
            converged[bent] = torch.where(shorter, again.converged, converged[bent])
            for mine, theirs in zip(ends, (again.points[:, 1], again.points[:, -2]), strict=True):
                mine[bent] = torch.where(shorter[:, None], theirs, mine[bent])
    out = (
        (length,)
        + ((converged,) if return_converged else ())
        + (tuple(ends) if return_end_nodes else ())
    )
    if single:
        out = tuple(x[0] for x in out)
    return out if len(out) > 1 else out[0]


#: Energy methods by name, one interface: ``(metric, curves (B, N, d), max_iter, tol) ->``
#: :class:`~pullback_geom.geodesics._common.CurveSolution`. ``converged`` means the
#: method's relative energy-decrease or gradient criterion was met, never that its damping
#: or line search gave up.
METHODS = {"lm": _levenberg_marquardt, "georce": georce, "lbfgs": lbfgs}
