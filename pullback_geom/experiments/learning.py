"""geomstats learning on a decoder's latent manifold, against the Euclidean baseline.

Each function takes a :class:`~pullback_geom.PullbackMetric` and latent codes (and
labels), runs one geomstats estimator on :func:`pullback_geom.geomstats.latent_space`
(our batched solvers inside) and the same estimator on plain ``R^d``, and returns both:

* :func:`class_frechet_means`: ``FrechetMean`` of each class;
* :func:`kmeans_comparison`: ``RiemannianKMeans`` from the same initial centres,
  scored against the labels by :func:`adjusted_rand_index` and :func:`purity`;
* :func:`knn_comparison`: ``KNearestNeighborsClassifier`` under the geodesic distance;
* :func:`tangent_pca`: ``TangentPCA`` at a base point (a class's Fréchet mean), with
  the principal geodesics.

Importing this module imports geomstats with its PyTorch backend (through
:mod:`pullback_geom.geomstats`). See ``docs/learning.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# The adapter must be imported before geomstats (it selects the PyTorch backend).
# isort: off
from .. import geomstats as pg_geomstats
from ..geodesics import pairwise_distances
from ..metric import PullbackMetric
from .._core.checks import reference_tensor

from geomstats.geometry.euclidean import Euclidean  # noqa: E402  (after the adapter)
from geomstats.learning.frechet_mean import FrechetMean  # noqa: E402
from geomstats.learning.kmeans import RiemannianKMeans  # noqa: E402
from geomstats.learning.knn import KNearestNeighborsClassifier  # noqa: E402
from geomstats.learning.pca import TangentPCA  # noqa: E402
# isort: on

__all__ = [
    "ClassMeans",
    "KMeansComparison",
    "KNNComparison",
    "TangentPCAResult",
    "adjusted_rand_index",
    "purity",
    "learning_space",
    "class_frechet_means",
    "kmeans_comparison",
    "knn_comparison",
    "tangent_pca",
]

F64 = torch.float64


# ---------------------------------------------------------------------------- checks
def _check_metric(metric) -> int:
    if not isinstance(metric, PullbackMetric):
        raise TypeError(f"metric must be a PullbackMetric; got {type(metric).__name__}")
    if metric.latent_dim is None:
        raise ValueError("the latent dimension is unknown: pass latent_dim= to PullbackMetric")
    return metric.latent_dim


def _check_codes(codes, d: int, name: str = "codes") -> Tensor:
    """``(n, d)`` float64 tensor, finite, at least one row."""
    z = torch.as_tensor(codes)
    if z.dim() != 2 or z.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}); got {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    z = z.detach().to(F64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


def _check_labels(labels, n: int, name: str = "labels") -> Tensor:
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one per code; got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integers; got {y.dtype}")
    return y.to(torch.int64)


def learning_space(metric: PullbackMetric, *, log_method: str = "discrete"):
    """The latent space as a geomstats manifold, with the log solver these tools default to.

    ``"discrete"`` (the adapter's default, :class:`~pullback_geom.geomstats.PullbackLogSolver`):
    the discrete log, whose vector is minus half the gradient of the squared distance on
    any decoder, ReLU included, so Fréchet means and k-means follow the right gradients.
    ``"energy"``: the energy curve's one-sided velocity (no refinement); ``"shooting"``:
    Newton shooting on the geodesic ODE (smooth decoders).

    Parameters
    ----------
    metric : PullbackMetric
    log_method : {"discrete", "energy", "shooting"}, default "discrete"

    Returns
    -------
    geomstats Euclidean space equipped with the pullback metric.
    """
    _check_metric(metric)
    return pg_geomstats.latent_space(metric, log_options={"method": log_method})


def _space_or_default(metric: PullbackMetric, space):
    if space is None:
        return learning_space(metric)
    if not isinstance(getattr(space, "metric", None), pg_geomstats.PullbackRiemannianMetric):
        raise TypeError("space must come from pullback_geom.geomstats.latent_space")
    return space


# ---------------------------------------------------------------------------- scores
def _contingency(labels_true, labels_pred) -> np.ndarray:
    a = np.asarray(labels_true).reshape(-1)
    b = np.asarray(labels_pred).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"labels_true and labels_pred must have the same length; got {a.size} and {b.size}"
        )
    if a.size == 0:
        raise ValueError("labels are empty")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) between two labellings of ``n`` items.

    1 for identical partitions (up to renaming), about 0 for independent ones.

    Parameters
    ----------
    labels_true, labels_pred : array-like, shape (n,)

    Returns
    -------
    float
    """
    table = _contingency(labels_true, labels_pred)

    def pairs(x):
        x = np.asarray(x, dtype=np.float64)
        return float((x * (x - 1) / 2).sum())

    n = int(table.sum())
    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    total = n * (n - 1) / 2
    expected = rows * cols / total if total > 0 else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (index - expected) / (maximum - expected)


def purity(labels_true, labels_pred) -> float:
    """Fraction of items whose cluster's majority label is their own label.

    Parameters
    ----------
    labels_true, labels_pred : array-like, shape (n,)

    Returns
    -------
    float in (0, 1]
    """
    table = _contingency(labels_true, labels_pred)
    return float(table.max(0).sum() / table.sum())


# ---------------------------------------------------------------------------- Fréchet means
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
    d = _check_metric(metric)
    z = _check_codes(codes, d)
    y = _check_labels(labels, z.shape[0])
    space = _space_or_default(metric, space)
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


# ---------------------------------------------------------------------------- k-means
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


def _fit_kmeans(space, z: Tensor, init: Tensor, max_iter: int, tol: float, mean_iter: int):
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
    d = _check_metric(metric)
    z = _check_codes(codes, d)
    y = _check_labels(labels, z.shape[0])
    k = int(torch.unique(y).numel()) if n_clusters is None else n_clusters
    if not isinstance(k, int) or not 1 <= k <= z.shape[0]:
        raise ValueError(f"n_clusters must be an integer in [1, n = {z.shape[0]}]; got {k}")
    if init is None:
        g = torch.Generator().manual_seed(seed)
        init = z[torch.randperm(z.shape[0], generator=g)[:k]]
    else:
        init = _check_codes(init, d, "init")
        if init.shape[0] != k:
            raise ValueError(f"init must have n_clusters = {k} rows; got {init.shape[0]}")
    space = _space_or_default(metric, space)
    r_labels, r_centers = _fit_kmeans(space, z, init, max_iter, tol, mean_iter)
    e_labels, e_centers = _fit_kmeans(Euclidean(d), z, init, max_iter, tol, mean_iter)
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


# ---------------------------------------------------------------------------- kNN
@dataclass
class KNNComparison:
    """Geodesic versus Euclidean k-nearest-neighbour classification (:func:`knn_comparison`).

    Attributes
    ----------
    riemannian_pred, euclidean_pred : Tensor, shape (n_test,)
    riemannian_accuracy, euclidean_accuracy : float
    distances : Tensor, shape (n_test + n_train, n_test + n_train) or None
        The geodesic distance matrix used (test codes first), when precomputed.
    """

    riemannian_pred: Tensor
    euclidean_pred: Tensor
    riemannian_accuracy: float
    euclidean_accuracy: float
    distances: Tensor | None


def _decoder_dtype(metric: PullbackMetric) -> torch.dtype:
    ref = reference_tensor(metric.decoder)
    return ref.dtype if ref is not None else F64


def knn_comparison(
    metric: PullbackMetric,
    train_codes,
    train_labels,
    test_codes,
    test_labels,
    *,
    n_neighbors: int = 5,
    precompute: bool = True,
    route: str = "graph",
    space=None,
    **pairwise_options,
) -> KNNComparison:
    """geomstats ``KNearestNeighborsClassifier`` under the geodesic and the Euclidean distance.

    geomstats hands ``space.metric.dist`` to scikit-learn as a callable metric, which
    scikit-learn calls once per (test, train) pair: one solver call each, so
    ``n_test * n_train`` calls. With ``precompute=True`` (default) the geodesic distance
    matrix is computed once, batched, by
    :func:`~pullback_geom.geodesics.pairwise_distances`, and the same geomstats
    estimator is switched to scikit-learn's ``metric="precomputed"``.

    Parameters
    ----------
    metric : PullbackMetric
    train_codes : array-like, shape (n_train, d)
    train_labels : array-like, shape (n_train,), int
    test_codes : array-like, shape (n_test, d)
    test_labels : array-like, shape (n_test,), int
    n_neighbors : int, default 5
    precompute : bool, default True
        ``False``: geomstats' own per-pair path through ``space.metric.dist``.
    route : {"graph", "solver", "auto"}, default "graph"
        Route of :func:`~pullback_geom.geodesics.pairwise_distances` (``"graph"``: grid
        shortest paths, ``d <= 3``, about 1% long; ``"solver"``: energy minimisation).
    space : optional
        For ``precompute=False``; see :func:`class_frechet_means`.
    **pairwise_options
        Passed to :func:`~pullback_geom.geodesics.pairwise_distances`.

    Returns
    -------
    KNNComparison
    """
    d = _check_metric(metric)
    x_tr = _check_codes(train_codes, d, "train_codes")
    y_tr = _check_labels(train_labels, x_tr.shape[0], "train_labels")
    x_te = _check_codes(test_codes, d, "test_codes")
    y_te = _check_labels(test_labels, x_te.shape[0], "test_labels")
    if not isinstance(n_neighbors, int) or not 1 <= n_neighbors <= x_tr.shape[0]:
        raise ValueError(
            f"n_neighbors must be an integer in [1, n_train = {x_tr.shape[0]}]; got {n_neighbors}"
        )
    n_te = x_te.shape[0]
    dist = None
    if precompute:
        both = torch.cat([x_te, x_tr]).to(_decoder_dtype(metric))
        pairwise_options.setdefault("progress", False)
        dist = pairwise_distances(metric, both, route=route, **pairwise_options).to(F64)
        knn = KNearestNeighborsClassifier(learning_space(metric), n_neighbors=n_neighbors)
        knn.metric = "precomputed"  # the sklearn attribute geomstats sets to its callable
        knn.fit(dist[n_te:, n_te:].cpu().numpy(), y_tr.cpu().numpy())
        r_pred = knn.predict(dist[:n_te, n_te:].cpu().numpy())
    else:
        space = _space_or_default(metric, space)
        knn = KNearestNeighborsClassifier(space, n_neighbors=n_neighbors)
        r_pred = knn.fit(x_tr.cpu().numpy(), y_tr.cpu().numpy()).predict(x_te.cpu().numpy())
    eknn = KNearestNeighborsClassifier(Euclidean(d), n_neighbors=n_neighbors)
    e_pred = eknn.fit(x_tr.cpu().numpy(), y_tr.cpu().numpy()).predict(x_te.cpu().numpy())
    r_pred, e_pred = torch.as_tensor(r_pred), torch.as_tensor(e_pred)
    return KNNComparison(
        r_pred,
        e_pred,
        float((r_pred == y_te).double().mean()),
        float((e_pred == y_te).double().mean()),
        dist,
    )


# ---------------------------------------------------------------------------- tangent PCA
@dataclass
class TangentPCAResult:
    """geomstats ``TangentPCA`` at a base point (:func:`tangent_pca`).

    Attributes
    ----------
    base_point : Tensor, shape (d,)
    components : Tensor, shape (k, d)
        Principal directions in latent coordinates (unit Euclidean length, as geomstats
        returns them).
    explained_variance : Tensor, shape (k,)
        Of the log vectors in latent coordinates (geomstats' definition).
    explained_variance_ratio : Tensor, shape (k,)
    metric_variance_ratio : Tensor, shape (d,)
        The same ratios with the tangent space measured by ``G(base_point)`` (eigenvalues
        of ``L^T C L``, ``G = L L^T``, ``C`` the covariance of the log vectors): the
        variance the metric sees, which geomstats' coordinate PCA does not.
    tangent_vectors : Tensor, shape (n, d)
        ``log_base(codes)``.
    geodesics : Tensor, shape (k, n_curve, d)
        ``exp_base(t * s_i * components[i])``, ``t`` from -2 to 2, ``s_i`` the standard
        deviation along component ``i``: the principal geodesics.
    """

    base_point: Tensor
    components: Tensor
    explained_variance: Tensor
    explained_variance_ratio: Tensor
    metric_variance_ratio: Tensor
    tangent_vectors: Tensor
    geodesics: Tensor


def tangent_pca(
    metric: PullbackMetric,
    codes,
    base_point=None,
    *,
    n_components: int | None = None,
    n_curve: int = 41,
    space=None,
) -> TangentPCAResult:
    """geomstats ``TangentPCA`` of ``codes`` at ``base_point``, with principal geodesics.

    Parameters
    ----------
    metric : PullbackMetric
    codes : array-like, shape (n, d)
        ``n >= 2``.
    base_point : array-like, shape (d,), optional
        Default: the codes' Fréchet mean (:func:`class_frechet_means` of one class).
    n_components : int, optional
        Default ``min(n, d)``.
    n_curve : int, default 41
        Points per principal geodesic.
    space : optional
        See :func:`class_frechet_means`.

    Returns
    -------
    TangentPCAResult
    """
    d = _check_metric(metric)
    z = _check_codes(codes, d)
    if z.shape[0] < 2:
        raise ValueError(f"tangent_pca needs at least 2 codes; got {z.shape[0]}")
    k = min(z.shape[0], d) if n_components is None else n_components
    if not isinstance(k, int) or not 1 <= k <= min(z.shape[0], d):
        raise ValueError(f"n_components must be an integer in [1, {min(z.shape[0], d)}]; got {k}")
    if n_curve < 2:
        raise ValueError(f"n_curve must be at least 2; got {n_curve}")
    space = _space_or_default(metric, space)
    if base_point is None:
        labels = torch.zeros(z.shape[0], dtype=torch.int64)
        base = class_frechet_means(metric, z, labels, space=space).riemannian[0]
    else:
        base = _check_codes(torch.as_tensor(base_point).reshape(1, -1), d, "base_point")[0]
    pca = TangentPCA(space, n_components=k).fit(z, base_point=base)
    logs = torch.as_tensor(space.metric.log(z, base), dtype=F64)
    comps = torch.as_tensor(pca.components_, dtype=F64)
    var = torch.as_tensor(pca.explained_variance_, dtype=F64)
    ratio = torch.as_tensor(pca.explained_variance_ratio_, dtype=F64)
    # Variance as the metric measures it: whiten the tangent space with G = L L^T.
    g = torch.as_tensor(space.metric.metric_matrix(base), dtype=F64)
    chol = torch.linalg.cholesky(g)
    centred = logs - logs.mean(0)
    cov = centred.T @ centred / max(z.shape[0] - 1, 1)
    eig = torch.linalg.eigvalsh(chol.T @ cov @ chol).flip(0).clamp_min(0)
    t = torch.linspace(-2.0, 2.0, n_curve, dtype=F64)
    vecs = t[None, :, None] * (var.sqrt()[:, None] * comps)[:, None, :]  # (k, T, d)
    curves = torch.as_tensor(space.metric.exp(vecs.reshape(-1, d), base), dtype=F64)
    return TangentPCAResult(
        base,
        comps,
        var,
        ratio,
        eig / eig.sum(),
        logs,
        curves.reshape(k, n_curve, d),
    )
