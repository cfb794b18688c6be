"""Reparametrisation: ``g = f o phi`` for an invertible affine map or a smooth diffeomorphism.

Geometry is coordinate-free, so every quantity of ``g`` is that of ``f`` transported by
``phi``: ``G_g(z) = Dphi^T G_f(phi(z)) Dphi``, ``log vol_g = log vol_f(phi) + log|det Dphi|``,
geodesic accelerations satisfy ``Dphi a_g + D^2 phi[v, v] = a_f(phi(z), Dphi v)``, and
Christoffels ``Dphi Gamma_g(.,.) = Gamma_f(Dphi ., Dphi .) + D^2 phi(., .)``; curves ``c``
under ``g`` have the lengths and energies of ``phi o c`` under ``f``.
"""

import pytest
import torch
from oracles import F64, tanh_mlp
from torch import nn
from torch.autograd.functional import hessian as ag_hessian
from torch.autograd.functional import jacobian as ag_jacobian

from pullback_geom import PullbackMetric

D = 3
TOL = {"rtol": 1e-9, "atol": 1e-10}


class Shear(nn.Module):
    """``(z1, z2, z3) -> (z1, z2 + z1^2 / 2, z3 + z1 z2) + 0.2 sin(z3) e1``: a diffeomorphism
    of R^3 (its inverse is explicit, solving from the last coordinate is not needed here)."""

    def forward(self, z):
        z1, z2, z3 = z.unbind(-1)
        return torch.stack([z1 + 0.2 * torch.sin(z3), z2 + 0.5 * z1**2, z3 + z1 * z2], dim=-1)


class Composite(nn.Module):
    def __init__(self, f, phi):
        super().__init__()
        self.f, self.phi = f, phi

    def forward(self, z):
        return self.f(self.phi(z))


def affine_phi():
    lin = nn.Linear(D, D).to(F64)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(D, dtype=F64) + 0.5 * torch.randn(D, D, dtype=F64))
    return lin


def setups():
    """(name, f, phi, g-decoder, jacobian method for g)."""
    f = tanh_mlp(D, 7)
    lin = affine_phi()
    shear = Shear()
    return {
        "affine-chain": (f, lin, nn.Sequential(lin, *f), "chain"),
        "affine-forward": (f, lin, Composite(f, lin), "forward"),
        "shear-forward": (f, shear, Composite(f, shear), "forward"),
    }


CASES = ["affine-chain", "affine-forward", "shear-forward"]


def phi_derivatives(phi, z):
    """``Dphi`` (B, d, d) and second derivatives ``H[b, m, i, j]`` by autograd."""
    one = lambda x: phi(x[None])[0]  # noqa: E731
    jac = torch.stack([ag_jacobian(one, x) for x in z])
    hess = torch.stack(
        [torch.stack([ag_hessian(lambda x, m=m: one(x)[m], p) for m in range(D)]) for p in z]
    )
    return jac, hess


@pytest.fixture(params=CASES)
def case(request):
    f, phi, g, method = setups()[request.param]
    metric_f, metric_g = PullbackMetric(f), PullbackMetric(g, jacobian=method)
    z = 0.8 * torch.randn(5, D, dtype=F64)
    dphi, d2phi = phi_derivatives(phi, z)
    with torch.no_grad():
        y = phi(z)
    return metric_f, metric_g, phi, z, y, dphi, d2phi


def test_phi_is_a_local_diffeomorphism(case):
    *_, dphi, _ = case
    assert bool((torch.linalg.det(dphi).abs() > 0.1).all())


def test_metric_transforms(case):
    metric_f, metric_g, _, z, y, dphi, _ = case
    ref = dphi.mT @ metric_f.metric_tensor(y) @ dphi
    torch.testing.assert_close(metric_g.metric_tensor(z), ref, **TOL)
    # Not trivially equal to the untransported metric.
    assert not torch.allclose(metric_g.metric_tensor(z), metric_f.metric_tensor(y), atol=1e-3)


def test_log_volume_transforms(case):
    metric_f, metric_g, _, z, y, dphi, _ = case
    ref = metric_f.log_volume(y) + torch.linalg.slogdet(dphi)[1]
    torch.testing.assert_close(metric_g.log_volume(z), ref, **TOL)


def test_inner_and_norm_transform(case):
    metric_f, metric_g, _, z, y, dphi, _ = case
    u, v = torch.randn(5, D, dtype=F64), torch.randn(5, D, dtype=F64)
    du, dv = (dphi @ u[..., None])[..., 0], (dphi @ v[..., None])[..., 0]
    torch.testing.assert_close(metric_g.inner(z, u, v), metric_f.inner(y, du, dv), **TOL)
    torch.testing.assert_close(metric_g.norm(z, v), metric_f.norm(y, dv), **TOL)


def test_geodesic_acceleration_transforms(case):
    metric_f, metric_g, _, z, y, dphi, d2phi = case
    v = torch.randn(5, D, dtype=F64)
    dv = (dphi @ v[..., None])[..., 0]
    lhs = (dphi @ metric_g.geodesic_acceleration(z, v)[..., None])[..., 0]
    lhs = lhs + torch.einsum("bmij,bi,bj->bm", d2phi, v, v)
    torch.testing.assert_close(lhs, metric_f.geodesic_acceleration(y, dv), **TOL)


def test_christoffel_symbols_transform(case):
    metric_f, metric_g, _, z, y, dphi, d2phi = case
    lhs = torch.einsum("bmk,bkij->bmij", dphi, metric_g.christoffel_symbols(z))
    rhs = torch.einsum("zmab,zai,zbj->zmij", metric_f.christoffel_symbols(y), dphi, dphi) + d2phi
    torch.testing.assert_close(lhs, rhs, **TOL)


def test_curve_length_and_energy_transform(case):
    metric_f, metric_g, phi, *_ = case
    t = torch.linspace(0, 1, 17, dtype=F64)[None, :, None]
    p, q = torch.randn(3, 1, D, dtype=F64), torch.randn(3, 1, D, dtype=F64)
    curves = p + t * (q - p) + 0.3 * torch.sin(torch.pi * t) * torch.randn(3, 1, D, dtype=F64)
    with torch.no_grad():
        image = phi(curves)
    torch.testing.assert_close(metric_g.curve_length(curves), metric_f.curve_length(image), **TOL)
    torch.testing.assert_close(metric_g.curve_energy(curves), metric_f.curve_energy(image), **TOL)
    # The latent curve itself, read under f without phi, has a different length.
    assert not torch.allclose(
        metric_f.curve_length(curves), metric_f.curve_length(image), rtol=1e-3
    )
