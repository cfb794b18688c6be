"""The toolkit on decoders people train: convolutional MNIST VAEs (BatchNorm, GELU).

For each checkpoint (``pullback-geom train --arch conv --latent-dim 8|16``), prints:

* the metric tensor of 256 codes: ms, its ratio to one forward pass, and the speed-up
  over ``torch.func.vmap(torch.func.jacfwd(decoder))`` (target >= 1: never slower);
* ``connecting_geodesic`` (defaults) on 16 pairs of test codes: ms a pair and median
  length error against a dense reference (64 nodes, 500 iterations), beside stochman's
  batched ``connecting_geodesic`` on the same pairs;
* ``pairwise_distances`` of ``--points`` codes (default 1,000; the ``"auto"`` route):
  route, seconds, and the median error of 200 sampled entries against the reference;
* the growth of the process's peak RSS over each step (``benchmarks/_memory.py``).

    python benchmarks/bench_decoders.py --checkpoint /work/runs/conv8 /work/runs/conv16

The checkpoints are not bundled (MNIST-trained conv models of a few MB each): train them
with the command in ``docs/models.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _memory import proc_status_mib, reset_peak_rss  # benchmarks/_memory.py

from pullback_geom import vae
from pullback_geom.geodesics import connecting_geodesic, distance_matrix
from pullback_geom.geodesics.pairwise import reference_distances

warnings.filterwarnings("ignore")


def _peak_growth(fn):
    """``fn()``, its seconds, and the growth of the peak RSS while it ran (MiB)."""
    reset = reset_peak_rss()
    before = proc_status_mib("VmRSS") if reset else None
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = proc_status_mib("VmHWM") if reset else None
    growth = None if before is None or peak is None else peak - before
    return out, seconds, growth


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} MiB"


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(path: str, n_points: int) -> None:
    model = vae.load(path)
    metric = model.pullback_metric()
    decoder = metric.decoder
    codes = vae.load_latents(path).codes.float()
    d = codes.shape[1]
    print(f"\n{path}: conv decoder, d = {d}, D = {model.decoder(codes[:1]).numel()}")

    z = codes[:256]
    metric.metric_tensor(z[:2])  # probe: D and the activations, once

    def flat(x):
        return decoder(x[None]).reshape(-1)

    def jacfwd_metric():
        jac = torch.func.vmap(torch.func.jacfwd(flat))(z)
        return jac.mT @ jac

    with torch.no_grad():
        t_forward = _best(lambda: decoder(z))
        t_ours = _best(lambda: metric.metric_tensor(z))
        t_ref = _best(jacfwd_metric)
    err = (metric.metric_tensor(z) - jacfwd_metric()).abs().max() / jacfwd_metric().abs().max()
    print(
        f"metric_tensor, 256 codes: {t_ours * 1e3:.0f} ms ({t_ours / t_forward:.1f}x a forward "
        f"pass); vmap(jacfwd) {t_ref * 1e3:.0f} ms: ours {t_ref / t_ours:.2f}x faster (target "
        f">= 1); max rel. difference {float(err):.1e}"
    )

    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(codes), generator=gen)
    p, q = codes[idx[:16]], codes[idx[16:32]]
    ref = reference_distances(metric, p, q)
    res, t_geo, mem_geo = _peak_growth(lambda: connecting_geodesic(metric, p, q, warn=False))
    err = ((res.length - ref) / ref).abs()
    print(
        f"connecting_geodesic, 16 pairs: {t_geo / 16 * 1e3:.0f} ms a pair, median rel. "
        f"error {float(err.median()):.1e} (max {float(err.max()):.1e}), converged "
        f"{int(res.converged.sum())}/16, peak +{_mib(mem_geo)}"
    )
    try:
        from pullback_geom.stochman import DecoderManifold

        manifold = DecoderManifold(metric)
        (curve, _), t_st, mem_st = _peak_growth(lambda: manifold.connecting_geodesic(p, q))
        with torch.no_grad():
            t = torch.linspace(0, 1, 257)
            nodes = curve(t).reshape(16, 257, d)
            length = metric.curve_length(nodes)
        err = ((length - ref) / ref).abs()
        print(
            f"stochman connecting_geodesic (batched), 16 pairs: {t_st / 16 * 1e3:.0f} ms a pair "
            f"({t_st / t_geo:.1f}x ours), median rel. error {float(err.median()):.1e}, peak "
            f"+{_mib(mem_st)}"
        )
    except ImportError:
        print("stochman not installed: skipped")

    pts = codes[idx[:n_points]]
    out, t_mat, mem_mat = _peak_growth(lambda: distance_matrix(metric, pts, warn=False))
    ii = torch.randint(n_points, (200,), generator=gen)
    jj = torch.randint(n_points, (200,), generator=gen)
    keep = ii != jj
    sampled = reference_distances(metric, pts[ii[keep]], pts[jj[keep]])
    err = ((out.distances[ii[keep], jj[keep]] - sampled) / sampled).abs()
    print(
        f"pairwise_distances, {n_points} codes: route {out.route!r}, {t_mat:.0f} s, median "
        f"rel. error of {int(keep.sum())} sampled entries {float(err.median()):.1e}, peak "
        f"+{_mib(mem_mat)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", required=True, help="conv model folders")
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    for path in args.checkpoint:
        bench(path, args.points)


if __name__ == "__main__":
    main()
