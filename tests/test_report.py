"""``pullback-geom report`` end to end on a tiny checkpoint, its staged output folder, and
the numbers' functions against brute force."""

import json
import math

import numpy as np
import pytest
import torch
from synthetic import synthetic_digits, tiny_config, write_mnist

from pullback_geom import vae
from pullback_geom.cli import main
from pullback_geom.experiments.report import ReportOptions, build_report
from pullback_geom.experiments.report import analysis as A
from pullback_geom.experiments.report.document import staged_folder
from pullback_geom.training import train_vae

FIGURES = {
    "latent_space.png",
    "decoded_grid.png",
    "volume_element.png",
    "geodesics.png",
    "interpolation.png",
    "class_distances.png",
    "density_connection.png",
    "uncertainty.png",
    "curvature.png",
}
#: the numbers behind the figures (and the paths section's table)
DATA = {
    "geodesics.npz",
    "interpolation.npz",
    "class_distances.npz",
    "uncertainty.npz",
    "paths.npz",
}
SMALL = ["--pairs", "6", "--similarity-pairs", "24", "--per-class", "4", "--nodes", "12",
         "--resolution", "64"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: two intra-op threads only contend with each other (and with anything
    # else running on a 2-core machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_checkpoint(root, **config):
    """A Gaussian VAE (32 hidden units) trained for 2 epochs on synthetic digits, with the
    synthetic dataset written in torchvision's layout so that the report finds images."""
    data = write_mnist(root / "data", n_train=256, n_test=64)
    images, _ = synthetic_digits(256)
    test_images, test_labels = synthetic_digits(64, seed=1)
    cfg = tiny_config(model="gaussian", epochs=2, rbf_epochs=2, **config)
    dataset = {"name": "mnist"}  # the synthetic files stand in for MNIST's
    train_vae(
        cfg, images, test_images, test_labels, out=root / "ckpt", dataset=dataset, progress=False
    )
    return root / "ckpt", data


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """With the std network's data gate (the default)."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    """Without the gate: on a tiny model the gate is sharp, its geodesic ODE stiff, and the
    ODE-drawing report takes 5x longer; the rerun test needs no gate."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("plain"), gate_points=0)


def test_report_command_end_to_end(tiny_checkpoint, tmp_path, capsys):
    ckpt, data = tiny_checkpoint
    out = tmp_path / "rep"
    argv = ["report", "--checkpoint", str(ckpt), "--out", str(out), "--data-dir", str(data)]
    code = main([*argv, *SMALL, "--no-ode", "--straight-start", "--format", "png,pdf"])
    assert code == 0, capsys.readouterr().err
    files = {p.name for p in out.iterdir()}
    pdfs = {name.replace(".png", ".pdf") for name in FIGURES}
    assert FIGURES | pdfs | DATA | {"report.md", "numbers.json"} == files
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in pdfs:
        assert (out / name).read_bytes()[:5] == b"%PDF-"
    doc = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in doc
    assert "## The write-up's claims against the measurements" in doc
    assert "the uncertainty term keeps geodesics" in doc
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["options"]["data_dir"] == str(data)
    assert numbers["options"]["resolution"] == 64
    sim = numbers["similarity"]
    # The saved numbers reload and are those the figures and numbers.json show.
    with np.load(out / "class_distances.npz") as saved:
        np.testing.assert_allclose(
            saved["class_means_geodesic"], sim["class_distances_geodesic"], rtol=1e-12
        )
        d, labels = saved["geodesic_distances"], saved["labels"]
        assert d.shape == (len(labels), len(labels)) and np.allclose(d, d.T)
        np.testing.assert_array_equal(labels, vae.load_latents(ckpt).labels[saved["code_indices"]])
    with np.load(out / "paths.npz") as saved:
        ratio_saved = saved["straight_length"] / saved["geodesic_length"]
        assert len(saved["pair_indices"]) == 6
        assert np.median(ratio_saved) == pytest.approx(
            numbers["paths"]["length_ratio_straight_over_geodesic"]["median"], rel=1e-9
        )
    with np.load(out / "geodesics.npz") as saved:
        assert saved["energy_length"].tolist() == numbers["geodesic_pairs"]["energy_length"]
    assert -1 <= sim["spearman_pixel_vs_geodesic"] <= 1
    assert 0 <= sim["knn_accuracy_geodesic"] <= 1
    assert len(sim["closest_classes_geodesic"]) == 5
    ratio = numbers["paths"]["length_ratio_straight_over_geodesic"]
    # A geodesic is no longer than the straight line, up to the solver's tolerance.
    assert ratio["q25"] >= 0.99
    assert numbers["model"] == "gaussian" and "uncertainty" in numbers
    # The model has the std network's data gate (the default): sharp on a tiny model's
    # small latent scale, it must not stop the report.
    assert vae.load(ckpt).std.gate_points > 0
    assert numbers["uncertainty"]["wall"]["points_2r99"] > 0
    assert str(data) in numbers["images"]
    # Nothing staged is left beside the report.
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]
    assert "report.md" in capsys.readouterr().out


def test_rerun_replaces_an_earlier_report_and_draws_ode_solutions(plain_checkpoint, tmp_path):
    ckpt, data = plain_checkpoint
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("an earlier report")
    (out / "numbers.json").write_text("{}")
    (out / "stale.png").write_bytes(b"")
    opts = ReportOptions(
        n_pairs=4, n_similarity_pairs=12, per_class=3, n_points=10, seed=3, resolution=48
    )
    opts.data_dir = data
    report = build_report(ckpt, out, options=opts, progress=False)
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["options"]["data_dir"] == str(data)
    assert numbers["options"]["seed"] == 3 and numbers == json.loads(json.dumps(report.numbers))
    assert numbers["options"]["graph_start"] is True
    assert not (out / "stale.png").exists()
    pairs = numbers["geodesic_pairs"]
    assert len(pairs["ode_reached"]) == len(pairs["pairs"]) == len(pairs["energy_length"])
    for reached, length in zip(pairs["ode_reached"], pairs["ode_length"], strict=True):
        assert (length is not None) == reached


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["report", "--checkpoint", str(missing), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "nowhere" in err
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.pt").write_bytes(b"garbage")
    code = main(["report", "--checkpoint", str(bad), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "config.json" in capsys.readouterr().err


def test_out_that_is_not_a_report_is_not_replaced(tiny_checkpoint, tmp_path):
    ckpt, data = tiny_checkpoint
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a pullback-geom report"):
        build_report(ckpt, out, options=ReportOptions(data_dir=data))
    assert (out / "thesis.tex").read_text() == "do not delete"


def test_staged_folder_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "rep"
    with pytest.raises(RuntimeError, match="midway"), staged_folder(out) as folder:
        (folder / "report.md").write_text("half")
        raise RuntimeError("midway")
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="n_pairs"):
        ReportOptions(n_pairs=0).check()
    with pytest.raises(ValueError, match="solver must be an energy method"):
        ReportOptions(solver="newton").check()
    # A boundary-value method that is no energy method takes neither n_points nor
    # init_curve: refused before any work.
    with pytest.raises(ValueError, match="solver must be an energy method.*'shooting'"):
        ReportOptions(solver="shooting").check()
    for solver in ("lm", "georce", "lbfgs"):
        ReportOptions(solver=solver).check()


# ---------------------------------------------------------------------------- numbers
def test_knn_accuracy_on_two_clusters():
    z = torch.cat([torch.zeros(5, 2), 10 + torch.zeros(5, 2)]) + 0.01 * torch.arange(10.0)[:, None]
    labels = torch.tensor([0] * 5 + [1] * 5)
    d = torch.cdist(z, z)
    assert A.knn_accuracy(d, labels, k=3) == 1.0
    assert A.knn_accuracy(d, 1 - labels.roll(1), k=3) < 1.0
    with pytest.raises(ValueError, match="k must be"):
        A.knn_accuracy(d, labels, k=10)


def test_class_mean_distances_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (30,), generator=gen)
    d = torch.cdist(z, z)
    got = A.class_mean_distances(d, labels)
    for a in range(3):
        for b in range(3):
            ia, ib = torch.nonzero(labels == a)[:, 0], torch.nonzero(labels == b)[:, 0]
            vals = [float(d[i, j]) for i in ia for j in ib if i != j]
            assert math.isclose(float(got[a, b]), sum(vals) / len(vals), rel_tol=1e-12)
    closest = A.closest_class_pairs(got, top=3)
    assert [v for _, v in closest] == sorted(v for _, v in closest)


def test_random_pairs_are_distinct_and_seeded():
    p = A.random_pairs(7, 500, seed=1)
    assert p.shape == (500, 2) and (p[:, 0] != p[:, 1]).all() and p.max() < 7
    assert torch.equal(p, A.random_pairs(7, 500, seed=1))


def test_resample_curves_is_even_in_arc_length():
    # A polyline with unevenly spaced nodes along an L shape of total length 2.
    c = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    r = A.resample_curves(c, 5)
    expected = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.0, 0.5], [1.0, 1.0]])
    assert torch.allclose(r[0], expected, atol=1e-6)


def test_class_representatives_are_near_the_class_median():
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [10.0, 10.0], [11.0, 11.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    reps = A.class_representatives(codes, labels)
    assert reps[0] == 1 and reps[1] in (3, 4)


def test_markdown_tables_escape_bars_in_cells():
    from pullback_geom.experiments.report.document import table

    text = table(("quantity", "value"), [("mean |K| in the gaps", "2e-2")])
    row = text.splitlines()[2]
    # Three unescaped bars: the cell borders; the |K| bars are escaped.
    assert row.replace("\\|", "").count("|") == 3
    assert "\\|K\\|" in row
