"""Multiple shooting for the geodesic boundary value problem, ``c(0) = p``, ``c(1) = q``.

``[0, 1]`` is cut into ``M`` segments; the unknowns are the states ``(z_j, v_j)`` at the
segments' starts (``z_0 = p`` fixed), the equations the continuity of the flow from one
start to the next and ``z(1) = q``. Each segment is integrated by RK4 with its flow
Jacobian from forward-mode sensitivities (``torch.func.jvp`` through the core's geodesic
acceleration, all ``2d`` directions in one batch), and the block-bidiagonal system is
solved by a damped Gauss–Newton method, started from the energy solution. Short
segments keep the sensitivities moderate, so it converges where single shooting's
``d exp / d v`` is too ill-conditioned. The geodesic ODE is well-posed only on decoders
whose metric is smooth: on ReLU decoders the continuity residuals stall at the size of
the metric's jumps, and the result says so (``reached`` is False).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from .._core.linalg import SingularMetricWarning
from ..metric import PullbackMetric
from ._common import _tolerance, curve_measures, error_info, initial_velocity
from ._solver import GeodesicResult, Solver
from .chord import LM

__all__ = ["MULTIPLE"]


class _Shots(NamedTuple):
    """Geodesics of the boundary value problem, per pair.

    Attributes
    ----------
    velocity : Tensor, shape (B, d)
        ``c'(0)``: the logarithm ``log_p q``.
    points : Tensor, shape (B, M * substeps + 1, d)
        The geodesic at equally spaced times, ``p`` first and (where reached) ``q`` last.
    reached : Tensor, shape (B,), bool
        Every continuity residual and the end-point error are within ``tol (1 + |q - p|)``.
    error : Tensor, shape (B,)
        The largest of those residuals (relative to ``1 + |q - p|``).
    iterations : Tensor, shape (B,), int
    """

    velocity: Tensor
    points: Tensor
    reached: Tensor
    error: Tensor
    iterations: Tensor


def _flow(
    metric: PullbackMetric, y: Tensor, h: float, substeps: int, path: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """RK4 of ``(z, v)' = (v, a(z, v))`` over ``substeps`` steps of ``h``; ``y`` (n, 2d).

    With ``path``, also the positions after each step, ``(n, substeps, d)``.
    """
    d = y.shape[-1] // 2

    def rhs(state: Tensor) -> Tensor:
        z, v = state[:, :d], state[:, d:]
        return torch.cat([v, metric.geodesic_acceleration(z, v)], dim=-1)

    points = []
    for _ in range(substeps):
        k1 = rhs(y)
        k2 = rhs(y + 0.5 * h * k1)
        k3 = rhs(y + 0.5 * h * k2)
        k4 = rhs(y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if path:
            points.append(y[:, :d])
    return (y, torch.stack(points, dim=1)) if path else y


def _flow_and_jacobian(
    metric: PullbackMetric, y: Tensor, h: float, substeps: int
) -> tuple[Tensor, Tensor]:
    """The flow ``(n, 2d)`` and its Jacobian ``(n, 2d, 2d)`` by forward mode."""
    n, m = y.shape
    basis = torch.eye(m, dtype=y.dtype, device=y.device)
    ys = y.repeat(m, 1)  # (m n, 2d): direction i for rows i n .. (i + 1) n
    tangents = basis.repeat_interleave(n, 0)
    out, cols = torch.func.jvp(lambda s: _flow(metric, s, h, substeps), (ys,), (tangents,))
    return out[:n], cols.reshape(m, n, m).permute(1, 2, 0)


def _at_times(curve: Tensor, n: int) -> Tensor:
    """Curves ``(B, N, d)`` with nodes at ``t = k / (N - 1)``, linearly interpolated at
    ``n`` equally spaced times, ``(B, n, d)``."""
    count = curve.shape[1]
    if count == n:
        return curve
    s = torch.linspace(0, count - 1, n, dtype=curve.dtype, device=curve.device)
    lo = s.floor().long().clamp(max=count - 2)
    w = (s - lo)[None, :, None]
    return (1 - w) * curve[:, lo] + w * curve[:, lo + 1]


def _multiple_shooting(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    segments: int,
    substeps: int,
    init_curve: Tensor | None,
    max_iter: int,
    tol: float | None,
) -> _Shots:
    """Geodesics from ``p`` to ``q`` by multiple shooting on the geodesic ODE.

    Parameters
    ----------
    metric : PullbackMetric
        Its metric should be smooth (smooth activations); see the module docstring.
    p, q : Tensor, shape (B, d)
    segments : int, default 16
        ``M``, shooting segments on ``[0, 1]``.
    substeps : int, default 1
        RK4 steps per segment. On the bundled smooth model, 32 pairs: 16 x 1, 8 x 2 and
        4 x 4 all reach ``q`` on 31-32 pairs with lengths 3e-6 (median) from a dense
        energy reference; 16 x 1 is the fastest (one RK4 step per segment keeps each
        flow nearly linear, so Gauss–Newton needs ~4 iterations).
    init_curve : Tensor, shape (B, N, d), optional
        Start, its nodes equally spaced in time; default the energy solution with
        ``2 M + 1`` nodes (the ``"lm"`` method). States
        at the segments' starts are read off it (velocities by central differences).
    max_iter : int, default 30
        Gauss–Newton iterations.
    tol : float, optional
        Residuals accepted, relative to ``1 + |q - p|`` (default ``1e-9`` in float64,
        ``1e-5`` in float32).

    Returns
    -------
    _Shots
        ``velocity (B, d)``, ``points (B, M * substeps + 1, d)``, ``reached (B,)``,
        ``error (B,)``, ``iterations (B,)``.
    """
    for name, value in (("segments", segments), ("substeps", substeps), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    tol = _tolerance(p.dtype, tol, 1e-9)
    b, d = p.shape
    m = segments
    h = 1.0 / (m * substeps)
    if init_curve is None:
        options = {**LM.options, "n_points": 2 * m + 1, "refine": 1}
        init_curve = LM.run(metric, p, q, **options).points
    # States at t_j = j / M: positions and central-difference velocities of the curve at
    # 2 M + 1 equally spaced times. Its nodes are taken to be equally spaced in t, as the
    # energy solution's are (equal steps in observation space, not in latent space).
    with torch.no_grad():
        fine = _at_times(init_curve.to(p), 2 * m + 1)
    fine = torch.cat([p[:, None], fine[:, 1:-1], q[:, None]], dim=1)
    vel = torch.empty_like(fine)
    vel[:, 1:-1] = (fine[:, 2:] - fine[:, :-2]) * m
    vel[:, 0] = initial_velocity(fine)
    starts = torch.cat([fine[:, 0 : 2 * m : 2], vel[:, 0 : 2 * m : 2]], dim=-1)  # (B, M, 2d)
    scale = 1 + torch.linalg.vector_norm(q - p, dim=-1)
    iterations = torch.zeros(b, dtype=torch.long, device=p.device)
    error = torch.full((b,), float("inf"), dtype=p.dtype, device=p.device)
    reached = torch.zeros(b, dtype=torch.bool, device=p.device)
    eye = torch.eye(2 * d, dtype=p.dtype, device=p.device)
    lam = torch.full((b,), 1e-6, dtype=p.dtype, device=p.device)

    def residuals(y: Tensor, ends: Tensor, target: Tensor) -> Tensor:
        """``(B, M, 2d)``: continuity ``Phi(y_j) - y_{j+1}``; last row ``z(1) - q`` (and
        zeros for the free end velocity)."""
        res = torch.empty_like(ends)
        res[:, :-1] = ends[:, :-1] - y[:, 1:]
        res[:, -1, :d] = ends[:, -1, :d] - target
        res[:, -1, d:] = 0
        return res

    def worst(res: Tensor, rows: Tensor) -> Tensor:
        out = res.abs().amax((1, 2)) / scale[rows]
        return torch.where(torch.isfinite(out), out, torch.full_like(out, float("inf")))

    with torch.no_grad(), warnings.catch_warnings():
        # Trial states may wander into dead regions; failures are reported per pair.
        warnings.simplefilter("ignore", SingularMetricWarning)
        act = torch.arange(b, device=p.device)
        ends, jac = _flow_and_jacobian(metric, starts.reshape(-1, 2 * d), h, substeps)
        ends, jac = ends.reshape(b, m, 2 * d), jac.reshape(b, m, 2 * d, 2 * d)
        res = residuals(starts, ends, q)
        err = worst(res, act)
        for _ in range(max_iter):
            error[act] = err
            reached[act] = err <= tol
            # Six rejected steps in a row (damping 1e6 times its start): stalled, as on
            # a ReLU decoder's creases; it keeps its best states and is reported.
            run = (err > tol) & (lam[act] <= 1.0)
            if not bool(run.any()):
                break
            act = act[run]
            ends, jac, res, err = ends[run], jac[run], res[run], err[run]
            starts_a, lam_a = starts[act], lam[act]
            n = act.numel()
            # Unknowns: v_0, then (z_j, v_j) for j >= 1; equations: rows of res minus the
            # last d (the free end velocity).
            size = 2 * d * m - d
            mat = torch.zeros(n, 2 * d * m, 2 * d * m, dtype=p.dtype, device=p.device)
            for j in range(m):
                rows = slice(2 * d * j, 2 * d * (j + 1))
                mat[:, rows, rows] = jac[:, j]
                if j + 1 < m:
                    mat[:, rows, 2 * d * (j + 1) : 2 * d * (j + 2)] = -eye
            # Drop z_0's columns (fixed) and the last d rows (no equation).
            mat = mat[:, : 2 * d * m - d][:, :, d:]
            rhs = -res.reshape(n, -1)[:, :size]
            normal = mat.mT @ mat
            diag = normal.diagonal(dim1=-2, dim2=-1).mean(-1)
            eye_size = torch.eye(size, dtype=p.dtype, device=p.device)
            damped = normal + (lam_a * diag)[:, None, None] * eye_size
            # A trial state whose flow left the decoder's finite range has a non-finite
            # Jacobian: no step for that pair (it is rejected and damped like any other).
            sane = torch.isfinite(damped).all(-1).all(-1) & torch.isfinite(rhs).all(-1)
            damped = torch.where(sane[:, None, None], damped, eye_size)
            normal_rhs = torch.where(sane[:, None], (mat.mT @ rhs.unsqueeze(-1))[..., 0], 0.0)
            # Symmetric positive definite where sane: Cholesky, whose failure is a flag.
            chol, info = torch.linalg.cholesky_ex(damped)
            solved = sane & (info == 0)
            chol = torch.where(solved[:, None, None], chol, eye_size)
            step = torch.cholesky_solve(normal_rhs[..., None], chol)[..., 0]
            step = torch.where(solved[:, None], step, torch.zeros_like(step))
            full = torch.cat([torch.zeros(n, d, dtype=p.dtype, device=p.device), step], -1)
            trial = starts_a + full.reshape(n, m, 2 * d)
            finite = torch.isfinite(trial).all(-1).all(-1)
            trial = torch.where(finite[:, None, None], trial, starts_a)
            t_ends, t_jac = _flow_and_jacobian(metric, trial.reshape(-1, 2 * d), h, substeps)
            t_ends, t_jac = t_ends.reshape(n, m, 2 * d), t_jac.reshape(n, m, 2 * d, 2 * d)
            t_res = residuals(trial, t_ends, q[act])
            t_err = worst(t_res, act)
            t_norm = t_res.flatten(1).norm(dim=-1)
            accept = finite & (t_norm < res.flatten(1).norm(dim=-1))
            a3 = accept[:, None, None]
            starts_a = torch.where(a3, trial, starts_a)
            ends = torch.where(a3, t_ends, ends)
            jac = torch.where(a3[..., None], t_jac, jac)
            res = torch.where(a3, t_res, res)
            err = torch.where(accept, t_err, err)
            lam[act] = torch.where(accept, (lam_a / 10).clamp_min(1e-12), lam_a * 10)
            iterations[act] += 1
            starts[act] = starts_a
        error[act] = err
        reached[act] = err <= tol
        _, path = _flow(metric, starts.reshape(-1, 2 * d), h, substeps, path=True)
    path = path.reshape(b, m * substeps, d)
    points = torch.cat([p[:, None], path], dim=1)
    return _Shots(starts[:, 0, d:].clone(), points, reached, error, iterations)


def _run(metric: PullbackMetric, p: Tensor, q: Tensor, **options) -> GeodesicResult:
    shots = _multiple_shooting(metric, p, q, **options)
    points = shots.points.clone()
    points[:, -1] = q  # within tol of the flow's end where reached
    length, energy = curve_measures(metric, points)
    info = {"error": shots.error}
    return GeodesicResult(
        points, length, energy, shots.reached, shots.iterations, shots.velocity, info
    )


#: Multiple shooting on the geodesic ODE (smooth decoders). ``segments``: ``M`` (16);
#: ``substeps``: RK4 steps per segment (1); ``init_curve``: start curves ``(B, N, d)``,
#: default the energy solution on ``2 M + 1`` nodes; ``max_iter``: Gauss–Newton iterations
#: (30); ``tol``: residuals accepted relative to ``1 + |q - p|`` (``1e-9`` in float64,
#: ``1e-5`` in float32). The curve has ``M * substeps + 1`` nodes; ``info["error"]``: the
#: largest residual.
MULTIPLE = Solver(
    "multiple",
    _run,
    {"segments": 16, "substeps": 1, "init_curve": None, "max_iter": 30, "tol": None},
    smooth_only=True,
    summary="multiple shooting on the geodesic ODE (RK4 segments, Gauss–Newton)",
    n_nodes=lambda options: options["segments"] * options["substeps"] + 1,
    empty_info=error_info,
)
