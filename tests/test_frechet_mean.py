"""The joint Fréchet mean (:func:`pullback_geom.geodesics.frechet_mean`), by oracle:
closed forms on the sphere, weights against duplicates, batches against separate calls,
and geomstats-free checks of the gradient on small decoders."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from oracles import sphere_karcher_mean, stereographic
from torch import Tensor, nn

from pullback_geom import PullbackMetric, vae
from pullback_geom.geodesics import FrechetResult, frechet_mean, log_map
from pullback_geom.geodesics import _frechet_extrapolate as extrapolation
from pullback_geom.geodesics._common import regrid_curves
from pullback_geom.geodesics.frechet import fine_points
from pullback_geom.surfaces import InverseStereographic

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic(), latent_dim=2)


def ring(center: Tensor, n: int, angle: float) -> Tensor:
    """``n`` unit vectors at ``angle`` from ``center``, equally spaced around it: rotated
    copies about the axis through ``center``, so their Fréchet mean is ``center``."""
    c = center / center.norm()
    a = torch.tensor([1.0, 0.0, 0.0], dtype=c.dtype)
    u = a - (a @ c) * c
    u = u / u.norm()
    v = torch.linalg.cross(c, u)
    phi = torch.arange(n, dtype=c.dtype) * 2 * math.pi / n
    return math.cos(angle) * c + math.sin(angle) * (
        torch.cos(phi)[:, None] * u + torch.sin(phi)[:, None] * v
    )


def latent(y: Tensor) -> Tensor:
    """Stereographic projection from the north pole: the inverse of the decoder."""
    return y[..., :2] / (1 - y[..., 2:])


CENTER = torch.tensor([0.3, -0.5, -0.4], dtype=F64)


def test_sphere_mean_of_a_symmetric_ring_is_its_centre():
    x = latent(ring(CENTER, 20, 0.7))
    center = latent(CENTER / CENTER.norm())
    # Started off-centre; tol tighter than the default, as the mean's error scales as
    # sqrt(tol) (the criterion is on the energy, quadratic in the mean's error).
    result = frechet_mean(sphere(), x, mean=x.mean(0) + 0.2, tol=1e-13)
    assert isinstance(result, FrechetResult) and bool(result.converged)
    assert float((result.mean - center).norm()) < 1e-6
    # The closed form of the value: every point is 0.7 rad away.
    torch.testing.assert_close(result.value, torch.tensor(0.49, dtype=F64), rtol=1e-5, atol=0)
    assert result.curves.shape == (20, 16, 2) and result.lengths.shape == (20,)
    torch.testing.assert_close(result.curves[:, 0], center.expand(20, 2), rtol=0, atol=1e-6)
    assert torch.equal(result.curves[:, -1], x)
    assert float(result.gradient_norm) < 1e-5
    # ... and the curves are great circles: each node on the plane of the centre and its point
    nodes = stereographic(result.curves.reshape(-1, 2)).reshape(20, 16, 3)
    normal = torch.linalg.cross(CENTER.expand(20, 3), ring(CENTER, 20, 0.7))
    assert float((nodes @ CENTER[:, None]).squeeze(-1).diff(dim=1).max()) < 0  # moving away
    assert float((nodes * normal[:, None]).sum(-1).abs().max()) < 1e-6


def test_sphere_sets_in_one_batch_equal_separate_calls():
    centers = torch.tensor([[0.3, -0.5, -0.4], [-0.2, 0.6, 0.1], [0.5, 0.5, -0.6]], dtype=F64)
    sets = torch.stack(
        [latent(ring(c, 6, a)) for c, a in zip(centers, (0.5, 0.3, 0.8), strict=True)]
    )
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 6, generator=g, dtype=F64) + 0.5
    weights[1, 2:] = 0  # a set of two points; the others of six
    # Straight starts: the start graph spans every set's points, so a set solved alone
    # would start from other curves (and agree only to the tolerance).
    batched = frechet_mean(sphere(), sets, weights, n_points=8, init_curve="straight")
    assert batched.mean.shape == (3, 2) and batched.curves.shape == (3, 6, 8, 2)
    assert bool(batched.converged.all())
    for i in range(3):
        keep = weights[i] > 0
        alone = frechet_mean(
            sphere(), sets[i, keep], weights[i, keep], n_points=8, init_curve="straight"
        )
        torch.testing.assert_close(batched.mean[i], alone.mean, rtol=0, atol=1e-9)
        torch.testing.assert_close(batched.value[i], alone.value, rtol=1e-8, atol=0)
    # points of zero weight are not solved
    assert bool(torch.isnan(batched.curves[1, 2:]).all())
    assert bool(torch.isnan(batched.lengths[1, 2:]).all())
    assert not bool(torch.isnan(batched.curves[1, :2]).any())


def test_a_point_of_weight_two_is_that_point_twice():
    x = latent(ring(CENTER, 5, 0.6))[:4]  # not symmetric: the mean is not known
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=F64)
    weighted = frechet_mean(sphere(), x, weights, n_points=8)
    twice = frechet_mean(sphere(), torch.cat([x, x[:1]]), n_points=8)
    torch.testing.assert_close(weighted.mean, twice.mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(weighted.value, twice.value, rtol=1e-8, atol=0)
    plain = frechet_mean(sphere(), x, n_points=8)
    # the weight pulls the mean towards the point
    assert float((weighted.mean - x[0]).norm()) < float((plain.mean - x[0]).norm())


def test_single_points_and_duplicates_are_their_own_mean():
    x = torch.tensor([[0.3, -0.2], [0.5, 0.1], [0.3, -0.2]], dtype=F64)
    one = frechet_mean(sphere(), x[:1])
    assert torch.equal(one.mean, x[0]) and bool(one.converged) and int(one.iterations) == 0
    assert float(one.value) == 0 and float(one.gradient_norm) == 0
    # a set whose only weighted points coincide, beside an ordinary set
    weights = torch.tensor([[1.0, 0.0, 3.0], [1.0, 1.0, 0.0]], dtype=F64)
    both = frechet_mean(sphere(), x.expand(2, 3, 2), weights, n_points=6)
    assert torch.equal(both.mean[0], x[0]) and float(both.value[0]) == 0
    assert bool(both.converged.all()) and int(both.iterations[1]) > 0
    assert float(both.value[1]) > 0
    # extrapolated too: the coinciding set keeps its point, to the bit
    both = frechet_mean(sphere(), x.expand(2, 3, 2), weights, n_points=6, extrapolate=True)
    assert torch.equal(both.mean[0], x[0]) and bool(both.converged.all())


def test_empty_nan_and_bad_weights_are_clear_errors():
    metric = sphere()
    x = torch.tensor([[0.3, -0.2], [0.5, 0.1]], dtype=F64)
    with pytest.raises(ValueError, match="no points"):
        frechet_mean(metric, x[:0])
    with pytest.raises(ValueError, match="x contains NaN"):
        frechet_mean(metric, torch.tensor([[0.3, float("nan")], [0.5, 0.1]], dtype=F64))
    with pytest.raises(ValueError, match="weights are all zero"):
        frechet_mean(metric, x, torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="set 1"):
        frechet_mean(metric, x.expand(2, 2, 2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        frechet_mean(metric, x, torch.tensor([1.0, -1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        frechet_mean(metric, x, torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match=r"mean must have shape \(2,\)"):
        frechet_mean(metric, x, mean=torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="n_points"):
        frechet_mean(metric, x, n_points=2)
    with pytest.raises(ValueError, match="init_curve"):
        frechet_mean(metric, x, init_curve="bent")


def small_mlp(activation: type[nn.Module], dtype: torch.dtype = F64) -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 24), activation(), nn.Linear(24, 6)).to(dtype)
    return net.requires_grad_(False)


def cloud(n: int = 8, dtype: torch.dtype = F64) -> Tensor:
    g = torch.Generator().manual_seed(2)
    return (torch.tensor([0.2, -0.1]) + 0.6 * torch.randn(n, 2, generator=g)).to(dtype)


def riemannian_gradient(metric: PullbackMetric, mean: Tensor, x: Tensor) -> Tensor:
    """``|grad F|_G`` from independent logs (Newton shooting on the geodesic ODE)."""
    v = log_map(metric, mean.expand_as(x), x, method="shooting")
    return metric.norm(mean, -2 * v.mean(0))


def test_smooth_mlp_mean_zeroes_the_gradient_to_the_discretisation():
    metric = PullbackMetric(small_mlp(nn.Tanh))
    x = cloud()
    at_euclid = riemannian_gradient(metric, x.mean(0), x)
    coarse, fine = (frechet_mean(metric, x, n_points=n) for n in (9, 17))
    assert bool(coarse.converged) and bool(fine.converged)
    # By the curves' own (discrete) logs the mean is stationary to the solver's tolerance;
    # by shooting logs, to the discretisation: O(1/N^2), a quarter from N - 1 = 8 to 16.
    assert float(fine.gradient_norm) < 1e-4 * float(at_euclid)
    err_coarse = riemannian_gradient(metric, coarse.mean, x) / at_euclid
    err_fine = riemannian_gradient(metric, fine.mean, x) / at_euclid
    assert float(err_fine) < 2e-3 and float(err_fine) < 0.35 * float(err_coarse)
    assert float(fine.value) < float((metric_lengths(metric, x.mean(0), x) ** 2).mean())


def metric_lengths(metric: PullbackMetric, z: Tensor, x: Tensor) -> Tensor:
    from pullback_geom.geodesics import geodesic_distance

    return geodesic_distance(metric, z.expand_as(x), x)


def test_relu_mlp_mean_beats_every_point_and_the_euclidean_mean():
    metric = PullbackMetric(small_mlp(nn.ReLU))
    x = cloud()
    result = frechet_mean(metric, x, n_points=12)
    assert bool(result.converged)
    # The Fréchet function at the mean, measured by the boundary-value solver, is below
    # its value at the Euclidean mean and at every data point.
    value = (metric_lengths(metric, result.mean, x) ** 2).mean()
    torch.testing.assert_close(value, result.value, rtol=2e-2, atol=0)
    for z in torch.cat([x.mean(0, keepdim=True), x]):
        assert float(value) < float((metric_lengths(metric, z, x) ** 2).mean())


def test_newton_steps_on_a_smooth_chain_decoder_beat_gauss_newton():
    # The bundled smooth model's decoder (SiLU, nn.Sequential): its curves are long
    # enough (lengths in the tens) that Gauss–Newton's neglected curvature term slows it
    # to linear convergence; the chain rule's contracted second derivatives restore
    # Newton's. Forward mode has no such contraction and stays Gauss–Newton.
    decoder = copy.deepcopy(vae.load_default("smooth").decoder).double()
    latents = vae.load_latents(vae.default_checkpoint("smooth"))
    newton = PullbackMetric(decoder)
    gauss_newton = PullbackMetric(decoder, jacobian="forward")
    for digit in (1, 3):
        x = latents.codes[latents.labels == digit][:20].double()
        fast, slow = frechet_mean(newton, x), frechet_mean(gauss_newton, x)
        assert bool(fast.converged) and bool(slow.converged)
        assert 2 * int(fast.iterations) <= int(slow.iterations)
        # Both to the energy's tol 1e-10: the means to about sqrt(1e-10) times the
        # class's spread (1-3 here).
        torch.testing.assert_close(fast.mean, slow.mean, rtol=0, atol=3e-5)


def test_float32_jacobians_keep_the_float64_solution(monkeypatch):
    # Values, energies and the convergence test stay float64; only the steps' products
    # are rounded, so the same mean to far below the tolerance's sqrt(1e-10) scale.
    metric = PullbackMetric(small_mlp(nn.Tanh))
    x = cloud()
    exact = frechet_mean(metric, x, extrapolate=True)
    tape, jacobians = metric.evaluator.curvature_tape, []

    def recorded(z, **options):
        out = tape(z, **options)
        jacobians.append(out[1].dtype)
        return out

    monkeypatch.setattr(metric.evaluator, "curvature_tape", recorded)
    mixed = frechet_mean(metric, x, extrapolate=True, jacobian_dtype=torch.float32)
    monkeypatch.undo()
    assert jacobians and set(jacobians) == {torch.float32}
    assert bool(mixed.converged) and mixed.mean.dtype == F64
    torch.testing.assert_close(mixed.mean, exact.mean, rtol=0, atol=1e-6)
    # Unmeasured: the same solve, its measured fields NaN.
    bare = frechet_mean(metric, x, measure=False)
    plain = frechet_mean(metric, x)
    assert torch.equal(bare.mean, plain.mean) and torch.equal(bare.curves, plain.curves)
    for name in ("lengths", "value", "velocity", "gradient_norm"):
        assert bool(getattr(bare, name).isnan().all()), name
    with pytest.raises(TypeError, match="jacobian_dtype"):
        frechet_mean(metric, x, jacobian_dtype="float32")
    with pytest.raises(TypeError, match="measure must be True or False"):
        frechet_mean(metric, x, measure=1)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dtypes_are_kept_and_agree(dtype):
    metric = PullbackMetric(small_mlp(nn.Tanh, dtype))
    x = cloud(6, dtype)
    result = frechet_mean(metric, x, n_points=8)
    assert bool(result.converged)
    for name in ("mean", "curves", "lengths", "value", "gradient_norm"):
        assert getattr(result, name).dtype == dtype
    reference = frechet_mean(PullbackMetric(small_mlp(nn.Tanh)), x.double(), n_points=8)
    # float32 stops at its own default tol (1e-7): the mean to ~1e-3 of the cloud's spread
    torch.testing.assert_close(result.mean.double(), reference.mean, rtol=0, atol=3e-3)
    with pytest.raises(TypeError, match="x is"):
        frechet_mean(metric, x.to(torch.float64 if dtype == torch.float32 else torch.float32))


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_a_result_warm_starts_its_own_problem(activation):
    metric = PullbackMetric(small_mlp(activation))
    x = cloud()
    cold = frechet_mean(metric, x, n_points=10)
    warm = frechet_mean(metric, x, mean=cold.mean, init_curve=cold.curves, n_points=10)
    assert bool(cold.converged) and bool(warm.converged)
    # From its own solution a converged problem has nothing left to do.
    assert int(warm.iterations) <= 2 < int(cold.iterations)
    # Converged to a relative decrease of 1e-10 (the energy's tol): the mean to about
    # sqrt(1e-10) of the cloud's spread (0.6).
    torch.testing.assert_close(warm.mean, cold.mean, rtol=0, atol=1e-5)
    # Rows of NaN (points that had no curve) are started as "auto": on the smooth decoder
    # the same solution (a ReLU decoder's curves may settle in another local minimum).
    partial = cold.curves.clone()
    partial[::2] = float("nan")
    again = frechet_mean(metric, x, mean=cold.mean, init_curve=partial, n_points=10)
    assert bool(again.converged)
    if activation is nn.Tanh:
        torch.testing.assert_close(again.mean, cold.mean, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="init_curve must have shape"):
        frechet_mean(metric, x, init_curve=cold.curves[:, :5], n_points=10)
    with pytest.raises(TypeError, match="init_curve is"):
        frechet_mean(metric, x, init_curve=cold.curves.float(), n_points=10)


def test_extrapolation_removes_the_discretisation_error_of_the_mean():
    g = torch.Generator().manual_seed(3)
    y = CENTER / CENTER.norm() + 0.6 * torch.randn(9, 3, generator=g, dtype=F64)
    y = y / y.norm(dim=1, keepdim=True)  # an asymmetric cloud: no symmetry fixes the mean
    truth = latent(sphere_karcher_mean(y))
    x = latent(y)
    plain = frechet_mean(sphere(), x, tol=1e-14)
    extrapolated = frechet_mean(sphere(), x, tol=1e-14, extrapolate=True)
    assert bool(plain.converged) and bool(extrapolated.converged)
    error, error_extrapolated = (float((r.mean - truth).norm()) for r in (plain, extrapolated))
    # The discrete mean is O(1/N^2) off; the extrapolation cancels that term.
    assert error_extrapolated < error / 10, (error, error_extrapolated)
    # The result is the finer solve's, its curves moved onto the extrapolated mean.
    assert extrapolated.curves.shape == (9, 21, 2)
    torch.testing.assert_close(extrapolated.curves[:, 0], extrapolated.mean.expand(9, 2))
    torch.testing.assert_close(extrapolated.curves[:, -1], x)
    assert int(extrapolated.iterations) > int(plain.iterations)
    with pytest.raises(TypeError, match="extrapolate"):
        frechet_mean(sphere(), x, extrapolate="yes")
    assert fine_points(16) == 21
    with pytest.raises(ValueError, match="n_points must be an integer >= 3"):
        fine_points(2)


def test_polish_descends_the_measured_function_and_checks_its_arguments():
    metric = PullbackMetric(small_mlp(nn.ReLU))
    x = cloud(10)
    joint = frechet_mean(metric, x, n_points=10)
    polished = frechet_mean(metric, x, n_points=10, polish=True)
    assert bool(polished.converged)
    assert polished.curves.shape == joint.curves.shape
    # Its fields describe its own mean: curves from it to every point, their measured
    # lengths, and the Fréchet function they give.
    torch.testing.assert_close(polished.curves[:, 0], polished.mean.expand(10, -1))
    torch.testing.assert_close(polished.curves[:, -1], x)
    torch.testing.assert_close(polished.value, polished.lengths.square().mean())
    assert bool(torch.isfinite(polished.velocity).all()) and float(polished.gradient_norm) >= 0
    # A set of one point (and duplicates) is its own mean, with nothing to descend.
    one = frechet_mean(metric, x[:1].expand(3, -1), polish=True)
    assert torch.equal(one.mean, x[0]) and bool(one.converged)
    with pytest.raises(ValueError, match="extrapolate and polish"):
        frechet_mean(metric, x, polish=True, extrapolate=True)
    with pytest.raises(TypeError, match="polish must be True or False"):
        frechet_mean(metric, x, polish="auto")


def test_extrapolation_goes_one_level_finer_where_its_correction_is_large(monkeypatch):
    # Forced here (every correction counts as large): the means of 21 and 28 nodes,
    # warm-started in turn from 16, combined instead of 16 and 21; the 28-node solve
    # started where the h^2 model of the first two puts its mean.
    metric, x = sphere(), cloud(9)
    two_levels = frechet_mean(metric, x, extrapolate=True)
    monkeypatch.setattr(extrapolation, "RESOLVE_RATIO", 0.0)
    three_levels = frechet_mean(metric, x, extrapolate=True)
    means, iterations, result = [], 0, None
    h16, h21, h28 = 15.0**-2, 20.0**-2, 27.0**-2
    for n in (16, 21, 28):
        start = {} if result is None else {"mean": result.mean}
        if result is not None:
            curves = result.curves
            if n == 28:
                extrapolated = (h16 * means[1] - h21 * means[0]) / (h16 - h21)
                start["mean"] = extrapolated + h28 / h21 * (means[1] - extrapolated)
                towards_point = torch.linspace(1, 0, 21, dtype=x.dtype)[:, None]
                curves = curves + (start["mean"] - means[1]) * towards_point
            start["init_curve"] = regrid_curves(curves, n)
        result = frechet_mean(metric, x, n_points=n, **start)
        means.append(result.mean)
        iterations += int(result.iterations)
    expected = (h21 * means[2] - h28 * means[1]) / (h21 - h28)
    torch.testing.assert_close(three_levels.mean, expected)
    assert int(three_levels.iterations) == iterations
    assert three_levels.curves.shape == two_levels.curves.shape  # on the 21 nodes
    assert bool(three_levels.converged)
    # A symmetric set's correction is rounding (NOISE): no finer level even so.
    symmetric = torch.cat([x, -x])
    forced = frechet_mean(metric, symmetric, extrapolate=True)
    monkeypatch.setattr(extrapolation, "RESOLVE_RATIO", math.inf)
    plain = frechet_mean(metric, symmetric, extrapolate=True)
    assert int(forced.iterations) == int(plain.iterations)
