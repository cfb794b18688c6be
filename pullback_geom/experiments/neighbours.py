"""k-nearest-neighbour classification on a precomputed distance matrix (scikit-learn).

The one kNN classifier of the experiments: the report's leave-one-out accuracies
(:func:`pullback_geom.experiments.report.analysis.knn_accuracy`) and the geodesic arm of
:func:`pullback_geom.experiments.learning.knn_comparison` both call :func:`knn_predict`.
It is scikit-learn's ``KNeighborsClassifier(metric="precomputed")`` with uniform votes
(geomstats' ``KNearestNeighborsClassifier`` switched to ``metric="precomputed"`` is the
same estimator), so its rules are scikit-learn's:

* **tied votes** (two classes with the most neighbours) go to the **smallest label**
  among the tied classes (scikit-learn's mode over its sorted ``classes_``), not to the
  class of the nearest voter;
* neighbours tied at the k-th distance are taken in scikit-learn's order, which it
  leaves unspecified.

scikit-learn (the ``geomstats`` extra) is imported when a function is called; importing
this module needs torch and numpy only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._core.extras import require

__all__ = ["knn_accuracy", "knn_predict"]


def _distance_array(distances, leave_one_out: bool) -> np.ndarray:
    """``distances`` as a float64 array that scikit-learn accepts.

    With ``leave_one_out`` the diagonal becomes 0: each point is then its own nearest
    neighbour, which ``predict(None)`` (scikit-learn's leave-one-out) drops. ``+inf``
    (points in different components of a graph route) becomes one finite value above
    every finite entry: scikit-learn rejects infinite input, and the order, which is all
    a kNN vote reads, is kept.
    """
    if isinstance(distances, Tensor):
        distances = distances.detach().to(torch.float64).cpu().numpy()
    d = np.array(distances, dtype=np.float64)  # a copy: the caller's matrix is not touched
    if d.ndim != 2 or (leave_one_out and d.shape[0] != d.shape[1]):
        expected = "(n, n) with leave_one_out" if leave_one_out else "(m, n)"
        raise ValueError(f"distances must have shape {expected}; got {d.shape}")
    if leave_one_out:
        np.fill_diagonal(d, 0.0)
    if np.isnan(d).any() or (d < 0).any():
        raise ValueError("distances must be non-negative; got NaN or negative entries")
    infinite = np.isinf(d)
    if infinite.any():
        finite = d[~infinite]
        d[infinite] = 2 * finite.max() + 1 if finite.size else 1.0
    return d


def knn_predict(
    distances, train_labels, n_neighbors: int = 5, *, leave_one_out: bool = False
) -> Tensor:
    """Majority vote of the ``n_neighbors`` nearest training points, from distances alone.

    Parameters
    ----------
    distances : Tensor or array, shape (m, n)
        Distances from ``m`` query points to the ``n`` training points. With
        ``leave_one_out=True``: shape ``(n, n)``, among the training points themselves;
        each point is classified by the others (its own entry, the diagonal, is ignored).
        ``+inf`` entries count as farther than every finite one.
    train_labels : Tensor or array of int, shape (n,)
    n_neighbors : int, default 5
        In ``[1, n]``, or ``[1, n)`` with ``leave_one_out=True``.
    leave_one_out : bool, default False

    Returns
    -------
    Tensor of int64, shape (m,)
        The voted labels; a tie between classes goes to the smallest label (see the
        module docstring).
    """
    # scikit-learn comes with the geomstats extra; the report's kNN numbers need it too.
    neighbors = require("sklearn.neighbors", "geomstats", "kNN classification (knn_predict)")
    d = _distance_array(distances, leave_one_out)
    if isinstance(train_labels, Tensor):
        train_labels = train_labels.detach().cpu().numpy()
    y = np.asarray(train_labels).reshape(-1)
    n = d.shape[1]
    if y.shape != (n,):
        raise ValueError(
            f"train_labels must have shape ({n},), one per column of distances; got {y.shape}"
        )
    top = n - 1 if leave_one_out else n
    if not isinstance(n_neighbors, (int, np.integer)) or not 1 <= n_neighbors <= top:
        raise ValueError(f"n_neighbors must be an integer in [1, {top}]; got {n_neighbors}")
    clf = neighbors.KNeighborsClassifier(n_neighbors=int(n_neighbors), metric="precomputed")
    if leave_one_out:
        pred = clf.fit(d, y).predict(None)  # the zero diagonal: see _distance_array
    else:
        pred = clf.fit(np.zeros((n, n)), y).predict(d)  # a precomputed fit reads only y
    return torch.as_tensor(pred, dtype=torch.int64)


def knn_accuracy(distances: Tensor, labels: Tensor, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy from a distance matrix.

    Parameters
    ----------
    distances : Tensor, shape (n, n)
        Symmetric; the diagonal is ignored.
    labels : Tensor of int, shape (n,)
    k : int, default 5
        Neighbours voting; a tie between classes goes to the smallest label
        (scikit-learn's rule, :func:`knn_predict`).

    Returns
    -------
    float
        Fraction of points whose vote gives their own label.
    """
    n = distances.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n) with n = {n} points; got {k}")
    pred = knn_predict(distances, labels, k, leave_one_out=True)
    return float((pred == torch.as_tensor(labels).cpu()).double().mean())
