"""Descent on the measured Fréchet function from the joint mean (``frechet_mean(polish=True)``).

On a piecewise-linear decoder the joint solve's objective, the chord energies of the
discrete curves, is rough as a function of the mean: the chords cut the decoded curves'
corners at the creases by amounts that change as nodes cross them, so it has local
minima ~0.01 apart in the bundled ReLU model's latent plane, and the joint solve stops in
one of them. The Fréchet function measured as the energy solvers measure lengths (the
decoded spline through the nodes, :func:`~pullback_geom.geodesics._common.refined_length`)
is smooth there: on 50 codes of a digit 3 it fell by 2.2e-3 of itself over the 0.03 from
the joint mean to geomstats' gradient-descent mean, monotonically.

From the joint mean, steps along that function's gradient by the first-variation formula,
``-2 sum_i w_i L_i u_i / sum_i w_i`` (``L_i`` the measured length, ``u_i`` the unit initial
direction of curve ``i``), are tried on the curves moved with the mean (their measured
lengths bound the shortest curves' from above, so a step that lowers the bound lowers the
function). A step that does not lower it is halved; an accepted one doubles the next.
The curves are then solved again at the final mean, held fixed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from ._common import refined_length
from .api import connecting_geodesic
from .discrete import first_step_velocity

__all__ = ["START_TOL", "polish"]

#: The joint solve's relative tolerance when it only starts the descent (at least): the
#: descent moves the mean further than the last iterations of a tighter solve would
#: (bundled ReLU model, 50 codes of each digit: 4-59 iterations instead of 7-68, the
#: polished means' Fréchet functions within 1e-4 of those from a joint solve to 1e-7;
#: a second round of descent from the curves solved again gained less than 1e-4).
START_TOL = 1e-5
#: Step passes at most: each tries one step per set (accepted, or halved).
MAX_PASSES = 16
#: A set stops (converged) when its accepted step lowers the function by less than this
#: fraction of it, or when :data:`MAX_FAILS` halved steps in a row did not lower it (the
#: function is not smooth at its minimum, so its gradient need not vanish there; on the
#: bundled ReLU model further halvings, to 1/32 of a step, never lowered it again).
POLISH_TOL = 1e-6
MAX_FAILS = 2
#: Step sizes relative to the gradient's Newton step ``-grad / 2`` (that of ``sum_i w_i
#: |m - x_i|^2 / sum_i w_i`` in the metric at the mean): first tried and largest.
FIRST_STEP, MAX_STEP = 1.0, 4.0


def polish(
    metric: PullbackMetric,
    x: Tensor,
    w: Tensor,
    mean: Tensor,
    curves: Tensor,
    lengths: Tensor,
    refine: int,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Descend the measured Fréchet function of the sets ``x`` (k, n, d), weights ``w``
    (k, n), from the joint ``mean`` (k, d) with its ``curves`` (k, n, N, d) and their
    measured ``lengths`` (k, n); see the module docstring.

    Returns the mean (k, d), the curves solved again at it (k, n, N, d; NaN where ``w``
    is 0), their lengths (k, n), the Fréchet function they give (k,), their initial
    velocities (k, n, d), the gradient's norm ``|grad F|_G`` at the mean (k,), and
    whether each set converged (its descent stopped by its own rule and its curves'
    solves converged).
    """
    k, n, d = x.shape
    owner, index = (w > 0).nonzero(as_tuple=True)
    state = _State(metric, owner, w[owner, index], w.sum(1), x[owner, index], refine)
    mean, nodes, length = mean.clone(), curves[owner, index], lengths[owner, index]
    # Sets whose points coincide have nothing to descend (their lengths are all zero).
    running = state.value(length) > 0
    mean, nodes, length, stopped = state.descend(mean, nodes, length, running)
    nodes, length, solved = state.solve_curves(mean, nodes, tol, max_iter)
    velocity = state.velocity(mean, nodes)
    grad = state.gradient(mean, length, velocity)
    norm = metric.inner(mean, grad, grad).clamp_min(0).sqrt()
    converged = stopped & (_per_set((~solved).to(x.dtype), owner, k) == 0)
    n_points = curves.shape[-2]
    all_curves = x.new_full((k, n, n_points, d), float("nan"))
    all_curves[owner, index] = nodes
    all_lengths = x.new_full((k, n), float("nan"))
    all_lengths[owner, index] = length
    velocities = x.new_full((k, n, d), float("nan"))
    velocities[owner, index] = velocity
    return mean, all_curves, all_lengths, state.value(length), velocities, norm, converged


class _State:
    """The sets' curves flattened: curve ``i`` of set ``owner[i]``, weight ``weight[i]``,
    end ``ends[i]``; ``total`` (k,) the sets' weights."""

    def __init__(
        self,
        metric: PullbackMetric,
        owner: Tensor,
        weight: Tensor,
        total: Tensor,
        ends: Tensor,
        refine: int,
    ) -> None:
        self.metric, self.owner, self.weight, self.total = metric, owner, weight, total
        self.ends, self.refine, self.k = ends, refine, total.shape[0]

    def value(self, length: Tensor) -> Tensor:
        """The measured Fréchet function (k,) from the curves' lengths (P,)."""
        return _per_set(self.weight * length.square(), self.owner, self.k) / self.total

    def velocity(self, mean: Tensor, nodes: Tensor, rows: Tensor | None = None) -> Tensor:
        """The initial velocities (P, d) of the curves ``nodes`` (P, N, d) at their sets'
        means; of the curves ``rows`` only, if given."""
        owner = self.owner if rows is None else self.owner[rows]
        nodes = nodes if rows is None else nodes[rows]
        return first_step_velocity(self.metric, mean[owner], nodes[:, 1], nodes.shape[1] - 1)

    def gradient(self, mean: Tensor, length: Tensor, velocity: Tensor) -> Tensor:
        """``-2 sum_i w_i L_i u_i / sum_i w_i`` (k, d): ``u_i`` the unit initial direction
        of curve ``i`` in the metric at its set's mean; curves of zero length add nothing."""
        speed = self.metric.norm(mean[self.owner], velocity)
        tiny = torch.finfo(speed.dtype).tiny
        unit = torch.where((speed > 0)[:, None], velocity / speed.clamp_min(tiny)[:, None], 0)
        pulls = (self.weight * length)[:, None] * unit
        return -2 * torch.zeros_like(mean).index_add_(0, self.owner, pulls) / self.total[:, None]

    def descend(
        self, mean: Tensor, nodes: Tensor, length: Tensor, running: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Steps of the ``running`` sets on curves moved with the mean; returns the mean,
        nodes, lengths and which sets stopped by the rule."""
        owner, k = self.owner, self.k
        mean, nodes, length = mean.clone(), nodes.clone(), length.clone()
        value = self.value(length)
        velocity = self.velocity(mean, nodes)
        step = torch.full((k,), FIRST_STEP, dtype=mean.dtype, device=mean.device)
        fails = torch.zeros(k, dtype=torch.long, device=mean.device)
        running = running.clone()
        ramp = torch.linspace(1, 0, nodes.shape[1], dtype=mean.dtype, device=mean.device)
        for _ in range(MAX_PASSES):
            if not bool(running.any()):
                break
            grad = self.gradient(mean, length, velocity)
            trial_mean = mean - (running * step / 2)[:, None] * grad
            rows = running[owner].nonzero().squeeze(1)
            shift = (trial_mean - mean)[owner[rows]]
            trial_nodes = nodes[rows] + shift[:, None, :] * ramp[:, None]
            trial_length = refined_length(self.metric, trial_nodes, self.refine)
            lengths_now = length.clone()
            lengths_now[rows] = trial_length
            trial_value = self.value(lengths_now)
            accept = running & (trial_value < value)
            small = accept & (value - trial_value <= POLISH_TOL * value)
            took = accept[owner[rows]]
            changed = rows[took]
            mean = torch.where(accept[:, None], trial_mean, mean)
            nodes[changed], length[changed] = trial_nodes[took], trial_length[took]
            value = torch.where(accept, trial_value, value)
            if bool(took.any()):
                velocity[changed] = self.velocity(mean, nodes, changed)
            step = torch.where(accept, (2 * step).clamp_max(MAX_STEP), step / 2)
            fails = torch.where(accept, 0, fails + running.long())
            running &= ~small & (fails < MAX_FAILS)
        return mean, nodes, length, ~running

    def solve_curves(
        self, mean: Tensor, nodes: Tensor, tol: float, max_iter: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The curves solved again from ``nodes`` at the means held fixed: nodes, lengths
        and whether each converged."""
        solved = connecting_geodesic(
            self.metric,
            mean[self.owner],
            self.ends,
            n_points=nodes.shape[1],
            init_curve=nodes,
            tol=tol,
            max_iter=max_iter,
            warn=False,
        )
        return solved.points, solved.length.to(mean.dtype), solved.converged


def _per_set(values: Tensor, owner: Tensor, k: int) -> Tensor:
    """Sums of ``values`` (P,) over each set's curves: (k,)."""
    return values.new_zeros(k).index_add_(0, owner, values)
