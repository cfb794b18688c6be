"""Geodesic solvers against closed forms: the unit sphere and linear decoders."""

from __future__ import annotations

import pytest
import torch

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    GeodesicConvergenceWarning,
    connecting_geodesic,
    exp_map,
    geodesic_distance,
    integrate_geodesic,
    log_map,
)
from pullback_geom.geodesics._common import refined_length, spline_points
from pullback_geom.surfaces import InverseStereographic, LinearDecoder, sphere_distance

F64 = torch.float64


def _sphere_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs with |z| < 1.5 whose great circle stays inside the chart (angles < 1 rad apart)."""
    gen = torch.Generator().manual_seed(1)
    r1, r2 = 1.5 * torch.rand(2, n, 1, generator=gen, dtype=F64)
    a1 = 6.28 * torch.rand(n, 1, generator=gen, dtype=F64)
    a2 = a1 + 2 * torch.rand(n, 1, generator=gen, dtype=F64) - 1
    p = r1 * torch.cat([a1.cos(), a1.sin()], 1)
    q = r2 * torch.cat([a2.cos(), a2.sin()], 1)
    return p, q


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic())


def test_energy_solver_matches_great_circles(sphere):
    p, q = _sphere_pairs(12)
    result = connecting_geodesic(sphere, p, q, n_points=48)
    exact = sphere_distance(p, q)
    assert bool(result.converged.all())
    assert result.points.shape == (12, 48, 2)
    torch.testing.assert_close(result.length, exact, rtol=2e-4, atol=1e-6)
    # Discrete energy of a constant-speed curve is its chord length^2 up to discretisation.
    chord = sphere.curve_length(result.points).detach()
    torch.testing.assert_close(result.energy, chord**2, rtol=1e-6, atol=1e-9)
    # The nodes lie on the great circle: their sphere points are in the plane of p, q, 0.
    f = InverseStereographic()
    normal = torch.linalg.cross(f(p), f(q))
    off_plane = (f(result.points.reshape(-1, 2)).reshape(12, 48, 3) * normal[:, None]).sum(-1)
    assert off_plane.abs().max() < 1e-4


def test_energy_solver_error_shrinks_quadratically(sphere):
    p, q = _sphere_pairs(6)
    exact = sphere_distance(p, q)
    errs = [
        float(((connecting_geodesic(sphere, p, q, n_points=n).length - exact) / exact).abs().max())
        for n in (9, 17)
    ]
    assert errs[1] < errs[0] / 3


def test_exp_map_follows_great_circles(sphere):
    p, q = _sphere_pairs(8)
    v = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    v = v / sphere.norm(p, v)[:, None] * 1.2  # speed 1.2 on the sphere
    end = exp_map(sphere, p, v, method="rk4")
    torch.testing.assert_close(sphere_distance(p, end), torch.full((8,), 1.2, dtype=F64))
    path = integrate_geodesic(sphere, p, v, method="rk4", path=True, n_steps=20).path
    assert path.shape == (8, 21, 2)
    torch.testing.assert_close(path[:, -1], exp_map(sphere, p, v, method="rk4", n_steps=20))


def test_log_map_inverts_exp_and_gives_distances(sphere):
    p, q = _sphere_pairs(4)
    v = log_map(sphere, p, q, method="shooting")
    torch.testing.assert_close(exp_map(sphere, p, v, method="rk4"), q, atol=1e-8, rtol=0)
    torch.testing.assert_close(sphere.norm(p, v), sphere_distance(p, q), rtol=1e-6, atol=0)


def test_linear_decoder_geodesics_are_straight():
    a = torch.tensor([[2.0, 0.5], [0.0, 1.0], [1.0, -1.0]], dtype=F64)
    metric = PullbackMetric(LinearDecoder(a))
    p = torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=F64)
    q = torch.tensor([[1.0, 1.0], [-3.0, 0.5]], dtype=F64)
    result = connecting_geodesic(metric, p, q, n_points=10)
    t = torch.linspace(0, 1, 10, dtype=F64)[None, :, None]
    torch.testing.assert_close(result.points, p[:, None] + t * (q - p)[:, None])
    torch.testing.assert_close(result.length, ((q - p) @ a.T).norm(dim=-1))
    torch.testing.assert_close(log_map(metric, p, q, method="shooting"), q - p)


def test_distance_symmetric_and_zero_for_identical_points(sphere):
    p, q = _sphere_pairs(5)
    torch.testing.assert_close(
        geodesic_distance(sphere, p, q), geodesic_distance(sphere, q, p), rtol=1e-6, atol=1e-9
    )
    same = connecting_geodesic(sphere, p, p)
    assert torch.equal(same.length, torch.zeros(5, dtype=F64))
    assert bool(same.converged.all())


def test_single_pair_shapes(sphere):
    p, q = _sphere_pairs(1)
    result = connecting_geodesic(sphere, p[0], q[0], n_points=12)
    assert result.points.shape == (12, 2) and result.length.shape == ()
    assert log_map(sphere, p[0], q[0], method="shooting").shape == (2,)


def test_bad_input_is_named(sphere):
    p, q = _sphere_pairs(3)
    with pytest.raises(ValueError, match="same shape"):
        connecting_geodesic(sphere, p, q[:2])
    with pytest.raises(ValueError, match="NaN"):
        connecting_geodesic(sphere, p, torch.full_like(q, float("nan")))
    with pytest.raises(ValueError, match="n_points"):
        connecting_geodesic(sphere, p, q, n_points=2)
    with pytest.raises(ValueError, match="init_curve"):
        connecting_geodesic(sphere, p, q, n_points=8, init_curve=torch.zeros(3, 5, 2, dtype=F64))
    for bad in (0.0, -1e-3, float("nan"), "1e-3", True):
        with pytest.raises(ValueError, match="tol must be a positive number"):
            connecting_geodesic(sphere, p, q, tol=bad)
    with pytest.raises(ValueError, match="energy_tol must be a positive number"):
        connecting_geodesic(sphere, p, q, method="discrete", energy_tol=-1.0)


def test_non_convergence_is_reported(sphere):
    p, q = _sphere_pairs(3)
    with pytest.warns(GeodesicConvergenceWarning, match="did not converge"):
        result = connecting_geodesic(sphere, p, q, max_iter=1)
    assert not bool(result.converged.all())


def test_log_map_survives_diverging_shots_on_the_bundled_model():
    """Shooting on a trained ReLU decoder can diverge (float32 overflow): log_map must give
    the energy solution's velocity with a warning, not raise from deep inside."""
    from pullback_geom import vae

    model = vae.load_default("bernoulli")
    codes, labels = vae.load_latents(vae.default_checkpoint("bernoulli"))
    p = codes[(labels == 0).nonzero()[:4, 0]].float()
    q = codes[(labels == 1).nonzero()[:4, 0]].float()
    metric = model.pullback_metric()
    with pytest.warns(
        GeodesicConvergenceWarning,
        match="log_map: .* pairs did not converge with method='shooting'",
    ):
        v = log_map(metric, p, q, method="shooting", max_newton=3)
    assert v.shape == (4, 2) and bool(torch.isfinite(v).all())


def test_great_circle_arc_is_the_energy_solution(sphere):
    from pullback_geom.surfaces import great_circle_arc

    p, q = _sphere_pairs(1)
    arc = great_circle_arc(p[0], q[0], n=400)
    torch.testing.assert_close(arc[[0, -1]], torch.stack([p[0], q[0]]))
    torch.testing.assert_close(
        sphere.curve_length(arc), sphere_distance(p, q)[0], rtol=1e-5, atol=0
    )
    nodes = connecting_geodesic(sphere, p, q, n_points=33).points[0]
    # Every solver node lies on the closed-form arc (to its resolution).
    assert torch.cdist(nodes, arc).amin(1).max() < 5e-3


def test_distances_are_invariant_to_reparametrisation(sphere):
    """With g = f o phi (phi a nonlinear diffeomorphism of the latent plane), the geodesic
    distance between p and q under g equals that between phi(p) and phi(q) under f."""

    def phi(z: torch.Tensor) -> torch.Tensor:
        return 0.8 * z + 0.3 * torch.tanh(z) + 0.1

    reparam = PullbackMetric(lambda z: InverseStereographic()(phi(z)), latent_dim=2)
    p, q = _sphere_pairs(6)
    p, q = 0.6 * p, 0.6 * q
    d_g = geodesic_distance(reparam, p, q, n_points=48)
    d_f = geodesic_distance(sphere, phi(p), phi(q), n_points=48)
    torch.testing.assert_close(d_g, d_f, rtol=2e-4, atol=1e-8)
    torch.testing.assert_close(d_g, sphere_distance(phi(p), phi(q)), rtol=2e-4, atol=1e-8)


def test_spline_points_pass_through_the_nodes_and_keep_straight_lines_straight():
    gen = torch.Generator().manual_seed(3)
    curve = torch.randn(4, 7, 3, generator=gen, dtype=F64)
    fine = spline_points(curve, 5)
    assert fine.shape == (4, 31, 3)
    torch.testing.assert_close(fine[:, ::5], curve, rtol=0, atol=0)
    # Evenly spaced nodes on a line: the spline is that line, sampled evenly.
    t = torch.linspace(0, 1, 7, dtype=F64)[None, :, None]
    line = curve[:, :1] + t * (curve[:, -1:] - curve[:, :1])
    dense = curve[:, :1] + torch.linspace(0, 1, 31, dtype=F64)[None, :, None] * (
        curve[:, -1:] - curve[:, :1]
    )
    torch.testing.assert_close(spline_points(line, 5), dense, rtol=0, atol=1e-12)
    # Coincident nodes give that point, exactly.
    same = curve[:, :1].expand(-1, 7, -1)
    assert torch.equal(spline_points(same, 5), same[:, :1].expand(-1, 31, -1))


def test_refined_length_converges_to_the_great_circle_faster_than_chords(sphere):
    # Nodes evenly spaced on great circles (exact geodesics, known length).
    p, q = _sphere_pairs(10)
    f = InverseStereographic()
    a, b = f(p), f(q)
    angle = sphere_distance(p, q)
    t = torch.linspace(0, 1, 12, dtype=F64)[None, :, None]
    w = b - (a * b).sum(-1, keepdim=True) * a
    w = w / w.norm(dim=-1, keepdim=True)
    on_sphere = (
        a[:, None] * (t * angle[:, None, None]).cos()
        + w[:, None] * (t * angle[:, None, None]).sin()
    )
    nodes = on_sphere[..., :2] / (1 - on_sphere[..., 2:])  # stereographic projection
    torch.testing.assert_close(f(nodes.reshape(-1, 2)).reshape(10, 12, 3), on_sphere)
    chord = refined_length(sphere, nodes, 1)
    spline = refined_length(sphere, nodes, 8)
    chord_err = ((chord - angle) / angle).abs().max()
    spline_err = ((spline - angle) / angle).abs().max()
    assert float(chord_err) > 3e-4  # chords cut corners: O(1/N^2)
    assert float(spline_err) < 1e-4
    assert bool((spline >= chord).all())


def test_refined_length_reuses_decoded_nodes(sphere):
    gen = torch.Generator().manual_seed(4)
    curve = torch.randn(5, 7, 2, generator=gen, dtype=F64)
    nodes = sphere.evaluator.embed(curve.reshape(-1, 2)).reshape(5, 7, -1)
    for refine in (1, 3, 4):
        torch.testing.assert_close(
            refined_length(sphere, curve, refine, node_values=nodes),
            refined_length(sphere, curve, refine),
            rtol=0,
            atol=0,
        )
    # Richardson extrapolation of the two polygons, refine 4 and its every second point.
    fine = spline_points(curve, 4)
    x = sphere.evaluator.embed(fine.reshape(-1, 2)).reshape(5, -1, 3)
    polygon = x.diff(dim=1).norm(dim=-1).sum(-1)
    half = x[:, ::2].diff(dim=1).norm(dim=-1).sum(-1)
    torch.testing.assert_close(refined_length(sphere, curve, 4), polygon + (polygon - half) / 3)


def test_geodesic_distance_end_nodes_are_those_of_the_curve_it_measured(sphere):
    """``info["next_to_ends"]``: ``c_1`` and ``c_{N-2}`` of the measured curve; on the
    sphere its first steps point along the closed-form ``log_p q`` and ``log_q p``."""
    p, q = _sphere_pairs(6)
    measured = connecting_geodesic(sphere, p, q)
    length, ok = geodesic_distance(sphere, p, q), measured.converged
    next_p, next_q = measured.info["next_to_ends"].unbind(1)
    curve = connecting_geodesic(sphere, p, q)
    torch.testing.assert_close(length, curve.length)
    assert bool(ok.all())
    torch.testing.assert_close(next_p, curve.points[:, 1])
    torch.testing.assert_close(next_q, curve.points[:, -2])

    def sphere_log(a, b):  # the great circle's initial velocity, pulled back to the chart
        x, y = sphere.evaluator.embed(a), sphere.evaluator.embed(b)
        cos = (x * y).sum(-1, keepdim=True)
        ambient = (y - cos * x) / (1 - cos**2).sqrt() * torch.arccos(cos)
        return torch.linalg.lstsq(sphere.jacobian(a), ambient.unsqueeze(-1)).solution[..., 0]

    for step, exact in (
        (15 * (next_p - p), sphere_log(p, q)),
        (15 * (next_q - q), sphere_log(q, p)),
    ):
        # A first step is the initial velocity to O(1 / N): measured within 3.6 %.
        assert float(((step - exact).norm(dim=-1) / exact.norm(dim=-1)).max()) < 0.1
    single = connecting_geodesic(sphere, p[0], q[0])
    one = (single.length, *single.info["next_to_ends"].unbind(0))
    assert [t.shape for t in one] == [(), (2,), (2,)]
    torch.testing.assert_close(one[1], next_p[0], rtol=1e-6, atol=1e-9)


def test_bend_tol_resolves_the_long_curves_of_a_relu_decoder():
    """16 nodes cannot follow a long geodesic across a ReLU decoder's creases: the pairs
    whose decoded curve bends most between its nodes come out > 1 % too long; solved again
    on 31 nodes (``bend_tol``) they are within 1 % of a 64-node reference."""
    from pullback_geom import vae
    from pullback_geom.geodesics.pairwise import reference_distances

    # The batch in float32, as geomstats' dist solves it (DIST_DTYPE); the reference in
    # float64.
    metric = vae.load_default("bernoulli").float().pullback_metric()
    latents = vae.load_latents(vae.default_checkpoint("bernoulli"))
    codes = latents.codes.float()
    batch = torch.cat([codes[latents.labels == c][:50] for c in (0, 1, 7)])
    far = (batch - batch[7]).norm(dim=-1) > 2.5
    q = batch[far]
    p = batch[7].expand_as(q)
    plain = connecting_geodesic(metric, p, q, tol=1e-6, warn=False)
    chord = refined_length(metric, plain.points, 1)
    most_bent = ((plain.length - chord) / plain.length).argsort(descending=True)[:4]
    # All the pairs in one call, as k-means' assignment step makes it.
    after = geodesic_distance(metric, p, q, tol=1e-6, bend_tol=0.08, warn=False)[most_bent]
    p, q = p[most_bent].double(), q[most_bent].double()
    exact = vae.load_default("bernoulli").double().pullback_metric()
    ref = reference_distances(exact, p, q).float()
    before = plain.length[most_bent]
    assert float(((before - ref) / ref).max()) > 1e-2
    assert bool((((after - ref) / ref).abs() <= 1e-2).all())
    # Never longer than the 16-node curve measured as densely as the 31-node ones are.
    dense = refined_length(metric, plain.points[most_bent], 8)
    assert bool((after <= dense * (1 + 1e-6)).all())
    with pytest.raises(ValueError, match="bend_tol must be a positive number"):
        geodesic_distance(metric, p.float(), q.float(), bend_tol=-1.0)


def test_bend_tol_compares_lengths_at_one_sampling_density():
    """A 16-node curve of the bundled ReLU model that tunnels through a thin wall of the
    metric between its nodes reads 2 % short at 4 points a segment; its bend sends it to
    31 nodes, whose honest curve must win the comparison (it lost against the 16-node
    curve's short reading before the lengths were compared at one density)."""
    from pullback_geom import vae

    latents = vae.load_latents(vae.default_checkpoint("bernoulli"))
    metric = vae.load_default("bernoulli").double().pullback_metric()
    p, q = latents.codes[3777].double()[None], latents.codes[5008].double()[None]
    ref = connecting_geodesic(metric, p, q, n_points=64, warn=False).length
    plain = geodesic_distance(metric, p, q, warn=False)
    resolved = geodesic_distance(metric, p, q, bend_tol=0.08, warn=False)
    assert float((plain - ref) / ref) < -1e-2  # the tunnel
    assert abs(float((resolved - ref) / ref)) < 5e-3


def test_basin_tol_resolves_pairs_whose_two_starts_disagree():
    """On a ReLU decoder the graph start and the straight start of a pair can settle in
    different local minima, both longer than the geodesic; ``basin_tol`` solves such pairs
    again (as ``bend_tol`` does bent ones): no pair gets longer (at one sampling
    density), and the pairs it moves
    come within 5e-3 of a 64-node reference (random pairs of test codes; without it one
    was 2.1 % too long)."""
    from pullback_geom import vae
    from pullback_geom.geodesics.pairwise import reference_distances

    metric = vae.load_default("bernoulli").float().pullback_metric()
    codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes.float()
    i, j = torch.randint(len(codes), (2, 64), generator=torch.Generator().manual_seed(0))
    p, q = codes[i], codes[j]
    options = {"tol": 1e-6, "bend_tol": 0.08, "warn": False}
    solution = connecting_geodesic(metric, p, q, **options)
    plain = solution.length
    basin = geodesic_distance(metric, p, q, basin_tol=1e-3, **options)
    # No pair longer than its plain curve measured as densely as the re-solved ones are.
    dense = torch.maximum(plain, refined_length(metric, solution.points, 8))
    assert bool((basin <= dense * (1 + 1e-4)).all())
    moved = ((plain - basin) / basin > 3e-3).nonzero().squeeze(1)
    assert moved.numel() >= 1
    exact = vae.load_default("bernoulli").double().pullback_metric()
    ref = reference_distances(exact, p[moved].double(), q[moved].double())
    assert bool((((basin[moved].double() - ref) / ref).abs() <= 5e-3).all())
    with pytest.raises(ValueError, match="basin_tol must be a positive number"):
        geodesic_distance(metric, p, q, basin_tol=-1.0)


@pytest.mark.parametrize("method", ["lm", "newton-cg"])
def test_coarse_start_reaches_the_great_circles_in_fewer_iterations(sphere, method):
    """``init_curve="coarse"`` (the ``"auto"`` start above 3 dimensions): the same
    geodesics, from curves a coarse solve of the same method has already bent, so the
    fine solve takes fewer iterations than from straight lines."""
    p, q = _sphere_pairs(12)
    options = {"n_points": 31, "method": method}
    coarse = connecting_geodesic(sphere, p, q, init_curve="coarse", **options)
    straight = connecting_geodesic(sphere, p, q, init_curve="straight", **options)
    assert bool(coarse.converged.all())
    torch.testing.assert_close(coarse.length, sphere_distance(p, q), rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(coarse.length, straight.length, rtol=1e-8, atol=1e-10)
    assert int(coarse.iterations.sum()) < int(straight.iterations.sum())


def test_auto_starts_from_a_coarse_solve_above_three_dimensions():
    from oracles import tanh_mlp

    from pullback_geom.geodesics.energy import coarse_points

    assert (coarse_points(16), coarse_points(17), coarse_points(100)) == (6, 6, 34)
    assert coarse_points(8) is None  # too few nodes: straight lines
    metric = PullbackMetric(tanh_mlp(5, 8))
    z = torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    auto = connecting_geodesic(metric, z[:3], z[3:], method="lm")
    coarse = connecting_geodesic(metric, z[:3], z[3:], method="lm", init_curve="coarse")
    straight = connecting_geodesic(metric, z[:3], z[3:], method="lm", init_curve="straight")
    assert torch.equal(auto.points, coarse.points)
    assert not torch.equal(coarse.points, straight.points)
    torch.testing.assert_close(coarse.length, straight.length, rtol=1e-6, atol=1e-9)
    # The pairwise solver route starts the same way above 3 dimensions.
    from pullback_geom.geodesics import pairwise_distances

    dist = pairwise_distances(metric, z, route="solver", method="lm")
    i, j = torch.triu_indices(6, 6, 1)
    each = connecting_geodesic(metric, z[i], z[j], method="lm", init_curve="coarse")
    torch.testing.assert_close(dist[i, j], each.length, rtol=1e-7, atol=1e-10)
