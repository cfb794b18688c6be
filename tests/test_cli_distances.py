"""``pullback-geom distances``: a checkpoint's matrix on disk, resumed, on a LocalCluster,
and every bad input an exit status 2 with the problem named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from pullback_geom import vae
from pullback_geom.cli import main
from pullback_geom.geodesics import pairwise_distances

ARGS = ["distances", "--checkpoint", "bernoulli", "--points", "12", "--route", "solver",
        "--block-size", "4", "--check-pairs", "6"]  # fmt: skip


def read_matrix(out) -> np.ndarray:
    return zarr.open_group(str(out / "distances.zarr"), mode="r")["distances"][...]


def test_distances_command_writes_resumes_and_matches_the_library(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    matrix = read_matrix(out)
    summary = json.loads((out / "distances.json").read_text())
    assert matrix.shape == (12, 12) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, matrix.T)
    assert summary["route"] == "solver" and summary["units"] == summary["units_computed"] == 6
    assert summary["points"]["indices"] == list(range(12))
    latents = vae.load_latents(vae.default_checkpoint("bernoulli"))
    assert summary["points"]["labels"] == latents.labels[:12].tolist()
    acc = summary["accuracy"]
    assert acc["samples"] == 6 and 0 <= acc["median"] <= acc["p90"] <= acc["max"]
    # The library's matrix for the same points and options, in this process.
    metric = vae.load_default("bernoulli").pullback_metric()
    ref = pairwise_distances(metric, latents.codes[:12], route="solver", block_size=4)
    np.testing.assert_allclose(matrix, ref.numpy(), rtol=1e-5, atol=1e-5)
    # Run again: the store holds every unit, nothing is computed.
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 0
    assert "0 / 6" in capsys.readouterr().out
    np.testing.assert_array_equal(read_matrix(out), matrix)


def test_solver_options_reach_the_solver_and_the_store(tmp_path, capsys):
    out = tmp_path / "run"
    fast = ["--n-points", "5", "--tol", "1e-2", "--jacobian-dtype", "bfloat16"]
    assert main([*ARGS, "--out", str(out), *fast]) == 0
    summary = json.loads((out / "distances.json").read_text())
    options = {"n_points": 5, "tol": 0.01, "jacobian_dtype": "bfloat16"}
    assert summary["solver_options"] == options
    metric = vae.load_default("bernoulli").pullback_metric()
    codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes[:12]
    ref = pairwise_distances(metric, codes, route="solver", block_size=4, **options)
    np.testing.assert_allclose(read_matrix(out), ref.numpy(), rtol=1e-5, atol=1e-5)
    # Other solver options against the same store: another job, refused.
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out), "--n-points", "6", "--tol", "1e-2"]) == 2
    assert "holds the distances of another job" in capsys.readouterr().err


def test_distances_on_a_local_cluster(tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out), "--workers", "2"]) == 0
    summary = json.loads((out / "distances.json").read_text())
    assert summary["ran_on"] == "a LocalCluster of 2 workers"
    metric = vae.load_default("bernoulli").pullback_metric()
    codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes[:12]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers
    try:
        ref = pairwise_distances(metric, codes, route="solver", block_size=4)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(read_matrix(out), ref.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--points", "1"], "argument --points: must be an integer >= 2"),
        (["--points", "20000"], "has 10000 test-set codes"),
        (["--checkpoint", "nowhere/at/all"], "no checkpoint at nowhere/at/all"),
        (["--block-size", "0"], "argument --block-size: must be a positive integer"),
        (["--n-points", "2"], "argument --n-points: must be an integer >= 3"),
        (["--tol", "0"], "argument --tol: must be > 0"),
        (["--scheduler", "tcp://127.0.0.1:9", "--timeout", "1"], "no Dask scheduler answered"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, capsys, extra, message):
    assert main([*ARGS, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_another_job_in_the_same_folder_and_a_file_as_out(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out), "--points", "10"]) == 2
    assert "holds the distances of another job" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main([*ARGS, "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
