"""One batched Levenberg–Marquardt driver for the discrete curve energies.

Every energy the package minimises over the free nodes ``z_1 .. z_m`` of discrete curves
(the chord energy of :func:`~pullback_geom.geodesics.connecting_geodesic`, the ensemble
energy of :func:`~pullback_geom.geodesics.ensemble.ensemble_geodesic`) is a sum of
squares ``S`` whose Gauss–Newton matrix couples each node to its neighbours only: it is
block-tridiagonal. A :class:`CurveProblem` says how to decode nodes and form that system;
:func:`levenberg_marquardt` does the rest, per pair: its own damping, its own stopping
test, and only the pairs still running are evaluated.

Convergence means one thing: a step the model trusts (right after an accepted step, or
accepted itself) predicts a relative decrease of ``S`` below ``tol``. Pairs whose damping
grows past :data:`MAX_DAMPING` without an accepted step, or whose damped system cannot be
factorised, stop as not converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from .._core.linalg import block_tridiagonal_cholesky, block_tridiagonal_solve

__all__ = [
    "CurveProblem",
    "LMResult",
    "block_factor",
    "damped_factor",
    "damped_tridiagonal_step",
    "levenberg_marquardt",
    "next_damping",
]

#: Damping beyond which a pair counts as stuck (the step is then ~1e-11 of a Gauss–Newton one).
MAX_DAMPING = 1e8
#: Tenfold damping increases tried per step before a system counts as unfactorisable.
MAX_FACTOR_TRIES = 16
#: Systems of at most this many unknowns (m d) are factorised densely, larger ones by
#: blocks: measured by ``benchmarks/bench_geodesics.py --dims-only`` (dense wins at d = 2,
#: where its one LAPACK call beats m small ones).
DENSE_MAX_UNKNOWNS = 64
#: An accepted step whose actual decrease of ``S`` is below this fraction of the decrease
#: it predicted raises the damping (as a rejection does, :func:`next_damping`) instead of
#: lowering it: on a ReLU decoder the Gauss–Newton model breaks at the creases a long step
#: crosses, and undamped steps then creep along them for tens of iterations. On the
#: bundled model (192 pairs, 8 draws of 24 test codes, graph starts) iterations fell from
#: 1418 to 1281, the median length error stayed 7.5e-4 and the 90th percentile went from
#: 4.4e-3 to 4.2e-3.
POOR_GAIN = 0.25


def next_damping(lam: Tensor, good: Tensor, grow: Tensor) -> tuple[Tensor, Tensor]:
    """The damping after a step: a third where the step was ``good``, else raised by
    ``grow``, which doubles with every raise in a row (Nielsen's rule) and is 4 again
    after a good step.

    From the floor (1e-9) a step that crosses a ReLU crease needs damping near 1 before it
    is accepted: by fourfold raises that took 13 rejected trials on one of 24 pairs of the
    bundled model, each a decoding of its nodes; by Nielsen's, 6.

    Parameters
    ----------
    lam, grow : Tensor, shape (B,)
    good : Tensor, shape (B,), bool

    Returns
    -------
    lam, grow : Tensor, shape (B,)
    """
    lam = torch.where(good, (lam / 3).clamp_min(1e-9), lam * grow)
    return lam, torch.where(good, 4.0, grow * 2)


class CurveProblem(Protocol):
    """A sum of squares ``S`` over the free nodes of ``B`` discrete curves.

    ``state`` is a tuple of tensors with the pairs first, the decoded free nodes first of
    all; ``idx`` says which of the ``B`` pairs the rows are (the running ones).
    """

    def decode(self, free: Tensor, idx: Tensor) -> tuple[Tensor, ...]:
        """The state at free nodes ``(b, m, d)`` of the pairs ``idx``."""

    def decode_values(self, free: Tensor, idx: Tensor) -> Tensor:
        """The state's first tensor alone (no Jacobians): all that ``objective`` reads, and
        all that deciding on a trial step needs."""

    def objective(self, state: tuple[Tensor, ...], idx: Tensor) -> Tensor:
        """``S``, shape (b,)."""

    def system(self, state: tuple[Tensor, ...], idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Half the Gauss–Newton matrix and half the gradient of ``S``: diagonal blocks
        (b, m, d, d), the blocks ``C_k`` with ``-C_k`` at ``(k, k + 1)`` (b, m - 1, d, d),
        and the gradient (b, m, d)."""


@dataclass
class LMResult:
    """What :func:`levenberg_marquardt` returns for ``B`` pairs.

    Attributes
    ----------
    free : Tensor, shape (B, m, d)
        The free nodes.
    values : Tensor, shape (B, m, ...)
        The first state tensor at them (the decoded nodes).
    objective : Tensor, shape (B,)
    converged : Tensor, shape (B,), bool
    iterations : Tensor, shape (B,), int
    """

    free: Tensor
    values: Tensor
    objective: Tensor
    converged: Tensor
    iterations: Tensor


def damped_tridiagonal_step(
    base: Tensor, couple: Tensor, grad: Tensor, lam: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Levenberg–Marquardt step of a block-tridiagonal Gauss–Newton system, per pair.

    Solves ``(A + lam * scale * I) step = -grad`` where ``A`` has the diagonal blocks
    ``base`` and the off-diagonal blocks ``-couple`` (above) and ``-couple^T`` (below),
    and ``scale`` is half the mean diagonal of ``base``. Where the damped matrix is not
    positive definite, ``lam`` grows tenfold, at most :data:`MAX_FACTOR_TRIES` times.

    Parameters
    ----------
    base : Tensor, shape (B, m, d, d)
    couple : Tensor, shape (B, m - 1, d, d)
    grad : Tensor, shape (B, m, d)
    lam : Tensor, shape (B,)

    Returns
    -------
    step : Tensor, shape (B, m, d)
        Zero where unsolved.
    predicted : Tensor, shape (B,)
        The decrease ``-grad . step`` of the model the step minimises.
    lam : Tensor, shape (B,)
    solved : Tensor, shape (B,), bool
        False where the system could not be factorised (non-finite entries).
    """
    b, m, d, _ = base.shape
    if m * d <= DENSE_MAX_UNKNOWNS:
        ar = torch.arange(m, device=base.device)
        blocks = base.new_zeros(b, m, m, d, d)
        blocks[:, ar[:-1], ar[1:]] = -couple
        blocks[:, ar[1:], ar[:-1]] = -couple.mT

        def dense(damped: Tensor) -> tuple[Tensor, Tensor]:
            blocks[:, ar, ar] = damped
            mat = blocks.permute(0, 1, 3, 2, 4).reshape(b, m * d, m * d)
            chol, info = torch.linalg.cholesky_ex(mat)
            return chol, (info == 0) & torch.isfinite(chol).all((1, 2))

        chol, solved, lam, _ = damped_factor(base, lam, dense)
        step = torch.cholesky_solve(-grad.reshape(b, m * d, 1), chol).reshape(b, m, d)
    else:
        (chol_d, chol_l), solved, lam, _ = damped_factor(base, lam, block_factor(couple))
        step = block_tridiagonal_solve(chol_d, chol_l, -grad)
    step = torch.where(solved[:, None, None], step, torch.zeros_like(step))
    predicted = -(step * grad).sum((1, 2))
    return step, predicted, lam, solved


def block_factor(couple: Tensor) -> Callable[[Tensor], tuple[tuple[Tensor, Tensor], Tensor]]:
    """The block Cholesky factorisation of damped diagonal blocks with these couplings
    (``-couple`` above the diagonal), for :func:`damped_factor`."""

    def factorise(damped: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        chol_d, chol_l, solved = block_tridiagonal_cholesky(damped, -couple.mT)
        return (chol_d, chol_l), solved

    return factorise


def damped_factor(
    base: Tensor, lam: Tensor, factorise: Callable[[Tensor], tuple[Any, Tensor]]
) -> tuple[Any, Tensor, Tensor, Tensor]:
    """``factorise`` the Gauss–Newton matrices damped by ``lam * scale * I`` (``scale``
    half the mean diagonal of ``base``), growing ``lam`` tenfold where a matrix is not
    positive definite, at most :data:`MAX_FACTOR_TRIES` times.

    Parameters
    ----------
    base : Tensor, shape (B, m, d, d)
        The diagonal blocks.
    lam : Tensor, shape (B,)
    factorise : callable
        ``damped diagonal blocks (B, m, d, d) -> (factor, solved (B,) bool)``.

    Returns
    -------
    factor, solved : the last factorisation and where it succeeded
    lam : Tensor, shape (B,)
    scale : Tensor, shape (B,)
    """
    eye = torch.eye(base.shape[-1], dtype=base.dtype, device=base.device)
    scale = base.diagonal(dim1=-2, dim2=-1).mean((-1, -2)).clamp_min(1e-30) / 2
    for _ in range(MAX_FACTOR_TRIES):
        factor, solved = factorise(base + (lam * scale)[:, None, None, None] * eye)
        if bool(solved.all()):
            break
        lam = torch.where(solved, lam, lam * 10)
    return factor, solved, lam, scale


def levenberg_marquardt(problem: CurveProblem, free: Tensor, max_iter: int, tol: float) -> LMResult:
    """Minimise ``problem``'s ``S`` over the free nodes, per pair (see the module docstring).

    Parameters
    ----------
    problem : CurveProblem
    free : Tensor, shape (B, m, d)
        Initial free nodes.
    max_iter : int
    tol : float
        Relative decrease of ``S`` predicted by a trusted step below which a pair has
        converged.

    Returns
    -------
    LMResult
    """
    b = free.shape[0]
    device = free.device
    converged = torch.zeros(b, dtype=torch.bool, device=device)
    iterations = torch.zeros(b, dtype=torch.long, device=device)
    out_free = free.clone()
    idx = torch.arange(b, device=device)
    free = free.clone()
    state = problem.decode(free, idx)
    out_values = state[0].new_empty((b, *state[0].shape[1:]))
    obj = problem.objective(state, idx)
    out_obj = obj.clone()
    lam = torch.full((b,), 1e-3, dtype=free.dtype, device=device)
    grow = torch.full_like(lam, 4.0)
    trusted = torch.zeros(b, dtype=torch.bool, device=device)

    def retire(sel: Tensor, ok: Tensor, *extra: Tensor) -> tuple[Tensor, ...]:
        """Write the pairs ``idx[sel]`` out (``ok``: converged) and drop them."""
        nonlocal idx, free, state, obj, lam, grow, trusted
        rows = idx[sel]
        out_free[rows], out_values[rows], out_obj[rows] = free[sel], state[0][sel], obj[sel]
        converged[rows] = ok[sel]
        keep = ~sel
        idx, free, obj, trusted = idx[keep], free[keep], obj[keep], trusted[keep]
        lam, grow = lam[keep], grow[keep]
        state = tuple(x[keep] for x in state)
        return tuple(x[keep] for x in extra)

    with torch.no_grad():
        for iteration in range(max_iter):
            if idx.numel() == 0:
                break
            base, couple, grad = problem.system(state, idx)
            step, predicted, lam, solved = damped_tridiagonal_step(base, couple, grad, lam)
            small = solved & (predicted <= tol * obj.clamp_min(1e-300))
            # Right after an accepted step (the model trusted) a step that promises less
            # than tol means convergence: stop without decoding it.
            stop = (small & trusted) | ~solved
            if bool(stop.any()):
                step, predicted = retire(stop, small & trusted, step, predicted)
                if idx.numel() == 0:
                    break
            trial = free + step
            # Trial steps are decoded by values only, which is all that accepting them
            # needs; Jacobians are formed only where an accepted step leaves the pair
            # running (a rejected or final step's would never be used: ~a third of the
            # solver's cost at tol = 1e-2).
            values_t = problem.decode_values(trial, idx)
            obj_t = problem.objective((values_t,), idx)
            accept = obj_t <= obj
            obj_before = obj
            obj = torch.where(accept, obj_t, obj)
            done = accept & (predicted <= tol * obj.clamp_min(1e-300))
            good = accept & (obj_before - obj_t >= POOR_GAIN * predicted)
            lam, grow = next_damping(lam, good, grow)
            stuck = ~accept & (lam > MAX_DAMPING)
            trusted = accept
            iterations[idx] += 1
            if bool(accept.any()):
                free = torch.where(accept[:, None, None], trial, free)
                state[0][accept] = values_t[accept]
                again = accept & ~done
                if iteration < max_iter - 1 and bool(again.any()):
                    rows = again.nonzero().squeeze(1)
                    fresh = problem.decode(trial[rows], idx[rows])
                    for old, new in zip(state, fresh, strict=True):
                        old[rows] = new
            if bool((done | stuck).any()):
                retire(done | stuck, done)
        if idx.numel():  # ran out of iterations
            retire(torch.ones_like(idx, dtype=torch.bool), torch.zeros_like(trusted))
    return LMResult(out_free, out_values, out_obj, converged, iterations)
