"""Geodesics in high-dimensional latents, in the GEORCE runtime protocol.

GEORCE (Rygaard & Hauberg, 2025) times connecting geodesics on VAE decoders shaped as in
their public repository: MNIST-8 (``Linear 8 -> 50``, GELU, three ``ConvTranspose``
layers, ``Linear 64 -> 784``) and CelebA-32 (five ``ConvTranspose`` layers to 3 x 64 x 64,
BatchNorm, GELU, ``d = 32``), with 100 nodes and tolerance 1e-4, seconds a pair as the
best of 5 repeats of 5 runs. Here the same shapes are trained by the toolkit's own
command (the CelebA shape on MNIST resized to 64 x 64 x 3, a stand-in for colour images:
no CelebA is bundled or downloaded)::

    pullback-geom train --arch conv --conv-preset georce-mnist8 --latent-dim 8 \\
        --dataset mnist --epochs 10 --out runs/mnist8
    pullback-geom train --arch conv --conv-preset georce-celeba32 --latent-dim 32 \\
        --dataset mnist-64-rgb --epochs 10 --out runs/celeba32
    python benchmarks/bench_highd.py --checkpoint runs/mnist8 runs/celeba32

For each checkpoint and ``--pairs`` pairs of test codes it prints, per method, seconds a
pair, the median and largest relative length error against the 64-node reference
(``reference_distances``) and how many pairs report convergence: our methods at the
default node count and at 100 nodes with ``tol = 1e-4`` (the protocol), stochman's
batched solver, geomstats' ``PathStraightening`` (on two pairs: it solves one at a time)
and, when importable, GEORCE's own JAX implementation (not a dependency: skipped with a
message otherwise). GEORCE's published CPU figure for their CelebA VAE (1.36 s a pair
against 51.4 s for Adam) is context only: another machine, other weights.
"""

from __future__ import annotations

import argparse
import importlib
import time
import warnings

import torch

from pullback_geom import vae
from pullback_geom.geodesics import BOUNDARY_VALUE, connecting_geodesic
from pullback_geom.geodesics.pairwise import reference_distances

warnings.filterwarnings("ignore")

#: Our energy methods, timed at both node counts (the ODE methods solve other problems).
METHODS = ("lm", "newton-cg", "georce", "lbfgs")


def _best_of(fn, repeat: int, number: int) -> tuple[object, float]:
    """``fn()``'s last result and its best time: the minimum over ``repeat`` repeats of
    the mean of ``number`` runs (the protocol's ``5 x 5``)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            out = fn()
        best = min(best, (time.perf_counter() - start) / number)
    return out, best


def _errors(length: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    err = ((length.to(ref.dtype) - ref) / ref).abs()
    return float(err.median()), float(err.max())


def bench(
    path: str,
    n_pairs: int,
    repeat: int,
    number: int,
    methods: list[str],
    methods_100: list[str],
    path_pairs: int,
) -> list:
    model = vae.load(path)
    metric = model.pullback_metric()
    codes = vae.load_latents(path).codes.float()
    d = codes.shape[1]
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(codes), generator=gen)
    p, q = codes[idx[:n_pairs]], codes[idx[n_pairs : 2 * n_pairs]]
    shape = tuple(model.decoder(codes[:1]).shape[1:])
    print(f"\n{path}: d = {d}, output {shape}, {n_pairs} pairs of test codes")
    ref = reference_distances(metric, p, q)
    straight = metric.curve_length(
        p[:, None] + torch.linspace(0, 1, 257)[None, :, None] * (q - p)[:, None]
    )
    print(
        "straight lines longer than the reference by "
        f"{float(((straight - ref) / ref).median()):.1%} (median)"
    )
    rows = []
    protocol = {"n_points": 100, "tol": 1e-4}
    runs = [(m, "default nodes", {}) for m in methods]
    runs += [(m, "100 nodes, tol 1e-4", protocol) for m in methods_100]
    for method, label, options in runs:
        res, sec = _best_of(
            lambda m=method, o=options: connecting_geodesic(
                metric, p, q, method=m, warn=False, **o
            ),
            repeat,
            number,
        )
        converged = f"{int(res.converged.sum())}/{n_pairs}"
        rows.append((f"{method} ({label})", sec / n_pairs, *_errors(res.length, ref), converged))
    try:
        from pullback_geom.stochman import DecoderManifold

        manifold = DecoderManifold(metric)
        (curve, ok), sec = _best_of(lambda: manifold.connecting_geodesic(p, q), repeat, number)
        with torch.no_grad():
            nodes = curve(torch.linspace(0, 1, 257)).reshape(n_pairs, 257, d)
            length = metric.curve_length(nodes)
        rows.append(
            (
                "stochman connecting_geodesic (batched)",
                sec / n_pairs,
                *_errors(length, ref),
                "all" if ok else "not all (one flag)",
            )
        )
    except ImportError:
        print("stochman not installed: skipped")
    try:
        if path_pairs < 1:
            raise ImportError  # not asked for
        from pullback_geom.geomstats import latent_space  # before geomstats: its backend

        geodesic = importlib.import_module("geomstats.numerics.geodesic")
        solver = geodesic.PathStraightening(latent_space(metric), n_nodes=100)
        k = path_pairs
        lengths, start = [], time.perf_counter()
        for i in range(k):
            geo = solver.geodesic_bvp(p[i : i + 1].double(), q[i : i + 1].double())
            path_ = geo(torch.linspace(0, 1, 257, dtype=torch.float64)).reshape(257, d)
            lengths.append(metric.curve_length(path_.float()[None])[0])
        sec = (time.perf_counter() - start) / k
        length = torch.stack(lengths)
        rows.append(
            (
                f"geomstats PathStraightening (100 nodes, {k} pairs, once)",
                sec,
                *_errors(length, ref[:k]),
                "-",
            )
        )
    except ImportError:
        print("geomstats PathStraightening: not asked for (--path-pairs 0) or not installed")
    try:
        importlib.import_module("georce")
        print("GEORCE's JAX package is importable, but its API is not wired here: skipped")
    except ImportError:
        print(
            "GEORCE's own JAX implementation: not installed (clone its public repository and "
            "put it on PYTHONPATH as `georce`): skipped"
        )
    ours = next(r for r in rows if r[0].startswith("lm (default"))
    print(
        f"\n{'method':58s} {'s/pair':>9s} {'median err':>11s} {'max err':>9s} {'x lm':>6s}"
        "  converged"
    )
    for name, sec, med, worst, conv in rows:
        print(f"{name:58s} {sec:9.3f} {med:11.1e} {worst:9.1e} {sec / ours[1]:6.2f}  {conv}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", required=True)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5, help="protocol: 5")
    parser.add_argument("--number", type=int, default=5, help="protocol: 5")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(BOUNDARY_VALUE))
    parser.add_argument(
        "--methods-100",
        nargs="*",
        default=None,
        choices=list(BOUNDARY_VALUE),
        help="methods timed at the protocol's 100 nodes (default: --methods)",
    )
    parser.add_argument(
        "--path-pairs",
        type=int,
        default=2,
        help="pairs for geomstats' PathStraightening, one at a time (0: skip; ~6 min a "
        "pair at d = 8)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; timing: best of "
        f"{args.repeat} x {args.number}"
    )
    for path in args.checkpoint:
        methods_100 = args.methods if args.methods_100 is None else args.methods_100
        bench(
            path, args.pairs, args.repeat, args.number, args.methods, methods_100, args.path_pairs
        )


if __name__ == "__main__":
    main()
