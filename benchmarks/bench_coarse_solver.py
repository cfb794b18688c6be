"""The coarse energy solver of high-dimensional distance matrices: float32 against
bfloat16 Jacobians.

``pullback-geom distances --route solver --n-points 5 --tol 1e-2`` solves every pair
with the energy solver on 5 nodes. Its cost is the decoder's Jacobians; with
``--jacobian-dtype bfloat16`` the chain rule forms them in bfloat16 (the energies and
lengths stay float32). This times both on the same pairs, prints milliseconds a pair,
the ratio, the extrapolated time of a 1,000 x 1,000 matrix, and how far the bfloat16
lengths are from the float32 ones.

    python benchmarks/bench_coarse_solver.py [--checkpoint runs/m16] [--pairs 4000]

Without ``--checkpoint``: a decoder of the write-up's shape (d -> 512 -> 784, ReLU,
sigmoid) with random weights, ``--latent-dim`` 16, and Gaussian codes.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from pullback_geom import PullbackMetric, vae
from pullback_geom.geodesics import connecting_geodesic

MATRIX_PAIRS = 1000 * 999 // 2


def _metric_and_codes(args) -> tuple[PullbackMetric, torch.Tensor, str]:
    if args.checkpoint is not None:
        metric = vae.load(args.checkpoint).pullback_metric()
        codes = vae.load_latents(args.checkpoint).codes.float()
        return metric, codes, f"{args.checkpoint} (d = {codes.shape[1]})"
    torch.manual_seed(0)
    d = args.latent_dim
    decoder = nn.Sequential(nn.Linear(d, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())
    metric = PullbackMetric(decoder).detached()
    return metric, torch.randn(2000, d), f"a random d = {d} -> 512 -> 784 ReLU decoder"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a trained model's folder")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--n-points", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-2)
    args = parser.parse_args()

    metric, codes, what = _metric_and_codes(args)
    gen = torch.Generator().manual_seed(0)
    ii = torch.randint(len(codes), (args.pairs,), generator=gen)
    jj = torch.randint(len(codes), (args.pairs,), generator=gen)
    keep = ii != jj
    p, q = codes[ii[keep]], codes[jj[keep]]
    n = len(p)
    options = {"n_points": args.n_points, "tol": args.tol, "init_curve": "straight"}
    print(
        f"{n:,} pairs of {what}, {args.n_points} nodes, tol {args.tol:g}, "
        f"{torch.get_num_threads()} torch threads"
    )
    connecting_geodesic(metric, p[:64], q[:64], warn=False, **options)  # warm-up
    rows, lengths = {}, {}
    for name in ("float32", "bfloat16"):
        extra = {} if name == "float32" else {"jacobian_dtype": torch.bfloat16}
        t = time.perf_counter()
        res = connecting_geodesic(metric, p, q, warn=False, **options, **extra)
        seconds = time.perf_counter() - t
        lengths[name] = res.length
        rows[name] = seconds / n
        print(
            f"  {name:>8} Jacobians: {1e3 * seconds / n:.3f} ms a pair, "
            f"{res.iterations.float().mean():.2f} iterations, "
            f"{res.converged.float().mean():.1%} converged; 1,000 x 1,000 "
            f"~{MATRIX_PAIRS * seconds / n / 60:.1f} min (extrapolated)"
        )
    rel = (lengths["bfloat16"] / lengths["float32"] - 1).abs()
    print(
        f"  bfloat16 / float32 time: {rows['bfloat16'] / rows['float32']:.2f}; lengths apart "
        f"by {rel.median():.1e} (median), {rel.quantile(0.9):.1e} (p90)"
    )


if __name__ == "__main__":
    main()
