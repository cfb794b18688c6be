"""The matrix-free pieces: the decoder's linearisation (``J v``, ``J^T u`` without ``J``)
against autograd Jacobians, and the ``"newton-cg"`` method against ``"lm"``, whose
minimiser it shares, and within its memory budget on a large output."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from oracles import autograd_jacobian, tanh_mlp
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.linearise import Linearisation
from pullback_geom.geodesics import connecting_geodesic

F64 = torch.float64


def _conv_decoder(d: int = 3) -> nn.Module:
    """ConvTranspose + BatchNorm (eval) + GELU, 1 x 8 x 8 images."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(d, 4 * 4 * 4),
        nn.Unflatten(1, (4, 4, 4)),
        nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1),
        nn.BatchNorm2d(3),
        nn.GELU(),
        nn.Conv2d(3, 1, 3, padding=1),
        nn.Sigmoid(),
    ).to(F64)
    with torch.no_grad():
        net[3].running_mean.uniform_(-0.2, 0.2)
        net[3].running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("make", [lambda: tanh_mlp(3, 7), _conv_decoder])
@pytest.mark.parametrize("forward_mode", [False, True])
def test_linearisation_products_match_the_jacobian(make, forward_mode):
    decoder = make()

    def fn(z):
        return decoder(z).reshape(z.shape[0], -1)

    z = torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    lin = Linearisation(fn, z, rows=3)  # three chunks: 3 + 3 + 1
    lin._forward_mode = forward_mode  # the fallback for decoders without double backward
    jac = autograd_jacobian(decoder, z)
    v = torch.randn(7, 3, dtype=F64)
    u = torch.randn(7, lin.value.shape[1], dtype=F64)
    torch.testing.assert_close(lin.value, fn(z).detach())
    torch.testing.assert_close(lin.jvp(v), (jac @ v[:, :, None])[..., 0])
    torch.testing.assert_close(lin.vjp(u), (jac.mT @ u[:, :, None])[..., 0])


def test_linearisation_of_a_decoder_that_ignores_z():
    lin = Linearisation(lambda z: torch.ones(z.shape[0], 4, dtype=z.dtype), torch.zeros(2, 3), 8)
    assert torch.equal(lin.jvp(torch.ones(2, 3)), torch.zeros(2, 4))
    assert torch.equal(lin.vjp(torch.ones(2, 4)), torch.zeros(2, 3))


@pytest.mark.parametrize("cg_iter", [None, 1])
def test_newton_cg_reaches_the_lm_curves(cg_iter):
    """Same start, same energy, same stopping rule: the same local minimum. ``cg_iter=1``
    forms Jacobians again nearly every step, the default mostly steps by conjugate
    gradients."""
    torch.manual_seed(0)
    metric = PullbackMetric(tanh_mlp(4, 30, width=24))
    p, q = torch.randn(6, 4, dtype=F64), torch.randn(6, 4, dtype=F64)
    ref = connecting_geodesic(metric, p, q, method="lm")
    out = connecting_geodesic(metric, p, q, method="newton-cg", cg_iter=cg_iter)
    assert bool(out.converged.all())
    torch.testing.assert_close(out.length, ref.length, rtol=1e-7, atol=0)
    torch.testing.assert_close(out.points, ref.points, rtol=0, atol=1e-4)


def test_newton_cg_on_a_conv_decoder_in_float32():
    metric = PullbackMetric(_conv_decoder().float())
    torch.manual_seed(2)
    p, q = torch.randn(4, 3), torch.randn(4, 3)
    ref = connecting_geodesic(metric, p, q, method="lm")
    out = connecting_geodesic(metric, p, q, method="newton-cg")
    assert out.points.dtype == torch.float32
    assert bool(out.converged.all())
    # float32 energies: both stop within tol = 1e-4 of the same minimum's energy.
    torch.testing.assert_close(out.length, ref.length, rtol=1e-3, atol=0)


def test_newton_cg_checks_its_option():
    metric = PullbackMetric(tanh_mlp(2, 5))
    p, q = torch.zeros(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="cg_iter"):
        connecting_geodesic(metric, p, q, method="newton-cg", cg_iter=0)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from torch import nn
    from pullback_geom import PullbackMetric
    from pullback_geom.geodesics import connecting_geodesic
    torch.manual_seed(0)
    d, D = 64, 12288
    decoder = nn.Sequential(nn.Linear(d, D), nn.Tanh())
    metric = PullbackMetric(decoder, memory_budget="32MiB")
    p, q = torch.randn(1, d) * 0.05, torch.randn(1, d) * 0.05
    connecting_geodesic(metric, p, q, n_points=4, max_iter=2)  # warm up: allocator, imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = connecting_geodesic(metric, p, q, method=sys.argv[1], n_points=100, max_iter=2,
                              refine=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"growth": after - before, "finite": bool(out.length.isfinite().all())}))
    """
)


def test_newton_cg_solves_long_curves_of_a_large_decoder_within_its_budget():
    """D = 12,288, d = 64, a 100-node curve: its Jacobians would take 98 x 12288 x 64 x
    4 B = 308 MB ("lm" grows by ~650 MB here); under a 32 MiB budget the solver holds a
    few nodes' at a time (~45 MB growth measured)."""
    all_jacobians = 98 * 12288 * 64 * 4
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, "newton-cg"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["finite"]
    assert result["growth"] < all_jacobians / 3, result


@pytest.mark.parametrize(
    ("d", "expected"), [(2, "lm"), (7, "lm"), (8, "newton-cg"), (32, "newton-cg")]
)
def test_auto_solves_curves_matrix_free_from_eight_latent_dimensions(d, expected):
    from pullback_geom.geodesics.registry import resolve

    metric = PullbackMetric(tanh_mlp(d, 5))  # a Sequential: d known up front
    assert resolve("auto", "curve", metric).name == expected
    closure = PullbackMetric(lambda z: z.sin())  # d unknown until points are seen
    assert resolve("auto", "curve", closure, latent_dim=d).name == expected


def test_auto_solves_curves_by_lm_with_low_precision_jacobians():
    """bfloat16 Jacobians make ``"lm"``'s cheap, and would only precondition
    ``"newton-cg"``: ``"auto"`` then stays ``"lm"`` in any dimension, through every entry."""
    from pullback_geom.geodesics import connecting_geodesic, pairwise_distances
    from pullback_geom.geodesics.registry import resolve

    metric = PullbackMetric(tanh_mlp(8, 5))
    low = {"jacobian_dtype": torch.bfloat16}
    assert resolve("auto", "curve", metric, options=low).name == "lm"
    assert resolve("auto", "curve", metric, options={"jacobian_dtype": None}).name == "newton-cg"
    z = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    options = {"n_points": 5, "tol": 1e-2, **low}
    auto = connecting_geodesic(metric, z[:2], z[2:], warn=False, **options)
    lm = connecting_geodesic(metric, z[:2], z[2:], method="lm", warn=False, **options)
    assert torch.equal(auto.points, lm.points)
    dist = pairwise_distances(metric, z, route="solver", **options)
    lm_dist = pairwise_distances(metric, z, route="solver", method="lm", **options)
    assert torch.equal(dist, lm_dist)
