"""The ``pullback-geom`` command line."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


def _error(command: str, err: BaseException) -> int:
    print(f"pullback-geom {command}: error: {err}", file=sys.stderr)
    return 2


def _print_rows(rows: dict, digits: int = 3) -> None:
    """``key  value`` lines, keys aligned, floats to ``digits`` significant digits."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")


def _print_summary(report) -> None:
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
    _print_rows(rows)


def _report_options(args: argparse.Namespace):
    from .report import ReportOptions

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


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out or ("outputs/surfaces" if args.surfaces else "outputs/demo"))
    if args.surfaces:
        from .report.surfaces_demo import run_surface_demo

        print("pullback_geom demo: geometry of analytic surfaces against closed forms")
        _print_rows(run_surface_demo(out))
        return 0
    from .report import build_report

    print(
        "pullback_geom demo: the seed's figures and claims on the bundled 2-D MNIST VAEs "
        f"(Bernoulli; Gaussian for the uncertainty term) -> {out}",
        flush=True,
    )
    try:
        report = build_report(
            "bernoulli", out, uncertainty_checkpoint="gaussian", options=_report_options(args)
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        return _error("demo", err)
    _print_summary(report)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import build_report

    out = Path(args.out or "outputs/report")
    try:
        report = build_report(
            args.checkpoint,
            out,
            uncertainty_checkpoint=args.uncertainty_checkpoint,
            options=_report_options(args),
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        return _error("report", err)
    _print_summary(report)
    return 0


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    from .geodesics.energy import METHODS

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


def _train(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from .datasets import load_splits
    from .training import TrainConfig, train_vae

    out = Path(args.out or f"outputs/train/{args.model}")
    if args.threads is not None:
        if args.threads < 1:
            print(
                f"pullback-geom train: error: --threads must be >= 1; got {args.threads}",
                file=sys.stderr,
            )
            return 2
        torch.set_num_threads(args.threads)
    try:
        cfg = TrainConfig(
            model=args.model,
            latent_dim=args.latent_dim,
            activation=args.activation,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            n_centres=args.rbf_centres,
            rbf_epochs=args.rbf_epochs,
            decoders=args.decoders,
        )
        train, test, dataset = load_splits(
            args.dataset,
            args.data_dir,
            limit=args.limit,
            download=args.download,
            orbit_digit=args.orbit_digit,
        )
        print(
            f"pullback_geom train: {args.model} VAE ({args.activation}), d = {args.latent_dim}, "
            f"{args.dataset} "
            f"({dataset['train_size']} training / {dataset['test_size']} test images), "
            f"{args.epochs} epoch{'s' * (args.epochs != 1)}, seed {args.seed}, "
            f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}",
            flush=True,
        )
        result = train_vae(
            cfg,
            train.images,
            test.images,
            test.labels,
            out=out,
            resume=args.resume,
            dataset=dataset,
            command=shlex.join(["pullback-geom", "train", *args.argv]),
            compact=args.compact,
            log=lambda line: print(line, flush=True),
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"pullback-geom train: error: {err}", file=sys.stderr)
        return 2
    metrics = result.metrics
    rows = {"test negative ELBO (nats/image)": metrics.get("test_neg_elbo")}
    if args.model == "gaussian":
        rows["  of the mean, Bernoulli (stage 1)"] = metrics.get("test_neg_elbo_bernoulli")
    rows["seconds per epoch"] = metrics.get("seconds_per_epoch")
    rows["checkpoint"] = f"{out} (model.pt, config.json, latents.pt)"
    _print_rows(rows, digits=4)
    return 0


def add_orbit_digit_option(parser: argparse.ArgumentParser) -> None:
    """``--orbit-digit``, shared by ``train`` and ``identifiability``."""
    parser.add_argument(
        "--orbit-digit",
        type=int,
        default=1,
        help="with --dataset digit-orbit: which of the bundled MNIST test images is rotated "
        "and scaled (default: %(default)s, a 2)",
    )


def _add_train_parser(sub) -> None:
    from .datasets import DATASET_NAMES, ENV_VAR

    train = sub.add_parser(
        "train",
        help="train the seed's VAE (Bernoulli), the Gaussian VAE or a decoder ensemble",
        description="Train a VAE with the seed's architecture on MNIST or FashionMNIST, "
        "saving a resumable checkpoint (model.pt, config.json, latents.pt of the test set) "
        "after every epoch.",
    )
    train.add_argument(
        "--model", choices=["bernoulli", "gaussian", "ensemble"], default="bernoulli"
    )
    train.add_argument("--epochs", type=int, default=30, help="default: %(default)s")
    train.add_argument("--latent-dim", type=int, default=2, help="default: %(default)s")
    train.add_argument(
        "--activation",
        choices=["relu", "elu", "softplus", "silu", "tanh"],
        default="relu",
        help="the decoders' hidden activation: the seed's relu, or a smooth one, under "
        "which the metric is smooth and the geodesic ODE well-posed (default: %(default)s)",
    )
    train.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    train.add_argument(
        "--data-dir",
        default=None,
        help=f"folder holding MNIST/raw/ (torchvision's layout); default: ${ENV_VAR}, else "
        "./data. On this project's machines: ../shared/data",
    )
    train.add_argument(
        "--dataset",
        choices=sorted(DATASET_NAMES),
        default="mnist",
        help="digit-orbit: one MNIST digit rotated and scaled, rendered without data files "
        "(a 2-D image manifold with known geodesics; default: %(default)s)",
    )
    add_orbit_digit_option(train)
    train.add_argument("--out", default=None, help="default: outputs/train/<model>")
    train.add_argument("--batch-size", type=int, default=128, help="default: %(default)s")
    train.add_argument("--lr", type=float, default=1e-3, help="default: %(default)s")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument(
        "--limit", type=int, default=None, help="use only the first N images of each split"
    )
    train.add_argument(
        "--download", action="store_true", help="let torchvision download missing files"
    )
    train.add_argument(
        "--compact",
        action="store_true",
        help="when done, store float16 weights and drop the resume state (the bundled "
        "defaults are made so)",
    )
    train.add_argument(
        "--rbf-centres", type=int, default=64, help="Gaussian model: RBF centres (default: 64)"
    )
    train.add_argument(
        "--rbf-epochs",
        type=int,
        default=10,
        help="Gaussian model: epochs of the std network's stage (default: 10)",
    )
    train.add_argument(
        "--decoders",
        type=int,
        default=4,
        help="ensemble model: decoders sharing the encoder (default: %(default)s)",
    )
    train.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); on a machine shared with "
        "other jobs, 1 is often faster",
    )
    train.set_defaults(func=_train)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pullback-geom`` console command."""
    from .cli_compare import add_compare_parser
    from .cli_identifiability import add_identifiability_parser

    # torch scripts its forward-mode decompositions on first use and warns about its own
    # deprecated torch.jit.script; that is noise for a user of this command.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
    parser = argparse.ArgumentParser(
        prog="pullback-geom",
        description="Riemannian geometry of generative models' latent spaces.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
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
    _add_report_options(demo)
    demo.set_defaults(func=_demo)
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
    _add_report_options(report)
    report.set_defaults(func=_report)
    _add_train_parser(sub)
    add_compare_parser(sub)
    add_identifiability_parser(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
