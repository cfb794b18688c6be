"""The ``"discrete"`` boundary-value method: the discrete logarithm of discrete geodesic
calculus (see :mod:`~pullback_geom.geodesics.discrete`).

The energy-minimising curve with ``K + 1`` nodes (the ``"lm"`` method) gives ``c_1``;
where the discrete exp from it misses ``q`` by more than ``tol (1 + |q - p|)`` (creases of
a ReLU decoder, the energy solver's tolerance), ``c_1`` is refined by a Newton method on
``exp(c_1) = q`` (``d`` unknowns; the sensitivity of the discrete exp is propagated along
the recursion), so that the ``"discrete"`` initial-value method retraces the returned
velocity to ``q`` wherever the discrete exp is defined. ``|log_p q|_G(p)`` approximates
the distance only where ``G`` is continuous; the length of the returned curve is the
distance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._core.linalg import solve_square
from ..metric import PullbackMetric
from ._common import _tolerance, curve_measures, error_info
from ._solver import GeodesicResult, Solver
from .chord import LM
from .discrete import DISCRETE_STEPS, check_steps, discrete_path, first_step_velocity

__all__ = ["DISCRETE_LOG"]


def _discrete_log(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    n_steps: int,
    init_curve,
    tol: float | None,
    max_shooting: int,
    max_iter: int,
    energy_tol: float | None,
) -> GeodesicResult:
    """See the module docstring and :data:`DISCRETE_LOG`; ``p, q`` of shape ``(B, d)``."""
    n_steps = check_steps(n_steps)
    for name, value, least in (("max_shooting", max_shooting, 0), ("max_iter", max_iter, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
    tol = _tolerance(p.dtype, tol, 1e-6, 1e-4)
    energy_tol = _tolerance(p.dtype, energy_tol, 1e-16, 1e-7, name="energy_tol")
    b, d = p.shape
    target = tol * (1 + torch.linalg.vector_norm(q - p, dim=-1))
    node_tol = min(1e-11 if p.dtype == torch.float64 else 1e-5, tol)
    if n_steps == 1:
        curve = torch.stack([p, q], dim=1)
    else:
        # A tight energy tolerance: the node errors are about the square root of the
        # relative energy decrease the solver stops at.
        options = {"n_points": n_steps + 1, "init_curve": init_curve, "tol": energy_tol}
        # refine=1: only the nodes are used, and the chord lengths decide between a graph
        # start's solution and the straight start's.
        options = {**LM.options, **options, "max_iter": max_iter, "refine": 1}
        curve = LM.run(metric, p, q, **options).points
    first = curve[:, 1].clone()
    # The sensitivities come with the first pass: they cost d x d solves and one more
    # Jacobian per curve, where a second pass for the pairs left short (on ReLU decoders
    # a third to a half of them) would decode every node again.
    shoot = max_shooting > 0
    nodes, _, sens, values = discrete_path(metric, p, first, n_steps, node_tol, 20, tangents=shoot)
    err = _end_error(nodes, q)
    done = err <= target
    iterations = torch.zeros(b, dtype=torch.long, device=p.device)
    stalled = torch.zeros_like(done)
    for _ in range(max_shooting):
        act = (~done & ~stalled).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        iterations[act] += 1
        good = torch.isfinite(sens[act]).all(-1).all(-1)
        residual = nodes[act, -1] - q[act]
        step = torch.zeros_like(residual)
        # Where the discrete exp had no sensitivity (a node did not solve) the step stays
        # zero: the trial is rejected and the pair stops.
        if bool(good.any()):
            step[good] = solve_square(sens[act][good], -residual[good].unsqueeze(-1)).squeeze(-1)
        # A trust radius of half the first step keeps Newton out of neighbouring
        # branches of the discrete exp (across a crease or a conjugate point).
        radius = 0.5 * torch.linalg.vector_norm(first[act] - p[act], dim=-1)
        norm = torch.linalg.vector_norm(step, dim=-1).clamp_min(torch.finfo(p.dtype).tiny)
        step = step * (radius / norm).clamp(max=1.0)[:, None]
        trial = first[act] + step
        t_nodes, _, t_sens, t_values = discrete_path(
            metric, p[act], trial, n_steps, node_tol, 20, tangents=True
        )
        t_err = _end_error(t_nodes, q[act])
        better = t_err < err[act]
        rows = act[better]
        first[rows], nodes[rows], sens[rows], err[rows] = (
            trial[better],
            t_nodes[better],
            t_sens[better],
            t_err[better],
        )
        values[rows] = t_values[better]
        done[act] = err[act] <= target[act]
        # A Newton step that does not reduce the end-point error has crossed a jump of
        # the discrete exp (a node crossed a crease): the pair stops. Halving such steps
        # (up to 20 times) reached q on none of 8 batches of 50-64 pairs on the bundled
        # ReLU and smooth models, and cost ~25 % of a log on the ReLU one.
        stalled[act[~better]] = True
    # Keep the energy curve's first step where the refinement did not reach q.
    first = torch.where(done[:, None], first, curve[:, 1])
    nodes = torch.where(done[:, None, None], nodes, curve)
    # Within tol (1 + |q - p|) of the discrete exp's end where converged: the decoded end
    # moves by as little, and the energy curves' values are decoded by curve_measures.
    nodes[:, -1] = q
    values[~done] = float("nan")
    v = first_step_velocity(metric, p, first, n_steps)
    length, energy = curve_measures(metric, nodes, node_values=values)
    return GeodesicResult(nodes, length, energy, done, iterations, v, {"error": err})


def _end_error(nodes: Tensor, q: Tensor) -> Tensor:
    err = torch.linalg.vector_norm(nodes[:, -1] - q, dim=-1)
    return torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))


#: The discrete logarithm: ``c_1`` of the energy curve on ``K + 1`` nodes refined by
#: Newton shooting of the discrete exp (module docstring); right on any decoder, ReLU
#: included. ``n_steps``: ``K`` (16; use the same for the ``"discrete"`` exp);
#: ``init_curve``: the energy solver's start (``"auto"``); ``tol``: end-point error
#: accepted, relative to ``1 + |q - p|`` (``1e-6`` in float64, ``1e-4`` in float32; the
#: discrete exp amplifies an error in ``c_1`` ~1e3 over 16 steps on the bundled models);
#: ``max_shooting``: Newton iterations of the refinement (3; on ReLU decoders the discrete
#: exp jumps where a node crosses a crease and more rarely help, ``docs/geomstats.md``);
#: ``max_iter``: iterations of the energy solver (500); ``energy_tol``: its ``tol``
#: (``1e-16`` in float64, ``1e-7`` in float32: node errors are about the square root of
#: the relative energy decrease it stops at). ``converged``: the discrete exp of
#: ``velocity`` lands on ``q`` (elsewhere the energy curve's first step is returned);
#: ``info["error"]``: the end-point error.
DISCRETE_LOG = Solver(
    "discrete",
    _discrete_log,
    {
        "n_steps": DISCRETE_STEPS,
        "init_curve": "auto",
        "tol": None,
        "max_shooting": 3,
        "max_iter": 500,
        "energy_tol": None,
    },
    summary="the discrete logarithm: the energy curve's first step, refined by shooting",
    empty_info=error_info,
)
