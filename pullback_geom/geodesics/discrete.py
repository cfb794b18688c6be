r"""Discrete geodesic calculus: exp, log and parallel transport that need only ``f``.

Rumpf & Wirth ("Variational time discretization of geodesic calculus", IMA J. Numer.
Anal. 2015) build exp, log and transport from a local energy ``W(a, b)`` alone. With the
decoded squared distance ``W(a, b) = ||f(a) - f(b)||^2`` the discrete path energy
``E = K sum_k W(c_k, c_{k+1})`` is the curve energy the energy solvers minimise, so

* **discrete log**: the energy-minimising curve ``c_0 = p, ..., c_K = q``; ``log_p q =
  K G(p)^{-1} J(p)^T (f(c_1) - f(p))``, ``K`` times its first decoded step projected on
  the tangent plane at ``p`` (Rumpf & Wirth take ``K (c_1 - p)``, a one-sided difference,
  first-order accurate; this is second order, and minus half the gradient of the squared
  length). Where the round trip through the discrete exp falls short (creases of a ReLU
  decoder, a solver tolerance), ``c_1`` is refined by shooting;
* **discrete exp**: from ``c_0 = p``, ``c_1`` solves ``J(p)^T (f(c_1) - f(p)) = G(p) v /
  K`` (the inverse of the log's first step), and each next node the discrete
  Euler–Lagrange equation of ``E`` at the previous one,
  ``J(c_k)^T (2 f(c_k) - f(c_{k-1}) - f(c_{k+1})) = 0`` for ``c_{k+1}`` (``d`` equations in
  ``d`` unknowns, solved by a damped Newton method);
* **discrete parallel transport**: the pullback's Levi-Civita connection is the tangential
  part of the ambient derivative, so ``v_{k+1} = argmin_v ||J(c_{k+1}) v - J(c_k) v_k||``.

None of them differentiates ``G``: they need the decoder's values and Jacobians only, so
they stay defined on decoders whose metric jumps, like ReLU networks, where the geodesic
ODE is ill-posed. There the discrete exp is discontinuous where a node crosses a unit's
boundary (its equation uses ``J`` at the node), so ``exp(log q) == q`` can fail for some
pairs; ``DiscreteInfo.converged`` says which.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._core.checks import batch_curves
from .._core.linalg import solve_square, spd_cholesky
from ..metric import PullbackMetric
from ._common import _tolerance, below_resolution
from ._solver import InitialValueResult, Solver

__all__ = ["DISCRETE_EXP", "DISCRETE_STEPS", "discrete_transport"]

#: Default number of steps ``K`` of the discrete geodesics (``K + 1`` nodes).
DISCRETE_STEPS = 16


class DiscreteInfo(NamedTuple):
    """How a discrete exp or log went, per curve.

    Attributes
    ----------
    converged : Tensor, shape (B,), bool
        exp: every node's Euler–Lagrange equation was solved to the tolerance and the
        curve stayed finite. log: the discrete exp of the returned velocity lands on
        ``q`` within the end-point tolerance.
    iterations : Tensor, shape (B,), int
        exp: Newton iterations summed over the nodes. log: shooting iterations (0 where
        the energy curve's first step already met the tolerance).
    error : Tensor, shape (B,)
        exp: the largest relative residual of a node's equation. log: the end-point
        error ``|exp_p(log_p q) - q|``.
    """

    converged: Tensor
    iterations: Tensor
    error: Tensor


def check_steps(n_steps) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}")
    return n_steps


def _next_node(
    metric: PullbackMetric,
    prev: Tensor,
    node: Tensor,
    val_prev: Tensor,
    val: Tensor,
    jac: Tensor,
    tol: float,
    max_newton: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One step of the discrete exp: ``c_{k+1}`` from ``c_{k-1}`` and ``c_k``, batched.

    Solves ``J_k^T (f(x) - (2 f(c_k) - f(c_{k-1}))) = 0`` by Newton's method on ``x``
    (Jacobian ``J_k^T J(x)``), started from the linear extrapolation ``2 c_k - c_{k-1}``.
    The residual is measured in the norm ``G_k^{-1}`` (the length of the tangential part
    of ``f(x) - target``), relative to the last decoded step ``|f(c_k) - f(c_{k-1})|``;
    a step that does not decrease it is halved, up to ten times in a row.

    Parameters
    ----------
    prev, node : Tensor, shape (B, d)
        ``c_{k-1}`` and ``c_k``.
    val_prev, val : Tensor, shape (B, D)
        Their decoded values.
    jac : Tensor, shape (B, D, d)
        ``J(c_k)``.

    Returns
    -------
    x : Tensor, shape (B, d)
        ``c_{k+1}`` (NaN where the equation could not be solved).
    val_x : Tensor, shape (B, D)
    jac_x : Tensor, shape (B, D, d)
    ok : Tensor, shape (B,), bool
    iterations : Tensor, shape (B,), int
    residual : Tensor, shape (B,)
        Final relative residual.
    """
    b, d = node.shape
    jt = jac.mT
    chol = spd_cholesky(jt @ jac, what="metric tensor (discrete exp)", stacklevel=5)
    target = 2 * val - val_prev
    scale = torch.linalg.vector_norm(val - val_prev, dim=-1).clamp_min(torch.finfo(val.dtype).tiny)
    bound = 1e6 * (1 + node.abs().amax(-1) + (node - prev).abs().amax(-1))
    # Short steps cannot meet a relative tolerance below the rounding of f itself.
    eps = torch.finfo(val.dtype).eps
    tol = torch.clamp(64 * eps * torch.linalg.vector_norm(target, dim=-1) / scale, min=tol)

    def merit(vx: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        res = (jt[rows] @ (vx - target[rows]).unsqueeze(-1)).squeeze(-1)
        white = torch.linalg.solve_triangular(chol[rows], res.unsqueeze(-1), upper=False)
        return res, torch.linalg.vector_norm(white.squeeze(-1), dim=-1) / scale[rows]

    x = 2 * node - prev
    val_x, jac_x = metric.evaluator.value_and_jacobian(x)
    every = torch.arange(b, device=node.device)
    res, err = merit(val_x, every)
    ok = err <= tol
    failed = torch.zeros_like(ok)
    iterations = torch.zeros(b, dtype=torch.long, device=node.device)
    alpha = torch.ones(b, dtype=node.dtype, device=node.device)
    halvings = torch.zeros_like(iterations)
    for _ in range(max_newton):
        act = (~ok & ~failed).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        newton = solve_square(jt[act] @ jac_x[act], -res[act].unsqueeze(-1)).squeeze(-1)
        trial = x[act] + alpha[act, None] * newton
        wild = ~torch.isfinite(trial).all(-1) | (trial.abs().amax(-1) > bound[act])
        trial = torch.where(wild[:, None], x[act], trial)
        val_t, jac_t = metric.evaluator.value_and_jacobian(trial)
        res_t, err_t = merit(val_t, act)
        accept = (err_t < err[act]) & ~wild
        iterations[act] += 1
        rows = act[accept]
        x[rows], val_x[rows], jac_x[rows] = trial[accept], val_t[accept], jac_t[accept]
        res[rows], err[rows] = res_t[accept], err_t[accept]
        alpha[rows] = 1.0
        halvings[rows] = 0
        rejected = act[~accept]
        alpha[rejected] /= 2
        halvings[rejected] += 1
        ok[act] = err[act] <= tol[act]
        failed[act] |= ~ok[act] & (halvings[act] > 10)
    ok &= ~failed
    x = torch.where(ok[:, None], x, torch.full_like(x, float("nan")))
    return x, val_x, jac_x, ok, iterations, err


class DiscretePath(NamedTuple):
    """Discrete geodesics of ``B`` curves (:func:`discrete_path`).

    Attributes
    ----------
    nodes : Tensor, shape (B, K + 1, d)
    info : DiscreteInfo
    sensitivity : Tensor, shape (B, d, d), optional
        ``d c_K / d c_1``, where asked for.
    values : Tensor, shape (B, K + 1, D)
        The decoded nodes (NaN where the nodes are).
    """

    nodes: Tensor
    info: DiscreteInfo
    sensitivity: Tensor | None
    values: Tensor


def discrete_path(
    metric: PullbackMetric,
    start: Tensor,
    first: Tensor,
    n_steps: int,
    tol: float,
    max_newton: int,
    tangents: bool = False,
) -> DiscretePath:
    """Nodes ``c_0 .. c_K`` of the discrete geodesics with ``c_0 = start``, ``c_1 = first``,
    and their decoded values (the nodes' equations decode them anyway).

    With ``tangents``, also ``d c_K / d c_1`` (B, d, d), propagated through the
    linearised recursion ``A_k dc_{k+1} = 2 G_k dc_k - J_k^T J_{k-1} dc_{k-1}``
    (``A_k = J_k^T J_{k+1}``). It leaves out the term of the decoder's second derivative
    contracted with the discrete acceleration, which is ``O(1 / K^2)`` per step, so the
    shooting Newton method that uses it converges linearly at a rate ``O(1 / K)``.

    Curves whose nodes could not be solved stop there and are NaN from that node on.
    """
    b, d = start.shape
    dtype, device = start.dtype, start.device
    nodes = torch.full((b, n_steps + 1, d), float("nan"), dtype=dtype, device=device)
    nodes[:, 0], nodes[:, 1] = start, first
    iterations = torch.zeros(b, dtype=torch.long, device=device)
    residual = torch.zeros(b, dtype=dtype, device=device)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    eye = torch.eye(d, dtype=dtype, device=device)
    t_prev = torch.zeros(b, d, d, dtype=dtype, device=device)
    t_node = eye.expand(b, d, d).clone()
    with torch.no_grad():
        val_prev = metric.evaluator.embed(start)
        val, jac = metric.evaluator.value_and_jacobian(first)
        jac_prev = metric.evaluator.value_and_jacobian(start)[1] if tangents else None
        values = val.new_full((b, n_steps + 1, val.shape[-1]), float("nan"))
        values[:, 0], values[:, 1] = val_prev, val
        idx = torch.arange(b, device=device)
        prev, node = start, first
        for k in range(1, n_steps):
            x, val_x, jac_x, ok, its, err = _next_node(
                metric, prev, node, val_prev, val, jac, tol, max_newton
            )
            iterations[idx] += its
            residual[idx] = torch.maximum(residual[idx], err)
            nodes[idx, k + 1] = x
            values[idx, k + 1] = val_x
            if tangents:
                jt = jac.mT
                rhs = 2 * (jt @ jac) @ t_node - (jt @ jac_prev) @ t_prev
                t_next = solve_square(jt @ jac_x, rhs)
                jac_prev, t_prev, t_node = jac[ok], t_node[ok], t_next[ok]
            if not bool(ok.all()):
                alive[idx[~ok]] = False
                nodes[idx[~ok], k + 1 :] = float("nan")
                values[idx[~ok], k + 1 :] = float("nan")
            idx = idx[ok]
            prev, node = node[ok], x[ok]
            val_prev, val, jac = val[ok], val_x[ok], jac_x[ok]
            if idx.numel() == 0:
                break
    sensitivity = None
    if tangents:
        sensitivity = torch.full((b, d, d), float("nan"), dtype=dtype, device=device)
        sensitivity[idx] = t_node
    return DiscretePath(nodes, DiscreteInfo(alive, iterations, residual), sensitivity, values)


def _run_exp(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float,
    path: bool,
    n_steps: int,
    tol: float | None,
    max_newton: int,
) -> InitialValueResult:
    """The ``"discrete"`` initial-value method: the discrete geodesic from ``z`` with
    velocity ``t v`` (see the module docstring); the path has ``n_steps + 1`` nodes."""
    n_steps = check_steps(n_steps)
    if isinstance(max_newton, bool) or not isinstance(max_newton, int) or max_newton < 1:
        raise ValueError(f"max_newton must be a positive integer; got {max_newton!r}")
    tol = _tolerance(z.dtype, tol, 1e-11, 1e-5)
    with torch.no_grad():
        nodes, info = _exp_nodes(metric, z, v * t, n_steps, tol, max_newton)
    stats = {"iterations": info.iterations, "residual": info.error}
    return InitialValueResult(nodes[:, -1], info.converged, nodes if path else None, stats)


#: The discrete geodesic (Rumpf & Wirth): each node after the first solves the discrete
#: Euler–Lagrange equation of the path energy at the node before it, so it inverts the
#: ``"discrete"`` boundary-value method with the same ``n_steps`` on any decoder, ReLU
#: included; on a smooth decoder it approximates the continuous exp with an error
#: ``O(1 / K^2)``. ``n_steps``: ``K`` (16); ``tol``: each node's tangential residual
#: relative to the last decoded step (``1e-11`` in float64, ``1e-5`` in float32);
#: ``max_newton``: Newton iterations per node (20). A node that cannot be solved is
#: retried with ``2 K`` and ``4 K`` steps (subsampled) before the curve is given up (NaN).
#: ``info``: ``iterations`` (Newton, summed over nodes) and ``residual`` per curve.
DISCRETE_EXP = Solver(
    "discrete",
    _run_exp,
    {"n_steps": DISCRETE_STEPS, "tol": None, "max_newton": 20},
    summary="the discrete geodesic (Rumpf & Wirth) from the decoder's values and Jacobians",
    empty_info=lambda z: {
        "iterations": torch.zeros(0, dtype=torch.long, device=z.device),
        "residual": z.new_zeros(0),
    },
)


def _exp_nodes(
    metric: PullbackMetric, z: Tensor, v: Tensor, n_steps: int, tol: float, max_newton: int
) -> tuple[Tensor, DiscreteInfo]:
    """Checked inputs ``(B, d)`` -> nodes ``(B, K + 1, d)``; ``K = 1`` is the first step."""
    if z.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.bool, device=z.device)
        return z.new_zeros(0, n_steps + 1, z.shape[1]), DiscreteInfo(
            empty, empty.long(), z.new_zeros(0)
        )
    # Velocities below ~sqrt(eps) of the point's scale: no node equation can be solved to
    # a relative tolerance there, and exp(v) = z + v + O(|v|^2) (geomstats' optimisers
    # take such steps as they converge).
    tiny = below_resolution(v, z)
    t = torch.linspace(0, 1, n_steps + 1, dtype=z.dtype, device=z.device)[None, :, None]
    nodes = z[:, None] + t * v[:, None]
    info = DiscreteInfo(
        torch.ones_like(tiny), torch.zeros_like(tiny, dtype=torch.long), z.new_zeros(len(z))
    )
    if bool(tiny.all()):
        return nodes, info
    run = ~tiny.clone()
    # Where a node's equation has no solution near the extrapolated point (a step long
    # against the decoded surface's curvature, or across creases that fold it), the curve
    # is computed again with 2K and then 4K steps and subsampled: the same geodesic,
    # finer. (Those curves no longer retrace a K-step discrete log exactly.)
    for refine in (1, 2, 4):
        idx = run.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        k = n_steps * refine
        first, started = _first_node(metric, z[idx], v[idx], k, tol, max_newton)
        sub_nodes, sub, _, _ = discrete_path(
            metric, z[idx], torch.nan_to_num(first), k, tol, max_newton
        )
        ok = sub.converged & started
        sub_nodes[~ok, 1:] = float("nan")
        nodes[idx] = sub_nodes[:, ::refine]
        info.iterations[idx] += sub.iterations
        info.error[idx] = sub.error
        info.converged[idx] = ok
        run[idx] = ~ok
    return nodes, info


def _first_node(
    metric: PullbackMetric, z: Tensor, v: Tensor, n_steps: int, tol: float, max_newton: int
) -> tuple[Tensor, Tensor]:
    """``c_1`` with ``J(z)^T (f(c_1) - f(z)) = G(z) v / K``, and whether it was solved.

    The tangential part of the first decoded step is ``J(z) v / K``: the node equation
    of :func:`_next_node` with a virtual node behind ``z`` decoded at
    ``f(z) - J(z) v / K``. On a geodesic the ambient acceleration is normal to the
    tangent plane, so this start is second-order accurate (``c_1 = c(1 / K) + O(K^-3)``)
    with the decoder's first derivatives only; with Rumpf & Wirth's plain
    ``c_1 = z + v / K`` the discrete log is a one-sided difference, first-order accurate
    as a tangent vector (13 % off in ``|log|_G`` at ``K = 16`` on a long arc of the
    sphere). Its inverse, :func:`first_step_velocity`, is explicit.
    """
    val, jac = metric.evaluator.value_and_jacobian(z)
    step = v / n_steps
    behind = val - (jac @ step.unsqueeze(-1)).squeeze(-1)
    first, *_, ok, _, _ = _next_node(metric, z - step, z, behind, val, jac, tol, max_newton)
    return first, ok


def first_step_velocity(metric: PullbackMetric, z: Tensor, first: Tensor, n_steps: int) -> Tensor:
    """The ``v`` whose :func:`_first_node` is ``first``: ``K G(z)^{-1} J(z)^T (f(c_1) -
    f(z))``, ``K`` times the first decoded step projected on the tangent plane at ``z``.

    It is also ``-(1/2)`` the Riemannian gradient of the squared length of a discrete
    geodesic with equal decoded steps (the first-variation formula at ``z``), so
    geomstats' statistics built on the log get the right gradients, ReLU decoders
    included.
    """
    val, jac = metric.evaluator.value_and_jacobian(z)
    rhs = jac.mT @ (metric.evaluator.embed(first) - val).unsqueeze(-1)
    chol = spd_cholesky(jac.mT @ jac, what="metric tensor (discrete log)", stacklevel=4)
    return n_steps * torch.cholesky_solve(rhs, chol).squeeze(-1)


def discrete_transport(metric: PullbackMetric, curve: Tensor, v: Tensor) -> Tensor:
    """Discrete parallel transport of ``v`` along the nodes of ``curve``.

    ``v_{k+1} = argmin_w ||J(c_{k+1}) w - J(c_k) v_k|| = G_{k+1}^{-1} J_{k+1}^T J_k v_k``:
    the ambient vector ``J_k v_k`` projected onto the next tangent plane, a first-order
    scheme for the Levi-Civita connection of the pullback metric (exact as the nodes get
    dense on smooth decoders; each projection shortens the vector by ``cos`` of the
    angle between the two tangent planes, which is ``O(h^2)`` on a smooth decoder and a
    finite factor at each crease of a ReLU decoder).

    Parameters
    ----------
    metric : PullbackMetric
    curve : Tensor, shape (B, N, d) or (N, d)
        Nodes, e.g. a discrete geodesic's (``integrate_geodesic(..., method="discrete",
        path=True).path`` or ``connecting_geodesic(..., method="discrete").points``).
    v : Tensor, shape (B, d) or (d,)
        Tangent vectors at ``curve[:, 0]``.

    Returns
    -------
    Tensor, shape (B, N, d) or (N, d)
        The transported vectors at every node, ``v`` first; the last is ``v`` moved to
        ``curve[:, -1]``.
    """
    c, single = batch_curves(curve, metric.latent_dim, "curve")
    v, _ = metric.evaluator.check_points(v, "v")
    b, n, d = c.shape
    if v.shape != (b, d):
        raise ValueError(
            f"v must have shape {(b, d)} for curves {tuple(c.shape)}; got {tuple(v.shape)}"
        )
    metric.evaluator.check_dtype_device(c, "curve")
    if b == 0:
        return v.new_zeros(0, n, d)
    jac = metric.jacobian(c.reshape(b * n, d)).reshape(b, n, -1, d)
    # Transfer matrices G_{k+1}^{-1} J_{k+1}^T J_k for all nodes at once, then a short
    # sequential product of d x d matrices.
    nxt, cur = jac[:, 1:], jac[:, :-1]
    gram = (nxt.mT @ nxt).reshape(-1, d, d)
    chol = spd_cholesky(gram, what="metric tensor (transport)", stacklevel=3)
    cross = (nxt.mT @ cur).reshape(-1, d, d)
    transfer = torch.cholesky_solve(cross, chol).reshape(b, n - 1, d, d)
    vectors = [v]
    for k in range(n - 1):
        vectors.append((transfer[:, k] @ vectors[-1].unsqueeze(-1)).squeeze(-1))
    out = torch.stack(vectors, dim=1)
    return out[0] if single else out
