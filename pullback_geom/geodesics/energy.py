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
    refined_length,
)
from .georce import georce
from .lbfgs import lbfgs

__all__ = ["connecting_geodesic", "geodesic_distance"]


def connecting_geodesic(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "lm",
    n_points: int = 32,
    refine: int = 8,
    init_curve: Tensor | str | None = None,
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
    n_points : int, default 32
        ``N``, nodes per curve including the end points.
    refine : int, default 8
        ``length`` is measured on the latent polygon with each segment split into
        ``refine`` pieces (:func:`~pullback_geom.geodesics._common.refined_length`);
        ``1`` gives the chord length of the nodes. At the defaults the median relative
        length error is ~2e-6 on the sphere (largest 6e-5) and ~3e-4 on the seed decoder,
        against ~3e-5 and ~2.5e-3 for the chord length (``benchmarks/bench_geodesics.py``).
    init_curve : Tensor of shape (B, N, d), or "graph", optional
        Starting curves; default straight lines. ``"graph"`` (2-D and 3-D latent spaces):
        shortest paths on a latent grid graph over the end points' box
        (:mod:`~pullback_geom.geodesics.graph`), which keeps the solver out of the longer
        local minima a straight start can fall into on trained ReLU decoders (up to ~9%
        longer on a few pairs in a hundred, ``docs/geodesics.md``); costs a graph build
        and one Dijkstra search per pair.
    max_iter : int, default 200
    tol : float, optional
        Stop when the predicted relative energy decrease of a step is below ``tol``
        (default ``1e-10`` in float64, ``1e-5`` in float32).
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
    if isinstance(init_curve, str):
        if init_curve != "graph":
            raise ValueError(f"init_curve must be a tensor, 'graph' or None; got {init_curve!r}")
        init_curve = _graph_curves(metric, p, q, n_points)
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
    tol = _tolerance(p.dtype, tol, 1e-10)
    pairs_per_chunk = max(1, _CHUNK_BUDGET // (n_points * metric.obs_dim * (p.shape[1] + 1)))
    outs = [
        solve(metric, curve[i : i + pairs_per_chunk].detach(), max_iter, tol)
        for i in range(0, p.shape[0], pairs_per_chunk)
    ]
    result = GeodesicResult(*(torch.cat(parts) for parts in zip(*outs, strict=True)))
    if refine > 1:
        result.length = refined_length(metric, result.points, refine)
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


def _graph_curves(metric: PullbackMetric, p: Tensor, q: Tensor, n_points: int) -> Tensor:
    """Shortest grid-graph paths from ``p[i]`` to ``q[i]``, ``(B, n_points, d)``."""
    from .graph import graph_geodesics, latent_graph

    graph = latent_graph(metric, torch.cat([p, q]))
    # Dijkstra's distance table is (sources, nodes): chunks of pairs bound its memory.
    parts = [
        graph_geodesics(
            metric, graph, p[i : i + 256], q[i : i + 256], n_points=n_points, paired=True
        )[1]
        for i in range(0, p.shape[0], 256)
    ]
    return torch.cat(parts)


def _levenberg_marquardt(
    metric: PullbackMetric, curve: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, ...]:
    b, n_pts, d = curve.shape
    m = n_pts - 2  # free nodes
    ar = torch.arange(m, device=curve.device)
    lam = torch.full((b,), 1e-3, dtype=curve.dtype, device=curve.device)
    converged = torch.zeros(b, dtype=torch.bool, device=curve.device)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)

    def energy(c: Tensor) -> Tensor:
        x = metric.embed(c.reshape(-1, d)).reshape(c.shape[0], n_pts, -1)
        return (n_pts - 1) * x.diff(dim=1).square().sum((1, 2))

    with torch.no_grad():
        e = energy(curve)
        for _ in range(max_iter):
            act = (~converged).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            c = curve[act]
            ba = act.numel()
            val, jac = metric.value_and_jacobian(c.reshape(-1, d))
            val = val.reshape(ba, n_pts, -1)
            jac = jac.reshape(ba, n_pts, -1, d)
            r = val.diff(dim=1)  # (ba, N-1, D)
            ji = jac[:, 1:-1]  # (ba, m, D, d)
            gram = ji.mT @ ji  # G_k
            grad = (ji.mT @ (r[:, :-1] - r[:, 1:]).unsqueeze(-1)).squeeze(-1)  # -(1/2) dS/dx_k
            couple = ji[:, :-1].mT @ ji[:, 1:]  # J_k^T J_{k+1}
            scale = gram.diagonal(dim1=-2, dim2=-1).mean((-1, -2)).clamp_min(1e-30)
            eye = torch.eye(d, dtype=c.dtype, device=c.device)
            blocks = torch.zeros(ba, m, m, d, d, dtype=c.dtype, device=c.device)
            blocks[:, ar[:-1], ar[1:]] = -couple
            blocks[:, ar[1:], ar[:-1]] = -couple.mT
            base = 2 * gram
            while True:
                blocks[:, ar, ar] = base + (lam[act] * scale)[:, None, None, None] * eye
                mat = blocks.permute(0, 1, 3, 2, 4).reshape(ba, m * d, m * d)
                chol, info = torch.linalg.cholesky_ex(mat)
                if not bool((info != 0).any()):
                    break
                lam[act] = torch.where(info != 0, lam[act] * 10, lam[act])
            rhs = -grad.reshape(ba, m * d, 1)
            step = torch.cholesky_solve(rhs, chol)
            # Decrease the Gauss-Newton model predicts (in units of S = E / (N - 1)).
            predicted = (step * rhs).sum((1, 2))
            trial = c.clone()
            trial[:, 1:-1] += step.reshape(ba, m, d)
            e_trial = energy(trial)
            accept = e_trial <= e[act]
            curve[act] = torch.where(accept[:, None, None], trial, c)
            e[act] = torch.where(accept, e_trial, e[act])
            lam[act] = torch.where(accept, (lam[act] / 3).clamp_min(1e-9), lam[act] * 4)
            iterations[act] += 1
            small = (n_pts - 1) * predicted <= tol * e[act].clamp_min(1e-300)
            converged[act] = (accept | (lam[act] > 1e8)) & small
        x = metric.embed(curve.reshape(-1, d)).reshape(b, n_pts, -1)
        steps = x.diff(dim=1)
        length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
        e = (n_pts - 1) * steps.square().sum((1, 2))
    return curve, length, e, converged, iterations


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
