"""Fréchet means of classes and Riemannian k-means, against their Euclidean versions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from geomstats.geometry.euclidean import Euclidean
from geomstats.learning.frechet_mean import FrechetMean
from geomstats.learning.kmeans import RiemannianKMeans
from torch import Tensor

from ...geodesics.frechet import MAX_ITER
from ...metric import PullbackMetric
from ._common import (
    F64,
    check_codes,
    check_labels,
    check_metric,
    space_or_default,
)
from .scores import adjusted_rand_index, purity

__all__ = ["ClassMeans", "KMeansComparison", "class_frechet_means", "kmeans_comparison"]


@dataclass
class ClassMeans:
    """Per-class means (:func:`class_frechet_means`).

    Attributes
    ----------
    classes : Tensor, shape (K,)
        Sorted class labels.
    riemannian : Tensor, shape (K, d)
        Fréchet means under the pullback metric.
    euclidean : Tensor, shape (K, d)
        Arithmetic means of the codes.
    shift : Tensor, shape (K,)
        Geodesic distance from each Euclidean mean to the Fréchet mean.
    """

    classes: Tensor
    riemannian: Tensor
    euclidean: Tensor
    shift: Tensor


def class_frechet_means(
    metric: PullbackMetric,
    codes,
    labels,
    *,
    space=None,
    max_iter: int = MAX_ITER,
) -> ClassMeans:
    """geomstats ``FrechetMean`` of each class's codes, and the Euclidean means.

    All classes in one batched joint solve (the optimizer of ``FrechetMean(space)`` on a
    latent space, :class:`~pullback_geom.geomstats.learning.JointFrechetMean`: each class
    a set, weighted by membership), started as
    :func:`~pullback_geom.geodesics.frechet_mean` starts: at the class's Euclidean mean
    or, in 2-D and 3-D, at its code of lowest Fréchet function on the latent graph where
    that is lower (a ReLU decoder's Fréchet function has local minima).

    Parameters
    ----------
    metric : PullbackMetric
    codes : array-like, shape (n, d)
    labels : array-like, shape (n,), int
    space : optional
        A space from :func:`learning_space` / :func:`~pullback_geom.geomstats.latent_space`
        (to pick the solvers); default ``learning_space(metric)``.
    max_iter : int, default 200
        Levenberg–Marquardt iterations of the joint solve (it stops earlier, per class, by
        its tolerance).

    Returns
    -------
    ClassMeans
    """
    d = check_metric(metric)
    z = check_codes(codes, d)
    y = check_labels(labels, z.shape[0])
    space = space_or_default(metric, space)
    classes = torch.unique(y)
    member = (y[None] == classes[:, None]).to(F64)  # (K, n)
    euclidean = (member @ z) / member.sum(1, keepdim=True)
    optimizer = FrechetMean(space).set(max_iter=max_iter).optimizer
    result = optimizer.solve(space, z.expand(len(classes), -1, -1), member)
    riemannian = torch.as_tensor(result.mean, dtype=F64).detach()
    shift = torch.as_tensor(space.metric.dist(euclidean, riemannian), dtype=F64).reshape(-1)
    return ClassMeans(classes, riemannian, euclidean, shift)


@dataclass
class KMeansComparison:
    """Riemannian versus Euclidean k-means (:func:`kmeans_comparison`).

    Attributes
    ----------
    riemannian_labels, euclidean_labels : Tensor, shape (n,)
        Cluster of each code.
    riemannian_centers, euclidean_centers : Tensor, shape (n_clusters, d)
    init : Tensor, shape (n_clusters, d)
        The initial centres both runs started from.
    ari_riemannian, ari_euclidean : float
        Adjusted Rand index against the labels.
    purity_riemannian, purity_euclidean : float
    """

    riemannian_labels: Tensor
    euclidean_labels: Tensor
    riemannian_centers: Tensor
    euclidean_centers: Tensor
    init: Tensor
    ari_riemannian: float
    ari_euclidean: float
    purity_riemannian: float
    purity_euclidean: float


def fit_kmeans(space, z: Tensor, init: Tensor, max_iter: int, tol: float, mean_iter: int):
    km = RiemannianKMeans(space, n_clusters=init.shape[0], init=init.clone(), tol=tol)
    km.max_iter = max_iter
    if isinstance(km.mean_estimator, FrechetMean):  # the Euclidean space has a LinearMean
        km.mean_estimator.set(max_iter=mean_iter)
    km.fit(z)
    labels = torch.as_tensor(km.labels_).to(torch.int64)
    return labels, torch.as_tensor(km.cluster_centers_, dtype=F64)


def kmeans_comparison(
    metric: PullbackMetric,
    codes,
    labels,
    n_clusters: int | None = None,
    *,
    init=None,
    seed: int = 0,
    space=None,
    max_iter: int = 10,
    tol: float = 1e-2,
    mean_iter: int = MAX_ITER,
) -> KMeansComparison:
    """geomstats ``RiemannianKMeans`` under the pullback metric and on plain ``R^d``.

    Both runs start from the same centres and use the same estimator; only the metric
    differs (on ``R^d`` geomstats' ``FrechetMean`` is the arithmetic mean). On the latent
    space each iteration is one joint solve for all clusters' means and one batched
    ``dist`` of the pairs Elkan's bounds leave open
    (:func:`~pullback_geom.geomstats.kmeans.kmeans_fit`).

    Parameters
    ----------
    metric : PullbackMetric
    codes : array-like, shape (n, d)
    labels : array-like, shape (n,), int
        Only for scoring.
    n_clusters : int, optional
        Default: the number of distinct labels.
    init : array-like, shape (n_clusters, d), optional
        Initial centres; default ``n_clusters`` distinct codes drawn with ``seed``.
    seed : int, default 0
    space : optional
        See :func:`class_frechet_means`.
    max_iter : int, default 10
        k-means iterations (geomstats stops earlier when the centres move less than
        ``tol`` in mean geodesic distance).
    tol : float, default 1e-2
    mean_iter : int, default 200
        Iterations of each update's joint Fréchet-mean solve (it stops earlier by its
        tolerance).

    Returns
    -------
    KMeansComparison
    """
    d = check_metric(metric)
    z = check_codes(codes, d)
    y = check_labels(labels, z.shape[0])
    k = int(torch.unique(y).numel()) if n_clusters is None else n_clusters
    if not isinstance(k, int) or not 1 <= k <= z.shape[0]:
        raise ValueError(f"n_clusters must be an integer in [1, n = {z.shape[0]}]; got {k}")
    if init is None:
        g = torch.Generator().manual_seed(seed)
        init = z[torch.randperm(z.shape[0], generator=g)[:k]]
    else:
        init = check_codes(init, d, "init")
        if init.shape[0] != k:
            raise ValueError(f"init must have n_clusters = {k} rows; got {init.shape[0]}")
    space = space_or_default(metric, space)
    r_labels, r_centers = fit_kmeans(space, z, init, max_iter, tol, mean_iter)
    e_labels, e_centers = fit_kmeans(Euclidean(d), z, init, max_iter, tol, mean_iter)
    return KMeansComparison(
        r_labels,
        e_labels,
        r_centers,
        e_centers,
        init,
        adjusted_rand_index(y, r_labels),
        adjusted_rand_index(y, e_labels),
        purity(y, r_labels),
        purity(y, e_labels),
    )
