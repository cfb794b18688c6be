"""L-BFGS on the observation-space chord energy, all pairs in one problem.

The energies of the pairs are summed, so ``torch.optim.LBFGS`` (strong-Wolfe line search)
optimises the free nodes of all curves at once; a baseline for the Gauss–Newton and GEORCE
methods.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from ._common import CurveSolution
from .energy import energy_solver

__all__: list[str] = []


def lbfgs(metric: PullbackMetric, curve: Tensor, max_iter: int, tol: float) -> CurveSolution:
    """L-BFGS from initial curves ``(B, N, d)``; returns what the other methods return.

    A pair counts as converged when its gradient, measured against its energy and the
    latent distance of its end points, is below ``sqrt(tol)``.
    """
    b, n_pts, d = curve.shape
    ends = curve[:, [0, -1]].detach()
    free = curve[:, 1:-1].detach().clone().requires_grad_(True)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)

    def energies(inner: Tensor) -> Tensor:
        c = torch.cat([ends[:, :1], inner, ends[:, 1:]], dim=1)
        x = metric.evaluator.embed(c.reshape(-1, d)).reshape(b, n_pts, -1)
        return (n_pts - 1) * x.diff(dim=1).square().sum((1, 2))

    opt = torch.optim.LBFGS(
        [free],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=1e-14 if curve.dtype == torch.float64 else 1e-8,
        tolerance_change=tol * 1e-2,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        total = energies(free).sum()
        total.backward()
        return total

    opt.step(closure)
    iterations += opt.state[opt._params[0]].get("n_iter", 0)
    free.grad = None
    e = energies(free)
    (grad,) = torch.autograd.grad(e.sum(), free)
    with torch.no_grad():
        span = torch.linalg.vector_norm(ends[:, 1] - ends[:, 0], dim=-1)
        scaled = torch.linalg.vector_norm(grad, dim=(1, 2)) * span
        converged = scaled <= tol**0.5 * e.clamp_min(1e-300) + 1e-300
        c = torch.cat([ends[:, :1], free.detach(), ends[:, 1:]], dim=1)
        x = metric.evaluator.embed(c.reshape(-1, d)).reshape(b, n_pts, -1)
        steps = x.diff(dim=1)
        length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
        energy = (n_pts - 1) * steps.square().sum((1, 2))
    return CurveSolution(c, length, energy, converged, iterations, x)


LBFGS = energy_solver(
    "lbfgs", lbfgs, "torch.optim.LBFGS on the chord energy of all pairs summed (a baseline)"
)
