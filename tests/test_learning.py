"""pullback_geom.experiments.learning: geomstats estimators on the latent manifold, with oracles.

Linear decoders (constant metric A^T A: geodesics are straight lines, distances |A dz|),
the unit sphere (great circles), and hand-computed scores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

# isort: off
from pullback_geom.experiments import learning
from pullback_geom.geomstats import latent_space
# isort: on

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic, sphere_distance

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only contend
    yield
    torch.set_num_threads(threads)


def linear_metric(a) -> PullbackMetric:
    """The pullback of ``z -> A z``: ``G = A^T A`` everywhere."""
    a = torch.as_tensor(a, dtype=F64)
    layer = nn.Linear(a.shape[1], a.shape[0], bias=False).to(F64)
    with torch.no_grad():
        layer.weight.copy_(a)
    return PullbackMetric(layer)


def sphere_metric() -> PullbackMetric:
    return PullbackMetric(InverseStereographic(), latent_dim=2)


def to_chart(x: torch.Tensor) -> torch.Tensor:
    """Stereographic projection of unit vectors ``(..., 3)`` to the latent plane."""
    return x[..., :2] / (1 - x[..., 2:])


def blobs(centres, per: int = 3, scale: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=F64)
    z = c.repeat_interleave(per, 0) + scale * torch.randn(len(c) * per, 2, generator=g, dtype=F64)
    return z, torch.arange(len(c)).repeat_interleave(per)


# ---------------------------------------------------------------------------- scores
def test_adjusted_rand_index_and_purity_hand_computed():
    true = [0, 0, 0, 1, 1, 1]
    # contingency [[2, 1, 0], [0, 1, 2]]: index 2, rows 6, columns 3, n-pairs 15,
    # expected 6 * 3 / 15 = 1.2, max 4.5 -> (2 - 1.2) / (4.5 - 1.2) = 8 / 33
    assert learning.adjusted_rand_index(true, [0, 0, 1, 1, 2, 2]) == pytest.approx(8 / 33)
    assert learning.purity(true, [0, 0, 1, 1, 2, 2]) == pytest.approx(5 / 6)
    # renamed clusters: perfect
    assert learning.adjusted_rand_index(true, [7, 7, 7, 3, 3, 3]) == pytest.approx(1.0)
    assert learning.purity(true, [7, 7, 7, 3, 3, 3]) == 1.0
    # [[1, 1], [1, 1]]: index 0, expected 2 * 2 / 6, max 2 -> -0.5
    assert learning.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert learning.purity([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    # one cluster against one class: identical trivial partitions
    assert learning.adjusted_rand_index([4, 4, 4], [1, 1, 1]) == 1.0


# ---------------------------------------------------------------------------- Fréchet means
def test_frechet_mean_under_a_constant_metric_is_the_arithmetic_mean():
    metric = linear_metric([[2.0, 0.5], [0.0, 1.0], [1.0, -3.0]])
    z, y = blobs([[0.0, 0.0], [2.0, -1.0]], per=4, scale=0.4)
    out = learning.class_frechet_means(metric, z, y)
    assert out.riemannian.shape == out.euclidean.shape == (2, 2)
    assert out.classes.tolist() == [0, 1]
    want = torch.stack([z[:4].mean(0), z[4:].mean(0)])
    torch.testing.assert_close(out.euclidean, want)
    torch.testing.assert_close(out.riemannian, want, rtol=0, atol=1e-6)
    assert out.shift.shape == (2,) and float(out.shift.max()) < 1e-5


def test_frechet_mean_of_points_symmetric_about_a_great_circle_midpoint():
    f = InverseStereographic()
    p = torch.tensor([[1.5, 0.0], [0.0, 1.5]], dtype=F64)  # 2 ends of a great-circle arc
    mid = to_chart(nn.functional.normalize(f(p).sum(0), dim=0))  # (1.233, 1.233)
    # and two more points symmetric about the midpoint, on the perpendicular great circle
    x_mid = f(mid[None])[0]
    tangent = torch.linalg.cross(x_mid, f(p[0:1])[0] - f(p[1:2])[0])
    tangent = tangent / tangent.norm()
    q = to_chart(torch.stack([x_mid * np.cos(0.4) + s * tangent * np.sin(0.4) for s in (1, -1)]))
    z = torch.cat([p, q])
    out = learning.class_frechet_means(sphere_metric(), z, torch.zeros(4, dtype=torch.int64))
    assert float((out.euclidean[0] - mid).norm()) > 0.15  # the oracle is not the plain mean
    # the energy log solver is ~1e-3 accurate
    torch.testing.assert_close(out.riemannian[0], mid, rtol=0, atol=5e-3)
    torch.testing.assert_close(
        out.shift, sphere_distance(out.euclidean, mid[None]), rtol=1e-2, atol=1e-2
    )


# ---------------------------------------------------------------------------- k-means
def test_kmeans_on_separated_blobs_recovers_the_labels():
    metric = linear_metric([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z, y = blobs([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    out = learning.kmeans_comparison(metric, z, y, init=z[[0, 3, 6]])
    assert out.ari_riemannian == pytest.approx(1.0) and out.ari_euclidean == pytest.approx(1.0)
    assert out.purity_riemannian == out.purity_euclidean == 1.0
    assert out.riemannian_labels.shape == (9,) and out.riemannian_centers.shape == (3, 2)
    torch.testing.assert_close(out.riemannian_centers, out.euclidean_centers, rtol=0, atol=1e-5)


def test_kmeans_follows_the_metric_not_the_coordinates():
    # G = diag(1, 100): a step of 1 in z2 is 10 long, so the groups at (0, 0), (3, 0),
    # (0, 1), (3, 1) pair up by z2 under the metric and by z1 in coordinates.
    metric = linear_metric([[1.0, 0.0], [0.0, 10.0]])
    z, group = blobs([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [3.0, 1.0]], scale=0.02)
    by_z2 = group // 2
    out = learning.kmeans_comparison(metric, z, by_z2, init=z[[0, 9]])
    assert out.ari_riemannian == pytest.approx(1.0)
    assert out.ari_euclidean < 0  # split by z1: anti-correlated with the z2 labels
    assert out.purity_euclidean == 0.5


# ---------------------------------------------------------------------------- kNN
def test_knn_with_a_scaled_isometry_matches_euclidean_knn():
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]], dtype=F64))
    metric = linear_metric(2.5 * q)  # distances are 2.5 x Euclidean: the same neighbours
    g = torch.Generator().manual_seed(3)
    x = torch.rand(14, 2, generator=g, dtype=F64) * 2
    y = (x[:, 0] + 0.3 * torch.randn(14, generator=g, dtype=F64) > 1).long()
    for precompute in (True, False):
        out = learning.knn_comparison(
            metric, x[:10], y[:10], x[10:], y[10:], n_neighbors=3,
            precompute=precompute, route="solver",
        )  # fmt: skip
        assert torch.equal(out.riemannian_pred, out.euclidean_pred)
        assert out.riemannian_accuracy == out.euclidean_accuracy
    assert out.distances is None  # geomstats' per-pair path
    assert 0.0 <= out.riemannian_accuracy <= 1.0


def test_knn_on_the_graph_route_uses_the_metric():
    # Under G = diag(1, 100) a test point's neighbours are those at the same z2.
    metric = linear_metric([[1.0, 0.0], [0.0, 10.0]])
    x_tr = torch.tensor([[0.0, 0.0], [0.3, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.0], [2.3, 1.0]])
    y_tr = torch.tensor([0, 0, 0, 1, 1, 1])
    x_te = torch.tensor([[0.1, 0.9], [2.2, 0.1]])
    y_te = torch.tensor([1, 0])
    out = learning.knn_comparison(metric, x_tr, y_tr, x_te, y_te, n_neighbors=3, route="graph")
    assert out.riemannian_pred.tolist() == [1, 0] and out.riemannian_accuracy == 1.0
    assert out.euclidean_pred.tolist() == [0, 1] and out.euclidean_accuracy == 0.0
    assert out.distances.shape == (8, 8)
    # Grid-graph paths are never shorter than |A dz|; with this 10:1 anisotropy their
    # few directions make them up to ~20 % longer (about 1 % on the MNIST decoder).
    both = torch.cat([x_te, x_tr]).to(F64) * torch.tensor([1.0, 10.0], dtype=F64)
    exact = torch.cdist(both, both)
    assert bool((out.distances >= exact * (1 - 1e-6)).all())
    assert bool((out.distances <= exact * 1.25 + 1e-9).all())


# ---------------------------------------------------------------------------- tangent PCA
def test_tangent_pca_of_points_on_a_great_circle():
    metric = sphere_metric()
    space = latent_space(metric, log_options={"method": "lm"})
    base = torch.tensor([0.3, -0.2], dtype=F64)
    u = torch.tensor([0.6, 0.8], dtype=F64)
    t = torch.tensor([-0.5, -0.25, 0.2, 0.45], dtype=F64)
    z = space.metric.exp(t[:, None] * u, base)
    out = learning.tangent_pca(metric, z, base, n_curve=9, space=space)
    assert out.components.shape == (2, 2) and out.geodesics.shape == (2, 9, 2)
    assert out.tangent_vectors.shape == (4, 2)
    assert float(out.explained_variance_ratio[0]) > 0.999
    assert float(out.metric_variance_ratio[0]) > 0.999  # conformal metric: the same
    assert abs(float(out.components[0] @ u)) == pytest.approx(1.0, abs=1e-3)
    # the first principal geodesic runs along the same great circle
    f = InverseStereographic()
    normal = torch.linalg.cross(f(z[:1])[0], f(z[-1:])[0])
    assert float((f(out.geodesics[0]) @ normal).abs().max()) < 1e-3 * float(normal.norm())


def test_tangent_pca_metric_variance_differs_from_coordinate_variance():
    metric = linear_metric([[1.0, 0.0], [0.0, 10.0]])
    z = torch.tensor([[-1.0, 0.1], [1.0, -0.1], [-0.5, -0.2], [0.5, 0.2]], dtype=F64)
    out = learning.tangent_pca(metric, z)  # base: the Fréchet mean, here (0, 0)
    torch.testing.assert_close(out.base_point, torch.zeros(2, dtype=F64), rtol=0, atol=1e-6)
    c = torch.cov(z.T)
    want_coord = torch.linalg.eigvalsh(c).flip(0)
    a = torch.diag(torch.tensor([1.0, 10.0], dtype=F64))
    want_metric = torch.linalg.eigvalsh(a @ c @ a).flip(0)
    torch.testing.assert_close(out.explained_variance, want_coord, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(
        out.metric_variance_ratio, want_metric / want_metric.sum(), rtol=1e-5, atol=1e-8
    )
    assert float(out.explained_variance_ratio[0]) > 0.9  # z1 in coordinates ...
    assert float(out.metric_variance_ratio[0]) < 0.95 * float(out.explained_variance_ratio[0])
    # principal geodesics of a constant metric are straight lines through the base point
    g = out.geodesics[0]
    cross = (g[:, 0] - g[0, 0]) * (g[-1, 1] - g[0, 1]) - (g[:, 1] - g[0, 1]) * (g[-1, 0] - g[0, 0])
    assert float(cross.abs().max()) < 1e-8


# ---------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    metric = linear_metric([[1.0, 0.0], [0.0, 1.0]])
    z, y = blobs([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(TypeError, match="PullbackMetric"):
        learning.class_frechet_means(nn.Linear(2, 2), z, y)
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 2\)"):
        learning.class_frechet_means(metric, z[:, :1], y)
    with pytest.raises(ValueError, match="codes is empty"):
        learning.class_frechet_means(metric, z[:0], y[:0])
    with pytest.raises(ValueError, match="NaN"):
        learning.class_frechet_means(metric, z * float("nan"), y)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        learning.class_frechet_means(metric, z, y[:5])
    with pytest.raises(ValueError, match="labels must be integers"):
        learning.class_frechet_means(metric, z, y.double())
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        learning.class_frechet_means(metric, z, y, max_iter=0)
    with pytest.raises(ValueError, match="n_clusters"):
        learning.kmeans_comparison(metric, z, y, n_clusters=7)
    with pytest.raises(ValueError, match="init must have n_clusters = 2 rows"):
        learning.kmeans_comparison(metric, z, y, init=z[:3])
    with pytest.raises(ValueError, match="n_neighbors"):
        learning.knn_comparison(metric, z, y, z, y, n_neighbors=7)
    with pytest.raises(ValueError, match=r"test_codes must have shape"):
        learning.knn_comparison(metric, z, y, z[0], y)
    with pytest.raises(ValueError, match="at least 2 codes"):
        learning.tangent_pca(metric, z[:1])
    with pytest.raises(ValueError, match="n_components"):
        learning.tangent_pca(metric, z, n_components=3)
    with pytest.raises(ValueError, match="base_point must have shape"):
        learning.tangent_pca(metric, z, torch.zeros(3))
    with pytest.raises(TypeError, match="latent_space"):
        learning.class_frechet_means(metric, z, y, space=object())
    with pytest.raises(ValueError, match="same length"):
        learning.adjusted_rand_index([0, 1], [0, 1, 1])


# ---------------------------------------------------------------------------- adapter fixes
def test_log_of_nearly_coincident_points_is_their_difference_without_solving():
    space = latent_space(sphere_metric(), log_options={"method": "lm", "max_iter": 1})
    p = torch.tensor([[0.3, -0.2], [0.3, -0.2], [0.1, 0.4]], dtype=F64)
    q = p + torch.tensor([[0.0, 0.0], [1e-12, -2e-12], [0.0, 0.0]], dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_iter=1 would warn if a solve ran
        v = space.metric.log(q, p)
    torch.testing.assert_close(v, q - p, rtol=0, atol=0)


def test_svd_flip_accepts_tensors_like_sklearn_does_arrays():
    from geomstats.learning import pca  # patched by pullback_geom.geomstats
    from sklearn.utils.extmath import svd_flip

    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    u, s, vt = torch.linalg.svd(x, full_matrices=False)
    u_t, v_t = pca.svd_flip(u.clone(), vt.clone())
    u_n, v_n = svd_flip(u.numpy().copy(), vt.numpy().copy())
    torch.testing.assert_close(u_t, torch.from_numpy(u_n))
    torch.testing.assert_close(v_t, torch.from_numpy(v_n))
    assert not torch.equal(u_t, u)  # this draw needs a flip: the test can fail
