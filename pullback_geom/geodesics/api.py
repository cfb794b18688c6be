"""The entry points: one function per problem, every method looked up in the registries.

:func:`connecting_geodesic` (boundary values, a :class:`GeodesicResult`) and
:func:`integrate_geodesic` (initial values, an :class:`InitialValueResult`) are the two
solves; :func:`geodesic_distance`, :func:`log_map` and :func:`exp_map` are their
plain-tensor conveniences. Each checks the points and the options before any work, takes
an empty batch, keeps the caller's dtype and device, and drops the batch axis of
unbatched input.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._core.checks import same_shape
from ..metric import PullbackMetric
from ._common import GeodesicConvergenceWarning, _pair, empty_result, trailing_dim
from ._solver import GeodesicResult, InitialValueResult, Solver
from .registry import resolve

__all__ = [
    "connecting_geodesic",
    "exp_map",
    "geodesic_distance",
    "integrate_geodesic",
    "log_map",
]


def _boundary_value(
    caller: str,
    purpose: str,
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    method: str,
    warn: bool,
    options: dict,
) -> GeodesicResult:
    solver = resolve(method, purpose, metric, trailing_dim(p), options)
    options = solver.with_defaults(options, caller)
    p, q, single = _pair(metric, p, q)
    if p.shape[0] == 0:
        result = empty_result(p, solver.nodes(options))
        result.info = solver.empty_info(p) if solver.empty_info else {}
    else:
        result = solver.run(metric, p, q, **options)
    if warn and not bool(result.converged.all()):
        _warn_unconverged(caller, solver, result.converged)
    return result.select(0) if single else result


def _warn_unconverged(caller: str, solver: Solver, converged: Tensor) -> None:
    bad, total = int((~converged).sum()), converged.numel()
    hint = (
        "; the geodesic ODE is ill-posed on piecewise-linear decoders: method='discrete' "
        "or 'lm' needs no smooth metric"
        if solver.smooth_only
        else "; raise max_iter or n_points"
    )
    warnings.warn(
        f"{caller}: {bad} of {total} {'pairs' if caller != 'exp_map' else 'curves'} did not "
        f"converge with method={solver.name!r} (see result.converged){hint}",
        GeodesicConvergenceWarning,
        stacklevel=4,
    )


def _initial_value(
    caller: str,
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    t: float,
    path: bool,
    method: str,
    warn: bool,
    options: dict,
) -> InitialValueResult:
    solver = resolve(method, "exp", metric)
    options = solver.with_defaults(options, caller)
    z, single = metric.evaluator.check_points(z)
    v, _ = metric.evaluator.check_points(v, "v")
    same_shape(z, v, "z and v")
    if isinstance(t, bool) or not (isinstance(t, (int, float)) and 0 < t < float("inf")):
        raise ValueError(f"t must be a positive finite number; got {t!r}")
    if not isinstance(path, bool):
        raise TypeError(f"path must be a bool; got {type(path).__name__}")
    if z.shape[0] == 0:
        n = solver.nodes(options)
        empty = torch.zeros(0, dtype=torch.bool, device=z.device)
        info = solver.empty_info(z) if solver.empty_info else {}
        result = InitialValueResult(
            z.clone(), empty, z.new_zeros(0, n, z.shape[1]) if path else None, info
        )
    else:
        result = solver.run(metric, z, v, t=float(t), path=path, **options)
    if warn and not bool(result.converged.all()):
        bad = int((~result.converged).sum())
        warnings.warn(
            f"{caller}: {bad} of {z.shape[0]} curves did not reach t = {t:g} with "
            f"method={solver.name!r} (diverged, left the finite range or a node had no "
            "solution); their points are NaN (see result.converged)"
            + ("; method='discrete' needs no smooth metric" if solver.smooth_only else ""),
            GeodesicConvergenceWarning,
            stacklevel=3,
        )
    return result.select(0) if single else result


def connecting_geodesic(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "auto",
    warn: bool = True,
    **options,
) -> GeodesicResult:
    """Geodesics from ``p`` to ``q``: the boundary-value problem, batched over pairs.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
        End points.
    method : str, default "auto"
        A key of :data:`~pullback_geom.geodesics.registry.BOUNDARY_VALUE`:

        * ``"lm"``: batched Levenberg–Marquardt on the observation-space chord energy
          ``(N - 1) sum ||f(x_{i+1}) - f(x_i)||^2`` of an ``N``-node curve (right on any
          decoder). Options ``n_points`` (16), ``refine`` (4), ``init_curve``
          (``"auto"``: shortest paths on a latent grid graph in 2-D and 3-D, above
          the curves of a coarse solve on a third of the nodes, ``"coarse"``),
          ``max_iter`` (200), ``tol`` (``1e-10`` in float64, ``1e-4`` in float32),
          ``bend_tol`` (None), ``basin_tol`` (None), ``jacobian_dtype`` (None); see
          :data:`~pullback_geom.geodesics.energy.ENERGY_OPTIONS`.
        * ``"georce"``, ``"lbfgs"``: other minimisers of the energy, same options but
          ``jacobian_dtype``.
        * ``"shooting"``, ``"multiple"``: single and multiple shooting on the geodesic
          ODE (smooth decoders).
        * ``"discrete"``: the discrete logarithm of discrete geodesic calculus, the
          inverse of ``integrate_geodesic(..., method="discrete")``.
        * ``"newton-cg"``: the same energy and options, its steps by conjugate gradients
          on Jacobian–vector products (no ``D x d`` Jacobian a node kept).
        * ``"auto"``: ``"lm"`` below 8 latent dimensions, ``"newton-cg"`` from 8, and
          ``"lm"`` wherever ``jacobian_dtype`` is given
          (:func:`~pullback_geom.geodesics.registry.resolve`).

        Each method's options are documented beside its registry entry; an option the
        method does not declare is a ``TypeError`` before any work.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` when pairs did not converge.
    **options
        The method's options.

    Returns
    -------
    GeodesicResult
        ``points (B, N, d)``, ``length (B,)``, ``energy (B,)``, ``converged (B,)``,
        ``iterations (B,)``, ``velocity (B, d)`` and ``info``; unbatched if ``p`` was
        ``(d,)``.
    """
    return _boundary_value("connecting_geodesic", "curve", metric, p, q, method, warn, options)


def geodesic_distance(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "auto",
    warn: bool = True,
    **options,
) -> Tensor:
    """Geodesic distance: the ``length`` of :func:`connecting_geodesic`'s curve.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    method : str, default "auto"
    warn : bool, default True
    **options
        The method's options (see :func:`connecting_geodesic`); the energy methods'
        ``bend_tol`` solves pairs whose decoded curve bends between its nodes again on
        twice the segments (``0.08`` is what geomstats' ``dist`` uses), and ``basin_tol``
        those whose graph and straight starts end more than that fraction apart in length
        (``1e-3`` in ``dist``).

    Returns
    -------
    Tensor, shape (B,) or ()
    """
    result = _boundary_value("geodesic_distance", "curve", metric, p, q, method, warn, options)
    return result.length


def log_map(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    *,
    method: str = "auto",
    warn: bool = True,
    **options,
) -> Tensor:
    """Riemannian logarithm: the initial velocity of the geodesic from ``p`` to ``q``.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
    method : str, default "auto"
        A boundary-value method (see :func:`connecting_geodesic`). ``"auto"``: Newton
        shooting (``"shooting"``) on smooth decoders up to
        :data:`~pullback_geom.geodesics.registry.SHOOTING_MAX_DIM` latent dimensions
        (its cost grows as ``d^2``), above it the energy curve's velocity (``"auto"`` of
        :func:`connecting_geodesic`); the discrete logarithm (``"discrete"``) on
        piecewise-linear ones (:attr:`PullbackMetric.smooth`).
    warn : bool, default True
    **options
        The method's options.

    Returns
    -------
    Tensor, shape (B, d) or (d,)
        ``velocity`` of the method's result; where it did not converge, the energy
        curve's (with a warning).
    """
    result = _boundary_value("log_map", "velocity", metric, p, q, method, warn, options)
    return result.velocity


def integrate_geodesic(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float = 1.0,
    path: bool = False,
    method: str = "auto",
    warn: bool = True,
    **options,
) -> InitialValueResult:
    """Geodesics from ``z`` with initial velocity ``v``: the initial-value problem.

    Parameters
    ----------
    metric : PullbackMetric
    z, v : Tensor, shape (B, d) or (d,)
        Start points and initial velocities.
    t : float, default 1
        The end time: ``point`` is ``gamma(t)`` with ``gamma(0) = z``, ``gamma'(0) = v``.
    path : bool, default False
        Also keep the curve at the method's equally spaced times on ``[0, t]``
        (``n_steps + 1`` of them) as ``result.path``.
    method : str, default "auto"
        A key of :data:`~pullback_geom.geodesics.registry.INITIAL_VALUE`: ``"rk4"``
        (fixed steps, ``n_steps`` = 50), ``"dopri5"`` (adaptive Dormand–Prince 5(4),
        ``rtol``, ``atol``, ``max_steps``, ``n_steps``), ``"discrete"`` (the discrete
        geodesic of ``n_steps`` = 16 steps, ``tol``, ``max_newton``; right on ReLU
        decoders). ``"auto"``: ``"dopri5"`` on smooth decoders, ``"discrete"`` on
        piecewise-linear ones.
    warn : bool, default True
        Warn with :class:`GeodesicConvergenceWarning` when curves failed (their points
        are NaN).
    **options
        The method's options.

    Returns
    -------
    InitialValueResult
        ``point (B, d)``, ``converged (B,)``, ``path (B, T, d)`` or None, ``info``;
        unbatched if ``z`` was ``(d,)``.
    """
    return _initial_value("integrate_geodesic", metric, z, v, t, path, method, warn, options)


def exp_map(
    metric: PullbackMetric,
    z: Tensor,
    v: Tensor,
    *,
    t: float = 1.0,
    method: str = "auto",
    warn: bool = True,
    **options,
) -> Tensor:
    """Riemannian exponential map: ``point`` of :func:`integrate_geodesic`.

    Parameters
    ----------
    metric : PullbackMetric
    z, v : Tensor, shape (B, d) or (d,)
    t : float, default 1
    method : str, default "auto"
        See :func:`integrate_geodesic`.
    warn : bool, default True
    **options
        The method's options.

    Returns
    -------
    Tensor, shape (B, d) or (d,)
        NaN where the curve failed (with a warning).
    """
    return _initial_value("exp_map", metric, z, v, t, False, method, warn, options).point
