"""ODE family: the geodesic equation ``c'' = -Gamma(c', c')``.

:func:`exp_map` integrates it from an initial velocity, by fixed-step RK4 or by an adaptive
Dormand–Prince 5(4) method with per-curve step-size control; :func:`log_map` solves the
boundary value problem by Newton shooting on the initial velocity, warm-started by the
energy solver.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from .._core.checks import same_shape
from .._core.linalg import SingularMetricWarning
from ..metric import PullbackMetric
from ._common import GeodesicConvergenceWarning, _pair, _tolerance, initial_velocity
from .bvp import multiple_shooting
from .discrete import DISCRETE_STEPS, discrete_exp, discrete_log
from .energy import connecting_geodesic

__all__ = ["IVPInfo", "exp_map", "log_map"]

EXP_METHODS = ("rk4", "dopri5", "discrete")
LOG_METHODS = ("shooting", "multiple", "discrete")


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
        return metric.evaluator.acceleration(x, u)

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
    if not path:
        return z, v
    points = torch.stack(points, dim=1)
    if guard:
        points[~alive, 1:] = float("nan")
    return points, v


class IVPInfo(NamedTuple):
    """How :func:`exp_map` with ``method="dopri5"`` went, per curve.

    Attributes
    ----------
    converged : Tensor, shape (B,), bool
        Reached ``t`` within ``max_steps`` with every accepted step inside the tolerance,
        and stayed finite.
    steps : Tensor, shape (B,), int
        Accepted steps.
    rejected : Tensor, shape (B,), int
        Rejected steps.
    """

    converged: Tensor
    steps: Tensor
    rejected: Tensor


# Dormand–Prince 5(4) tableau (Hairer, Norsett & Wanner, Solving ODEs I, table 5.2).
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# Fifth-order weights (= the last row of A: first same as last) minus fourth-order ones.
_DP_E = (
    35 / 384 - 5179 / 57600,
    0.0,
    500 / 1113 - 7571 / 16695,
    125 / 192 - 393 / 640,
    -2187 / 6784 + 92097 / 339200,
    11 / 84 - 187 / 2100,
    -1 / 40,
)


def _dopri5(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    t: float,
    rtol: float,
    atol: float,
    max_steps: int,
    times: Tensor | None,
) -> tuple[Tensor, Tensor, IVPInfo]:
    """Batched Dormand–Prince 5(4) of the geodesic ODE, one step size per curve.

    The state ``y = (z, v)`` of each curve advances with its own step ``h``; a step is
    accepted when the RMS of the embedded error estimate, scaled by ``atol + rtol |y|``, is
    at most 1, and ``h`` follows the usual ``0.9 err^(-1/5)`` controller (clamped to
    ``[0.2, 5]``). With ``times`` (increasing, ending at ``t``), steps are cut so that every
    curve lands on each output time, and the states there are returned as ``(B, T, d)``.
    Curves that leave the finite range, exhaust ``max_steps`` or need a step below
    ``1e-12 t`` stop and are reported in ``IVPInfo.converged``; their end is NaN.
    """
    b, d = z.shape

    def f(y: Tensor) -> Tensor:
        acc = metric.evaluator.acceleration(y[:, :d], y[:, d:])
        return torch.cat([y[:, d:], acc], dim=-1)

    y = torch.cat([z, v], dim=-1)
    dtype, device = y.dtype, y.device
    targets = torch.tensor([t], dtype=dtype) if times is None else times.to(dtype)
    targets = targets.to(device)
    now = torch.zeros(b, dtype=dtype, device=device)
    slot = torch.zeros(b, dtype=torch.long, device=device)  # next output time per curve
    outs = torch.full((b, len(targets), d), float("nan"), dtype=dtype, device=device)
    steps = torch.zeros(b, dtype=torch.long, device=device)
    rejected = torch.zeros_like(steps)
    running = torch.ones(b, dtype=torch.bool, device=device)
    failed = torch.zeros_like(running)
    bound = 1e6 * (1 + y.abs().amax(-1))
    with warnings.catch_warnings():
        # A wild curve may wander into a dead region; it is reported through IVPInfo.
        warnings.simplefilter("ignore", SingularMetricWarning)
        k1 = f(y)
        # First step: 1 % of the time over which the state changes by its own size
        # (Hairer's heuristic), capped by t.
        scale = atol + rtol * y.abs()
        d0 = (y / scale).square().mean(-1).sqrt()
        d1 = (k1 / scale).square().mean(-1).sqrt()
        h = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6 * t, 0.01 * d0 / d1.clamp_min(1e-300))
        h = h.clamp(max=t)
        while True:
            act = running.nonzero().squeeze(1)
            if act.numel() == 0:
                break
            ya, ka, ha = y[act], k1[act], h[act]
            goal = targets[slot[act]]
            ha = torch.minimum(ha, goal - now[act])  # land exactly on the next output time
            hh = ha[:, None]
            ks = [ka]
            for i in range(1, 7):
                yi = ya + hh * sum(a * k for a, k in zip(_DP_A[i], ks, strict=False) if a)
                ks.append(f(yi) if torch.isfinite(yi).all() else _finite_f(f, yi))
            y_new = yi  # the 7th stage is evaluated at the fifth-order solution (FSAL)
            err_vec = hh * sum(e * k for e, k in zip(_DP_E, ks, strict=True) if e)
            scale = atol + rtol * torch.maximum(ya.abs(), y_new.abs())
            err = (err_vec / scale).square().mean(-1).sqrt()
            finite = torch.isfinite(y_new).all(-1) & torch.isfinite(ks[-1]).all(-1)
            err = torch.where(finite, err, torch.full_like(err, float("inf")))
            accept = err <= 1
            new_now = now[act] + ha
            landed = accept & (new_now >= goal - 1e-12 * t)
            y[act] = torch.where(accept[:, None], y_new, ya)
            k1[act] = torch.where(accept[:, None], ks[-1], ka)
            now[act] = torch.where(accept, torch.where(landed, goal, new_now), now[act])
            steps[act] += accept.long()
            rejected[act] += (~accept).long()
            if bool(landed.any()):
                idx = act[landed]
                outs[idx, slot[idx]] = y[idx, :d]
                slot[idx] += 1
            factor = (0.9 * err.clamp_min(1e-10) ** -0.2).clamp(0.2, 5.0)
            h_next = ha * torch.where(accept, factor, factor.clamp(max=1.0))
            # A step cut short to land on an output time does not shrink the next one.
            h[act] = torch.where(landed, torch.maximum(h_next, h[act]), h_next)
            finished = slot[act] >= len(targets)
            wild = accept & (y[act].abs().amax(-1) >= bound[act])
            stuck = (steps[act] + rejected[act] >= max_steps) | (h[act] < 1e-12 * t) | wild
            failed[act] |= stuck & ~finished
            running[act] = ~finished & ~stuck
    outs[failed] = float("nan")
    info = IVPInfo(~failed, steps, rejected)
    return outs, y[:, d:], info


def _finite_f(f, y: Tensor) -> Tensor:
    """``f`` on the finite rows of ``y``; non-finite rows give non-finite derivatives."""
    out = torch.full_like(y, float("nan"))
    ok = torch.isfinite(y).all(-1)
    if bool(ok.any()):
        out[ok] = f(y[ok])
    return out


def exp_map(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float = 1.0,
    n_steps: int | None = None,
    return_path: bool = False,
    method: str = "rk4",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 10_000,
    return_info: bool = False,
    warn: bool = True,
):
    """Riemannian exponential map by integrating the geodesic ODE.

    Parameters
    ----------
    metric : PullbackMetric
    z, v : Tensor, shape (B, d) or (d,)
        Start points and initial velocities.
    t : float, default 1
        Integration time: the result is ``gamma(t)`` with ``gamma(0) = z``,
        ``gamma'(0) = v``.
    n_steps : int, optional
        ``"rk4"``: the number of fixed steps (default 50). ``"dopri5"``: with
        ``return_path``, the path is sampled at ``n_steps + 1`` equally spaced times (the
        adaptive steps are cut to land on them; default 50); otherwise unused.
        ``"discrete"``: ``K``, the steps of the discrete geodesic (default 16; use the
        ``K`` of the :func:`log_map` whose velocity you pass).
    return_path : bool, default False
        Return the whole trajectory instead of its end point.
    method : {"rk4", "dopri5", "discrete"}, default "rk4"
        ``"rk4"``: classical fixed-step Runge–Kutta (the error is not controlled; curves
        that diverge come back as NaN with a warning). ``"dopri5"``: adaptive
        Dormand–Prince 5(4), each curve with its own step size, accurate to about
        ``rtol`` whatever the speed or curvature. ``"discrete"``: the discrete geodesic
        of :func:`~pullback_geom.geodesics.discrete.discrete_exp`, which needs only the
        decoder's values and Jacobians and so stays exact on ReLU decoders, where the
        geodesic ODE is ill-posed.
    rtol, atol : float, optional
        ``"dopri5"`` tolerances on the state ``(z, v)``: default ``1e-8`` and ``1e-10``
        in float64, ``1e-5`` and ``1e-7`` in float32.
    max_steps : int, default 10000
        ``"dopri5"``: accepted plus rejected steps per curve before it is given up.
    return_info : bool, default False
        ``"dopri5"``: also return an :class:`IVPInfo` (converged, steps, rejected);
        ``"discrete"``: a :class:`~pullback_geom.geodesics.discrete.DiscreteInfo`.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` when curves fail (their end points
        are NaN).

    Returns
    -------
    Tensor, shape (B, d) or (d,); with ``return_path``, (B, n_steps + 1, d) or (n_steps + 1, d)
        With ``return_info``, a tuple ``(points, IVPInfo)``.
    """
    z, single = metric.check_points(z)
    v, _ = metric.check_points(v, "v")
    same_shape(z, v, "z and v")
    if method not in EXP_METHODS:
        raise ValueError(f"method must be one of {EXP_METHODS}; got {method!r}")
    if not (isinstance(t, (int, float)) and t > 0 and t < float("inf")):
        raise ValueError(f"t must be a positive finite number; got {t!r}")
    if method == "discrete":
        return discrete_exp(
            metric,
            z[0] if single else z,
            v[0] if single else v,
            n_steps=DISCRETE_STEPS if n_steps is None else n_steps,
            t=t,
            return_path=return_path,
            return_info=return_info,
            warn=warn,
        )
    n_steps = 50 if n_steps is None else n_steps
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps}")
    if method == "rk4":
        if return_info:
            raise ValueError("return_info needs method='dopri5' (RK4 has no error control)")
        out, _ = _rk4(metric, z, v, t, n_steps, return_path, guard=True)
        lost = torch.isnan(out.flatten(1)).any(-1)
        if warn and bool(lost.any()):
            warnings.warn(
                f"exp_map: {int(lost.sum())} of {z.shape[0]} RK4 curves diverged (left the "
                "finite range or ran a million times past their start); their points are "
                "NaN. method='dopri5' controls the error, method='discrete' needs no "
                "smooth metric",
                GeodesicConvergenceWarning,
                stacklevel=2,
            )
        return out[0] if single else out
    low = z.dtype != torch.float64
    rtol = (1e-5 if low else 1e-8) if rtol is None else rtol
    atol = (1e-7 if low else 1e-10) if atol is None else atol
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive; got {rtol}, {atol}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}")
    times = None
    if return_path:
        times = torch.arange(1, n_steps + 1, dtype=torch.float64) * (t / n_steps)
        times[-1] = t
    with torch.no_grad():
        outs, _, info = _dopri5(metric, z, v, float(t), rtol, atol, max_steps, times)
    out = torch.cat([z[:, None], outs], dim=1) if return_path else outs[:, 0]
    if warn and not bool(info.converged.all()):
        warnings.warn(
            f"exp_map: {int((~info.converged).sum())} of {z.shape[0]} curves did not reach "
            f"t = {t:g} (diverged, or more than {max_steps} steps); their points are NaN "
            "(return_info=True says which)",
            GeodesicConvergenceWarning,
            stacklevel=2,
        )
    if single:
        out, info = out[0], IVPInfo(*(x[0] for x in info))
    return (out, info) if return_info else out


def log_map(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "shooting",
    n_points: int = 32,
    n_steps: int | None = None,
    max_newton: int = 8,
    tol: float | None = None,
    warn: bool = True,
) -> Tensor:
    """Riemannian logarithm: the initial velocity of the geodesic from ``p`` to ``q``.

    ``method="discrete"`` is the discrete logarithm of
    :func:`~pullback_geom.geodesics.discrete.discrete_log` (the inverse of
    ``exp_map(..., method="discrete")`` with the same ``n_steps``); ``"multiple"`` is
    multiple shooting on the geodesic ODE
    (:func:`~pullback_geom.geodesics.bvp.multiple_shooting`, for smooth decoders); the
    rest of this docstring describes the default, ``"shooting"``.

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
    method : {"shooting", "multiple", "discrete"}, default "shooting"
    n_points : int, default 32
        Nodes of the energy solution that starts the shooting (``"shooting"``).
    n_steps : int, optional
        RK4 steps of each shot (``"shooting"``, default 50); ``K``, the steps of the
        discrete geodesic (``"discrete"``, default 16).
    max_newton : int, default 8
    tol : float, optional
        End-point error accepted, relative to ``1 + |q - p|`` (default ``1e-9`` in float64,
        ``1e-5`` in float32).
    warn : bool, default True

    Returns
    -------
    Tensor, shape (B, d) or (d,)
    """
    if method not in LOG_METHODS:
        raise ValueError(f"method must be one of {LOG_METHODS}; got {method!r}")
    if method == "discrete":
        k = DISCRETE_STEPS if n_steps is None else n_steps
        return discrete_log(metric, p, q, n_steps=k, tol=tol, warn=warn)
    if method == "multiple":
        return multiple_shooting(metric, p, q, tol=tol, warn=warn).velocity
    n_steps = 50 if n_steps is None else n_steps
    p, q, single = _pair(metric, p, q)
    tol = _tolerance(p.dtype, tol, 1e-9)
    res = connecting_geodesic(metric, p, q, n_points=n_points, warn=False)
    x = res.points
    v = initial_velocity(x)
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
