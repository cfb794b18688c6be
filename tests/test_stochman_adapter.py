"""The stochman adapter against closed forms: the unit sphere and a linear decoder.

References come from ``oracles`` (written out independently of the package) or from
textbook formulas: the great-circle distance and exponential map of the unit sphere,
``||A (p - q)||`` for a linear decoder.
"""

import networkx as nx
import pytest
import stochman
import torch
from oracles import F64, great_circle, sphere_christoffel, sphere_metric, stereographic
from stochman.curves import BasicCurve, CubicSpline
from stochman.discretized_manifold import DiscretizedManifold
from stochman.manifold import Manifold
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.stochman import DecoderManifold
from pullback_geom.surfaces import InverseStereographic, LinearDecoder

# Pairs whose great circle stays in |z| < 2 (the north pole is at latent infinity, where a
# 5-node spline cannot follow the geodesic).
P0 = torch.tensor([[0.3, -0.2], [0.0, 0.0], [-0.8, 0.5], [0.9, -0.6]], dtype=F64)
P1 = torch.tensor([[-0.9, 1.1], [1.4, 1.4], [0.7, 0.6], [-0.4, -0.9]], dtype=F64)
A = torch.tensor([[1.0, 0.5], [0.0, 2.0], [1.0, -1.0], [0.3, 0.2]], dtype=F64)


@pytest.fixture(scope="module")
def sphere() -> DecoderManifold:
    return DecoderManifold(PullbackMetric(InverseStereographic(), latent_dim=2))


@pytest.fixture(scope="module")
def plane() -> DecoderManifold:
    return DecoderManifold(PullbackMetric(LinearDecoder(A)))


def sphere_exp(p: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Closed-form geodesic on the sphere, ``(T, 3)``: ``cos(|w| t) x0 + sin(|w| t) w / |w|``
    with ``x0 = f(p)`` and ``w = J(p) v`` (by reverse-mode autograd on the oracle)."""
    x0 = stereographic(p[None])[0]
    w = torch.autograd.functional.jvp(lambda z: stereographic(z[None])[0], p, v)[1]
    speed = w.norm()
    return torch.cos(speed * t)[:, None] * x0 + torch.sin(speed * t)[:, None] * (w / speed)


# ---------------------------------------------------------------- construction
def test_import_and_subclass(sphere):
    import pullback_geom.stochman as adapter

    # ``import stochman`` inside the adapter is the library, not the adapter itself.
    assert adapter.Manifold is stochman.manifold.Manifold
    assert isinstance(sphere, Manifold)
    assert sphere.latent_dim == 2
    assert "DecoderManifold" in repr(sphere)


def test_bare_decoder_and_bad_arguments():
    manifold = DecoderManifold(InverseStereographic(), latent_dim=2)
    z = torch.tensor([[0.5, -0.25]], dtype=F64)
    torch.testing.assert_close(manifold.metric(z), sphere_metric(z))
    lam = DecoderManifold(lambda x: torch.cat([x, x.square().sum(-1, keepdim=True)], -1))
    assert lam.metric(z).shape == (1, 2, 2)
    with pytest.raises(TypeError, match="PullbackMetric or a decoder"):
        DecoderManifold(3.0)
    with pytest.raises(TypeError, match="bare decoder"):
        DecoderManifold(PullbackMetric(InverseStereographic()), latent_dim=2)


# ---------------------------------------------------------------- the metric
def test_metric_inner_volume_closed_form(sphere):
    z = 1.2 * torch.randn(7, 2, dtype=F64)
    u, v = torch.randn(7, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    g = sphere_metric(z)
    torch.testing.assert_close(sphere.metric(z), g, rtol=1e-12, atol=1e-14)
    assert sphere.metric(z[0]).shape == (1, 2, 2)  # stochman concatenates single points
    dot, metric = sphere.inner(z, u, v, return_metric=True)
    torch.testing.assert_close(dot, torch.einsum("bi,bij,bj->b", u, g, v))
    torch.testing.assert_close(metric, g)
    lam = 4 / (1 + z.square().sum(-1)) ** 2  # sqrt(det(lam I_2)) = lam
    torch.testing.assert_close(sphere.log_volume(z), lam.log())
    torch.testing.assert_close(sphere.volume(z), lam)


def test_geodesic_system_closed_form(sphere):
    z = 1.2 * torch.randn(7, 2, dtype=F64)
    v = torch.randn(7, 2, dtype=F64)
    expected = -torch.einsum("bkij,bi,bj->bk", sphere_christoffel(z), v, v)
    torch.testing.assert_close(sphere.geodesic_system(z, v), expected, rtol=1e-10, atol=1e-12)
    # stochman's shooting_geodesic flattens k starting points into one k*d-dim row.
    flat = sphere.geodesic_system(z.reshape(1, -1), v.reshape(1, -1))
    torch.testing.assert_close(flat, expected.reshape(1, -1), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="multiple of the latent dimension"):
        sphere.geodesic_system(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 3, dtype=F64))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_base_class_geodesic_system_crashes_ours_does_not(sphere):
    """Why the override exists: stochman's own version ends in the removed torch.solve."""
    z = torch.tensor([[0.3, -0.2], [0.5, 0.1]], dtype=F64)
    v = torch.tensor([[0.5, 0.8], [-0.2, 0.4]], dtype=F64)
    with pytest.raises((RuntimeError, AttributeError), match="solve"):
        Manifold.geodesic_system(sphere, z, v)
    assert torch.isfinite(sphere.geodesic_system(z, v)).all()


# ---------------------------------------------------------------- curves
def test_curve_energy_and_length(sphere):
    curve = torch.randn(3, 9, 2, dtype=F64)
    x = stereographic(curve.reshape(-1, 2)).reshape(3, 9, 3)
    steps = x.diff(dim=1)
    energy = 8 * steps.square().sum((1, 2))
    torch.testing.assert_close(sphere.curve_energy(curve, reduction="none"), energy)
    torch.testing.assert_close(sphere.curve_energy(curve), energy.sum())
    torch.testing.assert_close(sphere.curve_energy(curve, reduction="mean"), energy.mean())
    torch.testing.assert_close(sphere.curve_length(curve), steps.norm(dim=-1).sum(-1))
    with pytest.raises(ValueError, match="reduction"):
        sphere.curve_energy(curve, reduction="max")
    one = curve[0].clone()
    assert sphere.curve_length(one).shape == (1,)  # DiscretizedManifold.fit iterates over it
    assert sphere.curve_energy(one, reduction=None).shape == (1,)
    assert one.shape == (9, 2)  # not unsqueeze_'d in place like stochman's base class


def test_curve_objects_are_evaluated(sphere):
    spline = CubicSpline(P0[:2], P1[:2])
    t = torch.linspace(0, 1, 100, dtype=F64)
    assert isinstance(spline, BasicCurve)
    torch.testing.assert_close(sphere.curve_length(spline), sphere.curve_length(spline(t)))
    torch.testing.assert_close(sphere.curve_energy(spline), sphere.curve_energy(spline(t)))


def test_curve_energy_is_differentiable(sphere):
    curve = torch.randn(2, 6, 2, dtype=F64, requires_grad=True)
    sphere.curve_energy(curve).backward()
    assert curve.grad is not None and torch.isfinite(curve.grad).all()
    assert curve.grad.abs().sum() > 0


# ---------------------------------------------------------------- geodesics on the sphere
def test_shooting_geodesic_is_the_great_circle(sphere):
    p = torch.tensor([0.3, -0.2], dtype=F64)
    v = torch.tensor([0.5, 0.7], dtype=F64)  # |v|_G = 1.52
    t = torch.linspace(0, 1, 21, dtype=F64)
    c, dc = sphere.shooting_geodesic(p, v, t)
    assert c.shape == dc.shape == (21, 2, 1) and c.dtype == F64
    err = (stereographic(c[:, :, 0]) - sphere_exp(p, v, t)).norm(dim=-1).max()
    assert err < 1e-4
    speed = sphere.inner(c[:, :, 0], dc[:, :, 0], dc[:, :, 0]).sqrt()
    torch.testing.assert_close(speed, speed[:1].expand(21), rtol=1e-4, atol=0)


def test_batched_shooting_and_expmap(sphere):
    p = torch.tensor([[0.3, -0.2], [-0.5, 0.4], [1.0, 0.2]], dtype=F64)
    v = torch.tensor([[0.5, 0.7], [0.3, -0.6], [-0.8, 0.1]], dtype=F64)
    t = torch.linspace(0, 1, 21, dtype=F64)
    c, _ = sphere.shooting_geodesic(p, v, t)  # stochman flattens the batch: (T, 3 * 2, 1)
    c = c.reshape(21, 3, 2)
    for k in range(3):
        err = (stereographic(c[:, k]) - sphere_exp(p[k], v[k], t)).norm(dim=-1).max()
        assert err < 1e-4
    # expmap: stochman's default float32 5-point time grid on float64 points.
    end = sphere.expmap(p[0], v[0])
    assert end.shape == (1, 2) and end.dtype == F64
    exact = sphere_exp(p[0], v[0], torch.ones(1, dtype=F64))
    assert (stereographic(end) - exact).norm() < 1e-2


@pytest.mark.parametrize("k", range(4))
def test_connecting_geodesic_length(sphere, k):
    p0, p1 = P0[k : k + 1], P1[k : k + 1]
    curve, _ = sphere.connecting_geodesic(p0, p1)
    t = torch.linspace(0, 1, 400, dtype=F64)
    with torch.no_grad():
        pts = curve(t)
        length = sphere.curve_length(pts)
    torch.testing.assert_close(pts[0], p0[0])
    torch.testing.assert_close(pts[-1], p1[0])
    truth = great_circle(p0, p1)
    # Measured: relative errors 2.5e-5, 1.3e-6, 3.3e-5, 2.7e-5 (stochman's 5-node spline,
    # Adam, 150 steps on a 20-point energy).
    assert float((length - truth).abs() / truth) < 1e-3
    # The decoded curve lies in the plane of its great circle.
    normal = torch.linalg.cross(stereographic(p0), stereographic(p1))
    normal = normal / normal.norm()
    assert (stereographic(pts) @ normal[0]).abs().max() < 1e-2


def test_dist2_and_its_gradient(sphere):
    p0, p1 = P0.clone().requires_grad_(), P1.clone().requires_grad_()
    d2 = sphere.dist2(p0, p1)
    assert d2.shape == (4,) and d2.dtype == F64
    truth = great_circle(P0, P1).square()
    torch.testing.assert_close(d2.detach(), truth, rtol=1e-3, atol=0)  # measured <= 5.9e-5
    d2.sum().backward()
    q0, q1 = P0.clone().requires_grad_(), P1.clone().requires_grad_()
    great_circle(q0, q1).square().sum().backward()
    for ours, exact in ((p0.grad, q0.grad), (p1.grad, q1.grad)):
        # The derivative of the decoded polygon's length: measured within 0.55 % (the
        # first step times G(p) was 5.8 % off).
        rel = (ours - exact).norm(dim=-1) / exact.norm(dim=-1)
        assert rel.max() < 0.015


def test_dist2_broadcasts_a_single_point(sphere):
    p0 = P0[0].clone().requires_grad_()  # (d,) against a batch
    d2 = sphere.dist2(p0, P1[:2])
    assert d2.shape == (2,)
    torch.testing.assert_close(d2, great_circle(P0[:1], P1[:2]).square(), rtol=1e-3, atol=0)
    d2.sum().backward()
    assert p0.grad.shape == (2,)


def test_dist2_of_an_empty_batch_and_of_coincident_points(sphere):
    empty = torch.zeros(0, 2, dtype=F64, requires_grad=True)
    d2 = sphere.dist2(empty, empty.detach())
    d2.sum().backward()
    assert d2.shape == (0,) and empty.grad.shape == (0, 2)
    p = P0[:2].clone().requires_grad_()
    d2 = sphere.dist2(p, P0[:2])
    d2.sum().backward()
    assert bool((d2 == 0).all()) and bool((p.grad == 0).all())  # zero, not NaN


def test_dist2_solves_pairs_whose_two_starts_disagree_as_geomstats_dist_does():
    """``basin_tol``: in a batch of 64 random pairs of the bundled ReLU model, one pair's
    graph start (the batch's graph) leads to a local minimum 2 % longer than its geodesic;
    solved from its straight line too, and again where the two disagree, it is not."""
    from pullback_geom import vae
    from pullback_geom.geodesics.pairwise import reference_distances

    codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes.to(F64)
    i, j = torch.randint(0, len(codes), (2, 64), generator=torch.Generator().manual_seed(0))
    p, q = codes[i], codes[j]
    manifold = DecoderManifold(vae.load_default("bernoulli"))
    plain = manifold.dist2(p, q, basin_tol=None).sqrt()[30]
    resolved = manifold.dist2(p, q).sqrt()[30]
    ref = reference_distances(manifold._pullback64, p[30:31], q[30:31])[0]
    assert float((plain - ref) / ref) > 1e-2
    assert abs(float((resolved - ref) / ref)) < 5e-3


def test_dist2_solves_bent_curves_again_as_geomstats_dist_does():
    """Long pairs on the bundled ReLU model: 16 nodes cannot follow their geodesics
    across the creases; ``dist2`` solves the bent ones again on 31 (``bend_tol``), and its
    gradient comes from the curve it measured."""
    from pullback_geom import vae
    from pullback_geom.geodesics import connecting_geodesic
    from pullback_geom.geodesics.energy import BASIN_TOL, BEND_TOL, DISTANCE_TOL

    latents = vae.load_latents(vae.default_checkpoint("bernoulli"))
    codes = latents.codes.to(F64)
    batch = torch.cat([codes[latents.labels == c][:50] for c in (0, 1, 7)])
    q = batch[(batch - batch[7]).norm(dim=-1).argsort(descending=True)[:8]]
    p = batch[7].expand_as(q).clone().requires_grad_()
    manifold = DecoderManifold(vae.load_default("bernoulli"))
    plain = manifold.dist2(p.detach(), q, bend_tol=None, basin_tol=None)
    d2 = manifold.dist2(p, q)
    assert bool((d2 <= plain).all())
    shorter = (plain - d2) / plain > 1e-3
    assert bool(shorter.any())
    solved = connecting_geodesic(
        manifold._pullback64, p.detach(), q, method="lm", bend_tol=BEND_TOL,
        basin_tol=BASIN_TOL, tol=DISTANCE_TOL, warn=False,
    )  # fmt: skip
    assert solved.info["next_to_ends"].shape == (len(q), 2, 2)
    length, next_p = solved.length, solved.info["next_to_ends"][:, 0]
    torch.testing.assert_close(d2.detach(), length.square())
    d2.sum().backward()
    # -2 L J(p)^T u, u the unit chord to the measured curve's decoded next node.
    metric = manifold._pullback64
    chord = metric.evaluator.embed(next_p) - metric.evaluator.embed(p.detach())
    pull = (
        metric.jacobian(p.detach()).transpose(-1, -2)
        @ (chord / chord.norm(dim=-1, keepdim=True))[..., None]
    )
    torch.testing.assert_close(p.grad, -2 * length[:, None] * pull[..., 0])


# ---------------------------------------------------------------- a linear decoder
def test_linear_decoder_straight_geodesics(plane):
    p0 = torch.tensor([[0.2, -0.4], [-1.0, 0.5]], dtype=F64)
    p1 = torch.tensor([[1.1, 0.9], [0.3, -0.7]], dtype=F64)
    torch.testing.assert_close(plane.metric(p0), (A.T @ A).expand(2, 2, 2))
    assert plane.geodesic_system(p0, p1).abs().max() < 1e-12
    curve, _ = plane.connecting_geodesic(p0, p1)
    t = torch.linspace(0, 1, 50, dtype=F64)
    with torch.no_grad():
        pts = curve(t)  # (2, 50, 2)
    chord = p1 - p0
    offset = pts - p0[:, None]
    cross = offset[..., 0] * chord[:, None, 1] - offset[..., 1] * chord[:, None, 0]
    assert (cross.abs() / chord.norm(dim=-1, keepdim=True)).max() < 1e-6  # on the segment
    dist = (chord @ A.T).norm(dim=-1)
    torch.testing.assert_close(plane.curve_length(pts), dist, rtol=1e-8, atol=0)
    torch.testing.assert_close(plane.dist2(p0, p1), dist.square(), rtol=1e-8, atol=0)
    c, _ = plane.shooting_geodesic(p0[0], chord[0], torch.linspace(0, 1, 5, dtype=F64))
    torch.testing.assert_close(c[-1, :, 0], p1[0], rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
def test_dist2_gradient_sign_where_stochman_flips_it():
    """stochman's own dist2 returns ``+2 G log`` (the wrong sign); ours ``-2 G log``."""
    a32 = A.float()
    manifold = DecoderManifold(PullbackMetric(LinearDecoder(a32)))
    p0 = torch.tensor([[0.3, -0.2]], requires_grad=True)
    p1 = torch.tensor([[-0.9, 1.1]], requires_grad=True)
    exact = 2 * (p0 - p1).detach() @ (a32.T @ a32)  # d/dp0 ||A (p0 - p1)||^2
    manifold.dist2(p0, p1).sum().backward()
    # Ours is the core's energy curve, a straight line for a linear decoder: exact up to
    # float32 rounding.
    torch.testing.assert_close(p0.grad, exact, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(p1.grad, -exact, rtol=1e-4, atol=1e-4)
    # stochman's gradient comes from a float32 Adam spline fit, whose magnitude varies by a
    # few per cent between machines; what matters here is its direction: the opposite one.
    q0, q1 = p0.detach().clone().requires_grad_(), p1.detach().clone().requires_grad_()
    Manifold.dist2(manifold, q0, q1).sum().backward()
    cosine = torch.nn.functional.cosine_similarity(q0.grad, exact)
    assert float(cosine) < -0.9


# ---------------------------------------------------------------- DiscretizedManifold
def test_discretized_manifold_fit_on_the_sphere(sphere):
    grid = [torch.linspace(-1, 1, 11), torch.linspace(-1, 1, 11)]  # float32, step 0.2
    dm = DiscretizedManifold()
    dm.fit(sphere, grid, batch_size=1024)
    assert dm.G.number_of_nodes() == 121
    nodes = torch.cartesian_prod(*grid)
    torch.testing.assert_close(dm.metric(nodes), sphere_metric(nodes), rtol=1e-4, atol=1e-5)
    # Grid nodes inside the unit disk: their great circles stay in the southern hemisphere,
    # i.e. inside the grid.
    a = torch.tensor([[-0.6, -0.4], [-0.8, 0.2], [0.0, -0.8]])
    b = torch.tensor([[0.6, 0.6], [0.8, -0.2], [0.2, 0.8]])
    truth = great_circle(a.double(), b.double())
    for k in range(3):
        graph = nx.shortest_path_length(
            dm.G, dm._grid_point(a[k]), dm._grid_point(b[k]), weight="weight"
        )
        # Paths along 8 grid directions overestimate by up to 1 / cos(22.5 deg) = 1.082;
        # measured 0.9-3.1 %.
        assert -0.01 < (graph - truth[k]) / truth[k] < 0.09
        curve, _ = dm.connecting_geodesic(a[k], b[k])
        with torch.no_grad():
            length = sphere.curve_length(curve(torch.linspace(0, 1, 200)))
        # stochman fits a 5-node spline to the zig-zag graph path: measured 2.1-4.2 % long.
        assert abs(float(length) - truth[k]) / truth[k] < 0.06


def test_discretized_manifold_fit_with_a_float64_decoder(plane):
    """stochman builds float32 grid curves; they are cast to the float64 decoder and back."""
    grid = [torch.linspace(-1, 1, 6), torch.linspace(-1, 1, 6)]
    dm = DiscretizedManifold()
    dm.fit(plane, grid, batch_size=1024)
    g = (A.T @ A).float()
    node = torch.tensor([[0.2, -0.6]])
    torch.testing.assert_close(dm.metric(node), g[None], rtol=1e-4, atol=1e-4)
    step = 0.4 * (A[:, 0] + A[:, 1]).norm()  # a diagonal edge
    assert abs(dm.G.edges[0, 7]["weight"] - step) < 1e-5
    corner = nx.shortest_path_length(dm.G, 0, 35, weight="weight")
    assert abs(corner - 5 * step) < 1e-4  # straight along the diagonal: ||A (2, 2)||


# ---------------------------------------------------------------- dtype and gradients
def test_dtype_cast_and_strict_mode():
    decoder = LinearDecoder(A)  # float64 parameters
    curve = torch.randn(2, 5, 2)  # float32
    manifold = DecoderManifold(PullbackMetric(decoder))
    length = manifold.curve_length(curve)
    assert length.dtype == torch.float32
    exact = (curve.double().diff(dim=1) @ A.T).norm(dim=-1).sum(-1)
    torch.testing.assert_close(length, exact.float())
    assert manifold.geodesic_system(curve[0], curve[1]).dtype == torch.float32
    strict = DecoderManifold(PullbackMetric(decoder), cast=False)
    with pytest.raises(TypeError, match="float32"):
        strict.curve_length(curve)


def test_detach_keeps_decoder_grads_clean():
    decoder = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    p0 = torch.tensor([[0.1, 0.2]], dtype=F64)
    p1 = torch.tensor([[0.6, -0.3]], dtype=F64)
    DecoderManifold(PullbackMetric(decoder)).connecting_geodesic(p0, p1)
    assert all(w.grad is None for w in decoder.parameters())
    DecoderManifold(PullbackMetric(decoder), detach=False).connecting_geodesic(p0, p1)
    assert all(w.grad is not None for w in decoder.parameters())


def test_expmap_inverts_logmap_and_a_model_is_accepted(sphere):
    v = sphere.logmap(P0, P1)
    assert v.shape == (4, 2) and v.dtype == F64
    # The discrete log's default tol (log_map(method="discrete")), 1e-6 (1 + |p - q|).
    scale = 1 + (P1 - P0).norm(dim=-1)
    assert bool(((sphere.expmap(P0, v) - P1).norm(dim=-1) <= 1e-6 * scale).all())
    # |log|_G approaches the great-circle angle (discrete log, K = 16: O(1 / K^2))
    rel = (sphere.inner(P0, v, v).sqrt() - great_circle(P0, P1)) / great_circle(P0, P1)
    assert float(rel.abs().max()) < 0.05

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Linear(784, 2)
            self.decoder = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh())

        def pullback_metric(self) -> PullbackMetric:
            return PullbackMetric(self.decoder)

    assert DecoderManifold(Model()).latent_dim == 2
