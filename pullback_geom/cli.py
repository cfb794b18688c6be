"""The ``pullback-geom`` command line."""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path

__all__ = ["main"]


def _save_figure(fig, path: Path) -> None:
    """Write a figure atomically (rendered in memory, then :func:`atomic_write_bytes`)."""
    from .checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def run_surface_demo(out: Path) -> dict[str, float]:
    """Geometry of two analytic surfaces, checked against closed forms; writes a figure.

    Returns the printed numbers: errors against the closed forms and timings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from tqdm import tqdm

    from . import PullbackMetric
    from .geodesics import connecting_geodesic, exp_map, log_map
    from .surfaces import GaussianBump, InverseStereographic, sphere_distance

    gen = torch.Generator().manual_seed(0)
    numbers: dict[str, float] = {}
    steps = tqdm(total=4, desc="demo", unit="step", file=sys.stderr)

    # 1. The unit sphere: every quantity has a closed form.
    sphere = PullbackMetric(InverseStereographic())
    z = 2 * torch.rand(256, 2, generator=gen, dtype=torch.float64) - 1
    numbers["sphere metric max error"] = float(
        (sphere.metric_tensor(z) - InverseStereographic.metric_tensor(z)).abs().max()
    )
    numbers["sphere Christoffel max error"] = float(
        (sphere.christoffel_symbols(z) - InverseStereographic.christoffel_symbols(z)).abs().max()
    )
    steps.update()
    p, q = z[:32], z[32:64]
    t0 = time.perf_counter()
    result = connecting_geodesic(sphere, p, q)
    numbers["sphere geodesics (32 pairs) seconds"] = time.perf_counter() - t0
    exact = sphere_distance(p, q)
    numbers["sphere distance max relative error"] = float(
        ((result.length - exact) / exact).abs().max()
    )
    steps.update()
    v = log_map(sphere, p[:8], q[:8])
    numbers["sphere exp(log) round-trip max error"] = float(
        (exp_map(sphere, p[:8], v) - q[:8]).abs().max()
    )
    steps.update()

    # 2. A Gaussian bump: geodesics bend around it.
    bump = PullbackMetric(GaussianBump())
    # Straight lines past the bump at several heights (height 0, over the top, is a
    # saddle of the energy by symmetry, so it is left out).
    a = torch.tensor([-0.9, -0.5, -0.2, 0.2, 0.5, 0.9], dtype=torch.float64)
    starts = torch.stack([torch.full_like(a, -1.6), a], dim=1)
    ends = torch.stack([torch.full_like(a, 1.6), a], dim=1)
    curves = connecting_geodesic(bump, starts, ends, n_points=48)
    straight = torch.linspace(0, 1, 48, dtype=torch.float64)[None, :, None]
    straight = starts[:, None] + straight * (ends - starts)[:, None]
    numbers["bump: geodesic / straight-line length (mean)"] = float(
        (curves.length / bump.curve_length(straight)).mean()
    )
    grid = torch.linspace(-2, 2, 160, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    vol = bump.volume_element(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(gx.shape)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    mesh = axes[0].pcolormesh(gx, gy, vol, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=axes[0], label=r"volume element $\sqrt{\det G(z)}$")
    for k in range(len(a)):
        label = "geodesic (energy solver)" if k == 0 else None
        axes[0].plot(*curves.points[k].T, color="white", lw=2, label=label)
        axes[0].plot(
            *straight[k].T, color="white", lw=1, ls="--", label="straight line" if k == 0 else None
        )
    axes[0].set(title="Gaussian bump: geodesics bend around it", xlabel="$z_1$", ylabel="$z_2$")
    axes[0].set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=8, facecolor="0.3", labelcolor="white")
    axes[1].scatter(exact, result.length, s=14, label="energy solver, 32 nodes")
    lim = [0, float(exact.max()) * 1.05]
    axes[1].plot(lim, lim, "k--", lw=1, label="exact (great circle)")
    axes[1].set(
        title="Unit sphere (inverse stereographic chart)",
        xlabel="great-circle distance",
        ylabel="geodesic length from the pullback metric",
    )
    axes[1].legend()
    fig.tight_layout()
    path = out / "surface_demo.png"
    _save_figure(fig, path)
    plt.close(fig)
    steps.update()
    steps.close()
    numbers["figure"] = str(path)
    return numbers


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    numbers = run_surface_demo(out)
    width = max(len(k) for k in numbers)
    print("pullback_geom demo: geometry of analytic surfaces against closed forms")
    for key, value in numbers.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from .datasets import load_dataset
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
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            n_centres=args.rbf_centres,
            rbf_epochs=args.rbf_epochs,
        )
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be a positive integer; got {args.limit}")
        train = load_dataset(args.dataset, args.data_dir, train=True, download=args.download)
        test = load_dataset(args.dataset, args.data_dir, train=False, download=args.download)
        if args.limit is not None:
            train = type(train)(*(t[: args.limit] for t in train))
            test = type(test)(*(t[: args.limit] for t in test))
        dataset = {
            "name": args.dataset,
            "train_size": len(train.images),
            "test_size": len(test.images),
            "limit": args.limit,
        }
        print(
            f"pullback_geom train: {args.model} VAE, d = {args.latent_dim}, {args.dataset} "
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
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")
    return 0


def _add_train_parser(sub) -> None:
    from .datasets import DATASETS, ENV_VAR

    train = sub.add_parser(
        "train",
        help="train the seed's VAE (Bernoulli) or the Gaussian VAE on MNIST",
        description="Train a VAE with the seed's architecture on MNIST or FashionMNIST, "
        "saving a resumable checkpoint (model.pt, config.json, latents.pt of the test set) "
        "after every epoch.",
    )
    train.add_argument("--model", choices=["bernoulli", "gaussian"], default="bernoulli")
    train.add_argument("--epochs", type=int, default=30, help="default: %(default)s")
    train.add_argument("--latent-dim", type=int, default=2, help="default: %(default)s")
    train.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    train.add_argument(
        "--data-dir",
        default=None,
        help=f"folder holding MNIST/raw/ (torchvision's layout); default: ${ENV_VAR}, else "
        "./data. On this project's machines: ../shared/data",
    )
    train.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
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
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); on a machine shared with "
        "other jobs, 1 is often faster",
    )
    train.set_defaults(func=_train)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pullback-geom`` console command."""
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
        help="run the geometry demo offline and write its figure",
        description="Pullback metric, Christoffel symbols and geodesics on analytic surfaces "
        "(unit sphere, Gaussian bump), checked against closed forms; writes a PNG.",
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    demo.set_defaults(func=_demo)
    _add_train_parser(sub)
    __import__("pullback_geom.geodesics.compare", fromlist=["_"]).add_compare_parser(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
