"""Fréchet means of classes and Riemannian k-means, against their Euclidean versions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from geomstats.geometry.euclidean import Euclidean
from geomstats.learning.frechet_mean import FrechetMean
from geomstats.learning.kmeans import RiemannianKMeans
from torch import Tensor

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
    max_iter: int = 32,
    rel_tol: float = 1e-3,
) -> ClassMeans:
    """geomstats ``FrechetMean`` of each class's codes, and the Euclidean means.

    The gradient descent starts at the Euclidean mean (geomstats' default start, the
    first point, needs more iterations).

    Parameters
    ----------
    metric : PullbackMetric
    codes : array-like, shape (n, d)
    labels : array-like, shape (n,), int
    space : optional
        A space from :func:`learning_space` / :func:`~pullback_geom.geomstats.latent_space`
        (to pick the solvers); default ``learning_space(metric)``.
    max_iter : int, default 32
        Gradient-descent iterations per class.
    rel_tol : float, default 1e-3
        Stop when the mean log vector is shorter than ``rel_tol`` times the class's RMS
        spread (``|z - m|`` measured by ``G`` at the Euclidean mean ``m``). geomstats'
        own criterion is absolute (``|mean log|_G^2 <= epsilon * d``), which fits no
        single scale: pullback distances on an MNIST decoder are in the tens, and the
        energy log solver's ~1e-3 relative error then keeps it from ever being met.

    Returns
    -------
    ClassMeans
    """
    d = check_metric(metric)
    z = check_codes(codes, d)
    y = check_labels(labels, z.shape[0])
    space = space_or_default(metric, space)
    classes = torch.unique(y)
    riem, eucl = [], []
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be positive; got {rel_tol}")
    for c in classes:
        pts = z[y == c]
        start = pts.mean(0)
        eucl.append(start)
        g = torch.as_tensor(space.metric.metric_matrix(start), dtype=F64)
        spread = torch.einsum("ni,ij,nj->n", pts - start, g, pts - start).mean()
        epsilon = float(rel_tol**2 * spread.clamp_min(1e-300) / d)
        fm = FrechetMean(space).set(max_iter=max_iter, epsilon=epsilon, init_point=start)
        riem.append(torch.as_tensor(fm.fit(pts).estimate_, dtype=F64).detach())
    riemannian, euclidean = torch.stack(riem), torch.stack(eucl)
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
    mean_iter: int = 20,
) -> KMeansComparison:
    """geomstats ``RiemannianKMeans`` under the pullback metric and on plain ``R^d``.

    Both runs start from the same centres and use the same estimator; only the metric
    differs (on ``R^d`` geomstats' ``FrechetMean`` is the arithmetic mean). Each
    iteration costs ``n_clusters`` batched distance solves (``dist(centre, codes)``)
    plus one Fréchet mean per cluster, so keep ``n`` and ``n_clusters`` small (about
    50 codes and 3 clusters take a minute on one CPU thread with a 2-D MNIST decoder).

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
    mean_iter : int, default 20
        Gradient-descent iterations of each cluster's Fréchet mean.

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
