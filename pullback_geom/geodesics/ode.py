"""ODE family: the geodesic equation ``c'' = -Gamma(c', c')`` integrated by RK4.

:func:`exp_map` integrates it from an initial velocity; :func:`log_map` solves the boundary
value problem by Newton shooting on the initial velocity, warm-started by the energy solver.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._checks import same_shape
from ..functional import SingularMetricWarning
from ..metric import PullbackMetric
from ._common import GeodesicConvergenceWarning, _pair, _tolerance
from .energy import connecting_geodesic

__all__ = ["exp_map", "log_map"]


def _rk4(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    t: float,
    n_steps: int,
    path: bool,
    guard: bool = False,
):
    """Fixed-step RK4 of the geodesic ODE, shapes ``(B, d)``.

    With ``guard``, trajectories that diverge (non-finite, or a million times farther
    than their start's scale) are frozen at their start and come back as NaN, so that one
    wild shot cannot make the decoder's metric non-finite and fail the whole batch.
    """
    h = t / n_steps

    # Inputs were checked once by the caller; skip per-stage validation in the hot loop.
    def acc(x: Tensor, u: Tensor) -> Tensor:
        return metric._map(metric._acceleration, metric.latent_dim + 5, x, u)

    z0, v0 = z, v
    bound = 1e6 * (1 + z.abs().amax(-1) + v.abs().amax(-1) * t)
    alive = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
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
        if guard:
            state = torch.cat([z, v], dim=-1)
            alive &= torch.isfinite(state).all(-1) & (state.abs().amax(-1) < bound)
            z = torch.where(alive[:, None], z, z0)
            v = torch.where(alive[:, None], v, torch.zeros_like(v0))
        if path:
            points.append(z)
    if guard:
        z = torch.where(alive[:, None], z, torch.full_like(z, float("nan")))
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
        # Wild trial shots wander into dead regions; their failure is reported once below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularMetricWarning)
            return _rk4(metric, start, w, 1.0, n_steps, False, guard=True)[0]

    # Pairs whose shots diverge are given up (the energy solution is kept for them).
    failed = torch.zeros_like(done)

    err = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    with torch.no_grad():
        for _ in range(max_newton + 1):
            act = (~done & ~failed).nonzero().squeeze(1)
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
            diverged = ~torch.isfinite(cols).all(0).all(-1) | ~torch.isfinite(err_act)
            done[act], err[act], failed[act] = ok, err_act, diverged & ~ok
            if _ == max_newton:  # the last pass only checks the last step
                break
            jac = cols.permute(1, 2, 0)  # (b, d, d)
            step, info = torch.linalg.solve_ex(jac, -residual)
            frozen = ok | diverged | (info != 0)
            step = torch.where(frozen[:, None], torch.zeros_like(step), step)
            # Newton from a good start needs small steps; cap wild ones (near conjugate
            # points the shooting Jacobian is nearly singular) to a trust radius.
            radius = 0.5 * torch.linalg.vector_norm(w, dim=-1, keepdim=True) + target[act, None]
            norm = torch.linalg.vector_norm(step, dim=-1, keepdim=True)
            v[act] = w + step * (radius / norm.clamp_min(1e-300)).clamp(max=1.0)
    if not bool(done.all()):
        v = torch.where(done[:, None], v, v0)
        if warn:
            finite = err[~done & ~failed]
            worst = f"{float(finite.max()):.3g}" if finite.numel() else "none"
            warnings.warn(
                f"log_map: shooting did not reach q within {tol:g} for "
                f"{int((~done).sum())} of {p.shape[0]} pairs ({int(failed.sum())} diverged; "
                f"largest end-point error of the others {worst}); the energy solution's "
                "velocity is returned there",
                GeodesicConvergenceWarning,
                stacklevel=2,
            )
    return v[0] if single else v
