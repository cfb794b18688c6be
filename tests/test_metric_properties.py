"""Property-based tests: algebraic identities at arbitrary latent points and tangents."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import F64, autograd_jacobian, tanh_mlp

from pullback_geom import PullbackMetric

D = 3
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


def vectors(n=D, bound=4.0):
    coord = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return st.lists(coord, min_size=n, max_size=n).map(lambda xs: torch.tensor(xs, dtype=F64))


def batches(n=D):
    return st.lists(vectors(n), min_size=1, max_size=4).map(torch.stack)


@pytest.fixture(scope="module", params=["chain", "forward"])
def metric(request):
    torch.manual_seed(1)
    return PullbackMetric(tanh_mlp(D, 5, width=8), jacobian=request.param).detached()


@SETTINGS
@given(z=batches())
def test_metric_symmetric_positive_semidefinite(metric, z):
    g = metric.metric_tensor(z)
    assert g.shape == (z.shape[0], D, D)
    torch.testing.assert_close(g, g.mT, rtol=0, atol=1e-12)
    eig = torch.linalg.eigvalsh(g)
    assert bool((eig >= -1e-10 * eig[:, -1:].clamp_min(1)).all())
    jac = autograd_jacobian(metric.decoder, z)
    torch.testing.assert_close(g, jac.mT @ jac, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(z=vectors(), u1=vectors(), u2=vectors(), v=vectors(), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_inner_bilinear_and_symmetric(metric, z, u1, u2, v, a, b):
    lhs = metric.inner(z, a * u1 + b * u2, v)
    rhs = a * metric.inner(z, u1, v) + b * metric.inner(z, u2, v)
    scale = 1 + abs(a) + abs(b)
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-9 * scale)
    torch.testing.assert_close(
        metric.inner(z, u1, v), metric.inner(z, v, u1), rtol=1e-12, atol=1e-12
    )


@SETTINGS
@given(z=vectors(), v=vectors())
def test_inner_is_squared_decoded_speed(metric, z, v):
    """``v^T G v = |J v|^2``, with ``J v`` from reverse-mode autograd."""
    jv = autograd_jacobian(metric.decoder, z[None])[0] @ v
    torch.testing.assert_close(metric.inner(z, v, v), jv.square().sum(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(metric.norm(z, v), jv.norm(), rtol=1e-9, atol=1e-12)
    assert float(metric.inner(z, v, v)) >= 0


@SETTINGS
@given(z=batches())
def test_volume_element_is_sqrt_det(metric, z):
    jac = autograd_jacobian(metric.decoder, z)
    det = torch.linalg.det(jac.mT @ jac)
    torch.testing.assert_close(metric.volume_element(z), det.sqrt(), rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(metric.log_volume(z), 0.5 * det.log(), rtol=1e-8, atol=1e-8)


@SETTINGS
@given(z=vectors(), v=vectors(), s=st.floats(-5, 5))
def test_geodesic_acceleration_quadratic_in_velocity(metric, z, v, s):
    """``a(z, s v) = s^2 a(z, v)`` (Gamma is a bilinear form)."""
    acc = metric.geodesic_acceleration(z, v)
    torch.testing.assert_close(
        metric.geodesic_acceleration(z, s * v), s * s * acc, rtol=1e-8, atol=1e-10 * (1 + s * s)
    )


@SETTINGS
@given(p=vectors(), q=vectors(), n=st.integers(2, 12))
def test_polygon_length_bounds(metric, p, q, n):
    """Straight latent segment: ``L^2 <= E`` (Cauchy-Schwarz), and the decoded polygon
    is at least as long as the chord between its decoded ends."""
    t = torch.linspace(0, 1, n, dtype=F64)[:, None]
    curve = p + t * (q - p)
    length, energy = metric.curve_length(curve), metric.curve_energy(curve)
    ends = metric.decode_curve(curve[[0, -1]])
    chord = (ends[1] - ends[0]).norm()
    assert float(length) >= float(chord) - 1e-12
    assert float(energy) >= float(length) ** 2 * (1 - 1e-12) - 1e-12
    assert math.isfinite(float(energy))
