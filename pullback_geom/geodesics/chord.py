"""The ``"lm"`` method: Levenberg–Marquardt on the observation-space chord energy.

``S = sum_k ||f(z_{k+1}) - f(z_k)||^2 = E / (N - 1)`` over the ``N - 2`` free nodes is a
sum of squares whose Gauss–Newton matrix is block-tridiagonal with ``d x d`` blocks
``J_k^T J_l``: :class:`ChordEnergy` states it as a
:class:`~pullback_geom.geodesics.lm.CurveProblem` and the one driver
(:func:`~pullback_geom.geodesics.lm.levenberg_marquardt`) solves it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..metric import PullbackMetric
from ._common import CurveSolution, jacobian_dtype_option
from .energy import energy_solver
from .lm import levenberg_marquardt

__all__ = ["ChordEnergy", "LM", "chord_laplacian", "newton_blocks"]

#: Unknowns ``m d`` up to which the Gauss–Newton blocks come from one product of all the
#: nodes' Jacobians (all ``m^2`` blocks) rather than two products of the ``2 m - 1`` used
#: (one thread, ``m = 14``, ``D = 784``: one product 16 ms against 26 ms at ``d = 8``
#: for 64 pairs, 19 ms against 13 ms at ``d = 16`` for 16 pairs).
GRAM_ONE_PRODUCT = 160


def chord_laplacian(values: Tensor, first: Tensor | None, last: Tensor | None) -> Tensor:
    """``2 x_k - x_k-1 - x_k+1`` along the free nodes' values ``(b, m, D)``, i.e.
    ``(1/2) dS/dx_k``, with ``first`` and ``last`` ``(b, D)`` the neighbours beyond the
    ends (``None``: zero, the chain Laplacian of a step with fixed ends)."""
    lap = 2 * values
    lap[:, 1:] -= values[:, :-1]
    lap[:, :-1] -= values[:, 1:]
    if first is not None:
        lap[:, 0] -= first
    if last is not None:
        lap[:, -1] -= last
    return lap


def newton_blocks(metric: PullbackMetric) -> bool:
    """Whether the chord energies' solvers take Newton's diagonal blocks on ``metric``: a
    smooth decoder whose second derivatives the chain rule contracts in about one
    backward pass (:meth:`~pullback_geom._core.evaluate.Evaluator.curvature_tape`); on a
    piecewise-linear decoder they vanish, and forward mode has no cheap contraction."""
    return metric.smooth and metric.evaluator.kernels.method == "chain"


class ChordEnergy:
    """The chord energy's sum of squares ``S = sum_k ||f(z_k+1) - f(z_k)||^2 = E / (N - 1)``
    as a :class:`~pullback_geom.geodesics.lm.CurveProblem`.

    Half the Gauss–Newton matrix has the diagonal blocks ``2 G_k`` and the couplings
    ``J_k^T J_k+1``; half the gradient is ``J_k^T (2 f_k - f_k-1 - f_k+1)``. The state is
    the free nodes' values (b, m, D) and that system, formed as the nodes are decoded: the
    Jacobians (b, m, d, D), the largest tensors by far, are dropped at once instead of
    being carried (selected, indexed) through the solver's iterations.

    With ``jacobian_dtype`` (e.g. ``torch.bfloat16``) the Jacobians and their products are
    formed in that dtype and the system returned in the nodes' dtype: an approximate
    Gauss–Newton system, while the energy that accepts or rejects each step stays exact.

    On smooth ``nn.Sequential`` decoders (the chain rule's) the diagonal blocks are
    Newton's: ``2 G_k`` plus the decoder's second derivatives contracted with the node's
    discrete acceleration ``2 f_k - f_k-1 - f_k+1``
    (:meth:`~pullback_geom._core.evaluate.Evaluator.curvature_tape`, about one more
    backward pass). Gauss–Newton leaves that term out, and on long curves of a curved
    decoder it is as large as the chain Laplacian's smoothest modes, so Gauss–Newton
    converges only linearly there (bundled smooth model, 64 random pairs in float64: 31.6
    iterations a pair on average, one pair unconverged at 200; with Newton's blocks 3.9,
    at most 12, 1.90 -> 0.48 s; the same lengths). A pair whose Newton blocks are not all
    positive definite (far from a minimum) keeps Gauss–Newton's for that step.
    """

    def __init__(
        self, metric: PullbackMetric, curve: Tensor, jacobian_dtype: torch.dtype | None = None
    ) -> None:
        self.metric, self.jacobian_dtype = metric, jacobian_dtype
        b, _, self.d = curve.shape
        self.exact = jacobian_dtype is None and newton_blocks(metric)
        self.ends = metric.evaluator.embed(curve[:, [0, -1]].reshape(-1, self.d)).reshape(b, 2, -1)

    def decode(self, free: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if not self.exact:
            return self._decode(free, idx)
        # Newton's blocks: the chain rule's recorded passes, in chunks of pairs that
        # bound what they keep (every layer's tangents).
        size = self.metric.evaluator.rows("curvature_tape", per_row=free.shape[1])
        if len(free) <= size:
            return self._decode(free, idx)
        parts = [
            self._decode(free[i : i + size], idx[i : i + size]) for i in range(0, len(free), size)
        ]
        return tuple(torch.cat(field) for field in zip(*parts, strict=True))

    def _decode(self, free: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, m, d = free.shape
        if self.exact:
            val, jac, contract = self.metric.evaluator.curvature_tape(free.reshape(-1, d))
        else:
            val, jac = self.metric.evaluator.value_and_jacobian(
                free.reshape(-1, d), tangent_dtype=self.jacobian_dtype
            )
        val, jt = val.reshape(b, m, -1), jac.mT.reshape(b, m, d, -1)
        ends = self.ends[idx]
        ar = torch.arange(m, device=val.device)
        lap = chord_laplacian(val, ends[:, 0], ends[:, 1])
        if m * d <= GRAM_ONE_PRODUCT:
            # One product of all the nodes' Jacobians gives the diagonal blocks G_k and
            # the couplings J_k^T J_{k+1} (faster than two products of strided slices in
            # few dimensions, where the products are small).
            stacked = jt.reshape(b, m * d, -1)
            full = (stacked @ stacked.mT).to(val.dtype).reshape(b, m, d, m, d)
            gram = full[:, ar, :, ar].transpose(0, 1)  # G_k
            couple = full[:, ar[:-1], :, ar[1:]].transpose(0, 1)  # J_k^T J_{k+1}
        else:
            # The one product computes all m^2 blocks, of which 2m - 1 are used.
            gram = (jt @ jt.mT).to(val.dtype)
            couple = (jt[:, :-1] @ jt[:, 1:].mT).to(val.dtype)
        grad = (jt @ lap.to(jt.dtype).unsqueeze(-1)).squeeze(-1).to(val.dtype)
        base = 2 * gram
        if self.exact:
            newton = base + contract(lap.reshape(b * m, -1)).view(b, m, d, d)
            definite = (torch.linalg.cholesky_ex(newton).info == 0).all(1)
            base = torch.where(definite[:, None, None, None], newton, base)
        return val, base, couple, grad

    def decode_values(self, free: Tensor, idx: Tensor) -> Tensor:
        b, m, d = free.shape
        return self.metric.evaluator.embed(free.reshape(-1, d)).reshape(b, m, -1)

    def nodes(self, val: Tensor, idx: Tensor) -> Tensor:
        """All decoded nodes (b, N, D), end points included."""
        ends = self.ends[idx]
        return torch.cat([ends[:, :1], val, ends[:, 1:]], dim=1)

    def objective(self, state: tuple[Tensor, ...], idx: Tensor) -> Tensor:
        return self.nodes(state[0], idx).diff(dim=1).square().sum((1, 2))

    def system(self, state: tuple[Tensor, ...], idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return state[1], state[2], state[3]


def _levenberg_marquardt(
    metric: PullbackMetric,
    curve: Tensor,
    max_iter: int,
    tol: float,
    *,
    jacobian_dtype: torch.dtype | None = None,
) -> CurveSolution:
    """The ``"lm"`` method: :func:`~pullback_geom.geodesics.lm.levenberg_marquardt` on
    :class:`ChordEnergy`."""
    n_pts = curve.shape[1]
    problem = ChordEnergy(metric, curve, jacobian_dtype)
    idx = torch.arange(curve.shape[0], device=curve.device)
    out = levenberg_marquardt(problem, curve[:, 1:-1], max_iter, tol)
    points = torch.cat([curve[:, :1], out.free, curve[:, -1:]], dim=1)
    decoded = problem.nodes(out.values, idx)
    steps = decoded.diff(dim=1)
    length = torch.linalg.vector_norm(steps, dim=-1).sum(-1)
    energy = (n_pts - 1) * steps.square().sum((1, 2))
    return CurveSolution(points, length, energy, out.converged, out.iterations, decoded)


#: ``jacobian_dtype``: form the Gauss–Newton system from Jacobians in this dtype, e.g.
#: ``torch.bfloat16``, whose chain-rule matrix products run ~3x faster than float32 on CPUs
#: with AVX-512 BF16 or AMX units (and slower on CPUs without them). Only the step direction
#: is approximate (its gradient carries relative errors near 4e-3): the energy that accepts
#: each step, the lengths and the values stay in the points' dtype. For coarse solves
#: (``tol >= 1e-3``); below that the rounded gradient can keep pairs from converging.
LM = energy_solver(
    "lm",
    _levenberg_marquardt,
    "batched Levenberg–Marquardt on the chord energy (block-tridiagonal Gauss–Newton)",
    options={"jacobian_dtype": None},
    check_options={"jacobian_dtype": jacobian_dtype_option},
)
