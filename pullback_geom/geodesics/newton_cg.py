"""The ``"newton-cg"`` method: Levenberg–Marquardt on the chord energy, its steps solved
by preconditioned conjugate gradients with Jacobian–vector products.

The default ``"lm"`` method forms every free node's Jacobian ``J_k`` (``D x d``) at every
accepted iterate: ``d`` forward-mode tangents a node, nearly all of its time on a large
decoder. Here the Gauss–Newton matrix ``H = J^T L J`` (``L`` the chain Laplacian of the
decoded nodes, ``J`` block-diagonal) is applied matrix-free, ``H v = J^T (L (J v))``, by
the decoder's linearisation (:class:`~pullback_geom._core.linearise.Linearisation`: ``J v``
by a double backward, ``J^T u`` by a backward pass), and the damped system
``(H + lam s I) x = -g`` is solved by conjugate gradients preconditioned with the
block-tridiagonal Gauss–Newton matrix of the Jacobians last formed: exact where they are
fresh (the step is then ``"lm"``'s, without a single conjugate-gradient iteration), close
while the nodes have moved little. A pair's Jacobians are formed again, in memory-bounded
chunks of which only the ``d x d`` blocks are kept, when its conjugate gradients needed
more than ``cg_iter`` iterations, i.e. when the preconditioner has gone stale.

Memory: a curve holds its nodes' linearisation (a few activations a node) and ``d x d``
blocks, never a ``D x d`` Jacobian per node beyond one chunk's refresh.

Damping, acceptance and convergence are ``"lm"``'s (:mod:`~pullback_geom.geodesics.lm`):
a pair has converged when a step the model trusts predicts a relative decrease of ``S``
below ``tol``, the step solved to the conjugate gradients' tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._core.linalg import block_tridiagonal_solve
from .._core.linearise import Linearisation
from ..metric import PullbackMetric
from ._common import CurveSolution, jacobian_dtype_option
from .chord import ChordEnergy, chord_laplacian
from .energy import energy_solver
from .lm import MAX_DAMPING, POOR_GAIN, block_factor, damped_factor, next_damping

__all__ = ["NEWTON_CG"]

#: Relative residual (in the preconditioner's norm) at which a step counts as solved.
CG_RTOL = 0.1


class _Preconditioner:
    """The damped block-tridiagonal Gauss–Newton matrices of ``B`` pairs, factorised."""

    def __init__(self, base: Tensor, couple: Tensor, lam: Tensor) -> None:
        factor, self.solved, self.lam, self.scale = damped_factor(base, lam, block_factor(couple))
        self.chol_d, self.chol_l = factor

    def solve(self, r: Tensor) -> Tensor:
        out = block_tridiagonal_solve(self.chol_d, self.chol_l, r)
        return torch.where(self.solved[:, None, None], out, torch.zeros_like(out))


class _DampedGaussNewton:
    """``v -> (H + shift I) v`` with ``H v = J^T L J v`` by a linearisation of the free
    nodes of the pairs it is called with (``rows``: their positions in ``shift``)."""

    def __init__(self, lin: Linearisation | None, shift: Tensor) -> None:
        self.lin, self.shift = lin, shift

    def __call__(self, rows: Tensor, v: Tensor) -> Tensor:
        b, m, d = v.shape
        jv = self.lin.jvp(v.reshape(-1, d)).reshape(b, m, -1)
        hv = self.lin.vjp(chord_laplacian(jv, None, None).reshape(b * m, -1)).reshape(v.shape)
        return hv + self.shift[rows, None, None] * v


def _conjugate_gradients(
    apply: Callable[[Tensor, Tensor], Tensor],
    precond: _Preconditioner,
    rhs: Tensor,
    run: Tensor,
    max_iter: int,
) -> tuple[Tensor, Tensor]:
    """Preconditioned conjugate gradients for ``A x = rhs`` per pair, from ``x = P^-1 rhs``
    where ``run`` is False (there ``P = A``) and from ``0`` elsewhere.

    Returns the solutions (B, m, d) and whether each pair reached :data:`CG_RTOL`.
    """
    x = torch.zeros_like(rhs)
    z = precond.solve(rhs)
    x = torch.where(run[:, None, None], x, z)
    ok = ~run
    if not bool(run.any()):
        return x, ok
    rows = run.nonzero().squeeze(1)
    r, zr = rhs[rows], z[rows]
    p, rz = zr.clone(), (r * zr).sum((1, 2))
    goal = CG_RTOL**2 * rz
    xs = x[rows]
    act = rz > 0
    done = ~act
    for _ in range(max_iter):
        ap = apply(rows, p)
        alpha = torch.where(act, rz / (p * ap).sum((1, 2)).clamp_min(1e-300), 0.0)
        xs = xs + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        zr = block_tridiagonal_solve(precond.chol_d[rows], precond.chol_l[rows], r)
        rz_new = (r * zr).sum((1, 2))
        reached = act & (rz_new <= goal)
        done |= reached
        act &= ~reached
        if not bool(act.any()):
            break
        beta = torch.where(act, rz_new / rz.clamp_min(1e-300), 0.0)
        p = zr + beta[:, None, None] * p
        rz = torch.where(act, rz_new, rz)
    x[rows] = xs
    ok[rows] = done
    return x, ok


def _gauss_newton_blocks(
    metric: PullbackMetric,
    free: Tensor,
    lap: Tensor,
    rows: int,
    jacobian_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Half the chord energy's Gauss–Newton matrix and gradient at free nodes ``(b, m, d)``
    (the blocks of :class:`~pullback_geom.geodesics.chord.ChordEnergy`), from the nodes'
    Laplacian ``lap`` (b, m, D) and Jacobians formed ``rows`` nodes at a time: only one
    chunk's ``D x d`` Jacobians (and the last node's before it) are ever alive; in
    ``jacobian_dtype`` where given (the products too), returned in ``free``'s dtype.

    Returns the diagonal blocks (b, m, d, d), the couplings ``J_k^T J_k+1``
    (b, m - 1, d, d) and the gradient (b, m, d).
    """
    b, m, d = free.shape
    flat, lap_flat = free.reshape(-1, d), lap.reshape(b * m, -1)
    gram = free.new_empty(b * m, d, d)
    couple = free.new_zeros(b * m, d, d)  # J_k^T J_k+1 of consecutive flat nodes
    grad = free.new_empty(b * m, d)
    last = None
    for start in range(0, b * m, rows):
        _, jac = metric.evaluator.value_and_jacobian(
            flat[start : start + rows], tangent_dtype=jacobian_dtype
        )
        jt, end = jac.mT, start + jac.shape[0]  # (r, d, D)
        gram[start:end] = jt @ jac
        lap_chunk = lap_flat[start:end, :, None].to(jt.dtype)
        grad[start:end] = (jt @ lap_chunk)[..., 0]
        couple[start : end - 1] = jt[:-1] @ jac[1:]
        if last is not None:
            couple[start - 1] = last @ jac[0]
        last = jt[-1]
    couple = couple.reshape(b, m, d, d)[:, :-1]  # drop the pairs' seams
    return 2 * gram.reshape(b, m, d, d), couple, grad.reshape(b, m, d)


def newton_cg(
    metric: PullbackMetric,
    curve: Tensor,
    max_iter: int,
    tol: float,
    *,
    cg_iter: int | None = None,
    jacobian_dtype: torch.dtype | None = None,
) -> CurveSolution:
    """The ``"newton-cg"`` method from initial curves ``(B, N, d)`` (module docstring)."""
    b, n_pts, d = curve.shape
    m = n_pts - 2
    cg_iter = max(2, d // 4) if cg_iter is None else cg_iter
    device = curve.device
    problem = ChordEnergy(metric, curve)
    free = curve[:, 1:-1].clone()
    everyone = torch.arange(b, device=device)
    values = problem.decode_values(free, everyone)
    obj = problem.objective((values,), everyone)
    dtype = free.dtype
    base = free.new_zeros(b, m, d, d)
    couple = free.new_zeros(b, max(m - 1, 0), d, d)
    stale = torch.ones(b, dtype=torch.bool, device=device)
    lam = torch.full((b,), 1e-3, dtype=dtype, device=device)
    grow = torch.full_like(lam, 4.0)
    trusted = torch.zeros(b, dtype=torch.bool, device=device)
    running = torch.ones(b, dtype=torch.bool, device=device)
    converged = torch.zeros_like(running)
    iterations = torch.zeros(b, dtype=torch.long, device=device)
    node_rows = metric.evaluator.rows("jacobian")

    with torch.no_grad():
        for iteration in range(max_iter):
            idx = running.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            grad = free.new_zeros(idx.numel(), m, d)
            refresh = stale[idx]
            fresh = refresh.nonzero().squeeze(1)
            if fresh.numel():
                rows = idx[fresh]
                ends = problem.ends[rows]
                lap = chord_laplacian(values[rows], ends[:, 0], ends[:, 1])
                base[rows], couple[rows], grad[fresh] = _gauss_newton_blocks(
                    metric, free[rows], lap, node_rows, jacobian_dtype
                )
            stale[idx[refresh]] = False
            # Conjugate gradients for the pairs whose blocks are old, and for every pair
            # where they are approximate (low-precision Jacobians): there the gradient is
            # the exact one of the linearisation, the blocks only precondition.
            iterate = ~refresh if jacobian_dtype is None else torch.ones_like(refresh)
            lin = None
            if bool(iterate.any()):
                old = iterate.nonzero().squeeze(1)
                lin = metric.evaluator.linearise(free[idx[old]].reshape(-1, d))
                val = lin.value.reshape(old.numel(), m, -1)
                ends = problem.ends[idx[old]]
                lap = chord_laplacian(val, ends[:, 0], ends[:, 1])
                grad[old] = lin.vjp(lap.reshape(-1, lap.shape[-1])).reshape(-1, m, d)
            precond = _Preconditioner(base[idx], couple[idx], lam[idx])
            lam[idx] = precond.lam

            apply = _DampedGaussNewton(lin, precond.lam * precond.scale)
            step, solved_cg = _conjugate_gradients(apply, precond, -grad, iterate, cg_iter)
            del lin, apply  # the recorded graphs
            predicted = -(step * grad).sum((1, 2))
            stale[idx[~solved_cg]] = True
            ok = precond.solved
            small = ok & solved_cg & (predicted <= tol * obj[idx].clamp_min(1e-300))
            stop = (small & trusted[idx]) | ~ok
            converged[idx[stop]] = (small & trusted[idx])[stop]
            running[idx[stop]] = False
            keep = ~stop
            idx, step, predicted = idx[keep], step[keep], predicted[keep]
            solved_cg = solved_cg[keep]
            if idx.numel() == 0:
                break
            trial = free[idx] + step
            values_t = problem.decode_values(trial, idx)
            obj_t = problem.objective((values_t,), idx)
            accept = obj_t <= obj[idx]
            good = accept & (obj[idx] - obj_t >= POOR_GAIN * predicted)
            obj[idx] = torch.where(accept, obj_t, obj[idx])
            done = accept & solved_cg & (predicted <= tol * obj[idx].clamp_min(1e-300))
            lam[idx], grow[idx] = next_damping(lam[idx], good, grow[idx])
            stuck = ~accept & (lam[idx] > MAX_DAMPING)
            trusted[idx] = accept
            iterations[idx] += 1
            rows = idx[accept]
            free[rows], values[rows] = trial[accept], values_t[accept]
            converged[idx[done]] = True
            running[idx[done | stuck]] = False
            if iteration == max_iter - 1:
                running[:] = False

    points = torch.cat([curve[:, :1], free, curve[:, -1:]], dim=1)
    decoded = problem.nodes(values, everyone)
    steps = decoded.diff(dim=1)
    length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
    energy = (n_pts - 1) * steps.square().sum((1, 2))
    return CurveSolution(points, length, energy, converged, iterations, decoded)


def _cg_iter(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"cg_iter must be a positive integer or None; got {value!r}")
    return value


#: ``cg_iter``: conjugate-gradient iterations a step may take before the pair's Jacobians
#: are formed again (default ``max(2, d // 4)``: forming them costs ``d`` forward-mode
#: tangents a node, an iteration one Jacobian–vector product and one backward pass).
#: ``jacobian_dtype``: form the preconditioner's Jacobians in this dtype (as ``"lm"``'s
#: option); the gradient and the products stay exact, so only the conjugate gradients'
#: speed depends on it.
NEWTON_CG = energy_solver(
    "newton-cg",
    newton_cg,
    "Levenberg–Marquardt on the chord energy with steps by conjugate gradients on "
    "Jacobian–vector products, preconditioned by the last Jacobians' Gauss–Newton matrix",
    options={"cg_iter": None, "jacobian_dtype": None},
    check_options={"cg_iter": _cg_iter, "jacobian_dtype": jacobian_dtype_option},
    chunk_kind="linear",
)
