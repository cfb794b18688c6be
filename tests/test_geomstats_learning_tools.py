"""geomstats' learning tools (Fréchet mean, k-means, kNN) on the adapter's latent spaces,
checked on configurations whose answer is known by symmetry or by construction."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

# isort: off
# The adapter must be imported before geomstats: it selects geomstats' pytorch backend.
import pullback_geom.geomstats as pg_geomstats
from geomstats.learning.frechet_mean import FrechetMean
from geomstats.learning.kmeans import RiemannianKMeans
from geomstats.learning.knn import KNearestNeighborsClassifier
from geomstats.numerics.geodesic import LogODESolver
# isort: on

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic

F64 = torch.float64
latent_space = pg_geomstats.latent_space
PullbackLogSolver = pg_geomstats.PullbackLogSolver


pytestmark = pytest.mark.usefixtures("one_thread")


def symmetric_cloud(space, center: Tensor) -> Tensor:
    """Points ``exp_c(+-u_i)``: their Frechet mean is ``c`` (logs at ``c`` cancel)."""
    u = torch.tensor([[0.4, 0.1], [-0.1, 0.5]], dtype=F64)
    return space.metric.exp(torch.cat([u, -u]), center)


def test_frechet_mean_of_symmetric_points():
    space = latent_space(
        PullbackMetric(InverseStereographic(), latent_dim=2), exp_options={"method": "discrete"}
    )
    space.metric.log_solver = LogODESolver(space)  # accurate here and 20x faster
    center = torch.tensor([0.3, -0.2], dtype=F64)
    points = symmetric_cloud(space, center)
    start = torch.tensor([0.32, -0.18], dtype=F64)
    mean = FrechetMean(space).set(epsilon=1e-11, init_point=start).fit(points).estimate_
    torch.testing.assert_close(mean, center, rtol=1e-5, atol=1e-5)


def two_clusters(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(8)
    centers = torch.tensor([[0.8, 0.2], [-0.7, -0.3]], dtype=F64)
    x = centers.repeat_interleave(n, 0) + 0.08 * torch.randn(2 * n, 2, generator=g, dtype=F64)
    return x, torch.arange(2).repeat_interleave(n)


def check_kmeans(space) -> None:
    x, labels = two_clusters()
    kmeans = RiemannianKMeans(space, n_clusters=2, init=x[[0, -1]].clone())
    kmeans.fit(x)
    assert torch.equal(torch.as_tensor(kmeans.labels_), labels)
    assert torch.equal(torch.as_tensor(kmeans.predict(x)), labels)


def check_knn(space) -> None:
    x, labels = two_clusters()
    knn = KNearestNeighborsClassifier(space, n_neighbors=3)
    knn.fit(x[::2], labels[::2])
    assert list(knn.predict(x[1::2])) == labels[1::2].tolist()


def test_kmeans_and_knn_on_the_sphere():
    space = latent_space(
        PullbackMetric(InverseStereographic(), latent_dim=2), exp_options={"method": "discrete"}
    )
    space.metric.log_solver = PullbackLogSolver(space, method="lm")
    assert space.metric.log_solver.method == "lm"
    check_kmeans(space)
    check_knn(space)


def test_learning_tools_with_a_trainable_decoder():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 5))  # float32, grads on
    assert all(p.requires_grad for p in decoder.parameters())
    space = latent_space(
        PullbackMetric(decoder),
        exp_options={"method": "discrete"},
        log_options={"method": "lm"},
    )
    center = torch.tensor([0.1, 0.2], dtype=F64)
    points = symmetric_cloud(space, center)
    assert not points.requires_grad
    mean = FrechetMean(space).set(epsilon=1e-8).fit(points).estimate_
    assert mean.dtype == F64 and not mean.requires_grad
    # energy logs are ~1e-3 accurate; the mean lands at the centre of symmetry to that
    torch.testing.assert_close(mean, center, rtol=0, atol=2e-2)
    check_kmeans(space)
    check_knn(space)
    # gradients still reach points that ask for them, never the decoder's weights
    z = center.clone().requires_grad_()
    space.metric.squared_norm(torch.ones(2, dtype=F64), z).backward()
    assert z.grad is not None and all(p.grad is None for p in decoder.parameters())
