"""The k-nearest-neighbour route: exact on linear decoders with a complete graph, close on
the sphere, any latent dimension, disconnected points reported, and the same matrix on a
cluster."""

from __future__ import annotations

import warnings

import pytest
import torch

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    GeodesicConvergenceWarning,
    distance_block,
    distance_matrix,
    pairwise_distances,
)
from pullback_geom.geodesics.knn import knn_graph
from pullback_geom.surfaces import InverseStereographic, sphere_distance

F64 = torch.float64


def linear_metric(d: int = 6, D: int = 9) -> tuple[PullbackMetric, torch.Tensor]:
    a = torch.randn(D, d, generator=torch.Generator().manual_seed(0), dtype=F64)
    layer = torch.nn.Linear(d, D, bias=False).to(F64)
    with torch.no_grad():
        layer.weight.copy_(a)
    return PullbackMetric(torch.nn.Sequential(layer)), a


@pytest.mark.parametrize("options", [None, {"k": 29}], ids=["default k=None", "k=n-1"])
def test_complete_graph_of_a_linear_decoder_is_exact_in_any_dimension(options):
    """f(z) = A z: the direct edge is a shortest path, of length |A (z_i - z_j)|. The
    route's default graph is the complete one."""
    metric, a = linear_metric()
    z = torch.randn(30, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    info = distance_matrix(metric, z, route="knn", graph_options=options, block_size=8)
    dist = info.distances
    exact = ((z[:, None] - z[None]) @ a.T).norm(dim=-1)
    torch.testing.assert_close(dist, exact, rtol=1e-12, atol=1e-12)
    assert info.route == "knn" and bool(info.converged.all())
    graph = knn_graph(metric, z, k=None)
    assert graph.adjacency.nnz == 30 * 29 and graph.k == 29 and graph.components == 1


def test_auto_takes_the_complete_graph_for_many_pairs_above_three_dimensions(monkeypatch):
    from pullback_geom.geodesics import pairwise

    metric, a = linear_metric()
    z = torch.randn(12, 6, generator=torch.Generator().manual_seed(4), dtype=F64)
    exact = ((z[:, None] - z[None]) @ a.T).norm(dim=-1)
    few = distance_matrix(metric, z)
    assert few.route == "solver"  # 66 pairs
    monkeypatch.setattr(pairwise, "AUTO_SOLVER_PAIRS_HIGH_D", 50)
    info = distance_matrix(metric, z)
    assert info.route == "knn"
    torch.testing.assert_close(info.distances, exact, rtol=1e-12, atol=1e-12)


def test_a_sparse_graph_is_an_upper_bound_on_a_linear_decoder():
    """Fewer edges: paths through other points are no shorter than the straight line."""
    metric, a = linear_metric()
    z = torch.randn(60, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    dist = pairwise_distances(metric, z, route="knn", graph_options={"k": 5}, block_size=16)
    exact = ((z[:, None] - z[None]) @ a.T).norm(dim=-1)
    assert bool((dist >= exact * (1 - 1e-12)).all())
    assert bool((dist > exact * (1 + 1e-6)).any())  # some pairs go round
    torch.testing.assert_close(dist, dist.T, rtol=0, atol=0)


def test_dense_points_on_the_sphere_come_close_to_great_circles():
    metric = PullbackMetric(InverseStereographic())
    gen = torch.Generator().manual_seed(3)
    z = (2 * torch.rand(600, 2, generator=gen, dtype=F64) - 1) * 1.2
    dist = pairwise_distances(
        metric, z, route="knn", graph_options={"k": 16, "subdivide": 8}, block_size=128
    )
    i, j = torch.triu_indices(600, 600, offset=1)
    exact = sphere_distance(z[i], z[j])
    far = exact > 0.5  # the graph's zig-zag is relative to a long path
    rel = (dist[i, j][far] - exact[far]) / exact[far]
    assert float(rel.median()) < 0.03 and float(rel.min()) > -1e-3


def test_disconnected_points_are_infinitely_far_and_reported():
    metric, _ = linear_metric(2, 3)
    gen = torch.Generator().manual_seed(4)
    z = torch.cat(
        [
            torch.randn(10, 2, generator=gen, dtype=F64),
            100 + torch.randn(10, 2, generator=gen, dtype=F64),
        ]
    )
    assert knn_graph(metric, z, k=3).components == 2
    with pytest.warns(GeodesicConvergenceWarning, match="different components"):
        info = distance_matrix(metric, z, route="knn", graph_options={"k": 3})
    dist = info.distances
    assert bool(torch.isinf(dist[:10, 10:]).all()) and not bool(info.converged[:10, 10:].any())
    assert bool(torch.isfinite(dist[:10, :10]).all()) and bool(info.converged[:10, :10].all())


def test_knn_blocks_alone_are_refused():
    metric, _ = linear_metric(2, 3)
    with pytest.raises(ValueError, match="use pairwise_distances"):
        distance_block(
            metric, torch.zeros(2, 2, dtype=F64), torch.ones(2, 2, dtype=F64), route="knn"
        )


def test_knn_route_in_a_store_resumes(tmp_path):
    metric, _ = linear_metric()
    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(5), dtype=F64)
    kw = {"route": "knn", "graph_options": {"k": 6}, "block_size": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = pairwise_distances(metric, z, store=tmp_path / "d.zarr", **kw)
    info = distance_matrix(metric, z, store=tmp_path / "d.zarr", **kw)
    assert info.computed == 0 and torch.equal(first, info.distances)
    assert torch.equal(first, pairwise_distances(metric, z, **kw))
