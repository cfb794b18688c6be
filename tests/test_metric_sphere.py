"""The unit sphere through inverse stereographic projection: closed-form oracles."""

import math

import pytest
import torch
from oracles import (
    F64,
    great_circle,
    levi_civita,
    sphere_christoffel,
    sphere_metric,
    stereographic,
)

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic, sphere_distance

TOL = {"rtol": 1e-10, "atol": 1e-12}


def points(b, d):
    return 1.5 * torch.randn(b, d, dtype=F64)


def test_decoder_is_the_sphere():
    z = points(6, 3)
    x = InverseStereographic()(z)
    torch.testing.assert_close(x, stereographic(z), **TOL)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(6, dtype=F64), **TOL)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_metric_tensor_closed_form(d):
    z = points(5, d)
    g = PullbackMetric(InverseStereographic()).metric_tensor(z)
    torch.testing.assert_close(g, sphere_metric(z), **TOL)


@pytest.mark.parametrize("d", [2, 3])
def test_christoffel_closed_form(d):
    z = points(5, d)
    gam = PullbackMetric(InverseStereographic()).christoffel_symbols(z)
    torch.testing.assert_close(gam, sphere_christoffel(z), **TOL)


def test_closed_form_christoffel_is_levi_civita():
    """The oracle itself: the textbook conformal formula equals autograd of G."""
    z = points(4, 3)
    ref = levi_civita(lambda x: sphere_metric(x[None])[0], z)
    torch.testing.assert_close(sphere_christoffel(z), ref, **TOL)


def test_surfaces_static_closed_forms():
    z = points(5, 3)
    torch.testing.assert_close(InverseStereographic.metric_tensor(z), sphere_metric(z), **TOL)
    torch.testing.assert_close(
        InverseStereographic.christoffel_symbols(z), sphere_christoffel(z), **TOL
    )
    p, q = points(5, 3), points(5, 3)
    torch.testing.assert_close(sphere_distance(p, q), great_circle(p, q), **TOL)


@pytest.mark.parametrize("d", [2, 3])
def test_geodesic_acceleration_closed_form(d):
    z, v = points(6, d), torch.randn(6, d, dtype=F64)
    acc = PullbackMetric(InverseStereographic()).geodesic_acceleration(z, v)
    ref = -torch.einsum("bkij,bi,bj->bk", sphere_christoffel(z), v, v)
    torch.testing.assert_close(acc, ref, **TOL)


def test_log_volume_closed_form():
    z = points(5, 2)
    metric = PullbackMetric(InverseStereographic())
    ref = 2 * torch.log(2 / (1 + (z * z).sum(-1)))  # log sqrt(det(lambda I_2)) = log lambda
    torch.testing.assert_close(metric.log_volume(z), ref, **TOL)
    torch.testing.assert_close(metric.volume_element(z), ref.exp(), **TOL)


def test_meridian_length_closed_form():
    """A latent ray through the origin maps onto a meridian; the point ``t u`` (``|u| = 1``)
    sits at angle ``2 arctan(t)`` from the south pole. The decoded polygon's length
    converges to second order in the step."""
    direction = torch.tensor([0.6, -0.8], dtype=F64)
    t = torch.linspace(-0.7, 2.5, 2001, dtype=F64)
    length = PullbackMetric(InverseStereographic()).curve_length(t[:, None] * direction)
    ref = 2 * (math.atan(2.5) + math.atan(0.7))
    assert abs(float(length) - ref) < 1e-6 * ref


def test_meridian_length_is_great_circle_angle():
    direction = torch.tensor([-0.28, 0.96], dtype=F64)
    curve = torch.linspace(0.1, 3.0, 2001, dtype=F64)[:, None] * direction
    length = PullbackMetric(InverseStereographic()).curve_length(curve)
    ref = great_circle(curve[:1], curve[-1:])[0]
    assert abs(float(length - ref)) < 1e-6 * float(ref)
    # The chord in R^3 between the same ends is much shorter: the test can tell.
    chord = (stereographic(curve[-1:]) - stereographic(curve[:1])).norm()
    assert float(length - chord) > 0.1


def test_metric_norm_matches_polygon_length():
    """Sum of ``|dz|_G`` at midpoints approximates the decoded polygon's length."""
    t = torch.linspace(0, 1, 801, dtype=F64)[:, None]
    curve = torch.cat([torch.cos(3 * t), torch.sin(2 * t) + t], dim=-1)
    metric = PullbackMetric(InverseStereographic())
    mid, step = 0.5 * (curve[1:] + curve[:-1]), curve.diff(dim=0)
    riemann = metric.norm(mid, step).sum()
    assert math.isclose(float(metric.curve_length(curve)), float(riemann), rel_tol=1e-5)


@pytest.mark.parametrize("ridge", [0.05, 1.0])
def test_ridge_metric_and_christoffels(ridge):
    z = points(4, 2)
    metric = PullbackMetric(InverseStereographic(), ridge=ridge)
    eye = torch.eye(2, dtype=F64)
    torch.testing.assert_close(metric.metric_tensor(z), sphere_metric(z) + ridge * eye, **TOL)
    ref = levi_civita(lambda x: sphere_metric(x[None])[0] + ridge * eye, z)
    gam = metric.christoffel_symbols(z)
    torch.testing.assert_close(gam, ref, **TOL)
    # The regularised connection is genuinely different from the sphere's.
    assert not torch.allclose(gam, sphere_christoffel(z), atol=1e-3)
    v = torch.randn(4, 2, dtype=F64)
    acc = metric.geodesic_acceleration(z, v)
    torch.testing.assert_close(acc, -torch.einsum("bkij,bi,bj->bk", ref, v, v), **TOL)
