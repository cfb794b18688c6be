"""Scores of a clustering against labels: adjusted Rand index and purity (scikit-learn)."""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand_index", "purity"]


def _labellings(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(labels_true).reshape(-1)
    b = np.asarray(labels_pred).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"labels_true and labels_pred must have the same length; got {a.size} and {b.size}"
        )
    if a.size == 0:
        raise ValueError("labels are empty")
    return a, b


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) between two labellings of ``n`` items.

    1 for identical partitions (up to renaming), about 0 for independent ones; 1 also
    when both are trivial (one cluster each, or all singletons). scikit-learn's
    ``adjusted_rand_score``.

    Parameters
    ----------
    labels_true, labels_pred : array-like, shape (n,)

    Returns
    -------
    float
    """
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(*_labellings(labels_true, labels_pred)))


def purity(labels_true, labels_pred) -> float:
    """Fraction of items whose cluster's majority label is their own label.

    scikit-learn has no purity; it is the column maxima of its contingency matrix
    (classes by clusters), summed, over ``n``.

    Parameters
    ----------
    labels_true, labels_pred : array-like, shape (n,)

    Returns
    -------
    float in (0, 1]
    """
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(*_labellings(labels_true, labels_pred))
    return float(table.max(axis=0).sum() / table.sum())
