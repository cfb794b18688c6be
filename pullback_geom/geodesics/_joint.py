"""The joint Fréchet mean's sum of squares and its Levenberg–Marquardt loop (see
:mod:`~pullback_geom.geodesics.frechet`, which states the problem and what converged
means).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._core.linalg import block_tridiagonal_cholesky
from ..metric import PullbackMetric
from .chord import chord_laplacian, newton_blocks
from .lm import MAX_DAMPING, MAX_FACTOR_TRIES, next_damping

__all__ = ["EXTRAPOLATE", "STALL_EPS", "JointChords", "solve"]

#: An accepted step whose decrease exceeds this many times the model's prediction is
#: tried at twice and four times its length (the longest that lowers the sum is kept).
EXTRAPOLATE = 1.5

#: A set whose accepted step left its objective unchanged (to the last bit) has converged
#: when the step's predicted decrease was below this many rounding units of the objective
#: (float32: 1.2e-5 of it; the bundled ReLU model's floor was 1.6e-6).
STALL_EPS = 100.0


class JointChords:
    """``sum_i w_i S_i`` of ``P`` curves from ``k`` free means to fixed ends, with its
    Gauss–Newton system, decoded set by set.

    Curve ``i`` belongs to set ``owner[i]``, with weight ``w[i] > 0``; its first node is
    that set's mean, its last the fixed ``ends[i]``, its ``m = N - 2`` interior nodes free.
    The state is decoded values and the system's blocks in unweighted form (the weights
    enter where curves meet the mean): per curve the diagonal blocks ``2 G_k`` (P, m, d, d),
    the couplings ``J_k^T J_k+1`` (P, m - 1, d, d), half the gradient ``J_k^T (2 f_k -
    f_k-1 - f_k+1)`` (P, m, d) and the link ``J_1^T J_mean`` (P, d, d); per set ``G(m)``
    (k, d, d) and half the mean's gradient ``J_m^T sum_i w_i (f_m - f_i1)`` (k, d); with
    :attr:`exact` (Newton's steps) the second-derivative terms of the diagonal blocks
    (P, m, d, d) and of the mean's block (k, d, d), which replaces the secant correction.
    Jacobians are dropped as soon as the blocks are formed (as in :class:`ChordEnergy`).
    """

    def __init__(
        self,
        metric: PullbackMetric,
        ends: Tensor,
        owner: Tensor,
        w: Tensor,
        k: int,
        jacobian_dtype: torch.dtype | None = None,
    ):
        self.metric, self.owner, self.w, self.k = metric, owner, w, k
        self.jacobian_dtype = jacobian_dtype
        with torch.no_grad():
            self.end_values = metric.evaluator.embed(ends)
        self.values = self.mean_values = torch.empty(0)
        # Newton's Hessian where the chain rule contracts it cheaply (see the frechet module).
        self.exact = newton_blocks(metric)

    def decode(self, means: Tensor, nodes: Tensor, sets: Tensor) -> None:
        """Decode the means (k, d) and nodes (P, m, d) of the ``sets`` (bool, (k,)) and
        form their systems."""
        ev, owner = self.metric.evaluator, self.owner
        p, m, d = nodes.shape
        if self.values.numel() == 0:  # first call: every buffer, every set
            big = self.end_values.shape[1]
            self.values = nodes.new_zeros(p, m, big)
            self.mean_values = nodes.new_zeros(self.k, big)
            self.diag, self.couple = nodes.new_zeros(p, m, d, d), nodes.new_zeros(p, m - 1, d, d)
            self.grad, self.link = nodes.new_zeros(p, m, d), nodes.new_zeros(p, d, d)
            self.mean_gram, self.mean_grad = (
                means.new_zeros(self.k, d, d),
                means.new_zeros(self.k, d),
            )
            self.correction = means.new_zeros(self.k, d, d)
            self.curvature = nodes.new_zeros(p, m, d, d) if self.exact else None
            self.mean_damping = means.new_zeros(self.k)
        tangents = {"tangent_dtype": self.jacobian_dtype}
        if self.exact:
            fm, jm, mean_curvature = ev.curvature_tape(means[sets], **tangents)
        else:
            fm, jm = ev.value_and_jacobian(means[sets], **tangents)
        self.mean_values[sets] = fm
        jac_mean = jm.new_zeros(self.k, *jm.shape[1:])
        jac_mean[sets] = jm
        # Products of Jacobians in jacobian_dtype are stored in the solve's dtype.
        dtype = nodes.dtype
        self.mean_gram[sets] = (jm.mT @ jm).to(dtype)
        rows = sets[owner].nonzero().squeeze(1)
        # Chunks of curves bound the Jacobians' memory, as the energy driver's do.
        size = ev.rows("curvature_tape" if self.exact else "jacobian", per_row=m)
        for part in rows.split(size):
            flat = nodes[part].reshape(-1, d)
            if self.exact:
                val, jac, curvature = ev.curvature_tape(flat, **tangents)
            else:
                val, jac = ev.value_and_jacobian(flat, **tangents)
            val, jt = val.reshape(len(part), m, -1), jac.mT.reshape(len(part), m, d, -1)
            # (1/2) dS/df_k, with the mean and the end point as the neighbours beyond.
            lap = chord_laplacian(val, self.mean_values[owner[part]], self.end_values[part])
            self.values[part] = val
            self.diag[part] = (2 * (jt @ jt.mT)).to(dtype)
            self.couple[part] = (jt[:, :-1] @ jt[:, 1:].mT).to(dtype)
            self.grad[part] = (jt @ lap.to(jt.dtype).unsqueeze(-1)).squeeze(-1).to(dtype)
            self.link[part] = (jt[:, 0] @ jac_mean[owner[part]]).to(dtype)
            if self.exact:  # half the Hessian's term sum_a lap_a D^2 f_a
                term = curvature(lap.reshape(-1, lap.shape[-1])).view(-1, m, d, d)
                self.curvature[part] = term.to(dtype)
        pulls = self.w[rows, None] * (self.mean_values[owner[rows]] - self.values[rows, 0])
        summed = torch.zeros_like(self.mean_values).index_add_(0, owner[rows], pulls)
        grad = (jm.mT @ summed[sets].to(jm.dtype).unsqueeze(-1)).squeeze(-1)
        self.mean_grad[sets] = grad.to(dtype)
        if self.exact:  # the term the secant correction estimates otherwise, exactly
            self.correction[sets] = mean_curvature(summed[sets]).to(dtype)

    def learn(self, mean_step: Tensor, sets: Tensor) -> None:
        """Update the ``sets``' secant correction of the mean's block after their accepted
        ``mean_step`` (k, d), from the gradient at the new mean (decoded).

        Gauss–Newton leaves out the residuals' second derivatives, which in the mean's
        block add up to the curvature term of the Fréchet function's Hessian (on the
        bundled models ~40 % of it: the mean converged linearly, by a factor ~0.6 a step).
        A symmetric rank-one update of a ``d x d`` correction ``C`` (NL2SOL's structured
        quasi-Newton, on the mean alone) makes ``(A + C) step`` match the change of the
        mean's gradient: the part of it that the Gauss–Newton model did not predict is
        the new gradient plus ``(C + damping) step``.
        """
        u = self.mean_grad + self.mean_damping[:, None] * mean_step
        den = (u * mean_step).sum(-1)
        # The usual SR1 safeguard: skip updates whose denominator is lost in rounding.
        ok = sets & (den.abs() > 1e-8 * u.norm(dim=-1) * mean_step.norm(dim=-1))
        update = u[:, :, None] * u[:, None, :] / torch.where(ok, den, 1)[:, None, None]
        self.correction = torch.where(ok[:, None, None], self.correction + update, self.correction)

    def objective(self, mean_values: Tensor, values: Tensor, rows: Tensor) -> Tensor:
        """``sum_i w_i S_i`` per set (k,) over the curves ``rows``, from decoded means
        (k, D) and the rows' decoded interior nodes (r, m, D)."""
        owner = self.owner[rows]
        nodes = torch.cat([mean_values[owner, None], values, self.end_values[rows, None]], dim=1)
        chords = nodes.diff(dim=1).square().sum((1, 2))
        return mean_values.new_zeros(self.k).index_add_(0, owner, self.w[rows] * chords)

    def step(self, lam: Tensor, sets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The damped Gauss–Newton step of the ``sets`` by block elimination of the curves.

        Each block is damped by ``lam`` times half its mean diagonal (per curve, as
        :func:`~pullback_geom.geodesics.lm.damped_tridiagonal_step` damps a pair, and for
        the mean its own block ``W G(m)``); where a set's system cannot be factorised its
        ``lam`` grows tenfold, at most :data:`MAX_FACTOR_TRIES` times.

        Returns
        -------
        mean_step : Tensor, shape (k, d)
        node_step : Tensor, shape (P, m, d)
            Zero outside the sets, and where unsolved.
        predicted : Tensor, shape (k,)
            The decrease ``-grad . step`` of the model the step minimises.
        lam : Tensor, shape (k,)
        solved : Tensor, shape (k,), bool
        """
        rows = sets[self.owner].nonzero().squeeze(1)
        owner, w = self.owner[rows], self.w[rows]
        diag, couple, grad, link = (
            self.diag[rows],
            self.couple[rows],
            self.grad[rows],
            self.link[rows],
        )
        r, m, d, _ = diag.shape
        eye = torch.eye(d, dtype=diag.dtype, device=diag.device)
        curve_scale = diag.diagonal(dim1=-2, dim2=-1).mean((-1, -2)).clamp_min(1e-30) / 2
        gauss_newton = diag
        if self.exact:
            diag = diag + self.curvature[rows]
        total = self.mean_gram.new_zeros(self.k).index_add_(0, owner, w)
        mean_block = total[:, None, None] * self.mean_gram
        mean_scale = mean_block.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30) / 2
        # Right-hand sides of each curve's solve: its gradient and, in the first node's
        # block, the link's d columns (the curve's response to a step of the mean).
        rhs = grad.new_zeros(r, m, d, 1 + d)
        rhs[..., 0] = grad
        rhs[:, 0, :, 1:] = link
        solved = torch.zeros_like(sets)
        for _ in range(MAX_FACTOR_TRIES):
            damped = diag + (lam[owner] * curve_scale)[:, None, None, None] * eye
            chol_d, chol_l, ok = block_tridiagonal_cholesky(damped, -couple.mT)
            sol = _block_tridiagonal_solve_many(chol_d, chol_l, rhs)
            y, big_y = sol[..., 0], sol[..., 1:]  # T^-1 h, T^-1 E_1 U
            # Schur complement of the curves: W G + damping - sum_i w_i U_i^T (T_i^-1 E_1 U_i)_1
            schur = mean_block + self.correction + (lam * mean_scale)[:, None, None] * eye
            schur = schur.index_add(0, owner, -w[:, None, None] * (link.mT @ big_y[:, 0]))
            rhs_mean = -self.mean_grad.index_add(
                0, owner, w[:, None] * (link.mT @ y[:, 0, :, None]).squeeze(-1)
            )
            chol, info = torch.linalg.cholesky_ex(schur)
            failed = torch.zeros_like(sets).index_fill_(0, owner[~ok], True)
            solved = sets & (info == 0) & ~failed & torch.isfinite(chol).all((1, 2))
            if bool(solved[sets].all()):
                break
            lam = torch.where(sets & ~solved, lam * 10, lam)
            # A correction (or Newton's curvature term) that broke positive definiteness
            # is dropped: plain Gauss–Newton.
            self.correction[sets & ~solved] = 0
            diag = torch.where((sets & ~solved)[owner, None, None, None], gauss_newton, diag)
        chol = torch.where(solved[:, None, None], chol, eye)
        mean_step = torch.cholesky_solve(rhs_mean.unsqueeze(-1), chol).squeeze(-1)
        mean_step = torch.where(solved[:, None], mean_step, 0)
        self.mean_damping = lam * mean_scale
        nodes = -y + (big_y @ mean_step[owner, None, :, None]).squeeze(-1)
        nodes = torch.where(solved[owner, None, None], nodes, 0)
        node_step = torch.zeros_like(self.grad).index_copy_(0, rows, nodes)
        curves = (w * (grad * nodes).sum((1, 2))).to(mean_step.dtype)
        predicted = -(self.mean_grad * mean_step).sum(-1)
        predicted = predicted.index_add(0, owner, -curves)
        return mean_step, node_step, predicted, lam, solved


def _block_tridiagonal_solve_many(chol_diag: Tensor, chol_lower: Tensor, rhs: Tensor) -> Tensor:
    """:func:`~pullback_geom._core.linalg.block_tridiagonal_solve` for ``r`` right-hand
    sides at once: ``rhs`` (B, m, d, r) -> (B, m, d, r)."""
    m = rhs.shape[1]
    solve = torch.linalg.solve_triangular
    y = torch.empty_like(rhs)
    y[:, 0] = solve(chol_diag[:, 0], rhs[:, 0], upper=False)
    for k in range(1, m):  # forward: L y = rhs
        y[:, k] = solve(
            chol_diag[:, k], rhs[:, k] - chol_lower[:, k - 1] @ y[:, k - 1], upper=False
        )
    out = torch.empty_like(rhs)
    out[:, m - 1] = solve(chol_diag[:, m - 1].mT, y[:, m - 1], upper=True)
    for k in range(m - 2, -1, -1):  # backward: L^T x = y
        r = y[:, k] - chol_lower[:, k].mT @ out[:, k + 1]
        out[:, k] = solve(chol_diag[:, k].mT, r, upper=True)
    return out


def _trial(
    problem: JointChords,
    means: Tensor,
    nodes: Tensor,
    mean_step: Tensor,
    node_step: Tensor,
    sets: Tensor,
    rows: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``scale`` times the step of the ``sets`` (their curves ``rows``), decoded by values
    only (accepting a step needs no more): the trial means (k, d), the rows' nodes
    (r, m, d), the decoded means (k, D), the rows' decoded nodes (r, m, D) and the
    objective per set (k,)."""
    ev = problem.metric.evaluator
    trial_means = means + torch.where(sets[:, None], scale * mean_step, 0)
    trial_nodes = nodes[rows] + scale * node_step[rows]
    trial_fm = problem.mean_values.clone()
    trial_fm[sets] = ev.embed(trial_means[sets])
    d = nodes.shape[-1]
    values = ev.embed(trial_nodes.reshape(-1, d)).reshape(len(rows), nodes.shape[1], -1)
    return trial_means, trial_nodes, trial_fm, values, problem.objective(trial_fm, values, rows)


def _merge(trial: tuple, far: tuple, better: Tensor, row_owner: Tensor, there: Tensor) -> tuple:
    """``trial`` (over ``rows``) with the ``better`` sets taken from ``far`` (over the rows
    ``there`` of them); ``row_owner`` is the set of each of ``rows``."""
    means, nodes, fm, values, obj = (t.clone() for t in trial)
    means[better], fm[better] = far[0][better], far[2][better]
    take = better[row_owner]
    pick = better[row_owner[there]]
    nodes[take], values[take] = far[1][pick], far[3][pick]
    return means, nodes, fm, values, obj


def solve(
    problem: JointChords, means: Tensor, nodes: Tensor, sets: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Levenberg–Marquardt over ``means`` (k, d) and ``nodes`` (P, m, d) for the ``sets``
    (bool, (k,)), each set with its own damping and stopping test, as
    :func:`~pullback_geom.geodesics.lm.levenberg_marquardt` runs pairs.

    Returns the means, the nodes, the iterations (k,) and whether each set converged.
    """
    k = means.shape[0]
    owner = problem.owner
    means, nodes = means.clone(), nodes.clone()
    converged = torch.zeros(k, dtype=torch.bool, device=means.device)
    iterations = torch.zeros(k, dtype=torch.long, device=means.device)
    lam = torch.full((k,), 1e-3, dtype=means.dtype, device=means.device)
    trusted = torch.zeros_like(converged)
    grow = torch.full_like(lam, 4.0)
    running = sets.clone()
    with torch.no_grad():
        problem.decode(means, nodes, torch.ones_like(sets))
        everything = torch.arange(owner.shape[0], device=owner.device)
        obj = problem.objective(problem.mean_values, problem.values, everything)
        for iteration in range(max_iter):
            if not bool(running.any()):
                break
            mean_step, node_step, predicted, lam, solved = problem.step(lam, running)
            small = solved & (predicted <= tol * obj.clamp_min(1e-300))
            # Right after an accepted step (the model trusted) a step that promises less
            # than tol means convergence: stop without decoding it.
            stop = running & ((small & trusted) | ~solved)
            converged |= stop & small & trusted
            running &= ~stop
            if not bool(running.any()):
                break
            rows = running[owner].nonzero().squeeze(1)
            trial = _trial(problem, means, nodes, mean_step, node_step, running, rows, 1.0)
            obj_t = trial[-1]
            accept = running & (obj_t <= obj)
            # An accepted step that the objective cannot tell from no step, where the
            # model promised little, means the sum is at its rounding floor: in float32
            # the predicted decrease of the curves' nodes stalls near 1.6e-6 of it (50
            # codes of the bundled ReLU model: 27 of 47 iterations spent there).
            floor = STALL_EPS * torch.finfo(obj.dtype).eps * obj
            flat = accept & (obj_t == obj) & (predicted <= floor)
            gain = obj - obj_t
            obj = torch.where(accept, obj_t, obj)
            done = accept & ((predicted <= tol * obj.clamp_min(1e-300)) | flat)
            # Where the step gained much more than the model promised, the model's
            # curvature is too high (on ReLU decoders the nodes' crease crossings lower the
            # energy beyond it: a k-means cluster whose members changed gained 1.7x the
            # prediction for 40 steps): try twice and four times the step, decoded by values.
            longer = accept & ~done & (gain > EXTRAPOLATE * predicted)
            extended = torch.zeros_like(longer)
            for scale in (2.0, 4.0):
                if not bool(longer.any()):
                    break
                there = longer[owner[rows]]
                far = _trial(
                    problem, means, nodes, mean_step, node_step, longer, rows[there], scale
                )
                better = longer & (far[-1] < obj)
                obj = torch.where(better, far[-1], obj)
                trial = _merge(trial, far, better, owner[rows], there)
                extended |= better
                longer = better
            trial_means, trial_nodes, trial_fm, trial_values, _ = trial
            # Rejections in a row multiply the damping by 4, 8, 16, ... (lm.next_damping):
            # from the floor a ReLU crease's rejected step needs ~12 fourfold raises
            # before the damping bites, each costing a decoding of every node.
            damped, grow = next_damping(lam, accept, grow)
            lam = torch.where(running, damped, lam)
            stuck = running & ~accept & (lam > MAX_DAMPING)
            trusted = accept
            iterations += running.long()
            if bool(accept.any()):
                means = torch.where(accept[:, None], trial_means, means)
                moved = accept[owner[rows]]
                nodes[rows[moved]] = trial_nodes[moved]
                problem.mean_values[accept] = trial_fm[accept]
                problem.values[rows[moved]] = trial_values[moved]
                again = accept & ~done
                if iteration < max_iter - 1 and bool(again.any()):
                    problem.decode(means, nodes, again)
                    # The secant update holds for the model's own step only.
                    if not problem.exact:
                        problem.learn(mean_step, again & ~extended)
            converged |= done
            running &= ~(done | stuck)
    return means, nodes, iterations, converged
