"""The digit-orbit images: the renderer against exact pixel permutations and autograd,
the dataset's determinism, the true distances' bounds, the truth table on oracles, and
the identifiability command comparing models with the true manifold."""

import json
import math

import numpy as np
import pytest
import torch

from pullback_geom.cli import main
from pullback_geom.data.datasets import load_dataset, load_splits, load_test_images
from pullback_geom.data.digit_orbit import DigitOrbit, digit_orbit
from pullback_geom.experiments.identifiability import truth_table

F64 = torch.float64


@pytest.fixture(scope="module")
def orbit():
    return digit_orbit()


def test_identity_and_quarter_turns_are_exact_pixel_permutations(orbit):
    base = orbit.base
    assert torch.equal(orbit.render(torch.zeros(2)).view(28, 28), base)
    for k in (1, 2, -1):
        image = orbit.render(torch.tensor([k * math.pi / 2, 0.0], dtype=F64)).view(28, 28)
        torch.testing.assert_close(image, torch.rot90(base, k).double(), atol=1e-6, rtol=0)


def test_enlarging_keeps_the_centre_and_shrinking_blanks_the_border(orbit):
    big = orbit.render(torch.tensor([0.0, math.log(1.5)], dtype=F64)).view(28, 28)
    small = orbit.render(torch.tensor([0.0, math.log(0.5)], dtype=F64)).view(28, 28)
    assert small[:6].abs().max() == 0 and small[:, :6].abs().max() == 0
    assert big.sum() > orbit.base.sum() * 1.5 > small.sum() * 3


def test_forward_mode_jacobian_is_autograd_s(orbit):
    params = orbit.sample_params(5, seed=3, dtype=F64)
    jac = orbit.metric().jacobian(params)
    ref = torch.stack(
        [torch.autograd.functional.jacobian(orbit.render, p) for p in params]
    )  # (5, 784, 2)
    torch.testing.assert_close(jac, ref)
    assert jac.abs().sum() > 0


def test_batch_shapes_and_bad_parameters(orbit):
    assert orbit.render(torch.zeros(3, 4, 2)).shape == (3, 4, 784)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        orbit.render(torch.zeros(3))
    with pytest.raises(ValueError, match="base must be a"):
        DigitOrbit(torch.zeros(27, 28), 2)
    with pytest.raises(ValueError, match="scale_range"):
        DigitOrbit(torch.zeros(28, 28), 2, scale_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="index"):
        digit_orbit(5000)
    with pytest.raises(ValueError, match="blur"):
        digit_orbit(blur=-1.0)
    with pytest.raises(ValueError, match="n must be"):
        orbit.sample_params(-3)


def test_splits_are_deterministic_in_range_and_load_without_files(orbit, tmp_path):
    params, images, labels = orbit.split(train=False)
    assert params.shape == (10_000, 2) and images.shape == (10_000, 28, 28)
    assert images.dtype == torch.uint8 and (labels == orbit.label).all() and orbit.label == 2
    assert params[:, 0].abs().max() <= orbit.max_angle
    low, high = (math.log(s) for s in orbit.scale_range)
    assert low <= params[:, 1].min() and params[:, 1].max() <= high
    torch.testing.assert_close(
        images[:50].double() / 255,
        orbit.render(params[:50]).view(50, 28, 28),
        atol=0.5 / 255 + 1e-6,
        rtol=0,
    )
    test = load_dataset("digit-orbit", tmp_path / "nothing-here", train=False)
    assert torch.equal(test.images, images)
    test, source = load_test_images("digit-orbit", tmp_path / "nothing-here")
    assert torch.equal(test.images, images) and "digit-orbit" in source
    train, test, described = load_splits("digit-orbit", limit=100)
    assert len(train.images) == len(test.images) == 100 and described["name"] == "digit-orbit"
    assert not torch.equal(train.images[:100], images[:100])  # the splits differ


def test_true_distances_lie_between_the_chord_and_the_straight_line(orbit):
    a = orbit.sample_params(6, seed=4, dtype=F64)
    b = orbit.sample_params(6, seed=5, dtype=F64)
    truth = orbit.true_distances(a, b, n_points=16)
    chord = torch.linalg.vector_norm(orbit.render(a) - orbit.render(b), dim=-1)
    t = torch.linspace(0, 1, 257, dtype=F64)[:, None, None]
    straight = orbit.render(a + t * (b - a))  # (257, 6, 784)
    line = torch.linalg.vector_norm(straight.diff(dim=0), dim=-1).sum(0)
    assert (truth >= chord - 1e-9).all() and (truth <= line * 1.001).all()
    assert (truth < 0.99 * line).any()  # the straight line is not a geodesic
    torch.testing.assert_close(orbit.true_distances(b, a, n_points=16), truth, rtol=2e-3, atol=0)


def test_truth_table_on_oracles():
    gen = np.random.default_rng(0)
    truth = gen.uniform(1, 5, 40)
    geodesic = np.stack([2.0 * truth, 3.0 * truth, 2.5 * truth])
    euclidean = geodesic * gen.uniform(0.5, 1.5, geodesic.shape)
    table = truth_table(truth, euclidean, geodesic)
    np.testing.assert_allclose(table["geodesic"]["scale_free_error"], 0, atol=1e-12)
    np.testing.assert_allclose(table["geodesic"]["spearman"], 1)
    np.testing.assert_allclose(table["geodesic"]["ratio"], [2.0, 3.0, 2.5])
    assert min(table["euclidean"]["scale_free_error"]) > 0.05
    assert max(table["euclidean"]["spearman"]) < 0.99
    with pytest.raises(ValueError, match="same pairs"):
        truth_table(truth[:5], euclidean, geodesic)
    with pytest.raises(ValueError, match="finite and > 0"):
        truth_table(np.zeros(40), euclidean, geodesic)


def test_identifiability_on_digit_orbit_models_compares_with_the_truth(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["identifiability", "--seeds", "0,1,2", "--dataset", "digit-orbit"]
    argv += ["--epochs", "1", "--limit", "300", "--pairs", "6", "--nodes", "8"]
    argv += ["--metric", "mean,fisher-rao", "--start", "graph", "--orbit-digit", "0"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    result = json.loads((out / "identifiability.json").read_text())
    assert result["start"] == "graph"
    assert "mean: error vs truth Euclidean / geodesic (worst model)" in capsys.readouterr().out
    truth = np.array(result["truth"]["distances"])
    assert truth.shape == (6,) and (truth > 0).all()
    # The stored codes are of the first 300 test images: the truth uses their parameters.
    orbit = digit_orbit(0)  # --orbit-digit 0: a "7"
    params = orbit.split_params(train=False)
    pairs = torch.tensor(result["pairs"])
    expected = orbit.true_distances(params[pairs[:, 0]], params[pairs[:, 1]])
    np.testing.assert_allclose(truth, expected.numpy(), rtol=1e-6)
    compared = result["metrics"]["mean"]["truth"]
    assert len(compared["geodesic"]["ratio"]) == 3 and len(compared["euclidean"]["spearman"]) == 3
    md = (out / "identifiability.md").read_text()
    assert "## Against the true manifold" in md and "identifiability_mean_truth.png" in md
    assert "from grid-graph shortest paths" in md
    assert "| fisher-rao | – |" in md  # not pixel-space lengths: no length ratio
    assert (out / "identifiability_mean_truth.png").read_bytes()[:4] == b"\x89PNG"
    # The seed's report joins digit classes: a one-class model gets a clear error.
    model = out / "models" / "bernoulli_seed0"
    assert main(["report", "--checkpoint", str(model), "--out", str(tmp_path / "r")]) == 2
    assert "compares the ten digit classes" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    config = json.loads((model / "config.json").read_text())
    assert config["dataset"] == {
        "name": "digit-orbit",
        "train_size": 300,
        "test_size": 300,
        "limit": 300,
        "orbit_digit": 0,
    }
    # Models of orbits of different digits are not compared.
    config["dataset"]["orbit_digit"] = 5
    (model / "config.json").write_text(json.dumps(config))
    models = [str(out / "models" / f"bernoulli_seed{s}") for s in range(3)]
    argv = ["identifiability", "--checkpoints", ",".join(models), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "orbits of different digits [0, 5]" in capsys.readouterr().err
