"""A distance matrix on disk, written block by block, that a killed run resumes.

The store is a zarr group (``zarr>=3``, the ``distributed`` extra) with two ``(n, n)``
arrays, ``distances`` and ``converged``, chunked by the blocks of the plan, and a journal
of finished work units. The group's attributes hold the job: the points' and the model's
fingerprints, the route and the options. Opening a store for a different job is an error,
so a matrix is never mixed from two.

Why each write is safe to interrupt:

* the group is created in a temporary folder beside its path and renamed into place, so
  a store either exists whole or not at all;
* zarr's local store writes each chunk to a temporary file and renames it;
* a unit is journalled (one line, flushed and fsynced) only after all its chunks are
  written. A unit killed half-written is not in the journal: it is computed again and
  its chunks are overwritten with the same values. A torn last line (killed mid-append) is
  ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .._core.extras import require

__all__ = ["DistanceStore", "job_fingerprint", "metric_fingerprint", "points_fingerprint"]

FORMAT = "pullback_geom.distances"
FORMAT_VERSION = 1
JOURNAL = "finished_units.jsonl"


def _import_zarr():
    if sys.version_info < (3, 11):  # zarr 3 needs Python 3.11; the extra skips it on 3.10
        raise ImportError("store= needs zarr >= 3, which needs Python >= 3.11")
    zarr = require("zarr", "distributed", "store=")
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"store= needs zarr >= 3; found {zarr.__version__}")
    return zarr


def points_fingerprint(z: Tensor) -> str:
    """SHA-256 of the points' dtype, shape and values."""
    h = hashlib.sha256(f"{z.dtype}:{tuple(z.shape)}:".encode())
    h.update(z.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def metric_fingerprint(metric) -> str:
    """SHA-256 of what makes a metric's distances: its decoder's class and tensors (an
    ``nn.Module``'s state dict) or, for a plain function, its pickled form; and the metric's
    own options."""
    h = hashlib.sha256()
    decoder = metric.decoder
    h.update(f"{type(decoder).__module__}.{type(decoder).__qualname__}".encode())
    h.update(f"ridge={metric.ridge}:jacobian={metric.jacobian_method}".encode())
    if isinstance(decoder, nn.Module):
        for name, t in decoder.state_dict().items():
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            raw = t.detach().reshape(-1).contiguous().view(torch.uint8)  # any dtype, 0-d too
            h.update(raw.cpu().numpy().tobytes())
    else:
        import cloudpickle

        h.update(cloudpickle.dumps(decoder))
    return h.hexdigest()


def job_fingerprint(
    metric, z: Tensor, *, route: str, block_size: int, options: dict, graph_options: dict | None
) -> dict:
    """What a store records and checks: the same job is the same matrix."""
    # A dtype option (jacobian_dtype) by its name: torch.bfloat16 and "bfloat16" are one job.
    options = {
        k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v
        for k, v in options.items()
    }
    job = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n": int(z.shape[0]),
        "d": int(z.shape[1]),
        "dtype": str(z.dtype).removeprefix("torch."),
        "route": route,
        "block_size": int(block_size),
        "options": options,
        "graph_options": graph_options or {},
        "points_sha256": points_fingerprint(z),
        "model_sha256": metric_fingerprint(metric),
    }
    try:
        json.dumps(job)
    except TypeError as err:
        raise TypeError(
            f"store= records the solver options in JSON; got one that is not: {err}"
        ) from err
    return job


class DistanceStore:
    """An ``(n, n)`` distance matrix and its convergence flags in a zarr group on disk.

    Use :meth:`open`; :func:`~pullback_geom.geodesics.pairwise_distances` with ``store=``
    does.

    Attributes
    ----------
    path : Path
    job : dict
        The job the store holds (see :func:`job_fingerprint`).
    finished : set of int
        Indices of the work units already written.
    """

    def __init__(self, path: Path, group, job: dict, finished: set[int]) -> None:
        self.path, self._group, self.job, self.finished = path, group, job, finished

    @classmethod
    def open(cls, path: str | os.PathLike, job: dict) -> DistanceStore:
        """Open the store at ``path`` for ``job``, creating it if there is none.

        Raises
        ------
        ValueError
            ``path`` holds a store of another job (different points, model, route or
            options), or something that is not a distance store.
        PermissionError, NotADirectoryError
            ``path`` cannot be created.
        """
        zarr = _import_zarr()
        path = Path(path)
        if not path.exists():
            cls._create(zarr, path, job)
        try:
            group = zarr.open_group(str(path), mode="r+")
            saved = dict(group.attrs).get("job")
        except Exception as err:  # zarr raises several kinds for "not a group"
            raise ValueError(f"{path} exists and is not a distance store ({err})") from err
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError(f"{path} exists and is not a distance store (no job recorded)")
        differ = [
            f"{k}: stored {saved.get(k)!r}, now {v!r}"
            for k, v in job.items()
            if _jsonable(saved.get(k)) != _jsonable(v)
        ]
        if differ:
            raise ValueError(
                f"{path} holds the distances of another job; remove it or choose another "
                "store to compute this one. Differences: " + "; ".join(differ)
            )
        return cls(path, group, saved, _read_journal(path / JOURNAL))

    @staticmethod
    def _create(zarr, path: Path, job: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            group = zarr.open_group(str(tmp), mode="w")
            n, b = job["n"], job["block_size"]
            chunks = (max(1, min(b, n)),) * 2
            dtype = np.dtype(job["dtype"])
            # Every chunk written, even one of zeros: a chunk's presence is never read as
            # progress (the journal is), but a store should hold what it says it holds.
            config = {"write_empty_chunks": True}
            group.create_array(
                "distances", shape=(n, n), chunks=chunks, dtype=dtype, fill_value=np.nan,
                config=config,
            )  # fmt: skip
            group.create_array(
                "converged", shape=(n, n), chunks=chunks, dtype=bool, fill_value=False,
                config=config,
            )  # fmt: skip
            group.attrs["job"] = job
            (tmp / JOURNAL).touch()
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def write(self, index: int, rows: slice, cols: slice, dist: Tensor, conv: Tensor) -> None:
        """Write unit ``index``: its block at ``[rows, cols]`` and its transpose at
        ``[cols, rows]``, then journal it."""
        d = dist.detach().cpu().numpy()
        c = conv.detach().cpu().numpy()
        self._group["distances"][rows, cols] = d
        self._group["converged"][rows, cols] = c
        if rows != cols:
            self._group["distances"][cols, rows] = d.T
            self._group["converged"][cols, rows] = c.T
        with open(self.path / JOURNAL, "a") as f:
            f.write(f"{index}\n")
            f.flush()
            os.fsync(f.fileno())
        self.finished.add(index)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole matrix and its convergence flags, as numpy arrays."""
        return self._group["distances"][...], self._group["converged"][...]


def _jsonable(x):
    """Compare as JSON does: tuples and lists alike."""
    return json.loads(json.dumps(x))


def _read_journal(path: Path) -> set[int]:
    if not path.exists():
        return set()
    # Only lines with their newline count: the last one may be torn by a kill mid-append.
    *lines, _torn = path.read_text().split("\n")
    return {int(line) for line in lines if line.strip().isdigit()}
