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
direction of curve ``i``), are tried with the curves solved again at the trial mean, warm
from the current ones moved with it. A step that does not lower the function is halved;
an accepted one doubles the next. Moved but not solved again, the curves only bound their
geodesics' lengths from above, and on a ReLU decoder the bound is loose where the moved
nodes cross creases: on 50 codes of a digit 8 the descent then stopped after one step,
0.02 short of geomstats' gradient-descent mean, its Fréchet function 1.3e-4 above that
mean's, where solved curves reach 2e-5 of it and a looser joint solve suffices
(:data:`START_TOL`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from .api import connecting_geodesic
from .discrete import first_step_velocity

__all__ = ["START_TOL", "polish"]

#: The joint solve's relative tolerance when it only starts the descent (at least): the
#: descent moves the mean further than the last iterations of a tighter solve would
#: (bundled ReLU model, 50 codes of each digit: 3-13 joint iterations instead of 7-68
#: at 1e-7, the polished Fréchet functions between 1e-4 below and 7e-5 above geomstats'
#: gradient-descent means'; at 1e-3 digit 8's stayed 1.8e-4 above).
START_TOL = 3e-4
#: Step passes at most: each tries one step per set (accepted, or halved). The descent is
#: a refinement of bounded cost, not a solve to convergence: the measured function
#: (16-node curves) agrees with a 32-node measure in float64 to ~1e-4 of itself only, so
#: passes beyond the first few chase its noise (bundled ReLU model, 50 codes of each
#: digit, with up to 16 passes: the later ones moved the 32-node function by -5e-4 to
#: +4e-4 of itself, at 0.06-0.16 s each; after 3, every digit's is within 6.5e-5 above
#: geomstats' gradient-descent mean's or below it).
MAX_PASSES = 3
#: A set stops earlier when its accepted step lowers the function by less than this
#: fraction of it, or when :data:`MAX_FAILS` steps in a row did not lower it (the
#: function is not smooth at its minimum, so its gradient need not vanish there).
POLISH_TOL = 1e-5
MAX_FAILS = 2
#: Step sizes relative to the gradient's Newton step ``-grad / 2`` (that of ``sum_i w_i
#: |m - x_i|^2 / sum_i w_i`` in the metric at the mean): first tried and largest (a
#: doubled step failed on most passes, a quadrupled one on all but one).
FIRST_STEP, MAX_STEP = 1.0, 2.0
#: Iterations of a trial's curve solves: an unconverged curve's length bounds its
#: geodesic's from above, so a step it accepts lowers the function; the curves of the
#: final mean are then solved to convergence. On a ReLU decoder a few curves of a set
#: take 20-30 iterations to settle across creases, which every trial would wait for
#: (bundled model, 50 codes of a digit 5: 6.7 iterations on average). Too few rejects
#: good steps: at 4 or 8, digit 8's first trial, whose curves had not settled, was
#: rejected and its mean stayed 9.2e-4 above gradient descent's (16: 7e-6 below).
TRIAL_ITER = 16


def polish(
    metric: PullbackMetric,
    x: Tensor,
    w: Tensor,
    mean: Tensor,
    curves: Tensor,
    lengths: Tensor,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Descend the measured Fréchet function of the sets ``x`` (k, n, d), weights ``w``
    (k, n), from the joint ``mean`` (k, d) with its ``curves`` (k, n, N, d) and their
    measured ``lengths`` (k, n); see the module docstring. Trial curves are measured as
    :func:`~pullback_geom.geodesics.connecting_geodesic` measures (its ``refine``, 4, is
    ``lengths``' ``frechet.REFINE``).

    Returns the mean (k, d), the curves solved again at it (k, n, N, d; NaN where ``w``
    is 0), their lengths (k, n), the Fréchet function they give (k,), their initial
    velocities (k, n, d), the gradient's norm ``|grad F|_G`` at the mean (k,), and
    whether each set's curves converged at its mean (the descent is a refinement of at
    most :data:`MAX_PASSES` steps that only accepts decreases: see there).
    """
    k, n, d = x.shape
    owner, index = (w > 0).nonzero(as_tuple=True)
    state = _State(metric, owner, w[owner, index], w.sum(1), x[owner, index])
    mean, nodes, length = mean.clone(), curves[owner, index], lengths[owner, index]
    # Sets whose points coincide have nothing to descend (their lengths are all zero).
    running = state.value(length) > 0
    mean, nodes, length, solved, fresh = state.descend(mean, nodes, length, running, tol, max_iter)
    # Curves not solved to convergence at their set's final mean (no step accepted, or
    # a trial's solve stopped at TRIAL_ITER) are now, from where they are.
    stale = (~fresh[owner] | ~solved).nonzero().squeeze(1)
    if stale.numel():
        nodes[stale], length[stale], solved[stale] = state.solve_curves(
            mean, nodes[stale], stale, tol, max_iter
        )
    velocity = state.velocity(mean, nodes)
    grad = state.gradient(mean, length, velocity)
    norm = metric.inner(mean, grad, grad).clamp_min(0).sqrt()
    converged = _per_set((~solved).to(x.dtype), owner, k) == 0
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
    ) -> None:
        self.metric, self.owner, self.weight, self.total = metric, owner, weight, total
        self.ends, self.k = ends, total.shape[0]

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
        self,
        mean: Tensor,
        nodes: Tensor,
        length: Tensor,
        running: Tensor,
        tol: float,
        max_iter: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Steps of the ``running`` sets with their curves solved again at each trial mean;
        returns the mean, nodes, lengths, whether each curve's last solve converged and
        which sets accepted a step (whose curves are then solved at their mean)."""
        owner, k = self.owner, self.k
        mean, nodes, length = mean.clone(), nodes.clone(), length.clone()
        solved = torch.ones_like(owner, dtype=torch.bool)
        value = self.value(length)
        velocity = self.velocity(mean, nodes)
        step = torch.full((k,), FIRST_STEP, dtype=mean.dtype, device=mean.device)
        fails = torch.zeros(k, dtype=torch.long, device=mean.device)
        fresh = torch.zeros_like(running)
        running = running.clone()
        ramp = torch.linspace(1, 0, nodes.shape[1], dtype=mean.dtype, device=mean.device)
        for _ in range(MAX_PASSES):
            if not bool(running.any()):
                break
            grad = self.gradient(mean, length, velocity)
            trial_mean = mean - (running * step / 2)[:, None] * grad
            rows = running[owner].nonzero().squeeze(1)
            shift = (trial_mean - mean)[owner[rows]]
            moved = nodes[rows] + shift[:, None, :] * ramp[:, None]
            trial_nodes, trial_length, trial_solved = self.solve_curves(
                trial_mean, moved, rows, tol, min(max_iter, TRIAL_ITER)
            )
            lengths_now = length.clone()
            lengths_now[rows] = trial_length
            trial_value = self.value(lengths_now)
            accept = running & (trial_value < value)
            small = accept & (value - trial_value <= POLISH_TOL * value)
            took = accept[owner[rows]]
            changed = rows[took]
            mean = torch.where(accept[:, None], trial_mean, mean)
            nodes[changed], length[changed] = trial_nodes[took], trial_length[took]
            solved[changed] = trial_solved[took]
            value = torch.where(accept, trial_value, value)
            fresh |= accept
            if bool(took.any()):
                velocity[changed] = self.velocity(mean, nodes, changed)
            step = torch.where(accept, (2 * step).clamp_max(MAX_STEP), step / 2)
            fails = torch.where(accept, 0, fails + running.long())
            running &= ~small & (fails < MAX_FAILS)
        return mean, nodes, length, solved, fresh

    def solve_curves(
        self, mean: Tensor, nodes: Tensor, rows: Tensor, tol: float, max_iter: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The curves ``rows`` (R,) solved again from their ``nodes`` (R, N, d) at their
        sets' ``mean`` (k, d), held fixed: their nodes, lengths and whether each
        converged."""
        result = connecting_geodesic(
            self.metric,
            mean[self.owner[rows]],
            self.ends[rows],
            n_points=nodes.shape[1],
            init_curve=nodes,
            tol=tol,
            max_iter=max_iter,
            warn=False,
        )
        return result.points, result.length.to(mean.dtype), result.converged


def _per_set(values: Tensor, owner: Tensor, k: int) -> Tensor:
    """Sums of ``values`` (P,) over each set's curves: (k,)."""
    return values.new_zeros(k).index_add_(0, owner, values)
