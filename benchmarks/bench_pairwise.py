"""Distance matrices: one process against a Dask LocalCluster, and the store's overhead.

On the bundled 2-D Bernoulli model (the first ``--points`` test codes), the same matrix
is computed

* in this process (all its torch threads),
* in this process into a zarr store (``store=``: the cost of writing blocks as they
  finish and journalling them),
* on a ``LocalCluster`` of ``--workers`` worker processes, one torch thread each,

and the three are checked equal. Printed: seconds, pairs per second (per worker on the
cluster), and the sampled relative error of the matrix against per-pair reference
solutions (64 nodes, the shorter of a graph and a straight start).

    python benchmarks/bench_pairwise.py [--points 128] [--route graph+solver] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pullback_geom import vae
from pullback_geom.experiments.distances import sampled_error
from pullback_geom.geodesics import pairwise_distances
from pullback_geom.geodesics.cluster import local_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=128)
    parser.add_argument(
        "--route", default="graph+solver", choices=["graph", "graph+solver", "solver"]
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--check-pairs", type=int, default=100)
    args = parser.parse_args()

    import distributed

    metric = vae.load_default("bernoulli").pullback_metric()
    codes = vae.load_latents(vae.default_checkpoint("bernoulli")).codes[: args.points].float()
    n = len(codes)
    pairs = n * (n - 1) // 2
    kw = {"route": args.route, "block_size": args.block_size, "progress": False, "warn": False}
    print(
        f"{n} test codes of the bundled Bernoulli model ({pairs:,} pairs), route "
        f"{args.route}, blocks of {args.block_size}, {torch.get_num_threads()} torch threads "
        "here"
    )

    t = time.perf_counter()
    here = pairwise_distances(metric, codes, **kw)
    t_here = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        stored = pairwise_distances(metric, codes, store=Path(tmp) / "d.zarr", **kw)
        t_store = time.perf_counter() - t
    cluster = local_cluster(args.workers)
    with distributed.Client(cluster) as client:
        t = time.perf_counter()
        there = pairwise_distances(metric, codes, client=client, **kw)
        t_there = time.perf_counter() - t
    cluster.close()

    rows = [
        ("this process", t_here, pairs / t_here, "-"),
        ("this process, store=", t_store, pairs / t_store, f"{t_store / t_here:.2f}x"),
        (
            f"LocalCluster, {args.workers} x 1 thread",
            t_there,
            pairs / t_there / args.workers,
            f"{t_there / t_here:.2f}x",
        ),
    ]
    print(f"\n{'run':<32} {'seconds':>8} {'pairs/s (per worker)':>21} {'vs here':>8}")
    for name, sec, rate, ratio in rows:
        print(f"{name:<32} {sec:>8.1f} {rate:>21.0f} {ratio:>8}")
    same = "bit-identical" if torch.equal(here, there) else "differ"
    print(
        f"\nstore = here: {torch.equal(here, stored)}; cluster vs here: {same}, largest "
        f"difference {float((here - there).abs().max()):.2e}"
    )
    if args.check_pairs:
        acc = sampled_error(metric, codes, here, args.check_pairs)
        print(
            f"relative error of {acc['samples']} sampled entries against per-pair references: "
            f"median {acc['median']:.2%}, p90 {acc['p90']:.2%}"
        )


if __name__ == "__main__":
    main()
