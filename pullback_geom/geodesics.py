"""Geodesics of a :class:`~pullback_geom.PullbackMetric`, batched over pairs.

Two families, as in the seed:

* the geodesic ODE ``c'' = -Gamma(c', c')`` integrated by RK4 (:func:`exp_map`), and
  boundary values by Newton shooting on the initial velocity (:func:`log_map`);
* minimisation of the discrete curve energy measured in observation space,
  ``E = n sum_i ||f(x_{i+1}) - f(x_i)||^2`` (:func:`connecting_geodesic`), by a batched
  Levenberg–Marquardt / Gauss–Newton method: the energy is a sum of squares whose
  Gauss–Newton matrix is block-tridiagonal with ``d x d`` blocks ``J_k^T J_l``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import batch_curves, same_shape
from .metric import _CHUNK_BUDGET, PullbackMetric

__all__ = [
    "GeodesicResult",
    "GeodesicConvergenceWarning",
    "connecting_geodesic",
    "exp_map",
    "log_map",
    "geodesic_distance",
]


class GeodesicConvergenceWarning(RuntimeWarning):
    """A geodesic solver stopped before meeting its tolerance for some pairs."""


@dataclass
class GeodesicResult:
    """Connecting geodesics of ``B`` pairs.

    Attributes
    ----------
    points : Tensor, shape (B, N, d)
        The discrete curves, end points included.
    length : Tensor, shape (B,)
        Length of the decoded polygon (observation space).
    energy : Tensor, shape (B,)
        Its discrete energy, ``(N - 1) * sum ||f(x_{i+1}) - f(x_i)||^2``.
    converged : Tensor, shape (B,), bool
    iterations : Tensor, shape (B,), int
    """

    points: Tensor
    length: Tensor
    energy: Tensor
    converged: Tensor
    iterations: Tensor


def _pair(metric: PullbackMetric, p, q) -> tuple[Tensor, Tensor, bool]:
    p, single = metric._points(p, "p")
    q, _ = metric._points(q, "q")
    same_shape(p, q, "p and q")
    return p, q, single


def _tolerance(dtype: torch.dtype, tol: float | None, default64: float) -> float:
    if tol is not None:
        return tol
    return default64 if dtype == torch.float64 else max(default64, 1e-5)


def connecting_geodesic(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    n_points: int = 32,
    init_curve: Tensor | None = None,
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
    n_points : int, default 32
        ``N``, nodes per curve including the end points.
    init_curve : Tensor, shape (B, N, d), optional
        Starting curves (e.g. from a graph search); default straight lines.
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
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3; got {n_points}")
    t = torch.linspace(0, 1, n_points, dtype=p.dtype, device=p.device)[None, :, None]
    if init_curve is None:
        curve = p[:, None] + t * (q - p)[:, None]
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
        _levenberg_marquardt(metric, curve[i : i + pairs_per_chunk].detach(), max_iter, tol)
        for i in range(0, p.shape[0], pairs_per_chunk)
    ]
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


def _rk4(metric: PullbackMetric, z: Tensor, v: Tensor, t: float, n_steps: int, path: bool):
    h = t / n_steps
    # Inputs were checked once by the caller; skip per-stage validation in the hot loop.
    def acc(x: Tensor, u: Tensor) -> Tensor:
        return metric._map(metric._acceleration, metric.latent_dim + 5, x, u)

    points = [z]
    for _ in range(n_steps):
        a1 = acc(z, v)
        z2, v2 = z + 0.5 * h * v, v + 0.5 * h * a1
        a2 = acc(z2, v2)
        z3, v3 = z + 0.5 * h * v2, v + 0.5 * h * a2
        a3 = acc(z3, v3)
        z4, v4 = z + h * v3, v + h * a3
        a4 = acc(z4, v4)
        z = z + h / 6 * (v + 2 * v2 + 2 * v3 + v4)
        v = v + h / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
        if path:
            points.append(z)
    return (torch.stack(points, dim=1), v) if path else (z, v)


def exp_map(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float = 1.0,
    n_steps: int = 50,
    return_path: bool = False,
) -> Tensor:
    """Riemannian exponential map by fixed-step RK4 on the geodesic ODE.

    Parameters
    ----------
    metric : PullbackMetric
    z, v : Tensor, shape (B, d) or (d,)
        Start points and initial velocities.
    t : float, default 1
        Integration time: the result is ``gamma(t)`` with ``gamma(0) = z``,
        ``gamma'(0) = v``.
    n_steps : int, default 50
    return_path : bool, default False
        Return the whole trajectory instead of its end point.

    Returns
    -------
    Tensor, shape (B, d) or (d,); with ``return_path``, (B, n_steps + 1, d) or (n_steps + 1, d)
    """
    z, single = metric._points(z)
    v, _ = metric._points(v, "v")
    same_shape(z, v, "z and v")
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps}")
    out, _ = _rk4(metric, z, v, t, n_steps, return_path)
    return out[0] if single else out


def log_map(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    n_points: int = 32,
    n_steps: int = 50,
    max_newton: int = 8,
    tol: float | None = None,
    warn: bool = True,
) -> Tensor:
    """Riemannian logarithm: the initial velocity of the geodesic from ``p`` to ``q``.

    The energy solution (:func:`connecting_geodesic`) gives a second-order estimate of
    the initial velocity; Newton's method on ``exp_map(p, v) = q`` then refines it, with
    the shooting Jacobian ``d exp / d v`` from central differences, all ``2d + 1`` shots
    in one batched RK4 run. Where shooting fails (conjugate points, a too-coarse
    ``n_steps``) the energy estimate is kept and a :class:`GeodesicConvergenceWarning` is
    raised.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    n_points : int, default 32
        Nodes of the energy solution that starts the shooting.
    n_steps : int, default 50
        RK4 steps of each shot.
    max_newton : int, default 8
    tol : float, optional
        End-point error accepted, relative to ``1 + |q - p|`` (default ``1e-9`` in float64,
        ``1e-5`` in float32).
    warn : bool, default True

    Returns
    -------
    Tensor, shape (B, d) or (d,)
    """
    p, q, single = _pair(metric, p, q)
    tol = _tolerance(p.dtype, tol, 1e-9)
    res = connecting_geodesic(metric, p, q, n_points=n_points, warn=False)
    x = res.points
    v = (n_points - 1) * (-1.5 * x[:, 0] + 2 * x[:, 1] - 0.5 * x[:, 2])
    v0 = v.clone()
    target = tol * (1 + torch.linalg.vector_norm(q - p, dim=-1))
    d = p.shape[1]
    basis = torch.eye(d, dtype=p.dtype, device=p.device)
    done = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)

    def shoot(start: Tensor, w: Tensor) -> Tensor:
        return _rk4(metric, start, w, 1.0, n_steps, False)[0]

    err = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    with torch.no_grad():
        for _ in range(max_newton + 1):
            act = (~done).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            b, w = act.numel(), v[act]
            # The shooting Jacobian d exp / d v by central differences: all 2d + 1 shots in
            # one batched RK4 run (cheaper than forward mode through every RK4 stage).
            h = torch.finfo(w.dtype).eps ** (1 / 3) * (1 + w.abs().amax(-1, keepdim=True))
            offsets = basis[:, None] * h  # (d, b, d)
            shots = torch.cat([w, (w + offsets).reshape(-1, d), (w - offsets).reshape(-1, d)])
            ends = shoot(p[act].repeat(2 * d + 1, 1), shots)
            end = ends[:b]
            plus, minus = ends[b:].reshape(2, d, b, d)
            cols = (plus - minus) / (2 * h)  # (d, b, d): column i of each Jacobian
            residual = end[:b] - q[act]
            err_act = torch.linalg.vector_norm(residual, dim=-1)
            ok = err_act <= target[act]
            done[act], err[act] = ok, err_act
            if _ == max_newton:  # the last pass only checks the last step
                break
            jac = cols.permute(1, 2, 0)  # (b, d, d)
            step, info = torch.linalg.solve_ex(jac, -residual)
            step = torch.where((ok | (info != 0))[:, None], torch.zeros_like(step), step)
            # Newton from a good start needs small steps; cap wild ones (near conjugate
            # points the shooting Jacobian is nearly singular) to a trust radius.
            radius = 0.5 * torch.linalg.vector_norm(w, dim=-1, keepdim=True) + target[act, None]
            norm = torch.linalg.vector_norm(step, dim=-1, keepdim=True)
            v[act] = w + step * (radius / norm.clamp_min(1e-300)).clamp(max=1.0)
    if not bool(done.all()):
        v = torch.where(done[:, None], v, v0)
        if warn:
            warnings.warn(
                f"log_map: shooting did not reach q within {tol:g} for "
                f"{int((~done).sum())} of {p.shape[0]} pairs (largest end-point error "
                f"{float(err.max()):.3g}); the energy solution's velocity is returned there",
                GeodesicConvergenceWarning,
                stacklevel=2,
            )
    return v[0] if single else v


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
