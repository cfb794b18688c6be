"""Measuring the same image pairs in ``K`` models: the experiment behind
``pullback-geom identifiability`` (see the package docstring)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._core.progress import progress_bar
from ...data.datasets import DIGIT_ORBIT
from ...geodesics import connecting_geodesic
from ...metric import PullbackMetric
from .measures import identifiability_table, truth_table
from .report import identifiability_figure, render_markdown, truth_figure

__all__ = [
    "ENERGIES",
    "METRICS",
    "ensemble_energy_distances",
    "load_models",
    "model_distances",
    "run_identifiability",
]


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
        "chord": _chord(metric.evaluator.embed, p, q),
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

    :func:`~pullback_geom.geodesics.ensemble.ensemble_geodesic` (Syrota et al.'s energy: the
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
    from ...geodesics.ensemble import MeanImage, ensemble_geodesic

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
    mean_image = PullbackMetric(MeanImage(members), latent_dim=codes.shape[1])
    return {
        "euclidean": torch.linalg.vector_norm(p - q, dim=-1).double(),
        "geodesic": torch.cat(geo),
        "expected": torch.cat(expected),
        "chord": _chord(mean_image.evaluator.embed, p, q),
        "converged": torch.cat(conv),
    }


def _check_pairs(pairs: Tensor, n: int) -> Tensor:
    pairs = torch.as_tensor(pairs)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2); got {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= n):
        raise ValueError(f"pair indices must lie in [0, {n}); got out-of-range ones")
    return pairs


#: ``--metric`` values: the ``kind`` of :meth:`~pullback_geom.vae.VAE.pullback_metric`, and
#: ``"ensemble-energy"``, :func:`ensemble_energy_distances`
METRICS = ("mean", "uncertainty", "fisher-rao", "ensemble", "disagreement", "ensemble-energy")

#: ``--metric`` values that are curve energies of an ensemble, not Riemannian metrics
ENERGIES = ("ensemble-energy",)


def load_models(
    checkpoints: Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> tuple[list, Tensor, Tensor]:
    """Load ``K >= 3`` checkpoints of models of the same test set and latent dimension,
    models and codes on ``device``.

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
    from ... import vae

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
        models.append(model.to(device))
        codes.append(z.to(device))
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
    device: str | torch.device = "cpu",
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
    device : str or torch.device, default "cpu"
        Where the models and codes live and the geodesics are computed.

    Returns
    -------
    dict
        What ``identifiability.json`` holds: per metric the
        :func:`identifiability_table`, the raw distances, convergence and seconds.
    """
    import json
    from pathlib import Path

    from ...vae.checkpoint import atomic_write_bytes
    from ..report.analysis import random_pairs
    from ..report.document import figure_bytes

    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 3:
        raise ValueError(f"n_pairs must be an integer >= 3; got {n_pairs!r}")
    models, codes, _ = load_models(checkpoints, device)
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
            "dataset": DIGIT_ORBIT,
            "what": "geodesic distances of the pairs on the true image manifold (the "
            "pullback through the digit-orbit renderer, 32 nodes, float64)",
            "distances": truth.tolist(),
            "seconds": time.perf_counter() - t0,
        }
    out = Path(out)
    figures = {}
    bar = progress_bar(
        total=n_pairs * len(models) * len(metrics), show=progress, desc="geodesics", unit="pair"
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
            euc = torch.stack([r["euclidean"] for r in runs]).cpu().numpy()
            geo = torch.stack([r["geodesic"] for r in runs]).cpu().numpy()
            table = identifiability_table(euc, geo, names)
            table["converged_fraction"] = float(
                torch.stack([r["converged"] for r in runs]).double().mean()
            )
            table["seconds"] = time.perf_counter() - t0
            table["distances"] = {"euclidean": euc.tolist(), "geodesic": geo.tolist()}
            chord = torch.stack([r["chord"] for r in runs]).cpu().numpy()
            alt = identifiability_table(euc, chord, names)
            table["chord"] = {**alt["geodesic"], "distances": chord.tolist()}
            table["chord_ratio"] = alt["cv_ratio"]
            if kind in ENERGIES:
                expected = torch.stack([r["expected"] for r in runs]).cpu().numpy()
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
                    table["truth"],
                    truth,
                    euc,
                    geo,
                    names,
                    f"Models against the true manifold ({kind} metric)",
                )
                figures[f"{kind}_truth"] = figure_bytes(fig, dpi=110)
    for kind, png in figures.items():
        atomic_write_bytes(out / f"identifiability_{kind}.png", png)
    atomic_write_bytes(out / "identifiability.json", (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(out / "identifiability.md", render_markdown(result).encode())
    return result


def _orbit_truth(checkpoints, n_codes: int, pairs: Tensor) -> np.ndarray | None:
    """True distances of the pairs when every model was trained on ``digit-orbit``."""
    from ...vae.checkpoint import read_config

    datasets = [read_config(c).get("dataset") or {} for c in checkpoints]
    if {d.get("name") for d in datasets} != {DIGIT_ORBIT}:
        return None
    digits = {d.get("orbit_digit", 1) for d in datasets}
    if len(digits) != 1:
        raise ValueError(
            f"the checkpoints were trained on orbits of different digits {sorted(digits)}: "
            "compare models of the same data"
        )
    from ...data.digit_orbit import digit_orbit

    orbit = digit_orbit(digits.pop())
    # The stored codes are those of the first n_codes test images (``--limit``).
    params = orbit.split_params(train=False)[:n_codes]
    return orbit.true_distances(params[pairs[:, 0]], params[pairs[:, 1]]).cpu().numpy()
