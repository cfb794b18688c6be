"""The geodesic ODE ``c'' = -Gamma(c', c')`` as initial-value methods: ``"rk4"`` (fixed
steps) and ``"dopri5"`` (adaptive Dormand–Prince 5(4), each curve with its own step size).

Both need a smooth metric: on ReLU decoders the Christoffel symbols are zero almost
everywhere and the metric jumps across creases, so the ODE is ill-posed there
(:mod:`~pullback_geom.geodesics.discrete` is the method for those).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from .._core.linalg import SingularMetricWarning
from ..metric import PullbackMetric
from ._solver import InitialValueResult, Solver

__all__ = ["DOPRI5", "RK4"]


def rk4_steps(
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
    """How the ``"dopri5"`` method went, per curve.

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


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def _run_rk4(
    metric: PullbackMetric, z: Tensor, v: Tensor, *, t: float, path: bool, n_steps: int
) -> InitialValueResult:
    """The ``"rk4"`` method: ``n_steps`` fixed steps; the path has ``n_steps + 1`` nodes."""
    n_steps = _positive_int("n_steps", n_steps)
    with torch.no_grad():
        out, _ = rk4_steps(metric, z, v, t, n_steps, path, guard=True)
    end = out[:, -1] if path else out
    converged = torch.isfinite(end).all(-1)
    return InitialValueResult(end, converged, out if path else None)


def _run_dopri5(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float,
    path: bool,
    rtol: float | None,
    atol: float | None,
    max_steps: int,
    n_steps: int,
) -> InitialValueResult:
    """The ``"dopri5"`` method; with ``path``, the curve at ``n_steps + 1`` equally spaced
    times (the adaptive steps are cut to land on them)."""
    low = z.dtype != torch.float64
    rtol = (1e-5 if low else 1e-8) if rtol is None else rtol
    atol = (1e-7 if low else 1e-10) if atol is None else atol
    if not (isinstance(rtol, (int, float)) and isinstance(atol, (int, float))) or not (
        rtol > 0 and atol > 0
    ):
        raise ValueError(f"rtol and atol must be positive; got {rtol}, {atol}")
    max_steps = _positive_int("max_steps", max_steps)
    n_steps = _positive_int("n_steps", n_steps)
    times = None
    if path:
        times = torch.arange(1, n_steps + 1, dtype=torch.float64) * (t / n_steps)
        times[-1] = t
    with torch.no_grad():
        outs, _, info = _dopri5(metric, z, v, float(t), rtol, atol, max_steps, times)
    curve = torch.cat([z[:, None], outs], dim=1) if path else None
    stats = {"steps": info.steps, "rejected": info.rejected}
    return InitialValueResult(outs[:, -1], info.converged, curve, stats)


#: Classical fixed-step Runge–Kutta; the error is not controlled, curves that diverge are
#: NaN. ``n_steps``: steps over ``[0, t]`` (default 50).
RK4 = Solver(
    "rk4",
    _run_rk4,
    {"n_steps": 50},
    smooth_only=True,
    summary="the geodesic ODE by fixed-step RK4",
)
#: Adaptive Dormand–Prince 5(4), accurate to about ``rtol`` whatever the speed or
#: curvature. ``rtol``, ``atol``: tolerances on the state ``(z, v)`` (default ``1e-8`` and
#: ``1e-10`` in float64, ``1e-5`` and ``1e-7`` in float32); ``max_steps``: accepted plus
#: rejected steps per curve before it is given up (10,000); ``n_steps``: the path's
#: sampling (50). ``info``: ``steps`` and ``rejected`` per curve.
DOPRI5 = Solver(
    "dopri5",
    _run_dopri5,
    {"rtol": None, "atol": None, "max_steps": 10_000, "n_steps": 50},
    smooth_only=True,
    summary="the geodesic ODE by adaptive Dormand–Prince 5(4)",
    empty_info=lambda z: {
        "steps": torch.zeros(0, dtype=torch.long, device=z.device),
        "rejected": torch.zeros(0, dtype=torch.long, device=z.device),
    },
)
