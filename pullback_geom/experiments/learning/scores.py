"""Scores of a clustering against labels: adjusted Rand index and purity (plain NumPy)."""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand_index", "contingency", "purity"]


def contingency(labels_true, labels_pred) -> np.ndarray:
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
    table = contingency(labels_true, labels_pred)

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
    table = contingency(labels_true, labels_pred)
    return float(table.max(0).sum() / table.sum())
