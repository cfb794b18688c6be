"""What ``method="auto"`` picks on smooth decoders, measured: every log (boundary-value)
and exp (initial-value) method on the unit sphere and on the bundled smooth (SiLU) model.

For the logs: milliseconds a pair, how many pairs converged, how far the exact exp
(adaptive Dormand–Prince at tight tolerances) of the returned velocity lands from ``q``
(relative to ``|q - p|``: the log's own error), and the length's error against a dense
energy reference. For the exps: milliseconds a curve and how far ``exp(log q)`` lands
from ``q`` with the log from shooting (the sphere: the closed form).

    python benchmarks/bench_auto_methods.py [--pairs 32]

The registry's ``AUTO`` rule (``pullback_geom/geodesics/registry.py``) takes shooting for
logs and Dormand–Prince for exps on smooth decoders; this script is its measurement.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    BOUNDARY_VALUE,
    INITIAL_VALUE,
    connecting_geodesic,
    exp_map,
    log_map,
)
from pullback_geom.surfaces import InverseStereographic, sphere_distance
from pullback_geom.vae import default_checkpoint, load_default, load_latents

F64 = torch.float64


def _pairs(codes: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(codes), generator=gen)[: 2 * n]
    return codes[idx[:n]], codes[idx[n:]]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _table(name: str, metric: PullbackMetric, p: torch.Tensor, q: torch.Tensor, exact) -> None:
    n = len(p)
    if exact is None:
        exact = connecting_geodesic(
            metric, p, q, method="lm", n_points=64, refine=8, max_iter=500, warn=False
        ).length
    scale = (q - p).norm(dim=-1)
    print(f"\n{name}: {n} pairs; logs (boundary-value methods at their defaults)")
    print(f"{'method':10s} {'ms/pair':>8s} {'conv':>6s} {'exp(log) miss med':>18s} "
          f"{'max':>8s} {'length err med':>15s}")  # fmt: skip
    for method in BOUNDARY_VALUE:
        res, dt = _timed(lambda m=method: connecting_geodesic(metric, p, q, method=m, warn=False))
        end = exp_map(metric, p, res.velocity, method="dopri5", rtol=1e-10, atol=1e-12, warn=False)
        miss = (end - q).norm(dim=-1) / scale
        err = ((res.length - exact) / exact).abs()
        print(
            f"{method:10s} {dt / n * 1e3:8.1f} {int(res.converged.sum()):>3d}/{n:<2d} "
            f"{float(miss.nanmedian()):18.1e} {float(miss.max()):8.1e} "
            f"{float(err.median()):15.1e}"
        )
    v = log_map(metric, p, q, method="shooting", warn=False)
    print(f"{name}: exps (initial-value methods at their defaults) of shooting's logs")
    print(f"{'method':10s} {'ms/curve':>8s} {'miss med':>10s} {'max':>8s}")
    for method in INITIAL_VALUE:
        end, dt = _timed(lambda m=method: exp_map(metric, p, v, method=m, warn=False))
        miss = (end - q).norm(dim=-1) / scale
        print(
            f"{method:10s} {dt / n * 1e3:8.1f} {float(miss.nanmedian()):10.1e} "
            f"{float(miss.max()):8.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    sphere = PullbackMetric(InverseStereographic(), latent_dim=2)
    p, q = (torch.rand(2, args.pairs, 2, dtype=F64) * 2 - 1).unbind(0)
    _table("unit sphere", sphere, p, q, sphere_distance(p, q))
    model = load_default("smooth")
    metric = model.pullback_metric().to(dtype=F64)
    codes = load_latents(default_checkpoint("smooth")).codes.to(F64)
    p, q = _pairs(codes, args.pairs)
    _table("bundled smooth model (SiLU)", metric, p, q, None)


if __name__ == "__main__":
    main()
