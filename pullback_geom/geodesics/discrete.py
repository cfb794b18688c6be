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

import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from .._core.checks import batch_curves, same_shape
from .._core.linalg import solve_square, spd_cholesky
from ..metric import PullbackMetric
from ._common import GeodesicConvergenceWarning, _pair, _tolerance, below_resolution

__all__ = [
    "DiscreteInfo",
    "discrete_exp",
    "discrete_log",
    "discrete_transport",
    "DISCRETE_STEPS",
]

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


def _check_steps(n_steps) -> int:
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
    val_x, jac_x = metric.value_and_jacobian(x)
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
        val_t, jac_t = metric.value_and_jacobian(trial)
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


def _discrete_path(
    metric: PullbackMetric,
    start: Tensor,
    first: Tensor,
    n_steps: int,
    tol: float,
    max_newton: int,
    tangents: bool = False,
) -> tuple[Tensor, DiscreteInfo, Tensor | None]:
    """Nodes ``c_0 .. c_K`` of the discrete geodesics with ``c_0 = start``, ``c_1 = first``.

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
        val_prev = metric.embed(start)
        val, jac = metric.value_and_jacobian(first)
        jac_prev = metric.value_and_jacobian(start)[1] if tangents else None
        idx = torch.arange(b, device=device)
        prev, node = start, first
        for k in range(1, n_steps):
            x, val_x, jac_x, ok, its, err = _next_node(
                metric, prev, node, val_prev, val, jac, tol, max_newton
            )
            iterations[idx] += its
            residual[idx] = torch.maximum(residual[idx], err)
            nodes[idx, k + 1] = x
            if tangents:
                jt = jac.mT
                rhs = 2 * (jt @ jac) @ t_node - (jt @ jac_prev) @ t_prev
                t_next = solve_square(jt @ jac_x, rhs)
                jac_prev, t_prev, t_node = jac[ok], t_node[ok], t_next[ok]
            if not bool(ok.all()):
                alive[idx[~ok]] = False
                nodes[idx[~ok], k + 1 :] = float("nan")
            idx = idx[ok]
            prev, node = node[ok], x[ok]
            val_prev, val, jac = val[ok], val_x[ok], jac_x[ok]
            if idx.numel() == 0:
                break
    sensitivity = None
    if tangents:
        sensitivity = torch.full((b, d, d), float("nan"), dtype=dtype, device=device)
        sensitivity[idx] = t_node
    return nodes, DiscreteInfo(alive, iterations, residual), sensitivity


def discrete_exp(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    n_steps: int = DISCRETE_STEPS,
    t: float = 1.0,
    tol: float | None = None,
    max_newton: int = 20,
    return_path: bool = False,
    return_info: bool = False,
    warn: bool = True,
):
    """Discrete exponential map: the discrete geodesic from ``z`` with velocity ``t v``.

    Each node after the first solves the discrete Euler–Lagrange equation of the path
    energy ``K sum ||f(c_{k+1}) - f(c_k)||^2`` at the node before it (see the module
    docstring), so ``discrete_exp(z, discrete_log(z, q)) == q`` to the solvers'
    tolerances, on any decoder (ReLU included). On a smooth decoder it approximates the
    continuous exp with an error ``O(1 / K^2)``.

    Parameters
    ----------
    metric : PullbackMetric
    z, v : Tensor, shape (B, d) or (d,)
        Start points and initial velocities.
    n_steps : int, default 16
        ``K``, steps of the discrete geodesic.
    t : float, default 1
        Time: the end point is the discrete ``gamma(t)`` (velocity ``t v`` over ``[0, 1]``).
    tol : float, optional
        Each node's equation is solved until the tangential residual is below ``tol``
        times the last decoded step (default ``1e-11`` in float64, ``1e-5`` in float32).
    max_newton : int, default 20
        Newton iterations per node.
    return_path : bool, default False
        Return all ``K + 1`` nodes, shape (B, K + 1, d), instead of the end point.
    return_info : bool, default False
        Also return a :class:`DiscreteInfo`.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` where a node could not be solved
        (the discrete geodesic does not extend; those curves are NaN from there on).
        Before giving up, such a curve is computed again with ``2 K`` and ``4 K`` steps
        (subsampled to ``K + 1`` nodes): the same geodesic, finer.

    Returns
    -------
    Tensor, shape (B, d) or (d,); with ``return_path``, (B, K + 1, d) or (K + 1, d)
        With ``return_info``, a tuple ``(points, DiscreteInfo)``.
    """
    z, single = metric.check_points(z)
    v, _ = metric.check_points(v, "v")
    same_shape(z, v, "z and v")
    n_steps = _check_steps(n_steps)
    if not (isinstance(t, (int, float)) and 0 < t < float("inf")):
        raise ValueError(f"t must be a positive finite number; got {t!r}")
    tol = _tolerance(z.dtype, tol, 1e-11, 1e-5)
    nodes, info = _exp_nodes(metric, z, v * t, n_steps, tol, max_newton)
    if warn and not bool(info.converged.all()):
        warnings.warn(
            f"discrete_exp: the discrete geodesic does not extend for "
            f"{int((~info.converged).sum())} of {z.shape[0]} curves, even with {4 * n_steps} "
            "steps (a node's equation had no solution near the extrapolated point); their "
            "points are NaN (return_info=True says which)",
            GeodesicConvergenceWarning,
            stacklevel=2,
        )
    out = nodes if return_path else nodes[:, -1]
    if single:
        out, info = out[0], DiscreteInfo(*(x[0] for x in info))
    return (out, info) if return_info else out


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
        sub_nodes, sub, _ = _discrete_path(
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
    sphere). Its inverse, :func:`_velocity`, is explicit.
    """
    val, jac = metric.value_and_jacobian(z)
    step = v / n_steps
    behind = val - (jac @ step.unsqueeze(-1)).squeeze(-1)
    first, *_, ok, _, _ = _next_node(metric, z - step, z, behind, val, jac, tol, max_newton)
    return first, ok


def _velocity(metric: PullbackMetric, z: Tensor, first: Tensor, n_steps: int) -> Tensor:
    """The ``v`` whose :func:`_first_node` is ``first``: ``K G(z)^{-1} J(z)^T (f(c_1) -
    f(z))``, ``K`` times the first decoded step projected on the tangent plane at ``z``.

    It is also ``-(1/2)`` the Riemannian gradient of the squared length of a discrete
    geodesic with equal decoded steps (the first-variation formula at ``z``), so
    geomstats' statistics built on the log get the right gradients, ReLU decoders
    included.
    """
    val, jac = metric.value_and_jacobian(z)
    rhs = jac.mT @ (metric.embed(first) - val).unsqueeze(-1)
    chol = spd_cholesky(jac.mT @ jac, what="metric tensor (discrete log)", stacklevel=4)
    return n_steps * torch.cholesky_solve(rhs, chol).squeeze(-1)


def discrete_log(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    n_steps: int = DISCRETE_STEPS,
    init_curve="auto",
    tol: float | None = None,
    max_shooting: int = 3,
    max_iter: int = 500,
    energy_tol: float | None = None,
    return_path: bool = False,
    return_info: bool = False,
    warn: bool = True,
):
    """Discrete logarithm: ``K (c_1 - p)`` for the discrete geodesic ``c_0 = p .. c_K = q``.

    The energy-minimising curve with ``K + 1`` nodes
    (:func:`~pullback_geom.geodesics.connecting_geodesic`) gives ``c_1``; where the
    discrete exp from it misses ``q`` by more than ``tol (1 + |q - p|)`` (creases of a
    ReLU decoder, the energy solver's tolerance), ``c_1`` is refined by a Newton method on
    ``exp(c_1) = q`` (``d`` unknowns; the sensitivity of the discrete exp is propagated
    along the recursion), so that ``discrete_exp(p, discrete_log(p, q)) == q`` wherever
    the discrete exp is defined. ``|log_p q|_G(p)`` approximates the distance only where
    ``G`` is continuous; the length of the returned curve is the distance.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    n_steps : int, default 16
        ``K``: the curve has ``K + 1`` nodes. Use the same ``K`` for :func:`discrete_exp`.
    init_curve : optional
        Start of the energy solver (see :func:`connecting_geodesic`).
    tol : float, optional
        End-point error accepted, relative to ``1 + |q - p|`` (default ``1e-6`` in
        float64, ``1e-4`` in float32; the nodes are solved to ``1e-11``, and the discrete
        exp amplifies an error in ``c_1`` along the curve, by ~1e3 over 16 steps on the
        bundled models).
    max_shooting : int, default 3
        Newton iterations of the refinement. On smooth decoders the energy curve's first
        step is usually within ``tol`` already; on ReLU decoders the discrete exp is
        discontinuous in ``c_1`` where a node crosses a crease, and more iterations
        rarely help (``docs/geomstats.md``).
    max_iter : int, default 500
        Iterations of the energy solver.
    energy_tol : float, optional
        The energy solver's ``tol`` (default ``1e-16`` in float64, ``1e-7`` in float32: the
        node errors are about the square root of the relative energy decrease the solver
        stops at, and the discrete exp amplifies them).
    return_path : bool, default False
        Also return the discrete geodesic's nodes ``(B, K + 1, d)`` (the discrete exp of
        the returned velocity; the energy curve where that does not reach ``q``).
    return_info : bool, default False
        Also return a :class:`DiscreteInfo`.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` where the refinement did not reach
        ``q`` (the energy curve's first step is returned there).

    Returns
    -------
    Tensor, shape (B, d) or (d,)
        Initial velocities. With ``return_path`` and/or ``return_info`` a tuple
        ``(velocities, [nodes], [DiscreteInfo])``.
    """
    from .energy import connecting_geodesic

    p, q, single = _pair(metric, p, q)
    n_steps = _check_steps(n_steps)
    tol = _tolerance(p.dtype, tol, 1e-6, 1e-4)
    energy_tol = _tolerance(p.dtype, energy_tol, 1e-16, 1e-7, name="energy_tol")
    b, d = p.shape
    target = tol * (1 + torch.linalg.vector_norm(q - p, dim=-1))
    if b == 0:
        nodes = p.new_zeros(0, n_steps + 1, d)
        empty = torch.zeros(0, dtype=torch.bool, device=p.device)
        info = DiscreteInfo(empty, empty.long(), p.new_zeros(0))
        return _log_out(p, nodes, info, single, return_path, return_info)
    node_tol = min(1e-11 if p.dtype == torch.float64 else 1e-5, tol)
    if n_steps == 1:
        curve = torch.stack([p, q], dim=1)
    else:
        # A tight energy tolerance: the node errors are about the square root of the
        # relative energy decrease the solver stops at.
        curve = connecting_geodesic(
            metric,
            p,
            q,
            n_points=n_steps + 1,
            init_curve=init_curve,
            tol=energy_tol,
            max_iter=max_iter,
            refine=1,
            warn=False,
        ).points
    first = curve[:, 1].clone()
    # The sensitivities come with the first pass: they cost d x d solves and one more
    # Jacobian per curve, where a second pass for the pairs left short (on ReLU decoders
    # a third to a half of them) would decode every node again.
    shoot = max_shooting > 0
    nodes, _, sens = _discrete_path(metric, p, first, n_steps, node_tol, 20, tangents=shoot)
    err = _end_error(nodes, q)
    done = err <= target
    iterations = torch.zeros(b, dtype=torch.long, device=p.device)
    stalled = torch.zeros_like(done)
    for _ in range(max_shooting):
        act = (~done & ~stalled).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        iterations[act] += 1
        good = torch.isfinite(sens[act]).all(-1).all(-1)
        residual = nodes[act, -1] - q[act]
        step = torch.zeros_like(residual)
        # Where the discrete exp had no sensitivity (a node did not solve) the step stays
        # zero: the trial is rejected and the pair stops.
        if bool(good.any()):
            step[good] = solve_square(sens[act][good], -residual[good].unsqueeze(-1)).squeeze(-1)
        # A trust radius of half the first step keeps Newton out of neighbouring
        # branches of the discrete exp (across a crease or a conjugate point).
        radius = 0.5 * torch.linalg.vector_norm(first[act] - p[act], dim=-1)
        norm = torch.linalg.vector_norm(step, dim=-1).clamp_min(torch.finfo(p.dtype).tiny)
        step = step * (radius / norm).clamp(max=1.0)[:, None]
        trial = first[act] + step
        t_nodes, _, t_sens = _discrete_path(
            metric, p[act], trial, n_steps, node_tol, 20, tangents=True
        )
        t_err = _end_error(t_nodes, q[act])
        better = t_err < err[act]
        rows = act[better]
        first[rows], nodes[rows], sens[rows], err[rows] = (
            trial[better],
            t_nodes[better],
            t_sens[better],
            t_err[better],
        )
        done[act] = err[act] <= target[act]
        # A Newton step that does not reduce the end-point error has crossed a jump of
        # the discrete exp (a node crossed a crease): the pair stops. Halving such steps
        # (up to 20 times) reached q on none of 8 batches of 50-64 pairs on the bundled
        # ReLU and smooth models, and cost ~25 % of a log on the ReLU one.
        stalled[act[~better]] = True
    if not bool(done.all()):
        # Keep the energy curve's first step where the refinement did not reach q.
        first = torch.where(done[:, None], first, curve[:, 1])
        nodes = torch.where(done[:, None, None], nodes, curve)
        if warn:
            worst = err[~done]
            worst = worst[torch.isfinite(worst)]
            text = f"{float(worst.max()):.3g}" if worst.numel() else "NaN"
            warnings.warn(
                f"discrete_log: the discrete exp did not reach q within {tol:g} (1 + |q - p|) "
                f"for {int((~done).sum())} of {b} pairs (largest end-point error {text}); "
                "the energy curve's first step is returned there",
                GeodesicConvergenceWarning,
                stacklevel=2,
            )
    v = _velocity(metric, p, first, n_steps)
    info = DiscreteInfo(done, iterations, err)
    return _log_out(v, nodes, info, single, return_path, return_info)


def _end_error(nodes: Tensor, q: Tensor) -> Tensor:
    err = torch.linalg.vector_norm(nodes[:, -1] - q, dim=-1)
    return torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))


def _log_out(v, nodes, info, single, return_path, return_info):
    if single:
        v, nodes, info = v[0], nodes[0], DiscreteInfo(*(x[0] for x in info))
    if not (return_path or return_info):
        return v
    out = (v,) + ((nodes,) if return_path else ()) + ((info,) if return_info else ())
    return out


def discrete_transport(
    metric: PullbackMetric, curve: Tensor, v: Tensor, *, return_path: bool = False
) -> Tensor:
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
        Nodes, e.g. a discrete geodesic from :func:`discrete_exp` or :func:`discrete_log`.
    v : Tensor, shape (B, d) or (d,)
        Tangent vectors at ``curve[:, 0]``.
    return_path : bool, default False
        Return the vectors at every node, shape (B, N, d).

    Returns
    -------
    Tensor, shape (B, d) or (d,); with ``return_path``, (B, N, d) or (N, d)
    """
    c, single = batch_curves(curve, metric.latent_dim, "curve")
    v, _ = metric.check_points(v, "v")
    b, n, d = c.shape
    if v.shape != (b, d):
        raise ValueError(
            f"v must have shape {(b, d)} for curves {tuple(c.shape)}; got {tuple(v.shape)}"
        )
    metric.check_dtype_device(c, "curve")
    if b == 0:
        out = v.new_zeros(0, n, d) if return_path else v.new_zeros(0, d)
        return out
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
    out = torch.stack(vectors, dim=1) if return_path else vectors[-1]
    return out[0] if single else out
