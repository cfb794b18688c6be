"""``pullback-geom compare``: every geodesic method on the same pairs, a table and a figure
(:func:`~pullback_geom.experiments.compare.compare_geodesics` on a surface or a checkpoint)."""

from __future__ import annotations

from .options import (
    COMPARE_METHOD_CHOICES,
    add_common_options,
    add_format_option,
    at_least,
    checkpoint,
    comma_list,
)

__all__ = ["add_compare_parser"]


def _cli_metric_and_pairs(args):
    """The metric, ``--pairs`` pairs and a description, from ``--surface``/``--checkpoint``:
    ``(metric, p (n, d), q (n, d), what, codes (N, d) or None, pair indices (n, 2) into
    codes or None)``."""
    import math

    import torch

    from ..metric import PullbackMetric

    gen = torch.Generator().manual_seed(args.seed)
    n = args.pairs
    if args.checkpoint is None:
        from ..surfaces import GaussianBump, InverseStereographic

        if args.surface == "sphere":
            # |z| < 1.5: the great circles stay well inside the chart.
            radius = 1.5 * torch.rand(2 * n, 1, generator=gen, dtype=torch.float64).sqrt()
            angle = 2 * math.pi * torch.rand(2 * n, 1, generator=gen, dtype=torch.float64)
            z = radius * torch.cat([angle.cos(), angle.sin()], 1)
            metric = PullbackMetric(InverseStereographic())
            what = "unit sphere (inverse stereographic chart), |z| < 1.5, float64"
        else:
            # Pairs on either side of the bump, so that geodesics bend around it.
            y = 1.8 * torch.rand(2 * n, 1, generator=gen, dtype=torch.float64) - 0.9
            x = torch.full_like(y, 1.6)
            z = torch.cat([torch.cat([-x[:n], y[:n]], 1), torch.cat([x[n:], y[n:]], 1)])
            metric = PullbackMetric(GaussianBump())
            what = "Gaussian bump (height 2, width 0.6), float64"
        return metric, z[:n], z[n:], what, None, None
    from .. import vae
    from .common import checkpoint_folder

    folder = checkpoint_folder(args.checkpoint)
    model = vae.load(folder)
    codes = vae.load_latents(folder).codes
    if len(codes) < 2 * n:
        raise ValueError(f"--pairs {n} needs {2 * n} test-set codes; {folder} has {len(codes)}")
    # float64, as the adapters compute: the discrete and shooting methods' tolerances
    # (1e-8 on the end point) are below float32's resolution of a decoded image.
    dtype = torch.float64
    idx = torch.randperm(len(codes), generator=gen)[: 2 * n]
    z = codes[idx].to(dtype)
    what = f"{type(model).__name__} from {folder}, test-set codes, {dtype}"
    pairs = torch.stack([idx[:n], idx[n:]], 1)
    return model.pullback_metric().to(dtype=dtype), z[:n], z[n:], what, codes.to(dtype), pairs


def _compare_cli(args) -> int:
    from ..experiments.compare import compare_geodesics
    from ..experiments.report.document import save_arrays, save_figure
    from ..vae.checkpoint import atomic_write_bytes
    from .common import prepare_out, resolve_device

    device = resolve_device(args.device)
    out = prepare_out(args.out)
    metric, p, q, what, codes, pairs = _cli_metric_and_pairs(args)
    metric, p, q = metric.to(device=device), p.to(device), q.to(device)
    print(f"pullback_geom compare: {len(p)} pairs, seed {args.seed}; {what}", flush=True)
    exact = None
    if args.checkpoint is None and args.surface == "sphere":
        from ..surfaces import sphere_distance

        exact = sphere_distance(p, q)
    result = compare_geodesics(metric, p, q, methods=args.methods, exact=exact, progress=True)
    text = result.to_markdown()
    print(text)
    header = (
        f"# Geodesic methods compared\n\n{what}; {len(p)} pairs, seed {args.seed}.\n"
        "Columns are defined in `docs/geodesics.md` (comparison tool); compare.npz holds "
        "every number of the table.\n\n"
    )
    atomic_write_bytes(out / "compare.md", (header + text).encode())
    arrays = result.to_arrays()
    if pairs is not None:
        arrays["pair_indices"] = pairs  # rows of the checkpoint's test-set codes
    save_arrays(out / "compare.npz", arrays)
    written = [out / "compare.md", out / "compare.npz"]
    if metric.latent_dim == 2:
        from ..viz.compare import comparison_figure

        fig = comparison_figure(metric, result, codes=None if codes is None else codes[:2000])
        written += save_figure(fig, out / "compare.png", dpi=args.dpi, formats=args.format)
    else:
        print("no figure: the latent space is not 2-D")
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


def add_compare_parser(subparsers) -> None:
    """Register the ``compare`` subcommand on an ``argparse`` subparsers object."""
    cmd = subparsers.add_parser(
        "compare",
        help="every geodesic method on the same pairs: a table and a figure",
        description="Run the built-in energy solvers (lm, georce, lbfgs), ODE shooting, "
        "geomstats' solvers and stochman's connecting_geodesic on the same pairs and "
        "diagnose every curve the same way (length, energy, geodesic-equation residual, "
        "end-point and exp-log round-trip errors, time). Writes compare.md, compare.npz "
        "(the numbers per method and pair) and the figure (2-D latent spaces) to --out.",
    )
    source = cmd.add_mutually_exclusive_group()
    source.add_argument(
        "--surface", choices=["sphere", "bump"], default="sphere",
        help="an analytic surface (default: %(default)s)",
    )  # fmt: skip
    source.add_argument(
        "--checkpoint", default=None, type=checkpoint,
        help="a trained model's folder, or 'bernoulli'/'gaussian'/'smooth' for the bundled 2-D "
        "MNIST models; pairs are drawn from its test-set codes",
    )  # fmt: skip
    cmd.add_argument("--pairs", type=at_least(1), default=8, help="default: %(default)s")
    cmd.add_argument(
        "--methods", default=None, type=comma_list(COMPARE_METHOD_CHOICES),
        help="comma-separated names of pullback_geom.experiments.compare.COMPARE_METHODS: "
        "the core's boundary-value methods (lm, shooting, discrete, ...) and geomstats' and "
        "stochman's (default: all but geomstats_shooting, which takes minutes per pair)",
    )  # fmt: skip
    cmd.add_argument("--seed", type=at_least(0), default=0, help="default: %(default)s")
    cmd.add_argument("--out", default="outputs/compare", help="default: %(default)s")
    add_format_option(cmd, dpi=120)
    add_common_options(cmd)
    cmd.set_defaults(func=_compare_cli)
