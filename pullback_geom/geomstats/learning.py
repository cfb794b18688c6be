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
moves all ``k`` centres with one batched joint solve
(:func:`~pullback_geom.geomstats.kmeans.kmeans_fit`); with a
geomstats optimizer as its ``mean_estimator`` it runs geomstats' own loop.
"""

from __future__ import annotations

import logging
import warnings

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
    "tangent_pca_fit",
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
    extrapolate : bool or "auto", default "auto"
        ``frechet_mean``'s: the mean extrapolated to zero node spacing from a second,
        finer solve. ``"auto"``: on smooth decoders (:attr:`PullbackMetric.smooth`), where
        it brings the mean from ``O(1 / N^2)`` of the Fréchet mean to within the solver's
        tolerance of it, at about twice the cost (bundled smooth model, 50 codes of a
        digit, two threads: 0.2-0.4 s become 0.47-0.82 s); not on piecewise-linear ones,
        where the discrete mean is the exact one. k-means does not extrapolate its centres.
    polish : bool or "auto", default "auto"
        ``frechet_mean``'s: descend the Fréchet function measured by the curves' lengths
        from the joint mean. ``"auto"``: on piecewise-linear decoders (where the chord
        energies the joint solve minimises have local minima ~0.01 apart; bundled ReLU
        model, 50 codes of digits 1 / 3 / 7: the measured function 2.5e-4 / 2.2e-3 /
        2.3e-4 above geomstats' gradient-descent mean's before, within 2.1e-5 of it
        after), unless extrapolating. k-means does not polish its centres.

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
        extrapolate: bool | str = "auto",
        polish: bool | str = "auto",
    ) -> None:
        super().__init__(max_iter, epsilon, init_point, init_step_size, verbose)
        self.n_points, self.tol, self.init_curve = n_points, tol, init_curve
        for name, flag in (("extrapolate", extrapolate), ("polish", polish)):
            if flag not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto'; got {flag!r}")
        self.extrapolate, self.polish = extrapolate, polish
        self.result_: FrechetResult | None = None

    def minimize(self, space, points, weights=None) -> Tensor:
        """The weighted Fréchet mean of ``points`` (n, d), shape (d,), in their dtype."""
        points = as_tensor(points)
        return self.solve(space, points, weights, self.init_point).mean.to(points.dtype)

    def solve(
        self,
        space,
        points,
        weights=None,
        mean=None,
        curves=None,
        tol=None,
        extrapolate=None,
        polish=None,
    ) -> FrechetResult:
        """:func:`~pullback_geom.geodesics.frechet.frechet_mean` of ``points`` (n, d) or
        (k, n, d) on ``space.metric``; warns where a set did not converge. ``curves``
        (its ``init_curve`` as a tensor) overrides :attr:`init_curve`, ``tol`` :attr:`tol`
        ``extrapolate`` (a bool) :attr:`extrapolate` and ``polish`` (a bool) :attr:`polish`.

        Solved in the dtype of the metric's ``dist`` (``solve_dtype``: float32 for a
        float64 metric over a module), as ``dist`` solves: one thread, 50 codes of the
        bundled ReLU model, 0.5–0.9 s against 1.0–3.3 s in float64, the same Fréchet
        function to 1e-5. Sets that do not converge there are solved again in the metric's
        dtype from the mean found; with extrapolation every set is, and extrapolated there
        (float32's rounding would swamp the correction; the start is not measured). The
        result is in the metric's dtype.
        """
        metric = space.metric
        if extrapolate is None:
            extrapolate = self.extrapolate
            if extrapolate == "auto":
                extrapolate = metric.pullback.smooth
        if polish is None:
            polish = self.polish
            if polish == "auto":
                polish = not metric.pullback.smooth and not extrapolate
        points = as_tensor(points)
        dtype = metric.dtype if metric.dtype is not None else points.dtype
        device = metric.device if metric.device is not None else points.device
        low = metric.solve_dtype(dtype)

        def cast(a, to=dtype):
            return None if a is None else as_tensor(a).to(dtype=to, device=device)

        def solved(pullback, dtype, x, w, start, curves, **flags):
            flags = {"extrapolate": False, "polish": polish, **flags}
            return frechet_mean(
                pullback,
                cast(x, dtype),
                cast(w, dtype),
                mean=cast(start, dtype),
                n_points=self.n_points,
                max_iter=self.max_iter,
                tol=self.tol if tol is None else tol,
                init_curve=self.init_curve if curves is None else cast(curves, dtype),
                **flags,
            )

        low_metric, measure = metric.pullback_in(low), not extrapolate
        result = solved(low_metric, low, points, weights, mean, curves, measure=measure)
        if low != dtype:
            result = _cast_result(result, dtype)
        if extrapolate:
            start = (result.mean, result.curves)
            jacobians = None if low == dtype else low  # float64 values, float32 products
            result = solved(
                metric.pullback,
                dtype,
                points,
                weights,
                *start,
                extrapolate=True,
                polish=False,
                jacobian_dtype=jacobians,
            )
        elif low != dtype:
            again = ~result.converged.reshape(-1)
            if bool(again.any()):
                sets = points.reshape(-1, *points.shape[-2:])[again]
                w = None if weights is None else as_tensor(weights).reshape(-1, sets.shape[1])
                exact = solved(
                    metric.pullback,
                    dtype,
                    sets,
                    None if w is None else w[again],
                    result.mean.reshape(-1, points.shape[-1])[again],
                    result.curves.reshape(-1, *result.curves.shape[-3:])[again],
                )
                result = _with_sets(result, again, exact)
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


def _cast_result(result: FrechetResult, dtype: torch.dtype) -> FrechetResult:
    """``result`` with its floating fields in ``dtype``."""
    fields = {
        name: value.to(dtype) if value.is_floating_point() else value
        for name, value in vars(result).items()
    }
    return FrechetResult(**fields)


def _with_sets(result: FrechetResult, sets: Tensor, other: FrechetResult) -> FrechetResult:
    """``result`` (one set or ``k``) with the ``sets`` (bool, (k,)) taken from ``other``,
    which holds those sets only, always with a leading set axis."""
    single = result.mean.dim() == 1
    fields = {}
    for name, value in vars(result).items():
        value = (value.unsqueeze(0) if single else value).clone()
        value[sets] = getattr(other, name).to(value.dtype)
        fields[name] = value[0] if single else value
    return FrechetResult(**fields)


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
        if value == "joint":
            if self._method != value:
                self._method, self.optimizer = value, JointFrechetMean()
            return
        try:  # geomstats' setter knows its own methods (its optimizers by name)
            FrechetMean.method.fset(self, value)
        except ValueError as error:
            raise ValueError(f"method must be 'joint' or one of geomstats': {error}") from None

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


def uses_joint_mean(estimator) -> bool:
    """Whether a ``RiemannianKMeans`` or ``TangentPCA`` finds its means by the joint solve
    (its space is a latent space and its ``mean_estimator`` a ``"joint"``
    :class:`PullbackFrechetMean`)."""
    mean = getattr(estimator, "mean_estimator", None)
    return (
        uses_pullback_metric(estimator.space)
        and isinstance(mean, PullbackFrechetMean)
        and isinstance(mean.optimizer, JointFrechetMean)
    )


def tangent_pca_fit(pca, original_fit, X, base_point=None):
    """``TangentPCA._fit`` on a latent space: without a ``base_point``, the Fréchet mean by
    the joint solve and, as the tangent vectors, its curves' initial velocities at the mean
    (``FrechetResult.velocity``, the discrete logarithms), where geomstats fits the mean
    and then computes every logarithm again; geomstats' own ``_fit`` does the rest.

    Parameters
    ----------
    pca : geomstats TangentPCA
    original_fit : callable
        geomstats' ``TangentPCA._fit``.
    X : array-like, shape (n, d)
    base_point : array-like, shape (d,), optional

    Returns
    -------
    What ``original_fit`` returns (``U, S, V``).
    """
    if base_point is not None or not uses_joint_mean(pca):
        return original_fit(pca, X, base_point=base_point)
    points = as_tensor(X)
    estimator = pca.mean_estimator
    result = estimator.optimizer.solve(pca.space, points)
    estimator.estimate_, estimator.result_ = result.mean.to(points.dtype), result
    known = result.velocity.to(points.dtype)
    metric = pca.space.metric

    def log(point, base_point=None):  # the one call _fit makes, on these points
        return known.clone()

    shadowed = metric.__dict__.get("log")  # an instance attribute already there
    metric.log = log  # shadows the method for the duration of the call
    try:
        return original_fit(pca, points, base_point=estimator.estimate_)
    finally:
        if shadowed is None:
            del metric.log
        else:
            metric.log = shadowed
