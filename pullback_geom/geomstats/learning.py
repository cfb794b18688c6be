"""geomstats' ``FrechetMean`` and ``RiemannianKMeans`` on a latent space, by the joint
Fréchet mean solver (:func:`~pullback_geom.geodesics.frechet.frechet_mean`).

On a space from :func:`~pullback_geom.geomstats.latent_space`, ``FrechetMean(space)`` is
a :class:`PullbackFrechetMean` (geomstats chooses the estimator by the metric in
``FrechetMean.__new__``; :mod:`~pullback_geom.geomstats._compat` adds the pullback metric to
that choice), whose default method ``"joint"`` solves for the mean and the geodesics to
every point at once, instead of geomstats' gradient descent (a ``log`` and an ``exp`` per
step). geomstats' own methods stay available by name: ``FrechetMean(space,
method="default")`` is its gradient descent (``"adaptive"``, ``"batch"`` likewise).
``RiemannianKMeans(space, k).fit(X)`` then assigns points with one batched ``dist`` and
moves all ``k`` centres with one batched joint solve (:func:`kmeans_fit`); with a
geomstats optimizer as its ``mean_estimator`` it runs geomstats' own loop.
"""

from __future__ import annotations

import logging
import warnings
from random import randint

import torch
from geomstats.learning.frechet_mean import BaseGradientDescent, FrechetMean
from torch import Tensor

from ..geodesics import GeodesicConvergenceWarning
from ..geodesics.frechet import MAX_ITER, N_POINTS, FrechetResult, frechet_mean
from ._batch import as_tensor
from .riemannian import PullbackRiemannianMetric

__all__ = [
    "JointFrechetMean",
    "PullbackFrechetMean",
    "kmeans_fit",
    "uses_joint_mean",
    "uses_pullback_metric",
]


class JointFrechetMean(BaseGradientDescent):
    """The optimizer of ``FrechetMean``'s ``"joint"`` method: one
    :func:`~pullback_geom.geodesics.frechet.frechet_mean` solve on the space's metric.

    It takes geomstats' optimizer parameters, so that ``FrechetMean.set(...)`` and the
    estimators that call it (``RiemannianKMeans`` sets ``max_iter=100,
    init_step_size=1.0``) keep working: ``max_iter`` bounds the Levenberg–Marquardt
    iterations and ``init_point`` is the start (default: the weighted Euclidean mean).
    ``epsilon`` and ``init_step_size`` belong to gradient descent and are not used: the
    joint solve stops by its relative energy decrease ``tol``.

    Parameters
    ----------
    max_iter : int, default 200
    epsilon, init_step_size : float
        Accepted, unused (see above).
    init_point : array-like, shape (d,), optional
    verbose : bool, default False
        Log the iterations and the Fréchet function of each solve.
    n_points, tol, init_curve
        Those of :func:`~pullback_geom.geodesics.frechet.frechet_mean`.

    Attributes
    ----------
    result_ : FrechetResult or None
        The last solve's result (curves, lengths, Fréchet function, gradient norm).
    """

    def __init__(
        self,
        max_iter: int = MAX_ITER,
        epsilon: float = 1e-4,
        init_point=None,
        init_step_size: float = 1.0,
        verbose: bool = False,
        n_points: int = N_POINTS,
        tol: float | None = None,
        init_curve: str = "auto",
    ) -> None:
        super().__init__(max_iter, epsilon, init_point, init_step_size, verbose)
        self.n_points, self.tol, self.init_curve = n_points, tol, init_curve
        self.result_: FrechetResult | None = None

    def minimize(self, space, points, weights=None) -> Tensor:
        """The weighted Fréchet mean of ``points`` (n, d), shape (d,), in their dtype."""
        points = as_tensor(points)
        return self.solve(space, points, weights, self.init_point).mean.to(points.dtype)

    def solve(self, space, points, weights=None, mean=None) -> FrechetResult:
        """:func:`~pullback_geom.geodesics.frechet.frechet_mean` of ``points`` (n, d) or
        (k, n, d) on ``space.metric``, in the metric's dtype; warns where a set did not
        converge."""
        metric = space.metric
        points = as_tensor(points)
        dtype = metric.dtype if metric.dtype is not None else points.dtype
        device = metric.device if metric.device is not None else points.device

        def cast(a):
            return None if a is None else as_tensor(a).to(dtype=dtype, device=device)

        result = frechet_mean(
            metric.pullback,
            cast(points),
            cast(weights),
            mean=cast(mean),
            n_points=self.n_points,
            max_iter=self.max_iter,
            tol=self.tol,
            init_curve=self.init_curve,
        )
        if not bool(result.converged.all()):
            warnings.warn(
                f"FrechetMean: {int((~result.converged).sum())} of "
                f"{result.converged.numel()} means did not converge in max_iter = "
                f"{self.max_iter} iterations (see the optimizer's result_.converged); "
                "raise max_iter",
                GeodesicConvergenceWarning,
                stacklevel=3,
            )
        if self.verbose:
            logging.info(
                "joint Fréchet mean: iterations %s, Fréchet function %s",
                result.iterations.tolist(),
                result.value.tolist(),
            )
        self.result_ = result
        return result


#: The optimizer of each method name: ``"joint"`` and geomstats' own.
METHODS = ("joint", "default", "adaptive", "batch")


class PullbackFrechetMean(FrechetMean):
    """geomstats' ``FrechetMean`` on a latent space, ``"joint"`` by default.

    ``FrechetMean(space)`` returns one for a space whose metric is a
    :class:`~pullback_geom.geomstats.PullbackRiemannianMetric`. Its ``estimate_`` is the
    mean in the points' dtype, and ``result_`` the joint solve's
    :class:`~pullback_geom.geodesics.frechet.FrechetResult` (None for geomstats' methods).

    Parameters
    ----------
    space : geomstats manifold
        From :func:`~pullback_geom.geomstats.latent_space`.
    method : {"joint", "default", "adaptive", "batch"}, default "joint"
        ``"joint"``: :class:`JointFrechetMean`; the others are geomstats' gradient
        descents (``"default"`` is geomstats' default, kept for comparison).
    """

    def __init__(self, space, method: str = "joint") -> None:
        super().__init__(space, method=method)
        self.result_: FrechetResult | None = None

    @property
    def method(self) -> str:
        """The optimisation method (see the class docstring)."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if value not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {value!r}")
        if value == "joint":
            if self._method != value:
                self._method, self.optimizer = value, JointFrechetMean()
            return
        FrechetMean.method.fset(self, value)

    def fit(self, X, y=None, weights=None) -> PullbackFrechetMean:
        """The weighted Fréchet mean of ``X`` (n, d) as ``estimate_`` (d,).

        Parameters
        ----------
        X : array-like, shape (n, d)
        y : None
            Ignored.
        weights : array-like, shape (n,), optional

        Returns
        -------
        self
        """
        super().fit(X, y, weights)
        joint = isinstance(self.optimizer, JointFrechetMean)
        self.result_ = self.optimizer.result_ if joint else None
        return self


def uses_pullback_metric(space) -> bool:
    """Whether ``space`` carries a :class:`~pullback_geom.geomstats.PullbackRiemannianMetric`."""
    return isinstance(getattr(space, "metric", None), PullbackRiemannianMetric)


def uses_joint_mean(kmeans) -> bool:
    """Whether a ``RiemannianKMeans`` moves its centres by the joint solve (its space is a
    latent space and its ``mean_estimator`` a ``"joint"`` :class:`PullbackFrechetMean`)."""
    estimator = getattr(kmeans, "mean_estimator", None)
    return (
        uses_pullback_metric(kmeans.space)
        and isinstance(estimator, PullbackFrechetMean)
        and isinstance(estimator.optimizer, JointFrechetMean)
    )


def _distances(metric, centers: Tensor, X: Tensor) -> Tensor:
    """Geodesic distances of every point to every centre, (n, k), in one batched ``dist``."""
    return metric.dist(centers[:, None], X[None]).mT


def kmeans_fit(kmeans, X):
    """``RiemannianKMeans.fit`` with batched steps: what ``fit`` runs on a latent space.

    geomstats' loop, step for step (its initial centres, its empty-cluster rule, its
    stopping test on the centres' mean move, its attributes ``cluster_centers_``,
    ``labels_``, ``inertia_`` and ``init_cluster_centers_``), with each assignment one
    batched ``dist`` of all points to all centres and each update the Fréchet means of all
    clusters in one joint solve (weights: the memberships), where geomstats runs ``k``
    distance calls and ``k`` gradient descents.

    Parameters
    ----------
    kmeans : geomstats RiemannianKMeans
    X : array-like, shape (n, d)

    Returns
    -------
    kmeans
    """
    metric, k = kmeans.space.metric, kmeans.n_clusters
    X = as_tensor(X)
    n = X.shape[0]
    centers = as_tensor(kmeans._pick_init_cluster_centers(X)).to(X.dtype).clone()
    kmeans.init_cluster_centers_ = centers.clone()
    dists = _distances(metric, centers, X)
    kmeans.labels_ = dists.argmin(1)
    optimizer = kmeans.mean_estimator.optimizer
    for index in range(kmeans.max_iter):
        old = centers.clone()
        member = kmeans.labels_[None] == torch.arange(k, device=X.device)[:, None]
        full = member.any(1)
        if bool(full.any()):
            weights = member[full].to(X.dtype)
            result = optimizer.solve(kmeans.space, X.expand(int(full.sum()), n, -1), weights)
            centers[full] = result.mean.to(X.dtype)
        for i in (~full).nonzero().flatten().tolist():  # geomstats' rule for empty clusters
            centers[i] = X[randint(0, n - 1)]
        dists = _distances(metric, centers, X)
        kmeans.labels_ = dists.argmin(1)
        kmeans.inertia_ = dists.amin(1).square().sum()
        moved = metric.dist(old, centers).mean()
        if kmeans.verbose > 0:
            logging.info(f"Convergence criterion at the end of iteration {index} is {moved}.")
        if moved < kmeans.tol:
            break
    else:
        logging.warning(
            f"K-means maximum number of iterations {kmeans.max_iter} reached. "
            "The mean may be inaccurate."
        )
    kmeans.cluster_centers_ = centers
    return kmeans
