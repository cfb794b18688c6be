"""Benchmark curvature on the seed's decoder (2 -> 512 ReLU -> 784 sigmoid), float32.

Prints, for ``scalar_curvature`` at batch 2048, the ratio of its time to one plain forward
pass (target <= 12: the primal, two tangents and three second-order tangents, which start
only at the last activation after the ReLU), for the chain-rule path (the default for
``nn.Sequential``) and generic forward mode, against:

* a straightforward nested-``jacfwd`` version (``vmap(jacfwd(jacfwd(f)))`` for the full
  Hessian, then the normal parts ``II = H - J G^{-1} J^T H`` formed in ``R^D``);
* geomstats' autodiff curvature on the same metric, on smaller batches, per point:
  ``RiemannianMetric.riemann_tensor`` (autodiff of the Christoffel symbols, here our
  closed-form ones through the adapter) contracted to the scalar curvature, and geomstats'
  own ``PullbackMetric`` of the decoder (an ``ImmersedSet``) whose Christoffels are
  themselves autodiff Hessians.

Ratios to the forward pass are medians of per-repeat ratios, each repeat timing one
forward pass right before the method (see ``bench_metric.py``); likewise each geomstats
run is paired with a run of ours. A float64 cross-check compares the methods' values, and
geomstats' own ``PullbackMetric`` curvature is shown against ours and on the unit sphere.

Usage::

    python benchmarks/bench_curvature.py           # about a minute on 2 cores
    python benchmarks/bench_curvature.py --quick

(from a git worktree whose package is not the installed one: ``PYTHONPATH=.`` first).
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import bench_metric
import torch
from bench_metric import LATENT, geomstats_space, seed_decoder, time_fn, time_vs_ref
from torch import Tensor
from torch.func import jacfwd, vmap

# isort: off
import pullback_geom.geomstats as pg_geomstats  # before geomstats: its pytorch backend
from geomstats.geometry.riemannian_metric import RiemannianMetric
# isort: on

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
warnings.filterwarnings("ignore", category=DeprecationWarning)

BATCH = 2048


def nested_jacfwd_scalar(decoder, z: Tensor) -> Tensor:
    """Scalar curvature the straightforward way: full Jacobian and Hessian by nested
    ``jacfwd``, normal parts of the Hessian in observation space, then the Gauss formula."""

    def f(x: Tensor) -> Tensor:
        return decoder(x[None]).reshape(-1)

    jac = vmap(jacfwd(f))(z)  # (B, D, d)
    hess = vmap(jacfwd(jacfwd(f)))(z)  # (B, D, d, d)
    ginv = torch.linalg.inv(jac.mT @ jac)
    coef = torch.einsum("bkl,bal,baij->bkij", ginv, jac, hess)
    normal = hess - torch.einsum("bak,bkij->baij", jac, coef)
    mean = torch.einsum("bij,baij->ba", ginv, normal)
    return mean.square().sum(-1) - torch.einsum("bik,bjl,baij,bakl->b", ginv, ginv, normal, normal)


def scalar_from_riemann(space, z: Tensor, riemann: Tensor) -> Tensor:
    """``S = G^{ik} R^j_{ijk}``, geomstats' contraction."""
    ricci = torch.einsum("...ijkj->...ik", riemann)
    return torch.einsum("...ij,...ij->...", space.metric.cometric_matrix(z), ricci)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    reps = 5 if args.quick else 15
    torch.set_num_threads(max(1, torch.get_num_threads()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load {load:.1f}"
    )

    decoder = seed_decoder()
    torch.manual_seed(1)
    z = torch.randn(BATCH, LATENT)

    def forward() -> None:
        with torch.no_grad():
            decoder(z)

    t_fwd = time_fn(forward, reps, warmup=3)
    print(f"\nscalar curvature, batch {BATCH}, float32; forward pass {1e3 * t_fwd:.1f} ms")
    print(f"{'method':<44} {'ms':>8} {'x forward':>10} {'(best/best)':>11}")
    results = {}

    def row(name: str, fn, repeats: int = reps) -> None:
        t, (ratio, best) = time_vs_ref(fn, forward, repeats, warmup=2)
        results[name] = t / BATCH
        print(f"{name:<44} {1e3 * t:>8.1f} {ratio:>10.1f} {best:>11.1f}")

    chain = PullbackMetric(decoder)
    fwd = PullbackMetric(decoder, jacobian="forward")

    def no_grad(fn):
        def call():
            with torch.no_grad():
                fn()

        return call

    row("ours, chain, params require grad", lambda: chain.scalar_curvature(z))
    row("ours, chain, .detached()", lambda: chain.detached().scalar_curvature(z))
    row("ours, chain, gaussian_curvature, no_grad", no_grad(lambda: chain.gaussian_curvature(z)))
    row("ours, forward mode, .detached()", lambda: fwd.detached().scalar_curvature(z))
    row("nested jacfwd reference, no_grad", no_grad(lambda: nested_jacfwd_scalar(decoder, z)))

    # -- geomstats, per point on small batches. Each geomstats run is paired with a run of
    # ours (batch 2048, detached as the geomstats adapter uses it, same dtype) right before
    # it, and the per-point ratio is the median over pairs: other processes' load cancels.
    dec64 = seed_decoder(torch.float64)
    z64 = z.double()
    ours64 = PullbackMetric(dec64)
    space = pg_geomstats.latent_space(ours64)  # its christoffels: our closed form
    gs_route = RiemannianMetric.riemann_tensor  # geomstats' autodiff of the Christoffels
    zs_ad = z64[:16]
    gs_native = geomstats_space(decoder)
    pairs = [
        (
            "geomstats riemann_tensor (autodiff of our Christoffels), float64, 16 points",
            lambda: gs_route(space.metric, zs_ad),
            len(zs_ad),
            lambda: ours64.detached().scalar_curvature(z64),
        ),
        (
            "geomstats PullbackMetric.scalar_curvature, float32, 1 point",
            lambda: gs_native.metric.scalar_curvature(z[:1]),
            1,
            lambda: chain.detached().scalar_curvature(z),
        ),
    ]
    print("\ngeomstats, per point, each run paired with one of ours (batch 2048, detached)")
    for name, theirs, n, ours in pairs:
        t, (ratio, best) = time_vs_ref(theirs, ours, 3 if args.quick else 5)
        ratio, best = ratio * BATCH / n, best * BATCH / n  # per point
        print(f"{name:<74} {1e3 * t / n:>8.1f} ms/point  ours {ratio:>7,.0f}x faster")
    with torch.no_grad():
        s_native = gs_native.metric.scalar_curvature(z[:1])

    # -- cross-checks in float64
    zc = z64[:16]
    m64 = ours64.detached()
    with torch.no_grad():
        s_chain = m64.scalar_curvature(zc)
        s_fwd = PullbackMetric(dec64, jacobian="forward").detached().scalar_curvature(zc)
        s_nested = nested_jacfwd_scalar(dec64, zc)
        s32 = chain.detached().scalar_curvature(z[:16]).double()
    s_gs = scalar_from_riemann(space, zc, gs_route(space.metric, zc)).detach()
    s_chain = s_chain.detach()
    print(
        f"\ncross-checks (float64, 16 points, max |S| = {s_chain.abs().max():.3g}): "
        f"|chain - forward| {(s_chain - s_fwd).abs().max():.1e}, "
        f"|chain - nested jacfwd| {(s_chain - s_nested).abs().max():.1e}, "
        f"|chain - geomstats autodiff| {(s_chain - s_gs).abs().max():.1e}; "
        f"float32 vs float64 max rel. {((s32 - s_chain).abs() / s_chain.abs()).max():.1e}"
    )
    # geomstats' own PullbackMetric differentiates Christoffels built from Jacobians and
    # Hessians computed without create_graph: their derivatives come out as zero.
    print(
        f"geomstats PullbackMetric scalar curvature at z[0]: {s_native.item():.3e}, "
        f"ours {s_chain[0].item():.3e}"
    )
    bench_metric.OBS = 3  # geomstats_space embeds in R^OBS
    sphere = geomstats_space(InverseStereographic())
    s_sphere = sphere.metric.scalar_curvature(torch.tensor([[0.3, -0.2]], dtype=torch.float64))
    print(f"geomstats PullbackMetric on the unit 2-sphere: S = {s_sphere.item():.3g} (true: 2)")


if __name__ == "__main__":
    main()
