"""Benchmark ``PullbackMetric`` on the seed's decoder (2 -> 512 ReLU -> 784 sigmoid).

Prints, at batch 4096:

* metric evaluations per second and the ratio of ``metric_tensor`` time to one plain
  forward pass (target <= 3.5; the floor is about 3: the primal plus two tangents),
  for ``jacobian="chain"`` and ``"forward"``, with the decoder's parameters requiring
  grad (as users call it), with :meth:`PullbackMetric.detached` and under ``torch.no_grad``;
* ``christoffel_symbols`` and ``geodesic_acceleration`` (points/s, ratio to a forward pass);
* speed-ups over the seed's ``diag_embed`` chain and over geomstats' own autodiff
  ``PullbackMetric`` (both measured in the same run, on smaller batches: they are slow);
* the peak memory of ``metric_tensor`` on 1,000,000 points, measured as the growth of
  the peak RSS in a fresh subprocess (torch allocations are invisible to tracemalloc).

Ratios to the forward pass are medians of per-repeat ratios, each repeat timing one
forward pass right before the method, so that load from other processes cancels out.

Usage::

    python benchmarks/bench_metric.py            # full run, 2.5 to 3.5 minutes on 2 cores
    python benchmarks/bench_metric.py --quick    # about a minute; memory on 100,000 points
    python benchmarks/bench_metric.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
from _memory import proc_status_mib, reset_peak_rss  # benchmarks/_memory.py
from torch import nn

from pullback_geom import PullbackMetric

# torch's forward-mode decompositions call the deprecated ``torch.jit.script`` once, on
# first use of ``torch.func.jvp``; the warning is torch-internal and says nothing here.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
warnings.filterwarnings("ignore", category=DeprecationWarning)

LATENT, HIDDEN, OBS = 2, 512, 784
BATCH = 4096


def seed_decoder(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The seed's decoder, randomly initialised with ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OBS), nn.Sigmoid())
    return dec.to(dtype)


def seed_metric(decoder: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    """The seed's method: ``J = diag(sigmoid'(h2)) W2 diag(relu'(h1)) W1``, ``G = J^T J``.

    Written from the seed's description, with explicit ``(B, 784, 784)`` and
    ``(B, 512, 512)`` diagonal matrices multiplied left to right.
    """
    lin1, _, lin2, _ = decoder
    h1 = lin1(z)
    a1 = torch.relu(h1)
    h2 = lin2(a1)
    x = torch.sigmoid(h2)
    d2 = torch.diag_embed(x * (1 - x))  # (B, 784, 784)
    d1 = torch.diag_embed((h1 > 0).to(z.dtype))  # (B, 512, 512)
    jac = d2 @ lin2.weight @ d1 @ lin1.weight  # (B, 784, 2)
    return jac.mT @ jac


# ---------------------------------------------------------------------------- timing
def time_fn(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_vs_ref(
    fn: Callable[[], object], ref: Callable[[], object], repeats: int, warmup: int = 1
) -> tuple[float, tuple[float, float]]:
    """Median time of ``fn``, and ``(median of per-repeat t(fn) / t(ref), min / min)``.

    Pairing each method run with a forward pass run just before it cancels slow drifts in
    machine load; the ratio of best times is kept as a second opinion (on a loaded machine
    it is biased upwards for methods much slower than the reference).
    """
    for _ in range(warmup):
        ref()
        fn()
    times, ratios, refs = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ref()
        t_ref = time.perf_counter() - start
        refs.append(t_ref)
        start = time.perf_counter()
        fn()
        t_fn = time.perf_counter() - start
        times.append(t_fn)
        ratios.append(t_fn / t_ref)
    return statistics.median(times), (statistics.median(ratios), min(times) / min(refs))


# ---------------------------------------------------------------------------- geomstats
def geomstats_space(decoder: nn.Module):
    """A geomstats ``ImmersedSet`` whose immersion is ``decoder``, with its autodiff
    ``PullbackMetric`` (Jacobians by ``gs.autodiff.jacobian_vec``, a Python loop over
    points of ``torch.autograd.functional.jacobian``; Hessians by ``hessian_vec``, one
    ``torch.autograd.functional.hessian`` per point and output coordinate)."""
    os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    import geomstats.backend  # noqa: F401  (switches torch's default dtype to float64)
    from geomstats.geometry.base import ImmersedSet
    from geomstats.geometry.euclidean import Euclidean
    from geomstats.geometry.pullback_metric import PullbackMetric as GsPullbackMetric

    torch.set_default_dtype(torch.float32)

    class DecoderImage(ImmersedSet):
        @staticmethod
        def default_metric():
            return GsPullbackMetric

        def __init__(self, dec: nn.Module) -> None:
            self.decoder = dec
            super().__init__(dim=LATENT, equip=True)  # equips GsPullbackMetric

        def _define_embedding_space(self):
            return Euclidean(OBS, equip=True)

        def immersion(self, point):
            return self.decoder(point)

    return DecoderImage(decoder)


# ---------------------------------------------------------------------------- memory
def memory_child(n_points: int, mode: str) -> None:
    """Run in a fresh interpreter: peak RSS growth of ``metric_tensor`` on ``n_points``
    (with ``mode="grad"``: and of a backward pass to the decoder's parameters).

    Peak RSS is the kernel's ``VmHWM``, reset to the current RSS right before the call, so
    the import of torch does not mask it; without ``/proc`` it falls back to
    ``ru_maxrss`` (which then only shows growth above the import's peak).
    """
    decoder = seed_decoder()
    metric = PullbackMetric(decoder)
    if mode == "detached":
        metric = metric.detached()
    metric.metric_tensor(torch.randn(64, LATENT))  # load kernels and probe D
    z = torch.randn(n_points, LATENT)
    reset = reset_peak_rss()
    rss_before = proc_status_mib("VmRSS") if reset else None
    if rss_before is None:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    g = metric.metric_tensor(z)
    if mode == "grad":  # the backward pass recomputes each checkpointed chunk
        g.square().sum().backward()
    seconds = time.perf_counter() - start
    peak = proc_status_mib("VmHWM") if reset else None
    source = "VmHWM"
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        source = "ru_maxrss"
    out = {
        "n_points": n_points,
        "mode": mode,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "peak_growth_mib": peak - rss_before,
        "source": source,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output_mib": g.numel() * g.element_size() / 2**20,
        "seconds": seconds,
        "chunk_size": metric.evaluator.rows("jacobian"),
        "output_requires_grad": g.requires_grad,
    }
    print(json.dumps(out))


def measure_memory(n_points: int, mode: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", str(n_points), mode]
    env = {k: v for k, v in os.environ.items() if k != "GEOMSTATS_BACKEND"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        return {"n_points": n_points, "mode": mode, "error": proc.stderr.strip()[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- main
def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def times(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}x" if x < 10 else f"{x:,.0f}x"


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_at_start": load[0] if load else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller baselines")
    parser.add_argument("--json", metavar="PATH", help="also save the numbers as JSON")
    parser.add_argument(
        "--memory-runs",
        type=int,
        default=1,
        metavar="K",
        help="repeat the large-batch memory measurement K times (peak RSS varies run to run)",
    )
    parser.add_argument("--_memory-child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        memory_child(int(args._memory_child[0]), args._memory_child[1])
        return

    quick = args.quick
    reps_fast = 7 if quick else 15  # metric_tensor, forward
    reps_slow = 2 if quick else 3  # christoffels, geodesic acceleration
    seed_batch, seed_reps = (64, 2) if quick else (128, 3)
    gs_batch, gs_reps = (8, 2) if quick else (32, 3)
    gs_chr_batch, gs_chr_reps = (1, 1) if quick else (2, 2)
    mem_points = 100_000 if quick else 1_000_000

    info = machine_info()
    wall_start = time.perf_counter()
    print("pullback_geom metric benchmark" + (" (--quick)" if quick else ""))
    print(
        f"python {info['python']}, torch {info['torch']}, {info['threads']} intra-op threads "
        f"({info['interop_threads']} inter-op), {info['cpu_count']} CPUs: {info['cpu']}; "
        f"1-min load average at start {fmt(info['loadavg_1min_at_start'], '.2f')}"
    )
    print(
        f"decoder: {LATENT} -> {HIDDEN} ReLU -> {OBS} sigmoid, float32, random init "
        "(torch.manual_seed(0); trained weights come with a later issue)"
    )
    print(
        "timing: warm-up, then median of repeats (time.perf_counter); 'ratio to fwd' is the "
        "median of per-repeat\n"
        "t(method) / t(forward pass under no_grad, same batch, timed right before); the JSON "
        "also has min / min"
    )
    load = info["loadavg_1min_at_start"]
    if load is not None and info["cpu_count"] and load > 0.75 * info["cpu_count"]:
        print(
            f"WARNING: load average {load:.1f} on {info['cpu_count']} CPUs: other processes "
            "compete for the cores, so\npoints/s vary run to run (ratios, timed in pairs, "
            "less so: about +-15% seen)"
        )
    print()

    decoder = seed_decoder()
    assert all(p.requires_grad for p in decoder.parameters())
    torch.manual_seed(1)
    z = torch.randn(BATCH, LATENT)
    v = torch.randn(BATCH, LATENT)

    def forward() -> None:
        with torch.no_grad():
            decoder(z)

    rows: list[dict] = []

    def add(name, batch, seconds, ratio=None, kind=None, note=""):
        ratio, best = ratio if isinstance(ratio, tuple) else (ratio, ratio)
        rows.append(
            {
                "method": name,
                "batch": batch,
                "seconds": seconds,
                "points_per_s": batch / seconds,
                "ratio_to_forward": ratio,
                "ratio_to_forward_best": best,
                "kind": kind,
                "note": note,
            }
        )

    t_fwd = time_fn(forward, reps_fast, warmup=3)
    add("forward pass, no_grad (reference)", BATCH, t_fwd, 1.0)
    t_fwd_grad, r = time_vs_ref(lambda: decoder(z), forward, reps_fast)
    add("forward pass, params require grad", BATCH, t_fwd_grad, r)

    # -- metric_tensor
    for method in ("chain", "forward"):
        metric = PullbackMetric(decoder, jacobian=method)
        detached = metric.detached()

        def no_grad_call(metric=metric):
            with torch.no_grad():
                metric.metric_tensor(z)

        variants = [
            ("params require grad", lambda metric=metric: metric.metric_tensor(z)),
            (".detached()", lambda detached=detached: detached.metric_tensor(z)),
            ("torch.no_grad()", no_grad_call),
        ]
        for label, fn in variants:
            t, r = time_vs_ref(fn, forward, reps_fast, warmup=2)
            add(f"metric_tensor {method:<7} {label}", BATCH, t, r, kind="metric")

    # -- correctness cross-check of the baselines against metric_tensor
    metric = PullbackMetric(decoder)
    with torch.no_grad():
        zs = z[:seed_batch]
        g_ref = metric.metric_tensor(zs)
        seed_err = (seed_metric(decoder, zs) - g_ref).abs().max().item()

    # -- seed baseline
    def seed_call():
        with torch.no_grad():
            seed_metric(decoder, z[:seed_batch])

    t_seed = time_fn(seed_call, seed_reps)
    add(
        "seed diag_embed chain, no_grad",
        seed_batch,
        t_seed,
        None,
        kind="seed",
        note="(B,784,784) and (B,512,512) diagonals",
    )
    seed_pps = seed_batch / t_seed

    # -- christoffel symbols and geodesic acceleration
    for method in ("chain", "forward"):
        metric = PullbackMetric(decoder, jacobian=method)
        t, r = time_vs_ref(lambda m=metric: m.christoffel_symbols(z), forward, reps_slow)
        add(f"christoffel_symbols    {method:<7} grad", BATCH, t, r, kind="christoffel")
        t, r = time_vs_ref(lambda m=metric: m.geodesic_acceleration(z, v), forward, reps_slow)
        add(f"geodesic_acceleration  {method:<7} grad", BATCH, t, r, kind="acceleration")
    detached = PullbackMetric(decoder).detached()
    t, r = time_vs_ref(lambda: detached.christoffel_symbols(z), forward, reps_slow)
    add("christoffel_symbols    auto    .detached()", BATCH, t, r, kind="christoffel")
    t, r = time_vs_ref(lambda: detached.geodesic_acceleration(z, v), forward, reps_slow)
    add("geodesic_acceleration  auto    .detached()", BATCH, t, r, kind="acceleration")

    # -- float64 (geomstats' default dtype)
    decoder64 = seed_decoder(torch.float64)
    z64 = z.double()
    metric64 = PullbackMetric(decoder64)
    t64 = time_fn(lambda: metric64.metric_tensor(z64), reps_fast, warmup=2)
    add("metric_tensor chain   float64, grad", BATCH, t64, None, kind="metric64")

    # -- geomstats baseline (imported last: it changes torch's default dtype on import)
    space = geomstats_space(decoder)
    gs_metric = space.metric
    gs_err = (gs_metric.metric_matrix(z[:gs_batch]) - g_ref[:gs_batch]).abs().max().item()
    t_gs = time_fn(lambda: gs_metric.metric_matrix(z[:gs_batch]), gs_reps)
    add("geomstats metric_matrix float32", gs_batch, t_gs, None, kind="gs_metric")
    t_gs_chr = time_fn(lambda: gs_metric.christoffels(z[:gs_chr_batch]), gs_chr_reps)
    add("geomstats christoffels  float32", gs_chr_batch, t_gs_chr, None, kind="gs_christoffel")
    gs_chr = gs_metric.christoffels(z[:1])
    gs_chr_err = (gs_chr - metric.christoffel_symbols(z[:1])).abs().max().item()
    space64 = geomstats_space(decoder64)
    t_gs64 = time_fn(lambda: space64.metric.metric_matrix(z64[:gs_batch]), gs_reps)
    add("geomstats metric_matrix float64", gs_batch, t_gs64, None, kind="gs_metric64")
    assert torch.get_default_dtype() == torch.float32

    gs_pps = {
        "metric": gs_batch / t_gs,
        "christoffel": gs_chr_batch / t_gs_chr,
        # geomstats' geodesic_equation is its christoffels plus two einsums
        "acceleration": gs_chr_batch / t_gs_chr,
        "metric64": gs_batch / t_gs64,
    }
    for row in rows:
        kind = row["kind"]
        row["speedup_vs_seed"] = row["points_per_s"] / seed_pps if kind == "metric" else None
        row["speedup_vs_geomstats"] = row["points_per_s"] / gs_pps[kind] if kind in gs_pps else None

    # -- table
    header = (
        f"{'method':<44} {'batch':>6} {'points/s':>10} {'ratio to fwd':>12} "
        f"{'vs seed':>9} {'vs geomstats':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['method']:<44} {row['batch']:>6} {row['points_per_s']:>10,.0f} "
            f"{fmt(row['ratio_to_forward'], '.2f'):>12} "
            f"{times(row['speedup_vs_seed']):>9} {times(row['speedup_vs_geomstats']):>12}"
        )
    print(
        "\nnotes: 'grad' = the decoder's parameters require grad and autograd is on (how users "
        "call it);\n"
        "  the seed baseline runs under no_grad (its most favourable setting) at batch "
        f"{seed_batch}; geomstats 2.8 (pytorch backend)\n"
        f"  at batch {gs_batch} (metric) and {gs_chr_batch} (christoffels), float32 unless "
        "stated (geomstats' default is float64;\n"
        "  its float64 row compares with 'metric_tensor chain float64'). For second derivatives "
        "'chain' propagates\n"
        "  them layer by layer where the installed pullback_geom does so, 'forward' nests "
        "torch.func JVPs.\n"
        "  geodesic_acceleration 'vs geomstats' compares with geomstats' christoffels, which "
        "its geodesic_equation calls."
    )
    print(
        f"cross-checks: |G_seed - G| max {seed_err:.1e}, |G_geomstats - G| max {gs_err:.1e}, "
        f"|Gamma_geomstats - Gamma| max {gs_chr_err:.1e}"
    )
    chain = next(row for row in rows if row["method"].startswith("metric_tensor chain"))
    chain_ratio, chain_best = chain["ratio_to_forward"], chain["ratio_to_forward_best"]
    print(
        f"metric_tensor (chain, as users call it) / forward pass = {chain_ratio:.2f} "
        f"(min/min: {chain_best:.2f}; target <= 3.5): "
        f"{'PASS' if chain_ratio <= 3.5 else 'FAIL'}"
    )

    # -- memory
    print(
        f"\npeak memory of metric_tensor on {mem_points:,} points "
        "(fresh subprocess, growth of peak RSS):"
    )
    memory = [measure_memory(mem_points, "detached") for _ in range(max(args.memory_runs, 1))]
    # With autograd recording, chunks are checkpointed (only inputs and outputs are kept
    # for backward), so the same bound should hold: measure it directly.
    memory.append(measure_memory(200_000 if quick else mem_points, "grad"))
    for m in memory:
        if "error" in m:
            print(f"  {m['mode']:<9} {m['n_points']:>9,} points: FAILED {m['error']}")
            continue
        print(
            f"  {m['mode']:<9} {m['n_points']:>9,} points: "
            f"peak RSS +{m['peak_growth_mib']:,.0f} MiB over {m['rss_before_mib']:,.0f} MiB "
            f"(output {m['output_mib']:.0f} MiB, chunk {m['chunk_size']}, {m['seconds']:.1f} s)"
        )
    det = [m for m in memory if "error" not in m]
    if det:
        worst = max(m["peak_growth_mib"] for m in det)
        ok = worst < 2048
        print(
            f"  worst peak growth: {worst / 1024:.2f} GiB on up to {mem_points:,} points "
            f"(worst of {len(det)} run(s); < 2 GB: {'PASS' if ok else 'FAIL'})"
        )
    print(
        "  note: the working set of one chunk is about 0.33 GiB; on top of it glibc malloc's\n"
        "  per-thread arenas fragment between chunks, by an amount that changes from run to run\n"
        "  (even with the size of the environment): 0.3 to 1.4 GiB seen on a million points.\n"
        "  MALLOC_ARENA_MAX=1 or MALLOC_MMAP_THRESHOLD_=4194304 make it stable; use\n"
        "  --memory-runs K to see the spread."
    )

    wall = time.perf_counter() - wall_start
    print(f"\ntotal benchmark time {wall:.0f} s")
    if args.json:
        out = {
            "machine": info,
            "quick": quick,
            "rows": rows,
            "memory": memory,
            "cross_checks": {"seed": seed_err, "geomstats": gs_err, "christoffels": gs_chr_err},
            "total_seconds": wall,
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
