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


def fitted_std(codes: torch.Tensor, gate_points: int, seed: int = 1) -> RBFStd:
    """An RBF std network over ``codes`` with uniform weights: precision 400 at the data."""
    std = RBFStd(2, 32, (4,), zeta=0.1, gate_points=gate_points).to(F64)
    gen = torch.Generator().manual_seed(seed)
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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_gate_raises_sigma_where_the_data_ends(seed):
    """On every k-means draw, not one lucky one."""
    codes = two_clusters()
    std = fitted_std(codes, 512, seed)
    wall = sigma_wall(std, codes, resolution=80)
    assert wall["ratio_2r95"] >= 3 and wall["ratio_2r99"] >= 5
    # In the middle of the gap sigma is many times its value on the data ...
    with torch.no_grad():
        mid = std(torch.zeros(1, 2, dtype=F64))
    assert float(mid.min()) > 10 * wall["sigma_codes"]
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

    # Continuity: on a line, the largest change of log sigma between neighbouring points
    # halves when the spacing halves (a jump would stay the same size).
    def largest_step(n: int) -> float:
        x = torch.linspace(-4, 4, n, dtype=F64)
        line = torch.stack([x, torch.full_like(x, 0.3)], 1)
        with torch.no_grad():
            return float(std(line).mean(-1).log().diff().abs().max())

    coarse, fine = largest_step(2001), largest_step(4001)
    assert 1.8 < coarse / fine < 2.2


def test_gate_buffers_only_when_asked_and_plain_checkpoints_still_load():
    plain = GaussianVAE(n_centres=8)
    assert not any(k.startswith("std.gate") for k in plain.state_dict())
    gated = GaussianVAE(n_centres=8, gate_points=16)
    assert {"std.gate_centres", "std.gate_threshold"} <= set(gated.state_dict())
    GaussianVAE(n_centres=8).load_state_dict(plain.state_dict())
    assert float(plain.std.gate(torch.zeros(3, 2)).min()) == 1.0


def test_gate_density_is_the_weighted_kde_of_its_centres():
    """Fewer codes than 16 G: N // 16 k-means centres, repeated to fill the G rows with their
    weight split, give the density of the centres weighted by their cluster sizes."""
    codes = two_clusters(400)
    std = RBFStd(2, 4, (1,), gate_points=64).to(F64)
    std.fit_gate(codes, generator=torch.Generator().manual_seed(0))
    unique, inverse = torch.unique(std.gate_centres, dim=0, return_inverse=True)
    assert len(unique) == 400 // 16
    weights = torch.zeros(len(unique), dtype=F64).index_add_(0, inverse, std.gate_log_weights.exp())
    torch.testing.assert_close(weights.sum(), torch.tensor(400.0, dtype=F64))
    z = torch.randn(50, 2, dtype=F64) * 2
    h = std.gate_bandwidth
    direct = torch.logsumexp(weights.log() - torch.cdist(z, unique).square() / (2 * h**2), -1)
    torch.testing.assert_close(std._log_density(z), direct)
    # Evaluated over the distinct centres alone (a 64 / 25 cheaper product), the same as
    # over every buffer row.
    folded, _ = std._distinct_centres()
    assert len(folded) == 400 // 16
    rows = std.gate_log_weights - torch.cdist(z, std.gate_centres).square() / (2 * h**2)
    torch.testing.assert_close(std._log_density(z), torch.logsumexp(rows, -1))


def test_gates_saved_before_the_weights_load_as_unit_weights():
    std = RBFStd(2, 4, (1,), gate_points=8)
    state = {k: v for k, v in std.state_dict().items() if k != "gate_log_weights"}
    fresh = RBFStd(2, 4, (1,), gate_points=8)
    fresh.gate_log_weights.fill_(5.0)
    fresh.load_state_dict(state)
    assert float(fresh.gate_log_weights.abs().max()) == 0.0


def test_fit_gate_errors():
    std = RBFStd(2, 4, (1,), gate_points=8)
    with pytest.raises(ValueError, match=r"shape \(N, 2\) with N >= 2"):
        std.fit_gate(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="quantile must be in"):
        std.fit_gate(torch.randn(10, 2), quantile=1.5)
    with pytest.raises(RuntimeError, match="no gate"):
        RBFStd(2, 4, (1,)).fit_gate(torch.randn(10, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        std.fit_gate(torch.full((10, 2), math.nan))
    with pytest.raises(ValueError, match="all the same point"):
        std.fit_gate(torch.ones(40, 2))


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
