"""Curvature by the Gauss equation: closed-form oracles, an autograd reference, geomstats.

Oracles: the unit 2- and 3-spheres (inverse stereographic charts), the graph of a function
(textbook Gaussian curvature), linear decoders (flat), reparametrisation invariance, and
the Riemann tensor from autograd derivatives of the Levi-Civita Christoffel symbols.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from oracles import F64, pullback_metric_at, tanh_mlp
from torch import Tensor, nn
from torch.autograd.functional import jacobian as ag_jacobian

# isort: off
import pullback_geom.geomstats as pg_geomstats
from geomstats.geometry.riemannian_metric import RiemannianMetric
# isort: on

from pullback_geom import PullbackMetric, SingularMetricWarning
from pullback_geom._core import curvature as C
from pullback_geom._core.derivatives import hessian, jet
from pullback_geom.surfaces import InverseStereographic, LinearDecoder

TOL = {"rtol": 1e-9, "atol": 1e-10}


def points(b: int, d: int) -> Tensor:
    return 1.5 * torch.randn(b, d, dtype=F64)


# ------------------------------------------------------------------ references
def autograd_riemann(metric_at, z: Tensor) -> Tensor:
    """``R^l_{ijk}`` in ``[b, i, j, k, l]`` order from a differentiable metric field.

    Christoffels by the Levi-Civita formula (autograd of ``G``), then the textbook
    ``R^l_{ijk} = d_j Gam^l_{ki} - d_k Gam^l_{ji} + Gam^l_{jm} Gam^m_{ki} - Gam^l_{km}
    Gam^m_{ji}`` with ``d Gam`` by autograd again.
    """

    def christoffel_at(x: Tensor) -> Tensor:
        g = metric_at(x)
        dg = ag_jacobian(metric_at, x, create_graph=True)  # [a, b, c] = d_c G_ab
        first = 0.5 * (dg.permute(0, 2, 1) + dg - dg.permute(2, 0, 1))  # [l, i, j]
        return torch.einsum("kl,lij->kij", torch.linalg.inv(g), first)

    out = []
    for x in z:
        gam = christoffel_at(x)  # [k, i, j]
        dgam = ag_jacobian(christoffel_at, x)  # [k, i, j, m] = d_m Gam^k_ij
        r = (
            torch.einsum("lkij->ijkl", dgam)  # d_j Gam^l_{ki}
            - torch.einsum("ljik->ijkl", dgam)  # d_k Gam^l_{ji}
            + torch.einsum("ljm,mki->ijkl", gam, gam)
            - torch.einsum("lkm,mji->ijkl", gam, gam)
        )
        out.append(r)
    return torch.stack(out)


def contract(riemann: Tensor, metric: Tensor, u: Tensor, v: Tensor) -> dict[str, Tensor]:
    """Ricci, scalar and sectional curvature from a Riemann tensor, geomstats' way."""
    ricci = torch.einsum("bijkj->bik", riemann)
    scalar = torch.einsum("bij,bij->b", torch.linalg.inv(metric), ricci)
    ruvv = torch.einsum("bijkl,bj,bk,bi->bl", riemann, u, v, v)
    num = torch.einsum("bl,blm,bm->b", ruvv, metric, u)
    gu = torch.einsum("bi,bij,bj->b", u, metric, u)
    gv = torch.einsum("bi,bij,bj->b", v, metric, v)
    guv = torch.einsum("bi,bij,bj->b", u, metric, v)
    return {"ricci": ricci, "scalar": scalar, "sectional": num / (gu * gv - guv.square())}


class Graph(nn.Module):
    """``(x, y) -> (x, y, sin x cos y)``."""

    def forward(self, z: Tensor) -> Tensor:
        x, y = z[:, 0], z[:, 1]
        return torch.stack([x, y, torch.sin(x) * torch.cos(y)], dim=-1)


def graph_curvature(z: Tensor) -> Tensor:
    """Textbook ``(h_xx h_yy - h_xy^2) / (1 + h_x^2 + h_y^2)^2`` for ``h = sin x cos y``."""
    x, y = z[:, 0], z[:, 1]
    hx, hy = torch.cos(x) * torch.cos(y), -torch.sin(x) * torch.sin(y)
    hxx = hyy = -torch.sin(x) * torch.cos(y)
    hxy = -torch.cos(x) * torch.sin(y)
    return (hxx * hyy - hxy**2) / (1 + hx**2 + hy**2) ** 2


def smooth_mlp(d: int = 3, out: int = 6) -> nn.Sequential:
    """Softplus and sigmoid layers: second derivatives at every layer, chain-rule path."""
    return nn.Sequential(
        nn.Linear(d, 12), nn.Softplus(), nn.Linear(12, 10), nn.Sigmoid(), nn.Linear(10, out)
    ).to(F64)


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("d", [2, 3])
def test_unit_sphere(d):
    m = PullbackMetric(InverseStereographic(), latent_dim=d)
    z, u, v = points(7, d), torch.randn(7, d, dtype=F64), torch.randn(7, d, dtype=F64)
    ones = torch.ones(7, dtype=F64)
    torch.testing.assert_close(m.scalar_curvature(z), d * (d - 1) * ones, **TOL)
    torch.testing.assert_close(m.sectional_curvature(z, u, v), ones, **TOL)
    torch.testing.assert_close(m.ricci_tensor(z), (d - 1) * m.metric_tensor(z), **TOL)
    if d == 2:
        torch.testing.assert_close(m.gaussian_curvature(z), ones, **TOL)
    # Constant curvature 1: R(X, Y) Z = <Y, Z> X - <X, Z> Y, i.e.
    # R^l_{ijk} = G_ki delta_jl - G_ji delta_kl in geomstats' [i, j, k, l] layout.
    g, eye = m.metric_tensor(z), torch.eye(d, dtype=F64)
    expected = torch.einsum("bki,jl->bijkl", g, eye) - torch.einsum("bji,kl->bijkl", g, eye)
    torch.testing.assert_close(m.riemann_tensor(z), expected, **TOL)


def test_graph_of_a_function():
    z = points(20, 2)
    k = PullbackMetric(Graph(), latent_dim=2).gaussian_curvature(z)
    torch.testing.assert_close(k, graph_curvature(z), **TOL)


def test_linear_decoders_are_flat():
    a = torch.randn(5, 3, dtype=F64)
    z = points(4, 3)
    for m in (
        PullbackMetric(LinearDecoder(a)),
        # piecewise linear: no second derivatives on the chain-rule path
        PullbackMetric(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 5)).to(F64)),
    ):
        assert m.riemann_tensor(z).abs().max() < 1e-12
        assert m.scalar_curvature(z).abs().max() < 1e-12


def test_reparametrisation_invariance():
    """Curvature is intrinsic: ``f o phi`` at ``z`` has ``f``'s curvature at ``phi(z)``, and
    sectional curvatures of planes pushed forward by ``D phi``."""
    f = tanh_mlp(2, 5)
    mix = torch.tensor([[1.0, 0.4], [-0.3, 0.8]], dtype=F64)

    def phi(z: Tensor) -> Tensor:
        return z @ mix.T + 0.2 * torch.tanh(z).flip(-1)

    mf, mg = PullbackMetric(f), PullbackMetric(lambda z: f(phi(z)), latent_dim=2)
    z, u, v = points(6, 2), torch.randn(6, 2, dtype=F64), torch.randn(6, 2, dtype=F64)
    y = phi(z)
    torch.testing.assert_close(mg.scalar_curvature(z), mf.scalar_curvature(y), **TOL)
    torch.testing.assert_close(mg.gaussian_curvature(z), mf.gaussian_curvature(y), **TOL)
    dphi = torch.stack([ag_jacobian(lambda x: phi(x[None])[0], x) for x in z])
    pu, pv = (dphi @ u.unsqueeze(-1)).squeeze(-1), (dphi @ v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(
        mg.sectional_curvature(z, u, v), mf.sectional_curvature(y, pu, pv), **TOL
    )


# ------------------------------------------------------------------ against autograd
@pytest.mark.parametrize("make", [lambda: tanh_mlp(3, 6), smooth_mlp], ids=["tanh", "smooth"])
def test_against_autograd_christoffels(make):
    f = make()
    m = PullbackMetric(f)
    assert m.jacobian_method == "chain"
    z, u, v = points(3, 3), torch.randn(3, 3, dtype=F64), torch.randn(3, 3, dtype=F64)
    with torch.no_grad():
        ours = m.riemann_tensor(z)
    ref = autograd_riemann(pullback_metric_at(f), z).detach()
    assert ref.abs().max() > 1e-3  # the test decoder is curved
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-9)
    expected = contract(ref, m.metric_tensor(z).detach(), u, v)
    with torch.no_grad():
        torch.testing.assert_close(m.ricci_tensor(z), expected["ricci"], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(m.scalar_curvature(z), expected["scalar"], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(
            m.sectional_curvature(z, u, v), expected["sectional"], rtol=1e-7, atol=1e-9
        )


def test_chain_and_forward_agree_with_ridge():
    f = smooth_mlp()
    z = points(5, 3)
    chain = PullbackMetric(f, jacobian="chain", ridge=0.01)
    forward = PullbackMetric(f, jacobian="forward", ridge=0.01)
    with torch.no_grad():
        torch.testing.assert_close(chain.riemann_tensor(z), forward.riemann_tensor(z), **TOL)
        # the ridge changes the metric, hence the curvature
        plain = PullbackMetric(f).scalar_curvature(z)
        assert (chain.scalar_curvature(z) - plain).abs().max() > 1e-6


def test_functional_from_full_hessian_matches_jet():
    f = tanh_mlp(3, 6)
    z = points(4, 3)
    with torch.no_grad():
        gram = C.gram_from_derivatives(*hessian(f, z))
        torch.testing.assert_close(gram, C.jet_gram(*jet(f, z)), **TOL)


def test_gaussian_metric_is_the_stacked_map():
    mean, std = tanh_mlp(2, 5), nn.Sequential(nn.Linear(2, 4), nn.Softplus()).to(F64)
    m = PullbackMetric.gaussian(mean, std)
    z = points(3, 2)
    stacked = pullback_metric_at(lambda x: torch.cat([mean(x), std(x)], dim=-1))
    ref = autograd_riemann(stacked, z).detach()
    with torch.no_grad():
        torch.testing.assert_close(m.riemann_tensor(z), ref, rtol=1e-7, atol=1e-9)
        mean_only = PullbackMetric(mean).gaussian_curvature(z)
        assert (m.gaussian_curvature(z) - mean_only).abs().max() > 1e-6


# ------------------------------------------------------------------ geomstats
def test_geomstats_adapter_matches_geomstats_autodiff():
    f = tanh_mlp(3, 6)
    space = pg_geomstats.latent_space(PullbackMetric(f))
    z, u, v = points(2, 3), torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    # geomstats' own route: autodiff of (our closed-form) Christoffel symbols
    ref = RiemannianMetric.riemann_tensor(space.metric, z)
    torch.testing.assert_close(space.metric.riemann_tensor(z), ref, **TOL)
    expected = contract(ref, space.metric.metric_matrix(z), u, v)
    torch.testing.assert_close(space.metric.ricci_tensor(z), expected["ricci"], **TOL)
    torch.testing.assert_close(space.metric.scalar_curvature(z), expected["scalar"], **TOL)
    torch.testing.assert_close(
        space.metric.sectional_curvature(u, v, z), expected["sectional"], **TOL
    )


def test_geomstats_shapes_and_broadcasting():
    space = pg_geomstats.latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))
    z = points(5, 2)
    assert space.metric.riemann_tensor(z[0]).shape == (2, 2, 2, 2)
    assert space.metric.ricci_tensor(z).shape == (5, 2, 2)
    assert space.metric.scalar_curvature(z[0]).shape == ()
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.3, 1.0])  # float32 in, float32 out
    out = space.metric.sectional_curvature(a, b, z.float())
    assert out.shape == (5,) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.ones(5))
    # geomstats' own curvature() now builds on the closed-form Riemann tensor
    a, b, gm = a.double(), b.double(), space.metric
    num = gm.inner_product(gm.curvature(a, b, b, z), a, z)  # <R(a, b) b, a>
    area = gm.squared_norm(a, z) * gm.squared_norm(b, z) - gm.inner_product(a, b, z) ** 2
    torch.testing.assert_close(num, area, **TOL)
    with pytest.raises(ValueError, match="base_point"):
        space.metric.scalar_curvature()


# ------------------------------------------------------------------ plumbing, bad input
def test_single_points_chunks_and_dtypes():
    f = smooth_mlp(2, 6)
    m, small = PullbackMetric(f), PullbackMetric(f, chunk_size=3)
    z = points(10, 2)
    with torch.no_grad():
        torch.testing.assert_close(small.scalar_curvature(z), m.scalar_curvature(z), **TOL)
        assert m.scalar_curvature(z[0]).shape == ()
        assert m.riemann_tensor(z[0]).shape == (2, 2, 2, 2)
        assert m.ricci_tensor(z[0]).shape == (2, 2)
        e1, e2 = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
        # one (d,) plane for all points; Gaussian curvature is the sectional one for d = 2
        torch.testing.assert_close(m.sectional_curvature(z, e1, e2), m.gaussian_curvature(z))
        f32 = PullbackMetric(smooth_mlp(2, 6).float())
        assert f32.gaussian_curvature(z.float()).dtype == torch.float32


def test_bad_input():
    m = PullbackMetric(InverseStereographic(), latent_dim=3)
    z = points(4, 3)
    u = torch.randn(4, 3, dtype=F64)
    with pytest.raises(ValueError, match="d = 3"):
        m.gaussian_curvature(z)
    with pytest.raises(ValueError, match="zero or parallel at 1 of 4"):
        m.sectional_curvature(z, u, torch.cat([torch.zeros(1, 3, dtype=F64), u[1:] + 1]))
    with pytest.raises(ValueError, match="zero or parallel at 4 of 4"):
        m.sectional_curvature(z, u, -2.5 * u)
    with pytest.raises(ValueError, match="latent dimension"):
        m.scalar_curvature(points(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        m.ricci_tensor(torch.tensor([[0.0, float("nan"), 1.0]], dtype=F64))
    with pytest.raises(ValueError, match="same shape"):
        m.sectional_curvature(z, u[:2], u[:2] + 1)


def test_singular_metric_warns_and_regularises():
    # The first layer has rank 1: the decoder ignores a latent direction, G is singular.
    dec = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 5)).to(F64)
    with torch.no_grad():
        dec[0].weight[:, 1] = 0.0
    z = points(3, 2)
    with pytest.warns(SingularMetricWarning, match="singular at 3 of 3"):
        k = PullbackMetric(dec).scalar_curvature(z)
    assert torch.isfinite(k).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularMetricWarning)
        PullbackMetric(dec, ridge=1e-3).scalar_curvature(z)  # a ridge: no warning


class RBFLike(nn.Module):
    """A std network that is not an ``nn.Sequential``: forward mode in the mixed path."""

    def __init__(self) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(4, 2, dtype=F64))

    def forward(self, z: Tensor) -> Tensor:
        sq = (z[:, None] - self.centres).square().sum(-1)
        return 0.5 + torch.exp(-sq)


def test_gaussian_mixed_chain_and_forward_mode():
    """A Gaussian decoder with a Sequential mean and any std: the parts' Gram matrices add."""
    mean, std = tanh_mlp(2, 5), RBFLike()
    z = points(6, 2)
    auto = PullbackMetric.gaussian(mean, std)
    forward = PullbackMetric.gaussian(mean, std, jacobian="forward")
    with torch.no_grad():
        torch.testing.assert_close(auto.riemann_tensor(z), forward.riemann_tensor(z), **TOL)
    k = auto.detached().gaussian_curvature(z)
    assert k.grad_fn is None
    torch.testing.assert_close(k, forward.gaussian_curvature(z).detach(), **TOL)
    # plain callables as parts (not nn.Modules) take part too
    plain = PullbackMetric.gaussian(mean, lambda x: std(x), latent_dim=2)
    with torch.no_grad():
        torch.testing.assert_close(plain.gaussian_curvature(z), k, **TOL)
