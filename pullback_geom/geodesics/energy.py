"""Energy family: minimise the discrete curve energy measured in observation space.

``E = (N - 1) sum_i ||f(x_{i+1}) - f(x_i)||^2`` over the ``N - 2`` free nodes of a discrete
curve with fixed end points. The default method is a batched Levenberg–Marquardt /
Gauss–Newton method: the energy is a sum of squares whose Gauss–Newton matrix is
block-tridiagonal with ``d x d`` blocks ``J_k^T J_l``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._checks import batch_curves
from ..metric import _CHUNK_BUDGET, PullbackMetric
from ._common import (
    GeodesicConvergenceWarning,
    GeodesicResult,
    _pair,
    _tolerance,
    damped_tridiagonal_step,
    refined_length,
)
from .georce import georce
from .graph import START_GRAPH, LatentGraph, graph_geodesics, latent_graph
from .lbfgs import lbfgs

__all__ = ["connecting_geodesic", "geodesic_distance"]

#: Default nodes per curve.
N_POINTS = 16


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
        on the sphere and ~7e-4 on the seed decoder, against ~3e-3 and ~2e-2 for the
        chord length (``benchmarks/bench_geodesics.py``); raise ``n_points`` for more
        (32: ~1e-6 and ~3e-4).
    init_curve : Tensor of shape (B, N, d), LatentGraph, "auto", "graph" or "straight"
        Starting curves. ``"straight"`` (or ``None``): straight lines. ``"graph"`` (2-D
        and 3-D latent spaces): shortest paths on a coarse latent grid graph over the end
        points' box (:mod:`~pullback_geom.geodesics.graph`; 48 x 48 nodes in 2-D, 16^3 in
        3-D, ``reach=1``), which keeps the solver out of the longer local minima a
        straight start falls into on trained ReLU decoders (on ~1 pair in 10 at
        ``N = 16``, up to 50 % longer; ``docs/geodesics.md``); it costs ~0.03 s for the
        graph and ~0.4 ms per pair for Dijkstra. A
        :class:`~pullback_geom.geodesics.graph.LatentGraph`: the same with this graph
        (it must cover the end points). ``"auto"`` (default): ``"graph"`` for batches of
        at least 16 pairs in 2-D and 3-D, where the graph pays for itself, else
        ``"straight"``.
    max_iter : int, default 200
    tol : float, optional
        Stop when the predicted relative energy decrease of a step is below ``tol``
        (default ``1e-10`` in float64, ``1e-4`` in float32: lengths then converge to
        ~``tol / 2``, well under float32 curves' discretisation error).
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
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 1:
        raise ValueError(f"refine must be a positive integer; got {refine!r}")
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3; got {n_points}")
    t = torch.linspace(0, 1, n_points, dtype=p.dtype, device=p.device)[None, :, None]
    init_curve = _initial_curves(metric, p, q, n_points, init_curve)
    if init_curve is None:
        curve = p[:, None] + t * (q - p)[:, None]
        curve[:, -1] = q  # exactly, not up to rounding
    else:
        curve, _ = batch_curves(init_curve, metric.latent_dim, "init_curve")
        if curve.shape != (p.shape[0], n_points, p.shape[1]):
            raise ValueError(
                f"init_curve must have shape {(p.shape[0], n_points, p.shape[1])}; "
                f"got {tuple(curve.shape)}"
            )
        curve = torch.cat([p[:, None], curve[:, 1:-1], q[:, None]], dim=1)
    tol = _tolerance(p.dtype, tol, 1e-10, 1e-4)
    pairs_per_chunk = max(1, _CHUNK_BUDGET // (n_points * metric.obs_dim * (p.shape[1] + 1)))
    outs = []
    for i in range(0, p.shape[0], pairs_per_chunk):
        chunk = curve[i : i + pairs_per_chunk].detach()
        if solve is _levenberg_marquardt:  # it hands back its decoded nodes
            *out, values = _levenberg_marquardt(metric, chunk, max_iter, tol, return_values=True)
        else:
            out, values = list(solve(metric, chunk, max_iter, tol)), None
        if refine > 1:
            out[1] = refined_length(metric, out[0], refine, node_values=values)
        outs.append(out)
    result = GeodesicResult(*(torch.cat(parts) for parts in zip(*outs, strict=True)))
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


#: Pairs from which ``init_curve="auto"`` starts from graph paths (2-D and 3-D).
GRAPH_START_PAIRS = 16


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
        init_curve = "graph" if d in (2, 3) and p.shape[0] >= GRAPH_START_PAIRS else "straight"
    if init_curve == "straight":
        return None
    graph = latent_graph(metric, torch.cat([p, q]), **START_GRAPH[d])
    return _graph_curves(metric, p, q, n_points, graph)


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


def _levenberg_marquardt(
    metric: PullbackMetric, curve: Tensor, max_iter: int, tol: float, return_values: bool = False
) -> tuple[Tensor, ...]:
    """The ``"lm"`` method; with ``return_values``, also the decoded nodes (B, N, D)."""
    b, n_pts, d = curve.shape
    m = n_pts - 2  # free nodes
    opts = {"dtype": curve.dtype, "device": curve.device}
    ar = torch.arange(m, device=curve.device)
    length, energy_out = torch.empty(b, **opts), torch.empty(b, **opts)
    converged = torch.zeros(b, dtype=torch.bool, device=curve.device)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)

    def decode(free: Tensor) -> tuple[Tensor, Tensor]:
        """Values (B, m, D) and transposed Jacobians (B, m, d, D) of the free nodes."""
        val, jac = metric.value_and_jacobian(free.reshape(-1, d))
        return val.reshape(free.shape[0], m, -1), jac.mT.reshape(free.shape[0], m, d, -1)

    def nodes(ends: Tensor, val: Tensor) -> Tensor:
        """All decoded nodes (B, N, D), end points included."""
        return torch.cat([ends[:, :1], val, ends[:, 1:]], dim=1)

    def steps(ends: Tensor, val: Tensor) -> Tensor:
        return nodes(ends, val).diff(dim=1)

    def finish(sel: Tensor, ends: Tensor, val: Tensor, free: Tensor) -> None:
        """Write the pairs ``idx[sel]`` back: their nodes, chord length and energy."""
        x = nodes(ends[sel], val[sel])
        st = x.diff(dim=1)
        curve[idx[sel], 1:-1] = free[sel]
        if values is not None:
            values[idx[sel]] = x
        length[idx[sel]] = torch.linalg.vector_norm(st, dim=-1).sum(-1)
        energy_out[idx[sel]] = (n_pts - 1) * st.square().sum((1, 2))

    def retire(sel: Tensor, *running: Tensor) -> tuple[Tensor, ...]:
        """Mark the pairs ``idx[sel]`` converged, write them back, and drop them from the
        running tensors (``idx`` first)."""
        converged[idx[sel]] = True
        finish(sel, ends, val, free)
        return tuple(x[~sel] for x in running)

    with torch.no_grad():
        # Only the pairs still running are kept (compacted when some finish), and the free
        # nodes' values and Jacobians are carried over from the accepted trial: each
        # iteration costs one decode with Jacobian and no gathers of the Jacobians.
        idx = torch.arange(b, device=curve.device)
        ends = metric.embed(curve[:, [0, -1]].reshape(-1, d)).reshape(b, 2, -1)
        values = ends.new_empty(b, n_pts, ends.shape[-1]) if return_values else None
        free = curve[:, 1:-1].clone()
        val, jt = decode(free)
        e = (n_pts - 1) * steps(ends, val).square().sum((1, 2))
        lam = torch.full((b,), 1e-3, **opts)
        trusted = torch.zeros(b, dtype=torch.bool, device=curve.device)
        for _ in range(max_iter):
            ba = idx.numel()
            if ba == 0:
                break
            # 2 x_k - x_{k-1} - x_{k+1}, i.e. -(1/2) dS/dx_k before the Jacobian.
            lap = 2 * val
            lap[:, 1:] -= val[:, :-1]
            lap[:, :-1] -= val[:, 1:]
            lap[:, 0] -= ends[:, 0]
            lap[:, -1] -= ends[:, 1]
            # One product of all the nodes' Jacobians gives the diagonal blocks G_k and the
            # couplings J_k^T J_{k+1} (faster than two products of strided slices).
            stacked = jt.reshape(ba, m * d, -1)
            full = (stacked @ stacked.mT).reshape(ba, m, d, m, d)
            gram = full[:, ar, :, ar].transpose(0, 1)  # G_k
            couple = full[:, ar[:-1], :, ar[1:]].transpose(0, 1)  # J_k^T J_{k+1}
            grad = (jt @ lap.unsqueeze(-1)).squeeze(-1)
            # Decrease the Gauss-Newton model predicts (in units of S = E / (N - 1)).
            step, predicted, lam = damped_tridiagonal_step(2 * gram, couple, grad, lam)
            small = (n_pts - 1) * predicted <= tol * e.clamp_min(1e-300)
            # Right after an accepted step (damping lowered, the model trusted) a step that
            # promises less than ``tol`` means convergence: stop without decoding it.
            early = small & trusted
            if bool(early.any()):
                idx, ends, free, val, jt, e, lam, step, predicted = retire(
                    early, idx, ends, free, val, jt, e, lam, step, predicted
                )
                ba = idx.numel()
                if ba == 0:
                    break
            trial = free + step
            val_t, jt_t = decode(trial)
            e_t = (n_pts - 1) * steps(ends, val_t).square().sum((1, 2))
            accept = e_t <= e
            if bool(accept.all()):
                free, val, jt, e = trial, val_t, jt_t, e_t
            else:
                a3 = accept[:, None, None]
                free, val = torch.where(a3, trial, free), torch.where(a3, val_t, val)
                jt, e = torch.where(a3[..., None], jt_t, jt), torch.where(accept, e_t, e)
            lam = torch.where(accept, (lam / 3).clamp_min(1e-9), lam * 4)
            trusted = accept
            iterations[idx] += 1
            small = (n_pts - 1) * predicted <= tol * e.clamp_min(1e-300)
            done = (accept | (lam > 1e8)) & small
            if bool(done.any()):
                idx, ends, free, val, jt, e, lam, trusted = retire(
                    done, idx, ends, free, val, jt, e, lam, trusted
                )
        if idx.numel():  # ran out of iterations
            finish(torch.ones_like(idx, dtype=torch.bool), ends, val, free)
    if return_values:
        return curve, length, energy_out, converged, iterations, values
    return curve, length, energy_out, converged, iterations


def geodesic_distance(metric: PullbackMetric, p: Tensor, q: Tensor, **options) -> Tensor:
    """Geodesic distance: the length of :func:`connecting_geodesic`'s curve.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    **options
        Passed to :func:`connecting_geodesic`.

    Returns
    -------
    Tensor, shape (B,) or ()
    """
    return connecting_geodesic(metric, p, q, **options).length


#: Energy methods by name: ``(metric, curves (B, N, d), max_iter, tol) -> (curves, length,
#: energy, converged, iterations)``.
METHODS = {"lm": _levenberg_marquardt, "georce": georce, "lbfgs": lbfgs}
