"""Distance matrices on a real Dask cluster (a LocalCluster of worker processes) and in a
zarr store on disk: equal to the single-process matrix, through a killed worker and a
killed client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import distributed  # the [distributed] extra, part of .[dev]: CI runs these tests
import pytest
import torch

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import distance_matrix, pairwise_distances
from pullback_geom.geodesics import pairwise as pairwise_module
from pullback_geom.geodesics.cluster import local_cluster
from pullback_geom.geodesics.distance_store import JOURNAL

SMALL_GRAPH = {"resolution": 40, "subdivide": 2}
SOLVER = {"route": "solver", "block_size": 8, "n_points": 8, "max_iter": 60}


def make_metric() -> PullbackMetric:
    """A small smooth decoder 2 -> 16 -> 12, the same in every process."""
    gen = torch.Generator().manual_seed(7)
    layers = [torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12)]
    decoder = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return PullbackMetric(decoder)


def make_points(n: int) -> torch.Tensor:
    return 2 * torch.rand(n, 2, generator=torch.Generator().manual_seed(3)) - 1


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def one_thread_matrix(n: int) -> torch.Tensor:
    """The solver route's matrix in this process, one torch thread (as the workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pairwise_distances(make_metric(), make_points(n), progress=False, **SOLVER)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def solver_reference():
    return one_thread_matrix(48)


@pytest.fixture(scope="module")
def long_reference():
    """96 points, 78 units: enough work left to kill a process in the middle of it."""
    return one_thread_matrix(96)


def journal_lines(store: Path) -> int:
    path = store / JOURNAL
    return path.read_text().count("\n") if path.exists() else 0


def test_local_cluster_workers_keep_glibc_malloc_tuning(client):
    """Dask's MALLOC_TRIM_THRESHOLD_ would fix glibc's mmap threshold in the workers."""
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
    assert set(client.run(torch.get_num_threads).values()) <= {1}


def test_cluster_graph_route_is_bit_identical(client):
    metric, z = make_metric(), make_points(300)
    kw = {"route": "graph", "block_size": 32, "graph_options": SMALL_GRAPH, "progress": False}
    here = pairwise_distances(metric, z, **kw)
    info = distance_matrix(metric, z, client=client, **kw)
    there = info.distances
    assert info.route == "graph" and info.blocks == info.computed == 10
    assert torch.equal(here, there)
    assert torch.equal(there, there.T) and float(there.diagonal().abs().max()) == 0.0


def test_cluster_knn_route_is_bit_identical(client):
    metric, z = make_metric(), make_points(300)
    kw = {"route": "knn", "block_size": 64, "graph_options": {"k": 8}, "progress": False}
    assert torch.equal(pairwise_distances(metric, z, client=client, **kw),
                       pairwise_distances(metric, z, **kw))  # fmt: skip


def test_cluster_solver_route_equals_the_single_process_run(client, solver_reference):
    there = pairwise_distances(
        make_metric(), make_points(48), client=client, progress=False, **SOLVER
    )
    torch.testing.assert_close(there, solver_reference, rtol=1e-6, atol=1e-6)


def test_a_store_resumes_where_an_interrupted_run_stopped(tmp_path, monkeypatch, solver_reference):
    store = tmp_path / "d.zarr"
    real = pairwise_module.compute_unit
    calls = []

    def stops_after_five(*args):
        if len(calls) == 5:
            raise KeyboardInterrupt  # what a user's Ctrl-C does mid-run
        calls.append(args[2:4])
        return real(*args)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(pairwise_module, "compute_unit", stops_after_five)
        with pytest.raises(KeyboardInterrupt):
            pairwise_distances(
                make_metric(), make_points(48), store=store, progress=False, **SOLVER
            )
        assert journal_lines(store) == 5
        monkeypatch.setattr(pairwise_module, "compute_unit", real)
        info = distance_matrix(
            make_metric(), make_points(48), store=store, progress=False, **SOLVER
        )
        dist = info.distances
    finally:
        torch.set_num_threads(threads)
    assert info.blocks == 21 and info.computed == 16
    assert torch.equal(dist, solver_reference)
    # A third call computes nothing and reads the same matrix.
    info = distance_matrix(make_metric(), make_points(48), store=store, progress=False, **SOLVER)
    assert info.computed == 0 and torch.equal(info.distances, dist)


def test_a_store_of_another_job_is_a_clear_error(tmp_path):
    store = tmp_path / "d.zarr"
    kw = {"route": "solver", "block_size": 4, "n_points": 6, "progress": False}
    pairwise_distances(make_metric(), make_points(6), store=store, **kw)
    with pytest.raises(ValueError, match="another job.*points_sha256"):
        pairwise_distances(make_metric(), make_points(6) + 0.01, store=store, **kw)
    with pytest.raises(ValueError, match="another job.*options"):
        pairwise_distances(make_metric(), make_points(6), store=store, **{**kw, "n_points": 7})
    other = make_metric()
    with torch.no_grad():
        other.decoder[0].bias.add_(1e-3)
    with pytest.raises(ValueError, match="another job.*model_sha256"):
        pairwise_distances(other, make_points(6), store=store, **kw)
    afile = tmp_path / "file"
    afile.write_text("not a store")
    with pytest.raises(ValueError, match="not a distance store"):
        pairwise_distances(make_metric(), make_points(6), store=afile, **kw)


def test_a_dtype_option_is_the_same_job_by_object_or_name(tmp_path):
    store = tmp_path / "d.zarr"
    kw = {"route": "solver", "block_size": 4, "n_points": 6, "tol": 1e-2, "progress": False}
    first = pairwise_distances(make_metric(), make_points(6), store=store,
                               jacobian_dtype=torch.bfloat16, **kw)  # fmt: skip
    info = distance_matrix(make_metric(), make_points(6), store=store,
                           jacobian_dtype="bfloat16", **kw)  # fmt: skip
    assert info.computed == 0 and torch.equal(info.distances, first)
    with pytest.raises(ValueError, match="another job.*options"):
        pairwise_distances(make_metric(), make_points(6), store=store, **kw)


def test_an_unpicklable_decoder_names_the_fix(client):
    lock = threading.Lock()

    def decoder(z):
        with lock:
            return torch.cat([z, z.sin()], -1)

    metric = PullbackMetric(decoder, latent_dim=2)
    with pytest.raises(TypeError, match="cannot be sent to the Dask workers.*decoder that pickles"):
        pairwise_distances(metric, make_points(6), client=client, progress=False, **SOLVER)


def test_a_killed_worker_does_not_change_the_matrix(client, tmp_path, long_reference):
    store, z = tmp_path / "d.zarr", make_points(96)
    result = {}

    def run():
        result["dist"] = pairwise_distances(
            make_metric(), z, client=client, store=store, progress=False, **SOLVER
        )

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    busy = []
    while not busy and time.monotonic() < deadline:
        time.sleep(0.01)
        if journal_lines(store) >= 2:
            busy = [addr for addr, keys in client.processing().items() if keys]
    assert busy and journal_lines(store) < 78, "no task was running to interrupt"
    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert journal_lines(store) == 78  # every unit once: none lost with the worker
    torch.testing.assert_close(result["dist"], long_reference, rtol=1e-6, atol=1e-6)


def test_a_killed_client_resumes_without_recomputing(client, tmp_path, long_reference):
    store = tmp_path / "d.zarr"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import distributed
        from test_distributed import SOLVER, make_metric, make_points
        from pullback_geom.geodesics import pairwise_distances
        client = distributed.Client({client.scheduler.address!r})
        pairwise_distances(make_metric(), make_points(96), client=client,
                           store={str(store)!r}, progress=False, **SOLVER)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while journal_lines(store) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = journal_lines(store)
    assert 3 <= finished < 78, "the client was not killed in the middle of the run"
    info = distance_matrix(
        make_metric(), make_points(96), client=client, store=store, progress=False, **SOLVER,
    )  # fmt: skip
    assert info.computed == 78 - finished
    torch.testing.assert_close(info.distances, long_reference, rtol=1e-6, atol=1e-6)
