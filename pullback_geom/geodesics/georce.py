"""GEORCE: geodesics by iterated closed-form optimal control (Rygaard & Hauberg, 2025).

A discrete curve ``z_0 .. z_T`` (``T = N - 1``, ends fixed) is written by its velocities
``u_t = z_{t+1} - z_t``, with ``sum_t u_t = z_T - z_0``. Each iteration freezes, at the
current curve, the energy's gradient ``c_t = dE/du_t = sum_{k > t} dE/dz_k`` (node ``z_k``
moves with every ``u_t``, ``t < k``) and one SPD matrix ``M_t`` per segment, and solves the
equality-constrained quadratic model

    min  sum_t c_t . du_t + T sum_t du_t^T M_t du_t   over   sum_t du_t = 0

in closed form: ``du_t = -(2T)^{-1} M_t^{-1} (c_t + mu)`` with ``(sum_t M_t^{-1}) mu =
-sum_t M_t^{-1} c_t`` (one ``d x d`` solve per pair); a backtracking (Armijo) line search on
``E`` then moves from the old velocities towards ``u + du``. For the paper's *left-point
metric energy* ``E = T sum_t u_t^T G(z_t) u_t`` with ``M_t = G(z_t)`` this is their update
(arXiv:2505.05961): there ``c_t = T (2 G_t u_t + sum_{j > t} nu_j)`` up to a shift that
``mu`` absorbs, ``nu_j = grad_z (u_j^T G(z) u_j)`` at ``z_j``, and ``u + du`` is their
``u_t = -1/2 G_t^{-1} mu_t``, ``mu_t = mu_T + sum_{j > t} nu_j``. Batched over pairs.

Which energy (option ``energy``):

- ``"chord"`` (default): the observation-space chord energy ``E = T sum_t |f(z_{t+1}) -
  f(z_t)|^2`` that ``"lm"`` minimises, with ``M_t = (G(z_t) + G(z_{t+1})) / 2``. A step
  needs the decoded nodes and their Jacobians (as LM's), a line-search trial the values
  alone. Its fixed points are the chord energy's stationary curves: GEORCE's closed form
  is the step, the chord energy what it minimises.
- ``"metric"``: the paper's left-point energy, ``M_t = G(z_t)``. ``nu_t = 2 (d/dz (J(z)
  u_t))^T J(z) u_t`` is one JVP (``J u``) and one VJP of ``z -> J(z) u``, with no Hessian
  (:func:`metric_gradient`); ``G_t`` needs the Jacobian, a line-search trial ``J(z_t) u_t``
  (one JVP).

Why ``"chord"``: the left-point rule is first order and sees ``G`` only at each segment's
left node, so its minimiser crosses regions where the decoder changes fast in one long
step, and the curve decoded between its nodes (the reported length is that of the spline
through the nodes, decoded) is longer than the geodesic. At ``N = 16`` against LM at 64
nodes, random pairs of test-set codes, float64: on a convolutional decoder (``d = 8``,
28 x 28) the left-point minimiser is 10.6 % too long in the median, 17 % at worst (3
pairs), where the chord energy with the same steps is LM's +0.07 % and +0.6 %; on the
bundled ReLU MLP (16 pairs) +0.56 % and +6.8 % against LM's -0.03 % and 0.4 %. (The
Hessian-based ``nu`` this module had before gave the same left-point lengths, at ~135x
LM's time a pair on the convolutional decoder, 1 pair in 3 converged.) Each energy has
its local minima: on 8 such pairs two chord curves came out 0.26 % and 1.4 % longer than
LM's (one at a lower chord energy than LM's, one at a higher).

Cost: an iteration costs about what LM's does (one Jacobian per node, 0.8-1.1x LM's time
an iteration on those decoders), but more of them: the model is decoupled in ``u``, so it
misses what moving both ends of a segment together costs where the Jacobian changes
between nodes, and its full step overshoots (by ~8x on a ``d = 32``, 3 x 64 x 64
decoder, accepted at ``alpha ~ 1/8``). A pair then takes ~1-2x LM's time on the
``d = 8`` decoder, ~6x at ``d = 16`` (30-200 iterations against LM's 12-17) and ~12x at
``d = 32`` (120-200 against 7-13), at LM's lengths.

``converged``: a first-order stationarity test, as LM's: at an accepted curve the model's
predicted decrease ``T sum_t du_t^T M_t du_t`` (minus half the directional derivative of
``E`` along the step) is at most ``tol * E``. It is tested before every step and after the
last, so one iteration from a curve that is not stationary never converges; a pair whose
line search finds no Armijo decrease in :data:`LINE_SEARCH_HALVINGS` halvings (at the
creases of a ReLU decoder: 5 of those 16 pairs, at LM's lengths) stops, not converged, as
does a pair that runs out of iterations.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .._core.linalg import spd_inverse, spd_solve
from ..metric import PullbackMetric
from ._common import CurveSolution
from .energy import energy_solver

__all__ = ["ARMIJO", "LINE_SEARCH_HALVINGS", "NU_KIND", "metric_energy", "metric_gradient"]

#: Sufficient-decrease constant of the backtracking line search.
ARMIJO = 1e-4
#: Halvings of the step tried before a pair's line search counts as failed.
LINE_SEARCH_HALVINGS = 12


def _jvp(embed, z: Tensor, u: Tensor) -> Tensor:
    """``J(z) u`` of a batched flat map, (B, d), (B, d) -> (B, D)."""
    return torch.func.jvp(embed, (z,), (u,))[1]


def _nu(embed, z: Tensor, u: Tensor) -> Tensor:
    """``2 (d/dz (J(z) u))^T J(z) u``: the VJP of ``z -> J(z) u`` at its own value. Rows are
    independent (the decoder maps each point alone), so one batched VJP gives every row's."""
    ju, pullback = torch.func.vjp(functools.partial(_jvp, embed, u=u), z)
    return 2 * pullback(ju)[0]


def metric_gradient(metric: PullbackMetric, z: Tensor, u: Tensor) -> Tensor:
    """``nu = grad_z (u^T G(z) u)`` with ``u`` held fixed, without second derivatives.

    ``u^T G(z) u = |J(z) u|^2``, so ``nu = 2 (d/dz (J(z) u))^T J(z) u``: one JVP and one VJP
    of the decoder per point (the ridge block, linear, adds nothing).

    Parameters
    ----------
    metric : PullbackMetric
    z, u : Tensor, shape (B, d)

    Returns
    -------
    Tensor, shape (B, d)
    """
    nu = functools.partial(_nu, metric.evaluator.kernels.embed)
    return metric.evaluator.map(nu, NU_KIND, z, u)


#: The evaluator kind that sizes chunks of ``nu``: a VJP of a JVP keeps the primal and
#: tangent activations for its backward pass and adds their cotangents (about four
#: streams); with the Jacobian's ``d + 1`` alongside (:func:`_metric_and_gradient`), the
#: ``"acceleration"`` kind's ``d + 5`` streams bound both.
NU_KIND = "acceleration"


def _metric_and_gradient(metric: PullbackMetric, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``G(z)`` (B, d, d) and ``nu`` (B, d) (see :func:`metric_gradient`), in one chunked pass."""
    d = z.shape[1]
    kernels = metric.evaluator.kernels

    def fn(x: Tensor, v: Tensor) -> Tensor:
        jac = kernels.value_and_jacobian(x)[1]
        return torch.cat([(jac.mT @ jac).flatten(1), _nu(kernels.embed, x, v)], dim=1)

    packed = metric.evaluator.map(fn, NU_KIND, z, u)
    return packed[:, : d * d].reshape(-1, d, d), packed[:, d * d :]


def metric_energy(metric: PullbackMetric, curve: Tensor) -> Tensor:
    """The paper's left-point metric energy, ``T sum_t u_t^T G(z_t) u_t = T sum_t |J(z_t)
    u_t|^2``, from one JVP per segment.

    Parameters
    ----------
    metric : PullbackMetric
    curve : Tensor, shape (B, N, d)

    Returns
    -------
    Tensor, shape (B,)
    """
    b, n, d = curve.shape
    u = curve.diff(dim=1)
    ju = metric.evaluator.map(
        functools.partial(_jvp, metric.evaluator.kernels.embed),
        "jacobian",
        curve[:, :-1].reshape(-1, d),
        u.reshape(-1, d),
    )
    return (n - 1) * ju.reshape(b, n - 1, -1).square().sum((1, 2))


class _ChordEnergy:
    """``E = T sum_t |f(z_{t+1}) - f(z_t)|^2``, ``M_t = (G_t + G_{t+1}) / 2``."""

    def __init__(self, metric: PullbackMetric, curve: Tensor) -> None:
        b, n, d = curve.shape
        self.metric, self.t = metric, n - 1
        val, jac = metric.evaluator.value_and_jacobian(curve[:, [0, -1]].reshape(-1, d))
        self.ends = val.reshape(b, 2, -1)
        self.end_metric = (jac.mT @ jac).reshape(b, 2, d, d)

    def nodes(self, free_values: Tensor, idx: Tensor) -> Tensor:
        ends = self.ends[idx]
        return torch.cat([ends[:, :1], free_values, ends[:, 1:]], dim=1)

    def energy(self, curve: Tensor, idx: Tensor) -> Tensor:
        b, n, d = curve.shape
        val = self.metric.evaluator.embed(curve[:, 1:-1].reshape(-1, d)).reshape(b, n - 2, -1)
        return self.t * self.nodes(val, idx).diff(dim=1).square().sum((1, 2))

    def parts(self, curve: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = curve.shape
        val, jac = self.metric.evaluator.value_and_jacobian(curve[:, 1:-1].reshape(-1, d))
        x = self.nodes(val.reshape(b, n - 2, -1), idx)
        lap = 2 * x[:, 1:-1] - x[:, :-2] - x[:, 2:]  # dE/dx / 2T at the free nodes
        grad = 2 * self.t * (jac.mT @ lap.reshape(b * (n - 2), -1, 1)).reshape(b, n - 2, d)
        ends = self.end_metric[idx]
        gram = torch.cat([ends[:, :1], (jac.mT @ jac).reshape(b, n - 2, d, d), ends[:, 1:]], 1)
        energy = self.t * x.diff(dim=1).square().sum((1, 2))
        return energy, (gram[:, :-1] + gram[:, 1:]) / 2, grad


class _MetricEnergy:
    """The paper's left-point energy ``T sum_t u_t^T G(z_t) u_t``, ``M_t = G(z_t)``."""

    def __init__(self, metric: PullbackMetric, curve: Tensor) -> None:
        self.metric, self.t = metric, curve.shape[1] - 1

    def energy(self, curve: Tensor, idx: Tensor) -> Tensor:
        return metric_energy(self.metric, curve)

    def parts(self, curve: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = curve.shape
        u = curve.diff(dim=1)
        g, nu = _metric_and_gradient(self.metric, curve[:, :-1].reshape(-1, d), u.reshape(-1, d))
        g, nu = g.reshape(b, n - 1, d, d), nu.reshape(b, n - 1, d)
        gu = (g @ u.unsqueeze(-1)).squeeze(-1)
        energy = self.t * (u * gu).sum((1, 2))
        # dE/dz_k = T (nu_k + 2 G_{k-1} u_{k-1} - 2 G_k u_k), k = 1 .. T - 1
        grad = self.t * (nu[:, 1:] + 2 * gu[:, :-1] - 2 * gu[:, 1:])
        return energy, g, grad


_ENERGIES = {"chord": _ChordEnergy, "metric": _MetricEnergy}


def _energy_name(value) -> str:
    if not isinstance(value, str) or value not in _ENERGIES:
        raise ValueError(f"energy must be one of {sorted(_ENERGIES)}; got {value!r}")
    return value


def _step(seg: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """GEORCE's closed-form velocity change ``du`` (b, T, d) and its model's predicted
    decrease ``T sum_t du_t^T M_t du_t`` (b,), from ``M_t`` (b, T, d, d) and the node
    gradient ``dE/dz_k`` (b, T - 1, d)."""
    t_seg = seg.shape[1]
    inv = spd_inverse(seg, what="GEORCE's segment metric")
    tail = torch.zeros_like(seg[..., 0])  # c_t = sum_{k > t} dE/dz_k
    tail[:, :-1] = grad.flip(1).cumsum(1).flip(1)
    inv_tail = (inv @ tail.unsqueeze(-1)).sum(1)
    mu = -spd_solve(inv.sum(1), inv_tail, what="GEORCE's sum of inverse metrics")
    du = -(inv @ (tail.unsqueeze(-1) + mu.unsqueeze(1))).squeeze(-1) / (2 * t_seg)
    predicted = t_seg * (du.unsqueeze(-2) @ seg @ du.unsqueeze(-1)).squeeze((-1, -2)).sum(-1)
    return du, predicted


def georce(
    metric: PullbackMetric, curve: Tensor, max_iter: int, tol: float, *, energy: str = "chord"
) -> CurveSolution:
    """Batched GEORCE from initial curves ``(B, N, d)``; end points stay fixed.

    Returns the observation-space chord length and energy of the final curves, like the
    other energy methods; ``converged`` as the module docstring says.
    """
    b, n_pts, d = curve.shape
    curve = curve.clone()
    problem = _ENERGIES[energy](metric, curve)
    converged = torch.zeros(b, dtype=torch.bool, device=curve.device)
    running = torch.ones_like(converged)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)
    with torch.no_grad():
        e, seg, grad = problem.parts(curve, torch.arange(b, device=curve.device))
        for it in range(max_iter + 1):
            act = running.nonzero().squeeze(1)
            if act.numel() == 0:
                break
            du, predicted = _step(seg[act], grad[act])
            done = predicted <= tol * e[act]
            converged[act[done]] = True
            running[act[done]] = False
            if it == max_iter:  # tested the last curve; no iterations left
                running[act] = False
                break
            go = (~done).nonzero().squeeze(1)
            act, du, predicted = act[go], du[go], predicted[go]
            if act.numel() == 0:
                break
            c, ea = curve[act], e[act]
            dz = du.cumsum(1)[:, :-1]  # change of z_1 .. z_{T-1} at alpha = 1
            slope = -2 * predicted  # the directional derivative of E along dz
            alpha = torch.ones_like(ea)
            pending = torch.ones_like(ea, dtype=torch.bool)
            best = c.clone()
            for _ in range(LINE_SEARCH_HALVINGS + 1):
                idx = pending.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                trial = c[idx].clone()
                trial[:, 1:-1] += alpha[idx, None, None] * dz[idx]
                et = problem.energy(trial, act[idx])
                ok = et <= ea[idx] + ARMIJO * alpha[idx] * slope[idx]
                best[idx[ok]] = trial[ok]
                pending[idx[ok]] = False
                alpha[idx[~ok]] *= 0.5
            iterations[act] += 1
            running[act[pending]] = False  # the line search failed: stop, not converged
            moved = (~pending).nonzero().squeeze(1)
            if moved.numel():
                rows = act[moved]
                curve[rows] = best[moved]
                e[rows], seg[rows], grad[rows] = problem.parts(best[moved], rows)
        x = metric.evaluator.embed(curve.reshape(-1, d)).reshape(b, n_pts, -1)
        steps = x.diff(dim=1)
        length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
        chord = (n_pts - 1) * steps.square().sum((1, 2))
    return CurveSolution(curve, length, chord, converged, iterations, x)


#: ``energy``: ``"chord"`` (default), the observation-space chord energy LM minimises, with
#: GEORCE's closed-form step; ``"metric"``, the paper's left-point metric energy ``T sum_t
#: u_t^T G(z_t) u_t`` (see :mod:`~pullback_geom.geodesics.georce` for why it is not the
#: default).
GEORCE = energy_solver(
    "georce",
    georce,
    "GEORCE (Rygaard & Hauberg 2025): iterated closed-form optimal-control steps on the "
    "chord energy (or the paper's left-point metric energy)",
    options={"energy": "chord"},
    check_options={"energy": _energy_name},
)
