"""``pullback-geom distances``: a checkpoint's codes to a geodesic distance matrix on disk,
on this machine or a Dask cluster, resumable (:mod:`pullback_geom.experiments.distances`)."""

from __future__ import annotations

import argparse

from .common import checkpoint_folder, prepare_out, print_rows, resolve_device
from .options import ROUTE_CHOICES, add_common_options, at_least, checkpoint, positive_float

__all__ = ["add_distances_parser"]


def _client(args):
    """``(client, cluster, description)`` from ``--workers`` / ``--scheduler``; Nones for
    this process alone."""
    if args.workers is None and args.scheduler is None:
        return None, None, "this process"
    try:
        import distributed
    except ImportError as err:
        raise ValueError(
            "--workers and --scheduler need Dask: pip install 'pullback-geom[distributed]'"
        ) from err
    if args.scheduler is not None:
        try:
            client = distributed.Client(args.scheduler, timeout=args.timeout)
        except (OSError, TimeoutError) as err:
            raise ValueError(
                f"no Dask scheduler answered at {args.scheduler} within {args.timeout:g} s ({err})"
            ) from err
        return client, None, f"the Dask scheduler at {args.scheduler}"
    from ..geodesics.cluster import local_cluster

    cluster = local_cluster(args.workers)
    return distributed.Client(cluster), cluster, f"a LocalCluster of {args.workers} workers"


def _distances_cli(args: argparse.Namespace) -> int:
    import torch

    from .. import vae
    from ..experiments.distances import STORE, SUMMARY, distance_job

    device = resolve_device(args.device)
    out = prepare_out(args.out)
    folder = checkpoint_folder(args.checkpoint)
    model = vae.load(folder).to(device)
    latents = vae.load_latents(folder)
    n = len(latents.codes) if args.points is None else args.points
    if n > len(latents.codes):
        raise ValueError(f"--points {n}: {folder} has {len(latents.codes)} test-set codes")
    codes = latents.codes[:n].to(device=device, dtype=torch.float32)
    metric = model.pullback_metric()
    client, cluster, where = _client(args)
    print(
        f"pullback_geom distances: {n:,} test-set codes of {folder} (d = {codes.shape[1]}), "
        f"route {args.route}, blocks of {args.block_size}, on {where} -> {out / STORE}",
        flush=True,
    )
    try:
        summary = distance_job(
            metric,
            codes,
            out,
            indices=torch.arange(n),
            labels=latents.labels[:n],
            route=args.route,
            block_size=args.block_size,
            client=client,
            check_pairs=args.check_pairs,
            progress=None,
            meta={"checkpoint": str(folder), "ran_on": where},
            solver_options={
                k: v
                for k, v in (
                    ("n_points", args.n_points),
                    ("tol", args.tol),
                    ("jacobian_dtype", args.jacobian_dtype),
                )
                if v is not None
            },
        )
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    acc = summary["accuracy"]
    rows = {
        "route": summary["route"],
        "units computed / in the plan": f"{summary['units_computed']} / {summary['units']}",
        "seconds": summary["wall_seconds"],
        "converged pairs": f"{100 * summary['converged_fraction']:.2f} %",
    }
    if acc.get("samples"):
        rows[f"relative error, {acc['samples']} sampled entries (median, p90)"] = (
            f"{acc['median']:.2%}, {acc['p90']:.2%}"
        )
    rows["matrix"] = str(out / STORE)
    rows["summary"] = str(out / SUMMARY)
    print_rows(rows)
    return 0


def add_distances_parser(subparsers) -> None:
    """Register the ``distances`` subcommand on an ``argparse`` subparsers object."""
    cmd = subparsers.add_parser(
        "distances",
        help="a checkpoint's geodesic distance matrix, on disk, resumable, on a Dask cluster",
        description="Compute the geodesic distances between a model's test-set codes in "
        "blocks, written to OUT/distances.zarr as they finish (arrays 'distances' and "
        "'converged', the full symmetric matrix; zarr.open_group(path)['distances'][...] "
        "reads it), with OUT/distances.json: the route, the points, the time and the "
        "relative error of sampled entries against per-pair reference solutions. Run it "
        "again with the same arguments to resume a killed run.",
    )
    cmd.add_argument(
        "--checkpoint", required=True, type=checkpoint,
        help="a trained model's folder, or 'bernoulli'/'gaussian'/'smooth' for the bundled 2-D "
        "MNIST models",
    )  # fmt: skip
    cmd.add_argument("--out", default="outputs/distances", help="default: %(default)s")
    cmd.add_argument(
        "--points", type=at_least(2), default=None,
        help="the first N test-set codes (default: all of them)",
    )  # fmt: skip
    cmd.add_argument(
        "--route", choices=ROUTE_CHOICES, metavar="ROUTE", default="auto",
        help="auto or a route of pullback_geom.geodesics.PAIRWISE_ROUTES (graph, graph+solver, "
        "solver, knn); default: auto",
    )  # fmt: skip
    cmd.add_argument(
        "--n-points", type=at_least(3), default=None,
        help="nodes per curve of the solver routes, end points included (default: 16); "
        "with --tol, a faster and coarser solver: --route solver --n-points 4 --tol 1e-2 "
        "--jacobian-dtype bfloat16 is ~1.6 %% from the reference at d = 16 (1,000 codes in "
        "~4.5 min on 2 cores), where the knn route is ~4 %%",
    )  # fmt: skip
    cmd.add_argument(
        "--tol", type=positive_float, default=None,
        help="the solver routes' stopping rule: a step predicts a relative energy decrease "
        "below TOL (default: 1e-4 in float32)",
    )  # fmt: skip
    cmd.add_argument(
        "--jacobian-dtype", choices=("float32", "bfloat16"), default=None,
        help="the solver routes' Jacobians: bfloat16 forms the Gauss-Newton steps ~1.7x "
        "faster on CPUs with AVX-512 BF16 or AMX (slower without), for coarse solves "
        "(--tol 1e-2); energies and lengths stay float32 (default: float32)",
    )  # fmt: skip
    cmd.add_argument(
        "--block-size", type=at_least(1), default=64,
        help="points per block side, and the chunks of the store (default: %(default)s)",
    )  # fmt: skip
    cmd.add_argument(
        "--check-pairs", type=at_least(0), default=200,
        help="sampled entries checked against per-pair reference solutions; 0 skips "
        "(default: %(default)s)",
    )  # fmt: skip
    where = cmd.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=at_least(1), default=None,
        help="start a Dask LocalCluster of K worker processes (one torch thread each)",
    )  # fmt: skip
    where.add_argument(
        "--scheduler", default=None,
        help="the address of a running Dask scheduler (tcp://host:8786), e.g. of a "
        "dask-jobqueue SLURM cluster",
    )  # fmt: skip
    cmd.add_argument(
        "--timeout", type=positive_float, default=10.0,
        help="seconds to wait for --scheduler (default: %(default)s)",
    )  # fmt: skip
    add_common_options(cmd)
    cmd.set_defaults(func=_distances_cli)
