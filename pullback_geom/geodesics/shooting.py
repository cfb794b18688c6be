"""The ``"shooting"`` boundary-value method: Newton shooting on the geodesic ODE.

The energy solution (the ``"lm"`` method) gives a second-order estimate of the initial
velocity; Newton's method on ``exp_p(v) = q`` then refines it, with the shooting Jacobian
``d exp / d v`` from central differences, all ``2 d + 1`` shots in one batched RK4 run.
Where shooting fails (conjugate points, a too-coarse ``n_steps``, a ReLU decoder's
creases) the energy curve is kept and the pair is reported unconverged.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._core.linalg import SingularMetricWarning
from ..metric import PullbackMetric
from ._common import _tolerance, curve_measures, error_info, initial_velocity, resample_curves
from ._solver import GeodesicResult, Solver
from .chord import LM
from .ode import rk4_steps

__all__ = ["SHOOTING"]


def _shooting(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    n_points: int,
    n_steps: int,
    max_newton: int,
    tol: float | None,
) -> GeodesicResult:
    """Newton shooting from the energy curve's velocity; see the module docstring."""
    for name, value in (("n_points", n_points), ("n_steps", n_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 3:
            raise ValueError(f"{name} must be an integer >= 3; got {value!r}")
    if isinstance(max_newton, bool) or not isinstance(max_newton, int) or max_newton < 0:
        raise ValueError(f"max_newton must be an integer >= 0; got {max_newton!r}")
    tol = _tolerance(p.dtype, tol, 1e-9)
    res = LM.run(metric, p, q, **{**LM.options, "n_points": n_points})
    x = res.points
    v = initial_velocity(x)
    v0 = v.clone()
    target = tol * (1 + torch.linalg.vector_norm(q - p, dim=-1))
    d = p.shape[1]
    basis = torch.eye(d, dtype=p.dtype, device=p.device)
    done = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    iterations = torch.zeros(p.shape[0], dtype=torch.long, device=p.device)

    def shoot(start: Tensor, w: Tensor) -> Tensor:
        # Wild trial shots wander into dead regions; their failure is reported once below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularMetricWarning)
            return rk4_steps(metric, start, w, 1.0, n_steps, False, guard=True)[0]

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
            iterations[act[~ok]] += 1
            jac = cols.permute(1, 2, 0)  # (b, d, d)
            step, info = torch.linalg.solve_ex(jac, -residual)
            frozen = ok | diverged | (info != 0)
            step = torch.where(frozen[:, None], torch.zeros_like(step), step)
            # Newton from a good start needs small steps; cap wild ones (near conjugate
            # points the shooting Jacobian is nearly singular) to a trust radius.
            radius = 0.5 * torch.linalg.vector_norm(w, dim=-1, keepdim=True) + target[act, None]
            norm = torch.linalg.vector_norm(step, dim=-1, keepdim=True)
            v[act] = w + step * (radius / norm.clamp_min(1e-300)).clamp(max=1.0)
    # Pairs that shooting did not bring to q keep the energy curve and its velocity.
    v = torch.where(done[:, None], v, v0)
    with torch.no_grad():
        shot, _ = rk4_steps(metric, p, v, 1.0, n_steps, True, guard=True)
    points = torch.where(done[:, None, None], shot, resample_curves(x, n_steps + 1))
    points[:, -1] = q  # within tol of the shot's end
    length, energy = curve_measures(metric, points)
    return GeodesicResult(points, length, energy, done, iterations, v, {"error": err})


#: Newton shooting on the geodesic ODE, warm-started by the energy solution (smooth
#: decoders). ``n_points``: nodes of that energy solution (32); ``n_steps``: RK4 steps of
#: each shot, and the curve's ``n_steps + 1`` nodes (50); ``max_newton``: Newton iterations
#: (8); ``tol``: the end-point error accepted, relative to ``1 + |q - p|`` (``1e-9`` in
#: float64, ``1e-5`` in float32). ``info["error"]``: the end-point error.
SHOOTING = Solver(
    "shooting",
    _shooting,
    {"n_points": 32, "n_steps": 50, "max_newton": 8, "tol": None},
    smooth_only=True,
    summary="Newton shooting on the geodesic ODE from the energy curve's velocity",
    n_nodes=lambda options: options["n_steps"] + 1,
    empty_info=error_info,
)
