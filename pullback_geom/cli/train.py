"""``pullback-geom train``: the VAEs on MNIST, FashionMNIST or the digit orbit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_orbit_digit_option, print_rows

__all__ = ["add_train_parser"]


def run_train(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from ..data.datasets import load_splits
    from ..training import TrainConfig, train_vae

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
            gate_points=args.gate_points,
            gate_bandwidth=args.gate_bandwidth,
            gate_quantile=args.gate_quantile,
            gate_width=args.gate_width,
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
    print_rows(rows, digits=4)
    return 0


def add_train_parser(sub) -> None:
    """The ``train`` subcommand."""
    from ..data.datasets import DATASET_NAMES, ENV_VAR

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
        "--gate-points",
        type=int,
        default=1024,
        help="Gaussian model: k-means centres of the std network's data gate, which lets "
        "sigma rise where the data ends; 0 for the plain RBF network of Latent Space "
        "Oddity (default: %(default)s)",
    )
    train.add_argument(
        "--gate-bandwidth",
        type=float,
        default=0.6,
        help="Gaussian model: the gate's kernel bandwidth in units of the median distance "
        "between neighbouring gate centres (default: %(default)s)",
    )
    train.add_argument(
        "--gate-quantile",
        type=float,
        default=3e-3,
        help="Gaussian model: fraction of training codes where the gate is below 0.95 "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--gate-width",
        type=float,
        default=1.0,
        help="Gaussian model: e-folds of data density over which the gate opens "
        "(default: %(default)s)",
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
    train.set_defaults(func=run_train)
