"""Identifiability measures of ``(K, P)`` distance arrays: scale-free distances, their
coefficient of variation across models, rank correlations and the error against known
true distances. Plain numpy (and scipy for ranks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = [
    "coefficient_of_variation",
    "identifiability_table",
    "rank_correlations",
    "scale_free",
    "summarise",
    "truth_table",
]


def _as_distances(distances: Any, name: str = "distances") -> np.ndarray:
    """``distances`` as a float64 (K, P) array with K >= 2, finite and >= 0."""
    arr = np.asarray(
        distances.detach().cpu() if isinstance(distances, Tensor) else distances, dtype=float
    )
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (K, P) with K >= 2 models and P >= 1 pairs; got {arr.shape}"
        )
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def scale_free(distances: Any) -> np.ndarray:
    """Each model's distances divided by that model's mean over the pairs.

    Parameters
    ----------
    distances : array_like, shape (K, P)
        Distances of ``P`` pairs in ``K`` models.

    Returns
    -------
    ndarray, shape (K, P)
        Every row has mean 1.

    Raises
    ------
    ValueError
        Bad shape, negative or non-finite values, or a model whose distances are all 0.
    """
    arr = _as_distances(distances)
    mean = arr.mean(axis=1, keepdims=True)
    if (mean <= 0).any():
        raise ValueError("a model gives every pair distance 0; it cannot be rescaled")
    return arr / mean


def coefficient_of_variation(distances: Any) -> np.ndarray:
    """Per pair, the coefficient of variation of its distance across models.

    Parameters
    ----------
    distances : array_like, shape (K, P)
        Distances of ``P`` pairs in ``K >= 2`` models (usually :func:`scale_free`).

    Returns
    -------
    ndarray, shape (P,)
        ``std / mean`` over the ``K`` models (population std, ``ddof=0``); 0 where
        every model agrees.

    Raises
    ------
    ValueError
        Bad shape, negative or non-finite values, or a pair at distance 0 in every model.
    """
    arr = _as_distances(distances)
    mean = arr.mean(axis=0)
    if (mean <= 0).any():
        raise ValueError("a pair has distance 0 in every model; its variation is undefined")
    return arr.std(axis=0) / mean


def rank_correlations(distances: Any) -> np.ndarray:
    """Spearman rank correlation of the pair distances between every two models.

    Parameters
    ----------
    distances : array_like, shape (K, P)

    Returns
    -------
    ndarray, shape (K, K)
        Symmetric, ones on the diagonal.
    """
    from scipy import stats

    arr = _as_distances(distances)
    if arr.shape[1] < 3:
        raise ValueError(f"rank correlations need at least 3 pairs; got {arr.shape[1]}")
    k = arr.shape[0]
    out = np.eye(k)
    for a, b in itertools.combinations(range(k), 2):
        out[a, b] = out[b, a] = stats.spearmanr(arr[a], arr[b]).statistic
    return out


def summarise(values: Any) -> dict[str, float]:
    """Median, quartiles and mean of a 1-D array, as plain floats."""
    v = np.asarray(values, dtype=float).ravel()
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "mean": float(v.mean())}


def identifiability_table(
    euclidean: Any, geodesic: Any, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Coefficients of variation and rank correlations of both kinds of distance.

    Parameters
    ----------
    euclidean, geodesic : array_like, shape (K, P)
        Raw distances of the same ``P`` pairs in the same ``K`` models.
    names : sequence of str, optional
        The models' names (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    dict
        For ``"euclidean"`` and ``"geodesic"``: ``"cv"`` (per-pair coefficients of
        variation of the :func:`scale_free` distances, a list of ``P`` floats),
        ``"cv_summary"`` (:func:`summarise` of it), ``"spearman"`` (``{"A vs B": rho}``
        for every two models) and ``"spearman_range"`` (min, max). Also ``"models"``,
        ``"pairs"`` and ``"cv_ratio"``: the median geodesic CV over the median
        Euclidean one (below 1: geodesic distances are the more stable).
    """
    euc = _as_distances(euclidean, "euclidean")
    geo = _as_distances(geodesic, "geodesic")
    if euc.shape != geo.shape:
        raise ValueError(
            f"euclidean and geodesic distances must have the same shape; got {euc.shape} "
            f"and {geo.shape}"
        )
    k, p = euc.shape
    names = [str(i) for i in range(k)] if names is None else [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} names for {k} models")
    table: dict[str, Any] = {"models": names, "pairs": p}
    for key, arr in (("euclidean", euc), ("geodesic", geo)):
        cv = coefficient_of_variation(scale_free(arr))
        rho = rank_correlations(arr)
        pairs = {
            f"{names[a]} vs {names[b]}": float(rho[a, b])
            for a, b in itertools.combinations(range(k), 2)
        }
        table[key] = {
            "cv": cv.tolist(),
            "cv_summary": summarise(cv),
            "spearman": pairs,
            "spearman_range": [min(pairs.values()), max(pairs.values())],
        }
    e_med = table["euclidean"]["cv_summary"]["median"]
    g_med = table["geodesic"]["cv_summary"]["median"]
    table["cv_ratio"] = g_med / e_med if e_med > 0 else float("nan")
    return table


def truth_table(truth: Any, euclidean: Any, geodesic: Any) -> dict[str, Any]:
    """How close each model's distances come to known true distances of the same pairs.

    Parameters
    ----------
    truth : array_like, shape (P,)
        True distances of the pairs (e.g. geodesic distances on the data manifold).
    euclidean, geodesic : array_like, shape (K, P)
        Each model's raw distances of the same pairs.

    Returns
    -------
    dict
        For ``"euclidean"`` and ``"geodesic"``, one value per model:
        ``"scale_free_error"`` — the median over pairs of ``|d / mean(d) - t / mean(t)|
        / (t / mean(t))``, the relative error once each side is divided by its mean
        (scale-free, so Euclidean and geodesic distances compare on the same footing) —
        and ``"spearman"``, the rank correlation with the truth. For ``"geodesic"``
        also ``"ratio"``: the median of ``d / t`` (1 when the model's lengths are the
        true ones, in the same units).
    """
    from scipy import stats

    t = np.asarray(truth, dtype=float).ravel()
    euc = _as_distances(euclidean, "euclidean")
    geo = _as_distances(geodesic, "geodesic")
    if euc.shape != geo.shape or euc.shape[1] != t.size:
        raise ValueError(
            f"truth (P,), euclidean and geodesic (K, P) must describe the same pairs; got "
            f"{t.shape}, {euc.shape} and {geo.shape}"
        )
    if not (np.isfinite(t).all() and (t > 0).all()):
        raise ValueError("true distances must be finite and > 0")
    t_free = t / t.mean()
    table: dict[str, Any] = {}
    for key, arr in (("euclidean", euc), ("geodesic", geo)):
        free = scale_free(arr)
        table[key] = {
            "scale_free_error": np.median(np.abs(free - t_free) / t_free, axis=1).tolist(),
            "spearman": [float(stats.spearmanr(row, t).statistic) for row in arr],
        }
    table["geodesic"]["ratio"] = np.median(geo / t, axis=1).tolist()
    return table
