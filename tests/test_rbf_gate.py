"""The std network's data gate: sigma rises where the data ends, on a layout with a known
hole, and stays smooth enough for the metric's solvers."""

from __future__ import annotations

import math

import pytest
import torch

from pullback_geom import PullbackMetric
from pullback_geom.vae import GaussianVAE
from pullback_geom.vae.rbf import RBFStd, nearest_neighbour_distances, sigma_wall

F64 = torch.float64


def two_clusters(n: int = 1500, seed: int = 0) -> torch.Tensor:
    """Two discs of radius 1 centred at x = -1.4 and x = +1.4: a gap of width 0.8 between."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.rand(n, generator=gen, dtype=F64).sqrt()
    t = 2 * math.pi * torch.rand(n, generator=gen, dtype=F64)
    disc = torch.stack([r * t.cos(), r * t.sin()], 1)
    side = torch.where(torch.arange(n) % 2 == 0, -1.4, 1.4).to(F64)
    return disc + torch.stack([side, torch.zeros(n, dtype=F64)], 1)


def fitted_std(codes: torch.Tensor, gate_points: int) -> RBFStd:
    """An RBF std network over ``codes`` with uniform weights: precision 400 at the data."""
    std = RBFStd(2, 32, (4,), zeta=0.1, gate_points=gate_points).to(F64)
    gen = torch.Generator().manual_seed(1)
    std.fit_centres(codes, generator=gen)
    if gate_points:
        std.fit_gate(codes, generator=gen)
    with torch.no_grad():  # a precision of about 400 on the data (sigma 0.05)
        cover = std.activations(codes).sum(-1).median()
        std.log_weight.fill_(math.log(400 / float(cover)))
    return std


def test_without_the_gate_the_wide_rbfs_fill_the_hole():
    codes = two_clusters()
    wall = sigma_wall(fitted_std(codes, 0), codes, resolution=80)
    assert wall["points_2r95"] > 0 and wall["points_2r99"] > 0
    assert wall["ratio_2r99"] < 5  # the criterion's second tier fails: what the gate mends


def test_the_gate_raises_sigma_where_the_data_ends():
    codes = two_clusters()
    std = fitted_std(codes, 512)
    wall = sigma_wall(std, codes, resolution=80)
    assert wall["ratio_2r95"] >= 3 and wall["ratio_2r99"] >= 5
    # In the middle of the gap sigma is near its far-field bound 1/sqrt(zeta) ...
    with torch.no_grad():
        mid = std(torch.zeros(1, 2, dtype=F64))
    assert float(mid.min()) > 0.8 / math.sqrt(0.1)
    # ... and bounded by it everywhere, however far.
    with torch.no_grad():
        far = std(torch.tensor([[50.0, -80.0], [1e3, 1e3]], dtype=F64))
    torch.testing.assert_close(far, torch.full_like(far, 1 / math.sqrt(0.1)))
    # On the data, the gate leaves the fit alone.
    assert float(torch.quantile(std.gate(codes), 0.01)) > 0.9


def test_sigma_is_smooth_and_its_jacobian_finite_everywhere():
    codes = two_clusters(600)
    std = fitted_std(codes, 256)
    axis = torch.linspace(-8, 8, 81, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    metric = PullbackMetric(std)
    jac = metric.jacobian(grid)  # raises on NaN/inf
    assert bool(torch.isfinite(jac).all())
    # Continuity: sigma changes little between neighbouring points of a fine line.
    line = torch.stack(
        [torch.linspace(-4, 4, 4001, dtype=F64), torch.full((4001,), 0.3, dtype=F64)], 1
    )
    with torch.no_grad():
        s = std(line).mean(-1)
    step = float((s.diff().abs() / s[:-1]).max())
    assert step < 0.05


def test_gate_buffers_only_when_asked_and_plain_checkpoints_still_load():
    plain = GaussianVAE(n_centres=8)
    assert not any(k.startswith("std.gate") for k in plain.state_dict())
    gated = GaussianVAE(n_centres=8, gate_points=16)
    assert {"std.gate_centres", "std.gate_threshold"} <= set(gated.state_dict())
    GaussianVAE(n_centres=8).load_state_dict(plain.state_dict())
    assert float(plain.std.gate(torch.zeros(3, 2)).min()) == 1.0


def test_fit_gate_errors():
    std = RBFStd(2, 4, (1,), gate_points=8)
    with pytest.raises(ValueError, match=r"shape \(N, 2\) with N >= 2"):
        std.fit_gate(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="quantile must be in"):
        std.fit_gate(torch.randn(10, 2), quantile=1.5)
    with pytest.raises(RuntimeError, match="no gate"):
        RBFStd(2, 4, (1,)).fit_gate(torch.randn(10, 2))


def test_nearest_neighbour_distances_in_blocks():
    x = torch.randn(300, 2, dtype=F64)
    ref = torch.cdist(x, x).fill_diagonal_(float("inf")).min(1).values
    torch.testing.assert_close(nearest_neighbour_distances(x, block=64), ref)


def test_maps_leave_points_blank_where_the_core_reports_non_finite_values():
    import numpy as np

    from pullback_geom._core.checks import check_finite_output
    from pullback_geom.viz._common import grid_values

    def fn(pts):
        values = torch.where(pts[:, 0] > 0.5, math.inf, pts[:, 0] + pts[:, 1])
        return check_finite_output(values, "test field")

    axis = np.linspace(0, 1, 5)
    grid = np.stack(np.meshgrid(axis, axis), -1)  # (5, 5, 2), x along the last axis
    out = grid_values(fn, grid, F64, "cpu")
    blank = grid[..., 0] > 0.5
    assert np.isnan(out[blank]).all()
    np.testing.assert_allclose(out[~blank], grid[..., 0][~blank] + grid[..., 1][~blank])


def test_a_gated_model_reports_end_to_end(tmp_path):
    """A tiny model's gate is sharp on its small latent scale: float32 curvature overflows
    at a few points there. The report still completes (those points are drawn blank)."""
    from synthetic import synthetic_digits, tiny_config, write_mnist

    from pullback_geom.cli import main
    from pullback_geom.training import train_vae

    data = write_mnist(tmp_path / "data", n_train=256, n_test=64)
    images, _ = synthetic_digits(256)
    test_images, test_labels = synthetic_digits(64, seed=1)
    cfg = tiny_config(model="gaussian", epochs=2, rbf_epochs=2, gate_points=2048)
    train_vae(
        cfg, images, test_images, test_labels, out=tmp_path / "ckpt",
        dataset={"name": "mnist"}, progress=False,
    )  # fmt: skip
    argv = ["report", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "rep")]
    small = ["--pairs", "4", "--similarity-pairs", "16", "--per-class", "3", "--nodes", "10"]
    assert main([*argv, "--data-dir", str(data), *small, "--no-ode", "--straight-start"]) == 0
    assert (tmp_path / "rep" / "curvature.png").read_bytes()[:4] == b"\x89PNG"
