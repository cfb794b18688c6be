"""The identifiability experiment: coefficients of variation and rank correlations on
oracles (identical, linearly and nonlinearly reparametrised models), and the
``pullback-geom identifiability`` command on tiny checkpoints."""

import json

import numpy as np
import pytest
import torch
from oracles import tanh_mlp
from synthetic import synthetic_digits, tiny_config, write_mnist

from pullback_geom import PullbackMetric
from pullback_geom.cli import main
from pullback_geom.experiments.identifiability import (
    coefficient_of_variation,
    identifiability_table,
    model_distances,
    rank_correlations,
    scale_free,
)
from pullback_geom.experiments.report.analysis import random_pairs
from pullback_geom.training import train_vae

F64 = torch.float64


def test_cv_and_rank_correlation_by_hand():
    d = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 4.0]])
    np.testing.assert_allclose(coefficient_of_variation(d), [0.5, 0.0, 0.5, 0.0])
    rho = rank_correlations(d)
    np.testing.assert_allclose(rho, [[1, 0.2], [0.2, 1]], atol=1e-12)  # 1 - 6 * 8 / (4 * 15)
    np.testing.assert_allclose(scale_free(d).mean(1), [1, 1])


def test_copies_give_zero_variation_and_perfect_rank_correlation():
    d = np.random.default_rng(0).uniform(0.1, 2, size=(1, 50))
    table = identifiability_table(np.repeat(d, 3, 0), np.repeat(3 * d, 3, 0))
    for key in ("euclidean", "geodesic"):
        assert table[key]["cv_summary"]["median"] == pytest.approx(0, abs=1e-12)
        assert table[key]["spearman_range"] == pytest.approx([1, 1])
    # a model with every distance doubled is the same model once rescaled
    table = identifiability_table(d * [[1], [2], [5]], d * [[1], [1], [1]], ["a", "b", "c"])
    assert max(table["euclidean"]["cv"]) == pytest.approx(0, abs=1e-12)
    assert set(table["euclidean"]["spearman"]) == {"a vs b", "a vs c", "b vs c"}


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones(5), r"shape \(K, P\)"),
        (np.ones((1, 5)), "K >= 2"),
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "finite"),
        (np.array([[0.0, 1.0], [0.0, 1.0]]), "distance 0 in every model"),
    ],
)
def test_bad_distances(bad, match):
    with pytest.raises(ValueError, match=match):
        coefficient_of_variation(bad)


def _three_models(phi, phi_inv):
    """Model A: decoder f, codes c. Model B: decoder f o phi^-1, codes phi(c) (the same
    decoded manifold in other coordinates). Model C: a copy of A."""
    f = tanh_mlp(out=6)
    codes = torch.randn(24, 2, dtype=F64)
    metric_a = PullbackMetric(f)
    metric_b = PullbackMetric(lambda z: f(phi_inv(z)), latent_dim=2)
    return [(metric_a, codes), (metric_b, phi(codes)), (metric_a, codes)]


def _table(models):
    pairs = random_pairs(24, 16, seed=1)
    runs = [model_distances(m, c, pairs, n_points=24) for m, c in models]
    assert all(bool(r["converged"].all()) for r in runs)
    euc = torch.stack([r["euclidean"] for r in runs])
    geo = torch.stack([r["geodesic"] for r in runs])
    return identifiability_table(euc, geo)


def test_rotated_and_scaled_latent_space_changes_nothing():
    a = 2.5 * torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=F64)  # scaled rotation
    table = _table(_three_models(lambda z: z @ a.T, lambda z: z @ torch.linalg.inv(a).T))
    assert max(table["geodesic"]["cv"]) < 2e-3
    assert max(table["euclidean"]["cv"]) < 1e-10  # scale-free: the scale drops out
    assert table["geodesic"]["spearman_range"][0] > 0.99


def test_decoded_chord_is_the_distance_of_the_decoded_ends_and_bounds_the_geodesic():
    f = tanh_mlp(out=6)
    codes = torch.randn(24, 2, dtype=F64)
    pairs = random_pairs(24, 10, seed=2)
    run = model_distances(PullbackMetric(f), codes, pairs, n_points=16)
    with torch.no_grad():
        expected = (f(codes[pairs[:, 0]]) - f(codes[pairs[:, 1]])).norm(dim=-1)
    torch.testing.assert_close(run["chord"], expected)
    assert bool((run["chord"] <= run["geodesic"] * (1 + 1e-6)).all())


def test_nonlinear_reparametrisation_moves_euclidean_not_geodesic_distances():
    table = _table(_three_models(torch.sinh, torch.asinh))
    geo, euc = table["geodesic"]["cv_summary"], table["euclidean"]["cv_summary"]
    assert geo["median"] < 5e-3 and max(table["geodesic"]["cv"]) < 2e-2
    assert euc["median"] > 0.05
    assert table["geodesic"]["spearman_range"][0] > 0.98
    assert table["euclidean"]["spearman_range"][0] < 0.98


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three untrained tiny models (seeds 0, 1, 2) with stored codes of one test set, and
    one of another latent dimension."""
    root = tmp_path_factory.mktemp("ident")
    images, _ = synthetic_digits(32)
    test_images, test_labels = synthetic_digits(40, seed=1)
    paths = []
    for seed, dim in ((0, 2), (1, 2), (2, 2), (3, 3)):
        path = root / f"m{seed}"
        cfg = tiny_config(epochs=0, seed=seed, latent_dim=dim)
        train_vae(cfg, images, test_images, test_labels, out=path, progress=False)
        paths.append(str(path))
    return paths


def test_command_writes_the_report(checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["identifiability", "--checkpoints", ",".join(checkpoints[:3]), "--pairs", "12"]
    code = main([*argv, "--nodes", "8", "--metric", "mean,fisher-rao", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "identifiability.json").read_text())
    assert set(result["metrics"]) == {"mean", "fisher-rao"}
    table = result["metrics"]["fisher-rao"]
    assert len(table["geodesic"]["cv"]) == 12 and len(table["distances"]["geodesic"]) == 3
    assert result["models"] == ["m0", "m1", "m2"]
    md = (out / "identifiability.md").read_text()
    assert "| fisher-rao |" in md and "identifiability_mean.png" in md
    assert (out / "identifiability_mean.png").read_bytes()[:4] == b"\x89PNG"
    assert "median CV Euclidean / geodesic" in capsys.readouterr().out


@pytest.mark.parametrize(
    "which, extra, match",
    [
        ([0, 1], [], "argument --checkpoints: needs at least 3 values"),
        ([0, 1, 3], [], "latent dimension 3"),
        ([0, 1, 2], ["--metric", "ensemble"], "no 'ensemble' metric"),
        ([0, 1, 2], ["--metric", "ensemble-energy"], "no 'ensemble-energy' metric"),
        (None, [], "no checkpoint at"),
    ],
)
def test_command_errors(checkpoints, tmp_path, capsys, which, extra, match):
    paths = [checkpoints[i] for i in which] if which else [*checkpoints[:2], str(tmp_path / "x")]
    argv = ["identifiability", "--checkpoints", ",".join(paths), "--out", str(tmp_path / "o")]
    argv += extra
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_command_trains_one_model_per_seed(tmp_path, capsys):
    root = write_mnist(tmp_path / "data", n_train=64, n_test=30)
    out = tmp_path / "out"
    argv = ["identifiability", "--seeds", "0,1,2", "--model", "ensemble"]
    argv += ["--decoders", "2", "--epochs", "1", "--data-dir", str(root), "--limit", "64"]
    argv += ["--metric", "ensemble,disagreement,ensemble-energy"]
    argv += ["--pairs", "5", "--nodes", "6", "--disagreement-scale", "3", "--energy-weight", "2"]
    argv += ["--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((out / "identifiability.json").read_text())
    assert result["disagreement_scale"] == 3 and result["energy_weight"] == 2
    assert result["models"] == ["ensemble_seed0", "ensemble_seed1", "ensemble_seed2"]
    assert set(result["metrics"]) == {"ensemble", "disagreement", "ensemble-energy"}
    md = (out / "identifiability.md").read_text()
    assert "| disagreement |" in md and "| ensemble-energy |" in md
    assert "disagreement scale 3; ensemble-energy weight 2." in md
    energy = result["metrics"]["ensemble-energy"]
    expected = np.array(energy["expected_length"]["distances"])
    assert expected.shape == (3, 5) and (expected > 0).all()
    assert "expected length over decoder pairs" in md
    config = json.loads((out / "models" / "ensemble_seed1" / "config.json").read_text())
    assert config["architecture"]["decoders"] == 2 and config["training"]["seed"] == 1
    for extra, match in (
        (["--seeds", "0,1"], "argument --seeds: needs at least 3 values"),
        (["--seeds", "0,1,2", "--checkpoints", "a,b,c"], "no checkpoint at a"),
        (["--seeds", "0,1,2", "--checkpoints", "bernoulli,gaussian,smooth"], "not allowed with"),
        ([], "one of the arguments --checkpoints --seeds is required"),
        (["--seeds", "0,1,2", "--disagreement-scale", "0"], "argument --disagreement-scale"),
    ):
        assert main(["identifiability", *extra, "--out", str(tmp_path / "o")]) == 2
        assert match in capsys.readouterr().err
