"""``latent_space``: the latent space ``R^d`` as a geomstats manifold carrying a decoder's
pullback metric (:class:`~pullback_geom.geomstats.riemannian.PullbackRiemannianMetric`)."""

from __future__ import annotations

import torch
from geomstats.geometry.euclidean import Euclidean
from geomstats.numerics.geodesic import ExpSolver, LogSolver

from .._core.checks import metric_of_model
from ..metric import PullbackMetric
from .riemannian import PullbackRiemannianMetric
from .solvers import PullbackExpSolver, PullbackLogSolver

__all__ = ["latent_space"]


def latent_space(
    metric: PullbackMetric,
    *,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    detach: bool = True,
    exp_solver: ExpSolver | None = None,
    log_solver: LogSolver | None = None,
    exp_options: dict | None = None,
    log_options: dict | None = None,
    n_steps: int | None = None,
    dist_options: dict | None = None,
    dist_dtype: torch.dtype | None = None,
    transport_steps: int = 64,
) -> Euclidean:
    """The latent space ``R^d`` as a geomstats manifold with the decoder's pullback metric.

    Parameters
    ----------
    metric : PullbackMetric, or a model with a ``pullback_metric()`` method (a VAE)
    dim : int, optional
        ``d``; needed only when the core cannot infer it (``metric.latent_dim is None``).
    dtype : torch.dtype, optional
        Dtype of the core computations; default float64 (see
        :class:`PullbackRiemannianMetric`).
    detach : bool, default True
        Keep autograd graphs away from the decoder's parameters.
    exp_solver, log_solver : geomstats solvers, optional
        Replace the defaults (:class:`PullbackExpSolver`, :class:`PullbackLogSolver`);
        they can also be assigned later, e.g. ``space.metric.log_solver =
        LogODESolver(space)``.
    exp_options, log_options : dict, optional
        Options of the default solvers: ``method`` (default ``"auto"``: the geodesic ODE
        on smooth decoders, the discrete calculus on piecewise-linear ones, see
        :mod:`pullback_geom.geodesics.registry`) and that method's options, e.g.
        ``{"method": "discrete"}`` for both.
    n_steps : int, optional
        ``n_steps`` of both default solvers: ``K`` of the discrete geodesics (16; the
        discrete exp inverts the discrete log only with the same ``K``), the RK4 steps of
        shooting (50), the path sampling of Dormand–Prince (50).
    dist_options : dict, optional
        ``method`` (default ``"auto"``, the energy solver) and its options behind ``dist``
        (default: ``bend_tol=DIST_BEND_TOL``, ``basin_tol=DIST_BASIN_TOL`` and the
        dtype's ``tol``); checked here.
    dist_dtype : torch.dtype, optional
        Dtype of ``dist``'s solves (default float32; see :class:`PullbackRiemannianMetric`).
    transport_steps : int, default 64
        Steps of the curves along which ``parallel_transport`` transports.

    Returns
    -------
    geomstats.geometry.euclidean.Euclidean
        ``Euclidean(d, equip=False)`` equipped with :class:`PullbackRiemannianMetric`
        as ``space.metric``.
    """
    metric = metric_of_model(metric)
    if not isinstance(metric, PullbackMetric):
        raise TypeError(
            f"metric must be a PullbackMetric or a model with a pullback_metric() method "
            f"(for a VAE: latent_space(model) or latent_space(model.pullback_metric())); "
            f"got {type(metric).__name__}"
        )
    d = dim if dim is not None else metric.latent_dim
    if d is None:
        raise ValueError(
            "the latent dimension is unknown: pass latent_dim= to PullbackMetric or dim= here"
        )
    space = Euclidean(dim=d, equip=False)
    space.equip_with_metric(
        PullbackRiemannianMetric,
        pullback=metric,
        dtype=dtype,
        detach=detach,
        exp_solver=exp_solver,
        log_solver=log_solver,
        dist_options=dist_options,
        dist_dtype=dist_dtype,
        transport_steps=transport_steps,
    )
    steps = {} if n_steps is None else {"n_steps": n_steps}
    if exp_solver is None:
        options = {**steps, **(exp_options or {})}
        space.metric.exp_solver = PullbackExpSolver(space, **options)
    if log_solver is None:
        options = {**steps, **(log_options or {})}
        space.metric.log_solver = PullbackLogSolver(space, **options)
    return space
