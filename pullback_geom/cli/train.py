"""``pullback-geom train``: the VAEs on MNIST, FashionMNIST or the digit orbit.

``--arch conv`` trains a convolutional Bernoulli VAE (:class:`~pullback_geom.vae.ConvVAE`)
instead of the write-up's MLP, also on ``mnist-64-rgb``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_arch_options,
    add_orbit_digit_option,
    arch_settings,
    prepare_out,
    print_rows,
    resolve_device,
)
from .options import (
    ACTIVATION_NAMES,
    DATA_ENV_VAR,
    DATASET_CHOICES,
    add_common_options,
    add_format_option,
    at_least,
    fraction,
    positive_float,
)

__all__ = ["add_train_parser"]


def run_train(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from ..data.datasets import load_splits
    from ..training import TrainConfig, train_vae

    out = Path(args.out or f"outputs/train/{args.model}")
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
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
        **arch_settings(args),
    )
    train, test, dataset = load_splits(
        args.dataset,
        args.data_dir,
        limit=args.limit,
        download=args.download,
        orbit_digit=args.orbit_digit,
    )
    prepare_out(out)  # after the data, so that a missing dataset leaves no empty folder
    threads = torch.get_num_threads()
    what = f"{cfg.model} VAE ({cfg.activation})"
    if cfg.arch == "conv":
        norm = "BatchNorm" if cfg.conv_norm == "batch" else "no norm"
        what = (
            f"{cfg.model} conv VAE ({cfg.conv_preset} preset, width {cfg.conv_width}, "
            f"{cfg.activation}, {norm}, {'x'.join(map(str, cfg.image_shape))} images)"
        )
    print(
        f"pullback_geom train: {what}, d = {args.latent_dim}, {args.dataset} "
        f"({dataset['train_size']} training / {dataset['test_size']} test images), "
        f"{args.epochs} epoch{'s' * (args.epochs != 1)}, seed {args.seed}, on {device}"
        + (f" ({threads} thread{'s' * (threads != 1)})" if device.type == "cpu" else ""),
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
        device=device,
    )
    metrics = result.metrics
    written = write_history(out, metrics.get("history", []), args.format, args.dpi)
    rows = {"test negative ELBO (nats/image)": metrics.get("test_neg_elbo")}
    if args.model == "gaussian":
        rows["  of the mean, Bernoulli (stage 1)"] = metrics.get("test_neg_elbo_bernoulli")
    rows["seconds per epoch"] = metrics.get("seconds_per_epoch")
    rows["checkpoint"] = f"{out} (model.pt, config.json, latents.pt)"
    rows["loss history"] = ", ".join(str(p) for p in written)
    print_rows(rows, digits=4)
    return 0


#: Columns of ``history.csv``, one row per epoch.
HISTORY_COLUMNS = ("stage", "epoch", "train_loss", "test_neg_elbo", "seconds")


def write_history(out: Path, history: list[dict], formats, dpi: int) -> list[Path]:
    """``history.csv`` (one row per epoch) and the training-curve figure, beside the
    checkpoint; the files written. Without matplotlib only the CSV."""
    import csv
    import io

    from ..vae.checkpoint import atomic_write_bytes

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for h in history:
        writer.writerow(["" if h.get(c) is None else h[c] for c in HISTORY_COLUMNS])
    atomic_write_bytes(out / "history.csv", text.getvalue().encode())
    written = [out / "history.csv"]
    try:
        from ..experiments.report.document import save_figure
        from ..viz import training_curve
    except ImportError:  # no matplotlib (the [viz] extra): the numbers suffice
        return written
    return written + save_figure(
        training_curve(history), out / "training_curve.png", dpi=dpi, formats=formats
    )


def add_train_parser(sub) -> None:
    """The ``train`` subcommand."""
    train = sub.add_parser(
        "train",
        help="train the write-up's VAE (Bernoulli), the Gaussian VAE, a decoder ensemble or "
        "a convolutional VAE",
        description="Train a VAE with the architecture of 'Riemannian Geometry in "
        "Variational Autoencoders' (or, with --arch conv, a convolutional one) on MNIST or "
        "FashionMNIST, saving a resumable checkpoint "
        "(model.pt, config.json, latents.pt of the test set) after every epoch, and the "
        "loss history (history.csv, training_curve.png) at the end.",
    )
    train.add_argument(
        "--model", choices=["bernoulli", "gaussian", "ensemble"], default="bernoulli"
    )
    train.add_argument("--epochs", type=at_least(1), default=30, help="default: %(default)s")
    train.add_argument("--latent-dim", type=at_least(1), default=2, help="default: %(default)s")
    train.add_argument(
        "--activation",
        choices=ACTIVATION_NAMES,
        default=None,
        help="the decoders' hidden activation: the write-up's relu, or a smooth one, under "
        "which the metric is smooth and the geodesic ODE well-posed (default: relu; with "
        "--arch conv the preset's, gelu, in encoder and decoder)",
    )
    add_arch_options(train)
    train.add_argument("--seed", type=at_least(0), default=0, help="default: %(default)s")
    train.add_argument(
        "--data-dir",
        default=None,
        help=f"folder holding MNIST/raw/ (torchvision's layout); default: ${DATA_ENV_VAR}, "
        "else ./data",
    )
    train.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default="mnist",
        help="digit-orbit: one MNIST digit rotated and scaled, rendered without data files "
        "(a 2-D image manifold with known geodesics); mnist-64-rgb: MNIST resized to "
        "64 x 64 and repeated over 3 channels, a stand-in for colour images (--arch conv "
        "only; read from MNIST's files) (default: %(default)s)",
    )
    add_orbit_digit_option(train)
    train.add_argument("--out", default=None, help="default: outputs/train/<model>")
    train.add_argument("--batch-size", type=at_least(1), default=128, help="default: %(default)s")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="default: %(default)s")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument(
        "--limit", type=at_least(1), default=None, help="use only the first N images of each split"
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
        "--rbf-centres",
        type=at_least(1),
        default=64,
        help="Gaussian model: RBF centres (default: 64)",
    )
    train.add_argument(
        "--rbf-epochs",
        type=at_least(0),
        default=10,
        help="Gaussian model: epochs of the std network's stage (default: 10)",
    )
    train.add_argument(
        "--gate-points",
        type=at_least(0),
        default=1024,
        help="Gaussian model: k-means centres of the std network's data gate, which lets "
        "sigma rise where the data ends; 0 for the plain RBF network of Latent Space "
        "Oddity (default: %(default)s)",
    )
    train.add_argument(
        "--gate-bandwidth",
        type=positive_float,
        default=0.6,
        help="Gaussian model: the gate's kernel bandwidth in units of the median distance "
        "between neighbouring gate centres (default: %(default)s)",
    )
    train.add_argument(
        "--gate-quantile",
        type=fraction,
        default=3e-3,
        help="Gaussian model: fraction of training codes where the gate is below 0.95 "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--gate-width",
        type=positive_float,
        default=1.0,
        help="Gaussian model: e-folds of data density over which the gate opens "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--decoders",
        type=at_least(2),
        default=4,
        help="ensemble model: decoders sharing the encoder (default: %(default)s)",
    )
    train.add_argument(
        "--threads",
        type=at_least(1),
        default=None,
        help="CPU threads for torch (default: torch's choice); on a machine shared with "
        "other jobs, 1 is often faster",
    )
    add_format_option(train, dpi=110)
    add_common_options(train)
    train.set_defaults(func=run_train)
