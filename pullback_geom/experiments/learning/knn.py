"""k-nearest-neighbour classification under the geodesic distance, against Euclidean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from geomstats.geometry.euclidean import Euclidean
from geomstats.learning.knn import KNearestNeighborsClassifier
from torch import Tensor

from ...geodesics import pairwise_distances
from ...metric import PullbackMetric
from ..neighbours import knn_predict
from ._common import (
    F64,
    check_codes,
    check_labels,
    check_metric,
    decoder_dtype,
    space_or_default,
)

__all__ = ["KNNComparison", "knn_comparison"]


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
    :func:`~pullback_geom.geodesics.pairwise_distances`, and classified by
    :func:`~pullback_geom.experiments.neighbours.knn_predict`: scikit-learn's
    ``KNeighborsClassifier(metric="precomputed")``, which is what geomstats' estimator
    becomes with ``metric="precomputed"``, and the report's kNN too. Tied votes go to the
    smallest label (scikit-learn's rule, on both arms).

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
    d = check_metric(metric)
    x_tr = check_codes(train_codes, d, "train_codes")
    y_tr = check_labels(train_labels, x_tr.shape[0], "train_labels")
    x_te = check_codes(test_codes, d, "test_codes")
    y_te = check_labels(test_labels, x_te.shape[0], "test_labels")
    if not isinstance(n_neighbors, int) or not 1 <= n_neighbors <= x_tr.shape[0]:
        raise ValueError(
            f"n_neighbors must be an integer in [1, n_train = {x_tr.shape[0]}]; got {n_neighbors}"
        )
    n_te = x_te.shape[0]
    dist = None
    if precompute:
        both = torch.cat([x_te, x_tr]).to(decoder_dtype(metric))
        pairwise_options.setdefault("progress", False)
        dist = pairwise_distances(metric, both, route=route, **pairwise_options).to(F64)
        r_pred = knn_predict(dist[:n_te, n_te:], y_tr, n_neighbors)
    else:
        space = space_or_default(metric, space)
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
