"""GEORCE: geodesics by iterated closed-form optimal control (Rygaard & Hauberg, 2025).

The discrete curve ``z_0 .. z_T`` (``T = N - 1``) has velocities ``u_t = z_{t+1} - z_t`` and
the *left-point metric energy* ``E = T sum_t u_t^T G(z_t) u_t``. Each iteration freezes
``G_t = G(z_t)`` and ``nu_t = grad_z (u_t^T G(z) u_t)`` at the current curve; the
Lagrangian's stationarity conditions are then linear::

    2 G_t u_t + mu_t = 0,   mu_t = mu_T + sum_{j > t} nu_j,   sum_t u_t = z_T - z_0,

so ``mu_T`` solves ``(sum_t G_t^{-1}) mu_T = -2 (z_T - z_0) - sum_t G_t^{-1} sum_{j>t} nu_j``
(one ``d x d`` solve per pair), ``u_t = -1/2 G_t^{-1} mu_t``, and a backtracking (Armijo)
line search on ``E`` moves from the old velocities towards the new ones. Written from the
paper's equations (arXiv:2505.05961), batched over pairs.

For the pullback metric ``G = J^T J``, ``u^T G(z) u = |J(z) u|^2`` and
``nu = 2 (D_z (J u))^T (J u)``, i.e. ``nu_k = 2 sum_a (J u)_a sum_j H_akj u_j`` with ``H``
the decoder's Hessian.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._core.linalg import spd_inverse, spd_solve
from ..metric import PullbackMetric
from ._common import CurveSolution
from .energy import energy_solver

__all__ = ["metric_energy"]


def _metric_and_nu(metric: PullbackMetric, z: Tensor, u: Tensor) -> Tensor:
    """``G(z)`` and ``nu = grad_z u^T G(z) u`` packed as ``(B, d * d + d)``."""
    jac, hess = metric.evaluator.kernels.second_derivatives(z)
    ju = (jac @ u.unsqueeze(-1)).squeeze(-1)  # (B, D)
    nu = 2 * torch.einsum("ba,bakj,bj->bk", ju, hess, u)
    return torch.cat([(jac.mT @ jac).flatten(1), nu], dim=1)


def metric_energy(metric: PullbackMetric, curve: Tensor) -> Tensor:
    """The left-point metric energy GEORCE minimises, ``T sum_t u_t^T G(z_t) u_t``.

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
    g = metric.evaluator.metric_tensor(curve[:, :-1].reshape(-1, d))
    g = g.reshape(b, n - 1, d, d)
    return (n - 1) * (u.unsqueeze(-2) @ g @ u.unsqueeze(-1)).squeeze((-1, -2)).sum(-1)


def _energy_parts(metric: PullbackMetric, curve: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Energy ``(B,)``, ``G_t (B, T, d, d)`` and ``nu_t (B, T, d)`` (``nu_0 = 0``)."""
    b, n, d = curve.shape
    u = curve.diff(dim=1)
    packed = metric.evaluator.map(
        lambda x, v: _metric_and_nu(metric, x, v),
        "hessian",
        curve[:, :-1].reshape(-1, d),
        u.reshape(-1, d),
    ).reshape(b, n - 1, d * d + d)
    g = packed[..., : d * d].reshape(b, n - 1, d, d)
    nu = packed[..., d * d :].clone()
    nu[:, 0] = 0  # z_0 is fixed
    e = (n - 1) * (u.unsqueeze(-2) @ g @ u.unsqueeze(-1)).squeeze((-1, -2)).sum(-1)
    return e, g, nu


def georce(metric: PullbackMetric, curve: Tensor, max_iter: int, tol: float) -> CurveSolution:
    """Batched GEORCE from initial curves ``(B, N, d)``; end points stay fixed.

    Returns the observation-space chord length and energy of the final curves, like the
    other energy methods. ``converged``: the relative decrease of the left-point energy in
    an iteration fell below ``tol``; pairs whose line search fails stop, not converged.
    """
    b, n_pts, d = curve.shape
    t_seg = n_pts - 1
    z0, zt = curve[:, 0], curve[:, -1]
    converged = torch.zeros(b, dtype=torch.bool, device=curve.device)
    stuck = torch.zeros_like(converged)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)
    with torch.no_grad():
        e, g, nu = _energy_parts(metric, curve)
        for _ in range(max_iter):
            act = (~(converged | stuck)).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            c, ea, ga, nua = curve[act], e[act], g[act], nu[act]
            u_old = c.diff(dim=1)
            ginv = spd_inverse(ga, what="metric tensor (GEORCE)")  # (ba, T, d, d)
            # tail[t] = sum_{j > t} nu_j
            tail = nua.flip(1).cumsum(1).flip(1).roll(-1, dims=1)
            tail[:, -1] = 0
            ginv_tail = (ginv @ tail.unsqueeze(-1)).squeeze(-1).sum(1)
            rhs = -2 * (zt[act] - z0[act]) - ginv_tail
            mu_t = spd_solve(
                ginv.sum(1), rhs.unsqueeze(-1), what="GEORCE's sum of inverse metrics"
            )[..., 0]
            mu = mu_t[:, None] + tail
            u_new = -0.5 * (ginv @ mu.unsqueeze(-1)).squeeze(-1)
            # grad of E w.r.t. the free nodes z_1..z_{T-1} (scaled by T like E)
            gu = (ga @ u_old.unsqueeze(-1)).squeeze(-1)
            grad = t_seg * (nua[:, 1:] + 2 * gu[:, :-1] - 2 * gu[:, 1:])
            dz = (u_new - u_old).cumsum(1)[:, :-1]  # change of z_1..z_{T-1} at alpha = 1
            slope = (grad * dz).sum((1, 2))
            alpha = torch.ones_like(ea)
            pending = torch.ones_like(ea, dtype=torch.bool)
            best, e_new = c.clone(), ea.clone()
            # Trials need only the energy (Jacobians); G and nu only at the accepted curve.
            for _ls in range(12):
                idx = pending.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                trial = c[idx].clone()
                u_a = u_old[idx] + alpha[idx, None, None] * (u_new[idx] - u_old[idx])
                trial[:, 1:-1] = z0[act[idx], None] + u_a.cumsum(1)[:, :-1]
                et = metric_energy(metric, trial)
                # Armijo; energies equal to rounding count as a (converged) success.
                slack = 8 * torch.finfo(et.dtype).eps * ea[idx].abs()
                ok = et <= ea[idx] + slack + 1e-4 * alpha[idx] * slope[idx].clamp(max=0)
                take = idx[ok]
                best[take], e_new[take] = trial[ok], et[ok]
                pending[take] = False
                alpha[idx[~ok]] *= 0.5
            # Pairs whose line search failed keep their curve and stop: the Armijo test
            # allows for rounding, so at a minimum the full step passes it.
            moved = (~pending).nonzero().squeeze(1)
            if moved.numel():
                e_m, g_m, nu_m = _energy_parts(metric, best[moved])
                curve[act[moved]], e[act[moved]] = best[moved], e_m
                g[act[moved]], nu[act[moved]] = g_m, nu_m
            iterations[act] += 1
            decrease = ea - e[act]
            converged[act] = (decrease <= tol * e[act].abs()) & ~pending
            stuck[act] = pending
        x = metric.evaluator.embed(curve.reshape(-1, d)).reshape(b, n_pts, -1)
        steps = x.diff(dim=1)
        length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
        energy = t_seg * steps.square().sum((1, 2))
    return CurveSolution(curve, length, energy, converged, iterations, x)


GEORCE = energy_solver(
    "georce",
    georce,
    "GEORCE (Rygaard & Hauberg 2025): iterated closed-form optimal control of the "
    "left-point metric energy",
)
