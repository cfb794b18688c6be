"""``pullback-geom demo`` and ``pullback-geom report``: the figures and claims of
*Riemannian Geometry in Variational Autoencoders*."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import prepare_out, print_rows, resolve_device
from .options import (
    ENERGY_SOLVERS,
    add_common_options,
    add_format_option,
    at_least,
    checkpoint,
)

__all__ = ["add_demo_parser", "add_report_parser"]


def _energy_solver(text: str) -> str:
    """An energy method's name (:data:`ENERGY_SOLVERS`), checked at parse time."""
    if text not in ENERGY_SOLVERS:
        raise argparse.ArgumentTypeError(
            f"unknown {text!r}; choose from {', '.join(ENERGY_SOLVERS)}"
        )
    return text


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
        resolution=args.resolution,
        seed=args.seed,
        data_dir=args.data_dir,
        dpi=args.dpi,
        formats=tuple(args.format),
        device=str(resolve_device(args.device)),
    )


def _require_report_libraries(command: str, knn: bool = True) -> None:
    """The figures need matplotlib and the kNN numbers scikit-learn: say so before any
    work, naming the extra that installs each."""
    from .._core.extras import require

    require("matplotlib", "viz", f"pullback-geom {command}")
    if knn:
        require("sklearn", "geomstats", f"pullback-geom {command} (its kNN numbers)")


def run_demo(args: argparse.Namespace) -> int:
    _require_report_libraries("demo", knn=not args.surfaces)
    out = Path(args.out or ("outputs/surfaces" if args.surfaces else "outputs/demo"))
    if args.surfaces:
        from ..experiments.report.surfaces_demo import run_surface_demo

        print("pullback_geom demo: geometry of analytic surfaces against closed forms")
        print_rows(run_surface_demo(out))
        return 0
    from ..experiments.report import build_report

    options = report_options(args)
    prepare_out(out, parent_only=True)  # the report is staged beside it, then renamed
    print(
        "pullback_geom demo: the figures and claims of 'Riemannian Geometry in Variational "
        f"Autoencoders' on the bundled 2-D MNIST VAEs (Bernoulli; Gaussian for the "
        f"uncertainty term) -> {out}",
        flush=True,
    )
    report = build_report("bernoulli", out, uncertainty_checkpoint="gaussian", options=options)
    print_summary(report)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..experiments.report import build_report

    _require_report_libraries("report")
    out = Path(args.out or "outputs/report")
    options = report_options(args)
    prepare_out(out, parent_only=True)
    report = build_report(
        args.checkpoint, out, uncertainty_checkpoint=args.uncertainty_checkpoint, options=options
    )
    print_summary(report)
    return 0


def _addreport_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pairs",
        type=at_least(2),
        default=128,
        help="random test pairs for geodesics vs straight lines (default: %(default)s)",
    )
    parser.add_argument(
        "--similarity-pairs",
        type=at_least(2),
        default=1000,
        help="random test pairs for the rank correlation with pixel distances "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--per-class",
        type=at_least(3),
        default=40,
        help="codes per class for the class distance matrices and kNN (default: %(default)s)",
    )
    parser.add_argument(
        "--solver",
        # A type, not choices=: argparse joins choices into every --help (3.11), which
        # would load the registry and import torch.
        type=_energy_solver,
        metavar="METHOD",
        default="lm",
        help="the energy method of the geodesics (pullback_geom.geodesics.BOUNDARY_VALUE: "
        "lm, georce, lbfgs; default: lm)",
    )
    parser.add_argument(
        "--nodes", type=at_least(2), default=32, help="nodes per geodesic (default: %(default)s)"
    )
    parser.add_argument(
        "--no-ode", action="store_true", help="skip the ODE-shooting solutions of figure 4"
    )
    parser.add_argument(
        "--straight-start",
        action="store_true",
        help="start geodesics from straight lines instead of grid-graph shortest paths",
    )
    parser.add_argument(
        "--resolution", type=at_least(16), default=160,
        help="grid points per side of the heatmaps (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the random pairs")
    add_format_option(parser, dpi=110)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's test images (MNIST/raw/); without it, MNIST "
        "reports use the 2,000 test images bundled with the package",
    )
    add_common_options(parser)


def add_demo_parser(sub) -> None:
    """The ``demo`` subcommand."""
    demo = sub.add_parser(
        "demo",
        help="the write-up's figures and numbers on the bundled models, offline",
        description="Every figure of 'Riemannian Geometry in Variational Autoencoders' and "
        "the numbers behind its claims, on the bundled 2-D MNIST VAEs (Bernoulli; Gaussian "
        "for the uncertainty term): figures with the numbers they draw (.npz), report.md "
        "and numbers.json in --out. About a minute on 2 CPU cores.",
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
        help="the write-up's figures and numbers for a checkpoint",
        description="Every figure of 'Riemannian Geometry in Variational Autoencoders' and "
        "the numbers behind its claims for a checkpoint written by 'pullback-geom train' "
        "(2-D latent space). The output folder is built under a temporary name and moved "
        "into place when complete.",
    )
    report.add_argument(
        "--checkpoint",
        required=True,
        type=checkpoint,
        help="the --out folder of 'pullback-geom train' (or its model.pt); 'bernoulli', "
        "'gaussian' or 'smooth' for a bundled model",
    )
    report.add_argument("--out", default=None, help="output folder (default: outputs/report)")
    report.add_argument(
        "--uncertainty-checkpoint",
        default=None,
        type=checkpoint,
        help="a Gaussian model for the uncertainty section when --checkpoint is not one",
    )
    _addreport_options(report)
    report.set_defaults(func=run_report)
