"""``pullback-geom demo`` and ``pullback-geom report``: the write-up's figures and claims."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import error, print_rows

__all__ = ["add_demo_parser", "add_report_parser"]


def print_summary(report) -> None:
    """The headline numbers of a report, one per line."""
    n = report.numbers
    rows = {}
    if "paths" in n:
        ratio = n["paths"]["length_ratio_straight_over_geodesic"]["median"]
        rows["straight / geodesic length (median)"] = ratio
    sim = n.get("similarity", {})
    for key, name in (
        ("spearman_pixel_vs_euclidean", "Spearman with pixel distance, Euclidean"),
        ("spearman_pixel_vs_geodesic", "Spearman with pixel distance, geodesic"),
        ("knn_accuracy_euclidean", "kNN accuracy, Euclidean"),
        ("knn_accuracy_geodesic", "kNN accuracy, geodesic"),
    ):
        if key in sim:
            rows[name] = sim[key]
    if "closest_classes_geodesic" in sim:
        rows["closest classes, geodesic"] = ", ".join(k for k, _ in sim["closest_classes_geodesic"])
    if "density" in n:
        rows["log volume vs log density, Spearman"] = n["density"]["spearman"]
    rows["seconds"] = report.seconds
    rows["report"] = str(report.out / "report.md")
    print_rows(rows)


def report_options(args: argparse.Namespace):
    from ..experiments.report import ReportOptions

    return ReportOptions(
        n_pairs=args.pairs,
        n_similarity_pairs=args.similarity_pairs,
        per_class=args.per_class,
        solver=args.solver,
        n_points=args.nodes,
        ode=not args.no_ode,
        graph_start=not args.straight_start,
        seed=args.seed,
        data_dir=args.data_dir,
        dpi=args.dpi,
    )


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out or ("outputs/surfaces" if args.surfaces else "outputs/demo"))
    if args.surfaces:
        from ..experiments.report.surfaces_demo import run_surface_demo

        print("pullback_geom demo: geometry of analytic surfaces against closed forms")
        print_rows(run_surface_demo(out))
        return 0
    from ..experiments.report import build_report

    print(
        "pullback_geom demo: the seed's figures and claims on the bundled 2-D MNIST VAEs "
        f"(Bernoulli; Gaussian for the uncertainty term) -> {out}",
        flush=True,
    )
    try:
        report = build_report(
            "bernoulli", out, uncertainty_checkpoint="gaussian", options=report_options(args)
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        return error("demo", err)
    print_summary(report)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..experiments.report import build_report

    out = Path(args.out or "outputs/report")
    try:
        report = build_report(
            args.checkpoint,
            out,
            uncertainty_checkpoint=args.uncertainty_checkpoint,
            options=report_options(args),
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        return error("report", err)
    print_summary(report)
    return 0


def _addreport_options(parser: argparse.ArgumentParser) -> None:
    from ..geodesics.energy import METHODS

    parser.add_argument(
        "--pairs",
        type=int,
        default=128,
        help="random test pairs for geodesics vs straight lines (default: %(default)s)",
    )
    parser.add_argument(
        "--similarity-pairs",
        type=int,
        default=1000,
        help="random test pairs for the rank correlation with pixel distances "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=40,
        help="codes per class for the class distance matrices and kNN (default: %(default)s)",
    )
    parser.add_argument(
        "--solver", choices=sorted(METHODS), default="lm", help="geodesic solver (default: lm)"
    )
    parser.add_argument(
        "--nodes", type=int, default=32, help="nodes per geodesic (default: %(default)s)"
    )
    parser.add_argument(
        "--no-ode", action="store_true", help="skip the ODE-shooting solutions of figure 4"
    )
    parser.add_argument(
        "--straight-start",
        action="store_true",
        help="start geodesics from straight lines instead of grid-graph shortest paths",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pairs")
    parser.add_argument(
        "--dpi", type=int, default=110, help="resolution of the PNGs (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's test images (MNIST/raw/); without it, MNIST "
        "reports use the 2,000 test images bundled with the package",
    )


def add_demo_parser(sub) -> None:
    """The ``demo`` subcommand."""
    demo = sub.add_parser(
        "demo",
        help="the seed's figures and numbers on the bundled models, offline",
        description="Every figure of the seed and the numbers behind its claims, on the "
        "bundled 2-D MNIST VAEs (Bernoulli; Gaussian for the uncertainty term): PNGs, "
        "report.md and numbers.json in --out. About a minute on 2 CPU cores.",
    )
    demo.add_argument(
        "--out",
        default=None,
        help="output folder (default: outputs/demo; with --surfaces, outputs/surfaces)",
    )
    demo.add_argument(
        "--surfaces",
        action="store_true",
        help="instead, check the geometry on analytic surfaces (unit sphere, Gaussian bump) "
        "against closed forms",
    )
    _addreport_options(demo)
    demo.set_defaults(func=run_demo)


def add_report_parser(sub) -> None:
    """The ``report`` subcommand."""
    report = sub.add_parser(
        "report",
        help="the seed's figures and numbers for a checkpoint",
        description="Every figure of the seed and the numbers behind its claims for a "
        "checkpoint written by 'pullback-geom train' (2-D latent space). The output folder "
        "is built under a temporary name and moved into place when complete.",
    )
    report.add_argument(
        "--checkpoint",
        required=True,
        help="the --out folder of 'pullback-geom train' (or its model.pt); 'bernoulli', "
        "'gaussian' or 'smooth' for a bundled model",
    )
    report.add_argument("--out", default=None, help="output folder (default: outputs/report)")
    report.add_argument(
        "--uncertainty-checkpoint",
        default=None,
        help="a Gaussian model for the uncertainty section when --checkpoint is not one",
    )
    _addreport_options(report)
    report.set_defaults(func=run_report)
