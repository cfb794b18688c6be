r"""Are latent distances identifiable? The same image pairs measured in retrained models.

Latent coordinates of a VAE are not identifiable: retraining with another seed moves,
rotates and bends the latent space. Geodesic distances of the pullback metric are
invariant under any reparametrisation of the latent space, so if two models learn the
same decoded manifold they agree on them (Syrota et al., "Identifying metric structures
of deep latent variable models", ICML 2025). This module measures how far that holds:

1. the same ``P`` test-image pairs are measured in ``K`` models, giving a ``(K, P)``
   array of Euclidean latent distances and one of geodesic distances;
2. each model's row is divided by its own mean (:func:`scale_free`): Euclidean latent
   distances have an arbitrary scale (the prior fixes it only loosely), and geodesic
   distances are divided the same way so that both are compared on the same footing;
3. per pair, the coefficient of variation across the models
   (:func:`coefficient_of_variation`, std / mean, population std): 0 means every model
   gives the pair the same (relative) distance;
4. the Spearman rank correlation between every two models (:func:`rank_correlations`),
   which needs no rescaling at all.

:func:`identifiability_table` does 2-4 for both kinds of distance;
:func:`model_distances` measures one model; :func:`identifiability_figure` draws the
result. ``pullback-geom identifiability`` runs it all on checkpoints.

Where the true distances are known — models of the ``digit-orbit`` images
(:mod:`pullback_geom.digit_orbit`), whose image manifold is an exactly known 2-D
surface — :func:`truth_table` also says how close each model's distances come to the
true geodesic distances of the same image pairs, and :func:`truth_figure` shows it.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .geodesics import connecting_geodesic
from .metric import PullbackMetric

__all__ = [
    "METRICS",
    "coefficient_of_variation",
    "ensemble_energy_distances",
    "identifiability_figure",
    "identifiability_table",
    "load_models",
    "model_distances",
    "rank_correlations",
    "render_markdown",
    "run_identifiability",
    "scale_free",
    "summarise",
    "truth_figure",
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


def model_distances(
    metric: PullbackMetric,
    codes: Tensor,
    pairs: Tensor,
    *,
    n_points: int = 32,
    max_iter: int = 200,
    batch: int = 50,
    graph_start: bool = False,
    progress=None,
) -> dict[str, Tensor]:
    """Euclidean and geodesic distances of index pairs of latent codes in one model.

    Parameters
    ----------
    metric : PullbackMetric
    codes : Tensor, shape (N, d)
        The model's latent codes of the test images.
    pairs : Tensor of int, shape (P, 2)
        Indices into ``codes``.
    n_points : int, default 32
        Nodes of each discrete geodesic (:func:`~pullback_geom.geodesics.connecting_geodesic`,
        Levenberg–Marquardt from the straight line).
    max_iter : int, default 200
    batch : int, default 50
        Pairs solved at once (one progress step each).
    graph_start : bool, default False
        Start from grid-graph shortest paths (``init_curve="graph"``, d <= 3) instead of
        straight lines, which on trained ReLU decoders end in a longer local minimum for
        about one pair in eight.
    progress : callable, optional
        Called with the number of pairs finished after each batch.

    Returns
    -------
    dict
        ``"euclidean"``, ``"geodesic"``, ``"chord"`` (``||f(p) - f(q)||`` in the metric's
        observation space; float64, shape (P,)) and ``"converged"`` (bool, shape (P,)).
    """
    pairs = _check_pairs(pairs, len(codes))
    p, q = codes[pairs[:, 0]], codes[pairs[:, 1]]
    geo, conv = [], []
    for i in range(0, len(pairs), batch):
        res = connecting_geodesic(
            metric,
            p[i : i + batch],
            q[i : i + batch],
            n_points=n_points,
            max_iter=max_iter,
            init_curve="graph" if graph_start else None,
            warn=False,
        )
        geo.append(res.length.detach().double())
        conv.append(res.converged)
        if progress is not None:
            progress(len(res.length))
    return {
        "euclidean": torch.linalg.vector_norm(p - q, dim=-1).double(),
        "geodesic": torch.cat(geo),
        "chord": _chord(metric.embed, p, q),
        "converged": torch.cat(conv),
    }


def _chord(embed, p: Tensor, q: Tensor) -> Tensor:
    """``||f(p) - f(q)||``, float64 (P,): the observation-space distance of the two ends,
    a lower bound of the geodesic distance that needs no path."""
    with torch.no_grad():
        return torch.linalg.vector_norm(embed(p) - embed(q), dim=-1).double()


def ensemble_energy_distances(
    members: Sequence[torch.nn.Module],
    codes: Tensor,
    pairs: Tensor,
    *,
    n_points: int = 32,
    weight: float = 1.0,
    max_iter: int = 200,
    batch: int = 50,
    progress=None,
) -> dict[str, Tensor]:
    """Distances of index pairs along the minimisers of a decoder ensemble's curve energy.

    :func:`~pullback_geom.ensemble_energy.ensemble_geodesic` (Syrota et al.'s energy: the
    mean image's plus the members' disagreement at the nodes) from straight lines; the
    distance is the length of the minimiser decoded by the mean image.

    Parameters
    ----------
    members : sequence of nn.Module
        ``K >= 2`` decoders, e.g. ``EnsembleVAE.decoder.members``.
    codes : Tensor, shape (N, d)
    pairs : Tensor of int, shape (P, 2)
    n_points : int, default 32
        Nodes per curve; the minimiser depends on it (the energy is not a metric's).
    weight : float, default 1
        Of the disagreement potential.
    max_iter : int, default 200
    batch : int, default 50
    progress : callable, optional
        Called with the number of pairs finished after each batch.

    Returns
    -------
    dict
        ``"euclidean"``, ``"geodesic"`` (mean-image length), ``"expected"`` (expected
        decoded length over independent decoder pairs per segment, which adds the
        disagreement at every node: an ``N``-dependent offset), ``"chord"`` (the mean
        images' distance ``||fbar(p) - fbar(q)||``), all float64 of shape (P,), and
        ``"converged"`` (bool, shape (P,)).
    """
    from .ensemble_energy import _MeanImage, ensemble_geodesic

    pairs = _check_pairs(pairs, len(codes))
    p, q = codes[pairs[:, 0]], codes[pairs[:, 1]]
    geo, expected, conv = [], [], []
    for i in range(0, len(pairs), batch):
        res = ensemble_geodesic(
            members,
            p[i : i + batch],
            q[i : i + batch],
            n_points=n_points,
            weight=weight,
            max_iter=max_iter,
        )
        geo.append(res.mean_length.double())
        expected.append(res.length.double())
        conv.append(res.converged)
        if progress is not None:
            progress(len(res.length))
    mean_image = PullbackMetric(_MeanImage(members), latent_dim=codes.shape[1])
    return {
        "euclidean": torch.linalg.vector_norm(p - q, dim=-1).double(),
        "geodesic": torch.cat(geo),
        "expected": torch.cat(expected),
        "chord": _chord(mean_image.embed, p, q),
        "converged": torch.cat(conv),
    }


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


def truth_figure(truth: Any, euclidean: Any, geodesic: Any, names: Sequence[str], title: str):
    """Every model's distances against the true ones, Euclidean and geodesic.

    Parameters
    ----------
    truth : array_like, shape (P,)
    euclidean, geodesic : array_like, shape (K, P)
    names : sequence of str
        The ``K`` models' names.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .viz._common import new_figure

    t = np.asarray(truth, dtype=float)
    t = t / t.mean()
    fig = new_figure((9, 4.4))
    for ax, arr, label in zip(
        fig.subplots(1, 2),
        (scale_free(euclidean), scale_free(geodesic)),
        ("Euclidean latent distance", "geodesic distance"),
        strict=True,
    ):
        for row, name in zip(arr, names, strict=True):
            err = np.median(np.abs(row - t) / t)
            ax.scatter(t, row, s=7, alpha=0.5, label=f"model {name} (median error {err:.1%})")
        top = max(t.max(), arr.max()) * 1.05
        ax.plot([0, top], [0, top], color="0.3", lw=1, ls=":", label="equal")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel("true geodesic distance on the data manifold (/ its mean)")
        ax.set_ylabel(f"{label} in the model (/ its mean)")
        ax.set_title(label)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    return fig


def _check_pairs(pairs: Tensor, n: int) -> Tensor:
    pairs = torch.as_tensor(pairs)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2); got {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= n):
        raise ValueError(f"pair indices must lie in [0, {n}); got out-of-range ones")
    return pairs


def identifiability_figure(table: dict[str, Any], euclidean: Any, geodesic: Any, title: str):
    """CV histograms of both kinds of distance and model A against model B.

    Parameters
    ----------
    table : dict
        From :func:`identifiability_table`.
    euclidean, geodesic : array_like, shape (K, P)
        The raw distances the table was made from.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .viz._common import new_figure

    euc, geo = scale_free(euclidean), scale_free(geodesic)
    names = table["models"]
    fig = new_figure((13, 4.2))
    ax_h, ax_e, ax_g = fig.subplots(1, 3)
    cv_e, cv_g = np.asarray(table["euclidean"]["cv"]), np.asarray(table["geodesic"]["cv"])
    bins = np.linspace(0, max(cv_e.max(), cv_g.max()) * 1.02, 30)
    for cv, label, colour in ((cv_e, "Euclidean", "tab:blue"), (cv_g, "geodesic", "tab:orange")):
        ax_h.hist(
            cv, bins=bins, alpha=0.55, color=colour, label=f"{label} (median {np.median(cv):.3f})"
        )
        ax_h.axvline(np.median(cv), color=colour, lw=1.5, ls="--")
    ax_h.set_xlabel("coefficient of variation across models (per pair)")
    ax_h.set_ylabel("pairs")
    ax_h.set_title(f"{len(names)} models, {table['pairs']} pairs")
    ax_h.legend()
    for ax, arr, key, label in (
        (ax_e, euc, "euclidean", "Euclidean latent distance"),
        (ax_g, geo, "geodesic", "geodesic distance"),
    ):
        rho = table[key]["spearman"][f"{names[0]} vs {names[1]}"]
        ax.scatter(arr[0], arr[1], s=8, alpha=0.6, label=f"pairs (Spearman {rho:.2f})")
        top = max(arr[0].max(), arr[1].max()) * 1.05
        ax.plot([0, top], [0, top], color="0.4", lw=1, ls=":", label="equal")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{label}, model {names[0]} (/ its mean)")
        ax.set_ylabel(f"model {names[1]} (/ its mean)")
        ax.set_title(f"{label}\nmodel {names[0]} vs model {names[1]}")
        ax.legend(loc="upper left")
    fig.suptitle(title)
    return fig


#: ``--metric`` values: the ``kind`` of :meth:`~pullback_geom.vae.VAE.pullback_metric`, and
#: ``"ensemble-energy"``, :func:`ensemble_energy_distances`
METRICS = ("mean", "uncertainty", "fisher-rao", "ensemble", "disagreement", "ensemble-energy")

#: ``--metric`` values that are curve energies of an ensemble, not Riemannian metrics
ENERGIES = ("ensemble-energy",)

#: ``--metric`` values whose lengths are pixel-space lengths of (mean) images
_PIXEL_LENGTHS = ("mean", "ensemble", "ensemble-energy")


def load_models(checkpoints: Sequence[str | os.PathLike]) -> tuple[list, Tensor, Tensor]:
    """Load ``K >= 3`` checkpoints of models of the same test set and latent dimension.

    Returns
    -------
    models : list of VAE
    codes : Tensor, shape (K, N, d)
        Each model's stored test-set codes.
    labels : Tensor, shape (N,)

    Raises
    ------
    ValueError
        Fewer than 3 checkpoints, different latent dimensions, or test codes of different
        test sets.
    FileNotFoundError
        A checkpoint is missing.
    """
    from . import vae

    if len(checkpoints) < 3:
        raise ValueError(
            f"the identifiability experiment needs at least 3 models; got {len(checkpoints)}"
        )
    models, codes, labels = [], [], None
    for path in checkpoints:
        model = vae.load(path)
        z, lab = vae.load_latents(path)
        if models and model.latent_dim != models[0].latent_dim:
            raise ValueError(
                f"{path} has latent dimension {model.latent_dim} but {checkpoints[0]} has "
                f"{models[0].latent_dim}: compare models of the same dimension"
            )
        if labels is not None and (len(lab) != len(labels) or not torch.equal(lab, labels)):
            raise ValueError(
                f"{path} stores codes of another test set ({len(lab)} images) than "
                f"{checkpoints[0]} ({len(labels)}): the pairs must be the same images"
            )
        models.append(model)
        codes.append(z)
        labels = lab
    return models, torch.stack(codes), labels


def run_identifiability(
    checkpoints: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("mean",),
    n_pairs: int = 200,
    pair_seed: int = 0,
    n_points: int = 32,
    disagreement_scale: float = 1.0,
    energy_weight: float = 1.0,
    graph_start: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """The whole experiment: distances of the same pairs in every model, per metric.

    Writes ``identifiability.md``, ``identifiability.json`` and one
    ``identifiability_<metric>.png`` per metric to ``out``, each atomically.

    Parameters
    ----------
    checkpoints : sequence of path
        ``K >= 3`` checkpoints of ``pullback-geom train``, trained on the same test set.
    out : path
    metrics : sequence of str, default ("mean",)
        Values of :data:`METRICS`; each must be a ``kind`` every model offers.
    n_pairs : int, default 200
        Random pairs of test-set indices (``i != j``), seeded by ``pair_seed``.
    n_points : int, default 32
        Nodes per discrete geodesic.
    disagreement_scale : float, default 1
        ``scale`` of the ``"disagreement"`` metric (the weight of the members' std).
    energy_weight : float, default 1
        ``weight`` of the disagreement potential of ``"ensemble-energy"``.
    graph_start : bool, default False
        Start the metrics' geodesics from grid-graph shortest paths instead of straight
        lines (:func:`model_distances`); ``"ensemble-energy"`` always starts straight.
    progress : bool, default True
        A tqdm bar over pairs x models x metrics, on stderr.
    command : str, optional
        The command line, recorded in the outputs.

    Returns
    -------
    dict
        What ``identifiability.json`` holds: per metric the
        :func:`identifiability_table`, the raw distances, convergence and seconds.
    """
    import json
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from .checkpoint import atomic_write_bytes
    from .report.analysis import random_pairs
    from .report.document import figure_bytes

    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 3:
        raise ValueError(f"n_pairs must be an integer >= 3; got {n_pairs!r}")
    models, codes, _ = load_models(checkpoints)
    for kind in metrics:
        for path, model in zip(checkpoints, models, strict=True):
            offered = model.metric_kinds + (ENERGIES if model.kind == "ensemble" else ())
            if kind not in offered:
                raise ValueError(
                    f"{path} is a {model.kind} model, which has no {kind!r} metric (it offers "
                    f"{list(offered)}); 'uncertainty' needs Gaussian models, 'ensemble', "
                    "'disagreement' and 'ensemble-energy' ensemble models (pullback-geom "
                    "train --model ...)"
                )
    if not (disagreement_scale > 0 and energy_weight >= 0):
        raise ValueError(
            f"disagreement_scale must be > 0 and energy_weight >= 0; got "
            f"{disagreement_scale} and {energy_weight}"
        )
    options = {"disagreement": {"scale": disagreement_scale}}
    pairs = random_pairs(codes.shape[1], n_pairs, pair_seed)
    t0 = time.perf_counter()
    truth = _orbit_truth(checkpoints, codes.shape[1], pairs)
    names = [Path(c).name or str(c) for c in checkpoints]
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    result: dict[str, Any] = {
        "checkpoints": [str(c) for c in checkpoints],
        "models": names,
        "pairs": pairs.tolist(),
        "pair_seed": pair_seed,
        "n_points": n_points,
        "disagreement_scale": disagreement_scale,
        "energy_weight": energy_weight,
        "start": "graph" if graph_start else "straight",
        "command": command,
        "scaling": "each model's distances divided by their mean over the pairs, Euclidean "
        "and geodesic alike; CV = population std / mean across models, per pair",
        "metrics": {},
    }
    if truth is not None:
        result["truth"] = {
            "dataset": "digit-orbit",
            "what": "geodesic distances of the pairs on the true image manifold (the "
            "pullback through the digit-orbit renderer, 32 nodes, float64)",
            "distances": truth.tolist(),
            "seconds": time.perf_counter() - t0,
        }
    out = Path(out)
    figures = {}
    bar = tqdm(
        total=n_pairs * len(models) * len(metrics),
        desc="geodesics",
        unit="pair",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        for kind in metrics:
            t0 = time.perf_counter()
            runs = [
                ensemble_energy_distances(
                    model.decoder.members,
                    z,
                    pairs,
                    n_points=n_points,
                    weight=energy_weight,
                    progress=bar.update,
                )
                if kind in ENERGIES
                else model_distances(
                    model.pullback_metric(kind, **options.get(kind, {})),
                    z,
                    pairs,
                    n_points=n_points,
                    graph_start=graph_start,
                    progress=bar.update,
                )
                for model, z in zip(models, codes, strict=True)
            ]
            euc = torch.stack([r["euclidean"] for r in runs]).numpy()
            geo = torch.stack([r["geodesic"] for r in runs]).numpy()
            table = identifiability_table(euc, geo, names)
            table["converged_fraction"] = float(
                torch.stack([r["converged"] for r in runs]).double().mean()
            )
            table["seconds"] = time.perf_counter() - t0
            table["distances"] = {"euclidean": euc.tolist(), "geodesic": geo.tolist()}
            chord = torch.stack([r["chord"] for r in runs]).numpy()
            alt = identifiability_table(euc, chord, names)
            table["chord"] = {**alt["geodesic"], "distances": chord.tolist()}
            table["chord_ratio"] = alt["cv_ratio"]
            if kind in ENERGIES:
                expected = torch.stack([r["expected"] for r in runs]).numpy()
                alt = identifiability_table(euc, expected, names)["geodesic"]
                table["expected_length"] = {**alt, "distances": expected.tolist()}
            result["metrics"][kind] = table
            fig = identifiability_figure(
                table, euc, geo, f"Are distances identifiable across retrainings? ({kind} metric)"
            )
            figures[kind] = figure_bytes(fig, dpi=110)
            if truth is not None:
                table["truth"] = truth_table(truth, euc, geo)
                fig = truth_figure(
                    truth, euc, geo, names, f"Models against the true manifold ({kind} metric)"
                )
                figures[f"{kind}_truth"] = figure_bytes(fig, dpi=110)
    for kind, png in figures.items():
        atomic_write_bytes(out / f"identifiability_{kind}.png", png)
    atomic_write_bytes(out / "identifiability.json", (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(out / "identifiability.md", render_markdown(result).encode())
    return result


def _orbit_truth(checkpoints, n_codes: int, pairs: Tensor) -> np.ndarray | None:
    """True distances of the pairs when every model was trained on ``digit-orbit``."""
    from .checkpoint import read_config

    names = {(read_config(c).get("dataset") or {}).get("name") for c in checkpoints}
    if names != {"digit-orbit"}:
        return None
    from .digit_orbit import digit_orbit

    orbit = digit_orbit()
    # The stored codes are those of the first n_codes test images (``--limit``).
    params = orbit.split_params(train=False)[:n_codes]
    return orbit.true_distances(params[pairs[:, 0]], params[pairs[:, 1]]).numpy()


def render_markdown(result: dict[str, Any]) -> str:
    """``identifiability.md`` from :func:`run_identifiability`'s result."""
    k, p = len(result["models"]), len(result["pairs"])
    lines = [
        "# Identifiability of latent distances across retrainings",
        "",
        f"{k} models ({', '.join(result['models'])}), the same {p} random test-image pairs "
        f"(seed {result['pair_seed']}), geodesics with {result['n_points']} nodes "
        + (
            " (Levenberg–Marquardt from grid-graph shortest paths)"
            if result.get("start") == "graph"
            else " (Levenberg–Marquardt from the straight line)"
        )
        + (
            f"; disagreement scale {result['disagreement_scale']:g}"
            if "disagreement" in result["metrics"]
            else ""
        )
        + (
            f"; ensemble-energy weight {result['energy_weight']:g}"
            if "ensemble-energy" in result["metrics"]
            else ""
        )
        + ".",
        "",
        "Each model's distances are divided by their mean over the pairs (Euclidean and "
        "geodesic alike), then per pair the coefficient of variation (CV = population "
        "std / mean) across the models: 0 means every model agrees. Spearman: rank "
        "correlation of two models' raw distances over the pairs.",
        "",
    ]
    if result.get("command"):
        lines += ["```", result["command"], "```", ""]
    lines += [
        "| metric | CV Euclidean, median [q1, q3] | CV geodesic, median [q1, q3] | geodesic / "
        "Euclidean | Spearman Euclidean | Spearman geodesic | CV decoded chord | chord / "
        "Euclidean | converged | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cv(t):
        s = t["cv_summary"]
        return f"{s['median']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}]"

    def rho(t):
        lo, hi = t["spearman_range"]
        return f"{lo:.2f}–{hi:.2f}"

    def chord(t):
        if "chord" not in t:  # results written before the chord was measured
            return "– | –"
        return f"{t['chord']['cv_summary']['median']:.3f} | {t['chord_ratio']:.2f}"

    for kind, t in result["metrics"].items():
        lines.append(
            f"| {kind} | {cv(t['euclidean'])} | {cv(t['geodesic'])} | {t['cv_ratio']:.2f} | "
            f"{rho(t['euclidean'])} | {rho(t['geodesic'])} | {chord(t)} | "
            f"{100 * t['converged_fraction']:.0f}% | {t['seconds']:.0f} |"
        )
    lines += [
        "",
        "Decoded chord: `||f(a) - f(b)||`, the distance of the two decoded images in the "
        "metric's observation space (a lower bound of the geodesic distance that needs no "
        "path): how far the models agree on the images themselves.",
        "",
    ]
    for kind, t in result["metrics"].items():
        if "expected_length" in t:
            alt = t["expected_length"]
            lines += [
                f"{kind}: geodesic = length of the energy's minimiser decoded by the mean "
                "image. Its expected length over decoder pairs instead (which adds the "
                "members' disagreement at every node, an offset that grows with the number "
                f"of nodes and shrinks every CV): median CV {cv(alt)}, Spearman {rho(alt)}.",
                "",
            ]
    if "truth" in result:
        lines += _truth_markdown(result)
    for kind in result["metrics"]:
        lines += [f"![{kind} metric](identifiability_{kind}.png)", ""]
        if "truth" in result["metrics"][kind]:
            lines += [f"![{kind} metric against the truth](identifiability_{kind}_truth.png)", ""]
    return "\n".join(lines)


def _truth_markdown(result: dict[str, Any]) -> list[str]:
    def each(values, fmt):
        return " / ".join(format(v, fmt) for v in values)

    lines = [
        "## Against the true manifold",
        "",
        "The models were trained on `digit-orbit` images, whose manifold is known: "
        f"{result['truth']['what']}, {result['truth']['seconds']:.0f} s. One value per "
        "model. Scale-free error: median over pairs of the relative error once the model's "
        "and the true distances are each divided by their mean. The length ratio is shown "
        "for metrics that measure pixel-space lengths, as the truth does.",
        "",
        "| metric | geodesic / true length (median) | scale-free error Euclidean | "
        "scale-free error geodesic | Spearman with truth Euclidean | Spearman with truth "
        "geodesic |",
        "|---|---|---|---|---|---|",
    ]
    for kind, t in result["metrics"].items():
        e, g = t["truth"]["euclidean"], t["truth"]["geodesic"]
        # The truth is a pixel-space length; other metrics measure in other units.
        ratio = each(g["ratio"], ".3f") if kind in _PIXEL_LENGTHS else "–"
        lines.append(
            f"| {kind} | {ratio} | {each(e['scale_free_error'], '.1%')} | "
            f"{each(g['scale_free_error'], '.1%')} | {each(e['spearman'], '.3f')} | "
            f"{each(g['spearman'], '.3f')} |"
        )
    return [*lines, ""]
