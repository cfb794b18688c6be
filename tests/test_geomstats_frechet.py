"""geomstats' ``FrechetMean`` and ``RiemannianKMeans`` run the joint Fréchet mean on a
latent space, unchanged user code; geomstats' gradient descent stays reachable by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

# isort: off
# The adapter must be imported before geomstats: it selects geomstats' pytorch backend.
import pullback_geom.geomstats as pg_geomstats
from geomstats.learning.frechet_mean import FrechetMean, GradientDescent
from geomstats.learning.kmeans import RiemannianKMeans
# isort: on

from oracles import sphere_karcher_mean

from pullback_geom import PullbackMetric, vae
from pullback_geom.geomstats.learning import JointFrechetMean, PullbackFrechetMean
from pullback_geom.surfaces import InverseStereographic

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def sphere_space():
    return pg_geomstats.latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))


def tanh_space():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 6)).double()
    return pg_geomstats.latent_space(PullbackMetric(net.requires_grad_(False)))


def cloud(n: int = 8) -> Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.tensor([0.2, -0.1], dtype=F64) + 0.6 * torch.randn(n, 2, generator=g, dtype=F64)


def frechet_function(space, mean: Tensor, x: Tensor) -> float:
    """The Fréchet function measured by the adapter's ``dist``, the same for every mean."""
    return float(space.metric.dist(mean, x).square().mean())


def test_frechet_mean_of_a_latent_space_is_the_joint_solver():
    space = sphere_space()
    estimator = FrechetMean(space)
    assert isinstance(estimator, PullbackFrechetMean) and estimator.method == "joint"
    assert isinstance(estimator.optimizer, JointFrechetMean)
    # A ring of 20 points at 0.6 rad about a known centre (rotated copies about its axis).
    c = torch.tensor([0.3, -0.5, -0.4], dtype=F64)
    c = c / c.norm()
    u = torch.linalg.cross(c, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    u = u / u.norm()
    v = torch.linalg.cross(c, u)
    phi = torch.arange(20, dtype=F64) * 2 * math.pi / 20
    ring = math.cos(0.6) * c + math.sin(0.6) * (
        torch.cos(phi)[:, None] * u + torch.sin(phi)[:, None] * v
    )
    x = ring[:, :2] / (1 - ring[:, 2:])
    # The criterion is on the energy: the mean's error scales as sqrt(tol).
    mean = estimator.set(tol=1e-13).fit(x).estimate_
    assert mean.shape == (2,) and mean.dtype == F64
    assert float((mean - c[:2] / (1 - c[2])).norm()) < 1e-6
    assert estimator.result_ is not None and bool(estimator.result_.converged)
    # points in float32 come back in float32
    assert estimator.fit(x.float()).estimate_.dtype == torch.float32


def test_joint_mean_is_no_worse_than_geomstats_gradient_descent():
    space = tanh_space()
    x = cloud()
    joint = FrechetMean(space).fit(x)
    descent = FrechetMean(space, method="default")
    assert isinstance(descent.optimizer, GradientDescent)  # geomstats' own, by name
    with pytest.raises(ValueError, match="'joint'.*'default', 'adaptive', 'batch'.*jiont"):
        FrechetMean(space, method="jiont")
    descent.set(init_point=x.mean(0), epsilon=1e-10, max_iter=64).fit(x)
    assert descent.result_ is None
    ours, theirs = (frechet_function(space, e.estimate_, x) for e in (joint, descent))
    assert ours <= theirs * (1 + 1e-4)
    assert ours < frechet_function(space, x.mean(0), x)
    # weights reach the solver: a point of weight 2 is that point twice
    weights = torch.ones(8, dtype=F64)
    weights[0] = 2
    weighted = FrechetMean(space).fit(x, weights=weights).estimate_
    twice = FrechetMean(space).fit(torch.cat([x, x[:1]])).estimate_
    torch.testing.assert_close(weighted, twice, rtol=0, atol=1e-6)


def two_clusters(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(8)
    centers = torch.tensor([[0.8, 0.2], [-0.7, -0.3]], dtype=F64)
    x = centers.repeat_interleave(n, 0) + 0.08 * torch.randn(2 * n, 2, generator=g, dtype=F64)
    return x, torch.arange(2).repeat_interleave(n)


class Counting:
    """Counts the calls of a function it wraps."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_kmeans_runs_batched_steps_and_keeps_geomstats_attributes(monkeypatch):
    import pullback_geom.geomstats.learning as learning

    space = tanh_space()
    x, labels = two_clusters()
    dist = Counting(space.metric.dist)
    solve = Counting(learning.frechet_mean)
    monkeypatch.setattr(space.metric, "dist", dist)
    monkeypatch.setattr(learning, "frechet_mean", solve)
    kmeans = RiemannianKMeans(space, n_clusters=2, init=x[[0, -1]].clone()).fit(x)
    assert torch.equal(torch.as_tensor(kmeans.labels_), labels)
    assert kmeans.cluster_centers_.shape == (2, 2) and kmeans.init_cluster_centers_.shape == (2, 2)
    assert float(kmeans.inertia_) > 0
    # The first assignment: the centres' distance, then one dist per centre at most; each
    # iteration: one joint solve for both clusters, one dist for the centres' move and at
    # most one for the pairs the bounds leave open (geomstats: two per centre and a mean
    # per cluster).
    assert solve.calls >= 1 and dist.calls <= 3 + 2 * solve.calls
    # Each centre is its cluster's Fréchet mean: both solved in float32 (dist_dtype) to
    # its tol, 1e-7 of the energy, which locates a mean to ~3e-4 of the clusters' spread.
    for i in range(2):
        alone = FrechetMean(space).fit(x[labels == i]).estimate_
        torch.testing.assert_close(kmeans.cluster_centers_[i], alone, rtol=0, atol=1e-4)
    assert torch.equal(torch.as_tensor(kmeans.predict(x)), labels)


def test_kmeans_assignments_by_bounds_equal_the_full_ones():
    from pullback_geom.geomstats.kmeans import _assign, _dist, _first_assignment

    space = tanh_space()
    metric = space.metric
    g = torch.Generator().manual_seed(5)
    x = 1.2 * torch.randn(40, 2, generator=g, dtype=F64)
    centers = x[[0, 1, 17, 30]].clone()
    full = _dist(metric, centers[:, None], x[None]).mT  # (n, k)
    first = _first_assignment(metric, centers, x)
    assert torch.equal(first.argmin(1), full.argmin(1))
    # Entries are the distances where solved (in float32, batch by batch: to its rounding),
    # lower bounds elsewhere, and some were skipped.
    assert bool((first <= full * (1 + 1e-4)).all())
    assert bool((first < full * (1 - 1e-2)).any())
    # After the centres move: bounds from the old distances minus the moves.
    moved_centers = centers + 0.05
    moved = _dist(metric, centers, moved_centers)
    after = _dist(metric, moved_centers[:, None], x[None]).mT
    labels = first.argmin(1)
    rows = torch.arange(40)
    assigned = _assign(metric, moved_centers, x, first - moved, after[rows, labels], labels)
    assert torch.equal(assigned.argmin(1), after.argmin(1))
    assert bool((assigned <= after * (1 + 1e-4)).all())


def test_kmeans_with_a_gradient_descent_mean_runs_geomstats_loop(monkeypatch):
    import pullback_geom.geomstats.learning as learning

    space = tanh_space()
    x, labels = two_clusters(4)
    kmeans = RiemannianKMeans(space, n_clusters=2, init=x[[0, -1]].clone())
    kmeans.mean_estimator = FrechetMean(space, method="default").set(max_iter=8)
    solve = Counting(learning.frechet_mean)
    monkeypatch.setattr(learning, "frechet_mean", solve)
    kmeans.fit(x)
    assert torch.equal(torch.as_tensor(kmeans.labels_), labels)
    assert solve.calls == 0


def test_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="joint"):
        FrechetMean(sphere_space(), method="newton")


def test_tangent_pca_takes_the_joint_solves_velocities(monkeypatch):
    from geomstats.learning.pca import TangentPCA

    space = tanh_space()
    x = cloud(12)
    calls = []
    log = space.metric.log
    monkeypatch.setattr(space.metric, "log", lambda *a, **k: calls.append(1) or log(*a, **k))
    pca = TangentPCA(space, n_components=2).fit(x)
    # No logarithm solved: the tangent vectors are the joint solve's initial velocities.
    assert not calls
    result = pca.mean_estimator.result_
    assert result is not None and bool(result.converged)
    torch.testing.assert_close(pca.mean_estimator.estimate_, result.mean.to(F64))
    # geomstats' own fit at the same base point, by its logarithms: the same components to
    # the discrete logarithm's O(1 / N) (16 nodes).
    same = TangentPCA(space, n_components=2).fit(x, base_point=pca.mean_estimator.estimate_)
    assert calls
    cos = (torch.as_tensor(pca.components_) * torch.as_tensor(same.components_)).sum(-1).abs()
    assert bool((cos > 0.99).all())
    ratio = torch.as_tensor(pca.explained_variance_) / torch.as_tensor(same.explained_variance_)
    assert bool(((ratio - 1).abs() < 0.05).all())


def test_smooth_decoders_get_the_extrapolated_mean_and_relu_ones_the_discrete_one():
    """``FrechetMean`` extrapolates the mean to zero node spacing where the decoder is
    smooth (on the sphere, against Karcher's iteration with closed-form logarithms), and
    solves the discrete problem once on a ReLU decoder."""
    g = torch.Generator().manual_seed(3)
    y = torch.tensor([0.3, -0.5, -0.4], dtype=F64) + 0.6 * torch.randn(9, 3, generator=g, dtype=F64)
    y = y / y.norm(dim=1, keepdim=True)
    # stereographic projection from the north pole: the inverse of the decoder
    truth, x = (u[..., :2] / (1 - u[..., 2:]) for u in (sphere_karcher_mean(y), y))
    space = sphere_space()
    smooth = FrechetMean(space).fit(x)
    assert smooth.result_.curves.shape[-2] == 21  # the finer of the two solves
    plain = FrechetMean(space).set(extrapolate=False).fit(x)
    assert plain.result_.curves.shape[-2] == 16
    error, error_extrapolated = (float((e.estimate_ - truth).norm()) for e in (plain, smooth))
    assert error_extrapolated < error / 10, (error, error_extrapolated)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 24), nn.ReLU(), nn.Linear(24, 6)).double()
    relu = pg_geomstats.latent_space(PullbackMetric(net.requires_grad_(False)))
    assert FrechetMean(relu).fit(cloud()).result_.curves.shape[-2] == 16
    with pytest.raises(ValueError, match="extrapolate"):
        JointFrechetMean(extrapolate="always")


def test_relu_decoders_get_the_polished_mean():
    """On a ReLU decoder the joint solve's chord energies have local minima ~0.01 apart;
    ``FrechetMean`` then descends the Fréchet function measured by the curves' lengths.
    Bundled ReLU model, 50 codes of a digit 3: the joint mean's function, by ``dist``, is
    2e-3 above the polished one's (and above geomstats' gradient descent's mean)."""
    latents = vae.load_latents(vae.default_checkpoint("bernoulli"))
    space = pg_geomstats.latent_space(vae.load_default("bernoulli"))
    x = latents.codes[latents.labels == 3][:50].double()
    polished = FrechetMean(space).fit(x)
    plain = FrechetMean(space).set(polish=False).fit(x)
    assert bool(polished.result_.converged) and bool(plain.result_.converged)
    ours, joint = (frechet_function(space, e.estimate_, x) for e in (polished, plain))
    assert ours < joint * (1 - 5e-4), (ours, joint)
    # the smooth sphere is extrapolated, not polished
    assert FrechetMean(sphere_space()).fit(cloud()).result_.curves.shape[-2] == 21
    with pytest.raises(ValueError, match="polish"):
        JointFrechetMean(polish="always")
