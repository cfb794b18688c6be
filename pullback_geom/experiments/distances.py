"""A distance-matrix job: a model's codes to a matrix on disk that numpy and zarr read.

:func:`distance_job` runs :func:`~pullback_geom.geodesics.pairwise_distances` into a
resumable zarr store (``OUT/distances.zarr``: arrays ``distances`` and ``converged``, the
full symmetric matrix) and writes ``OUT/distances.json``: the route, the options, the points
(their indices into the test set and their labels), the wall time and an accuracy
estimate against per-pair reference solutions
(:func:`~pullback_geom.geodesics.pairwise.reference_distances`). ``pullback-geom distances``
is its command line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from ..geodesics.pairwise import distance_matrix, reference_distances
from ..metric import PullbackMetric
from ..vae.checkpoint import atomic_write_bytes

__all__ = ["STORE", "SUMMARY", "distance_job", "sampled_error"]

STORE, SUMMARY = "distances.zarr", "distances.json"


def sampled_error(
    metric: PullbackMetric, z: Tensor, dist: Tensor, n_samples: int = 200, seed: int = 0
) -> dict:
    """Relative error of ``n_samples`` random entries ``i < j`` of ``dist`` against
    :func:`~pullback_geom.geodesics.pairwise.reference_distances`.

    Returns
    -------
    dict
        ``samples``, ``median``, ``p90`` and ``max`` of ``|dist - ref| / ref``, and
        ``signed_median`` of ``(dist - ref) / ref`` (positive: the matrix is longer).
    """
    n = z.shape[0]
    if n < 2 or n_samples < 1:
        return {"samples": 0}
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (n_samples,), generator=gen)
    j = (i + torch.randint(1, n, (n_samples,), generator=gen)) % n
    ref = reference_distances(metric, z[i], z[j]).double().cpu()
    got = dist[i, j].double().cpu()
    rel = (got - ref) / ref.clamp_min(1e-12)
    q = torch.quantile(rel.abs(), torch.tensor([0.5, 0.9], dtype=torch.float64))
    return {
        "samples": n_samples,
        "median": float(q[0]),
        "p90": float(q[1]),
        "max": float(rel.abs().max()),
        "signed_median": float(rel.median()),
    }


def distance_job(
    metric: PullbackMetric,
    codes: Tensor,
    out: str | Path,
    *,
    indices: Tensor | None = None,
    labels: Tensor | None = None,
    route: str = "auto",
    block_size: int = 64,
    client=None,
    check_pairs: int = 200,
    progress: bool | None = None,
    meta: dict | None = None,
    solver_options: dict | None = None,
) -> dict:
    """The geodesic distance matrix of ``codes`` in ``out``, resumable; its summary.

    Parameters
    ----------
    metric : PullbackMetric
    codes : Tensor, shape (n, d)
    out : path
        Folder; ``distances.zarr`` and ``distances.json`` are written there. A store of the
        same job left by a killed run is resumed; one of another job is a ``ValueError``.
    indices, labels : Tensor, shape (n,), optional
        Where the codes come from (indices into the test set) and their classes, recorded.
    route, block_size, client
        See :func:`~pullback_geom.geodesics.pairwise_distances`.
    check_pairs : int, default 200
        Entries checked against per-pair reference solutions; 0 skips the check.
    progress : bool, optional
    meta : dict, optional
        More to record (the checkpoint, the cluster).
    solver_options : dict, optional
        Passed to :func:`~pullback_geom.geodesics.connecting_geodesic` on the solver routes
        (``n_points``, ``tol``, ``max_iter``, ``jacobian_dtype`` by name, e.g.
        ``"bfloat16"``), and recorded.

    Returns
    -------
    dict
        What ``distances.json`` holds.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    n = codes.shape[0]
    start = time.perf_counter()
    info = distance_matrix(
        metric, codes, route=route, block_size=block_size, client=client, store=out / STORE,
        progress=progress, warn=False, **(solver_options or {}),
    )  # fmt: skip
    dist = info.distances
    seconds = time.perf_counter() - start
    pairs = n * (n - 1) // 2
    summary = {
        "store": STORE,
        "n": n,
        "d": int(codes.shape[1]),
        "route": info.route,
        "solver_options": dict(solver_options or {}),
        "block_size": block_size,
        "units": info.blocks,
        "units_computed": info.computed,
        "wall_seconds": seconds,
        "pairs_per_second": pairs / seconds if info.computed == info.blocks and seconds else None,
        "converged_fraction": float(info.converged.triu(1).sum()) / pairs if pairs else 1.0,
        "accuracy": sampled_error(metric, codes, dist, check_pairs),
        "points": {
            "indices": None if indices is None else [int(k) for k in indices],
            "labels": None if labels is None else [int(k) for k in labels],
        },
        **(meta or {}),
    }
    atomic_write_bytes(out / SUMMARY, json.dumps(summary, indent=1).encode())
    return summary
