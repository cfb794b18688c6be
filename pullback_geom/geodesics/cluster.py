"""The block plan of a distance matrix on a Dask cluster.

:func:`run_units` sends the metric, the points and the graph to every worker once
(``scatter(..., broadcast=True)``), submits one task per work unit and hands each result
to a sink as it arrives, in whatever order. The tasks are the same deterministic units
that a single process runs, so the matrix does not depend on where they ran. A worker
lost mid-task is Dask's business: the scheduler reruns its tasks elsewhere, and the
broadcast data has copies on the other workers.

``dask.distributed`` is imported here only, and only when a client is given: it is the
``distributed`` extra (``pip install 'pullback-geom[distributed]'``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._core.extras import require
from .._core.progress import progress_bar

__all__ = ["TORCH_FRIENDLY_CONFIG", "check_picklable", "local_cluster", "run_units"]

#: Dask configuration for workers that run torch. Dask's nannies start workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap threshold: every
#: allocation above 128 KiB becomes an mmap and a munmap, and the geodesic solver's
#: blocks run 1.5x slower (3.0 s against 2.0 s for a 16 x 16 block of the bundled model,
#: one thread). Unset, glibc tunes both thresholds itself.
TORCH_FRIENDLY_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(n_workers: int, **kwargs):
    """A ``dask.distributed.LocalCluster`` of ``n_workers`` processes, one thread each,
    started with :data:`TORCH_FRIENDLY_CONFIG`; ``kwargs`` go to ``LocalCluster``."""
    dask = require("dask", "distributed", "local_cluster")
    distributed = require("distributed", "distributed", "local_cluster")
    options = {"threads_per_worker": 1, "processes": True, "dashboard_address": None}
    with dask.config.set(TORCH_FRIENDLY_CONFIG):
        return distributed.LocalCluster(n_workers=n_workers, **{**options, **kwargs})


Unit = tuple[slice, slice]
Sink = Callable[[int, slice, slice, Tensor, Tensor], None]


def check_picklable(metric) -> None:
    """Raise a TypeError naming the fix when ``metric`` cannot be sent to workers."""
    import cloudpickle

    try:
        cloudpickle.dumps(metric)
    except Exception as err:  # pickling fails with many kinds of error
        raise TypeError(
            f"the metric cannot be sent to the Dask workers: pickling it failed ({err}). "
            "Give it a decoder that pickles (an nn.Module, or a function the workers can "
            "import; no open files, locks or generators inside), or compute without "
            "client="
        ) from err


def _unit_task(compute, metric, z, graph, rows, cols, kind, options, threads):
    # Pinned threads: a worker's blocks then round the same way whatever else it runs.
    torch.set_num_threads(threads)
    return compute(metric, z, rows, cols, kind, graph, options)


def run_units(
    client,
    compute: Callable,
    metric,
    z: Tensor,
    units: Sequence[Unit],
    todo: Sequence[int],
    kind: str,
    graph,
    options: dict,
    sink: Sink,
    *,
    progress: bool = False,
    threads: int = 1,
) -> None:
    """Run the units ``todo`` of ``units`` on the cluster of ``client``.

    Parameters
    ----------
    client : dask.distributed.Client
    compute : callable
        ``compute(metric, z, rows, cols, kind, graph, options) -> (dist, converged)``, a
        module-level function (workers import it by name).
    metric, z, graph
        Sent to every worker once.
    units : sequence of (slice, slice)
    todo : sequence of int
        Indices into ``units``.
    kind : str
        The resolved route.
    options : dict
        Solver options.
    sink : callable
        ``sink(index, rows, cols, dist, converged)``, called in this process for each
        finished unit, as it arrives.
    progress : bool, default False
        A tqdm bar over units.
    threads : int, default 1
        Torch threads per task.
    """
    from distributed import as_completed

    if not todo:
        return
    check_picklable(metric)
    metric_f = client.scatter(metric, broadcast=True, hash=False)
    z_f = client.scatter(z, broadcast=True, hash=False)
    graph_f = None if graph is None else client.scatter(graph, broadcast=True, hash=False)
    token = uuid.uuid4().hex[:12]
    futures = {}
    for i in todo:
        rows, cols = units[i]
        fut = client.submit(
            _unit_task,
            compute,
            metric_f,
            z_f,
            graph_f,
            rows,
            cols,
            kind,
            options,
            threads,
            key=f"pullback-geom-unit-{token}-{i}",
            pure=False,
        )
        futures[fut] = i
    bar = progress_bar(total=len(futures), show=progress, desc="distance blocks (dask)")
    try:
        for fut in as_completed(futures):
            i = futures.pop(fut)
            dist, conv = fut.result()
            fut.release()
            sink(i, *units[i], dist, conv)
            bar.update(1)
    finally:
        bar.close()
        if futures:  # an error or an interrupt: leave nothing running for this job
            client.cancel(list(futures))
