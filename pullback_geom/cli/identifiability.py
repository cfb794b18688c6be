"""``pullback-geom identifiability``: are distances stable across retrainings? Euclidean
vs geodesic distances of the same test pairs in K models
(:mod:`pullback_geom.experiments.identifiability`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_arch_options,
    add_orbit_digit_option,
    arch_settings,
    checkpoint_folder,
    prepare_out,
    print_rows,
    resolve_device,
)
from .options import (
    DATASET_CHOICES,
    IDENTIFIABILITY_METRIC_NAMES,
    add_common_options,
    at_least,
    checkpoint,
    comma_list,
    nonnegative_float,
    positive_float,
)

__all__ = ["add_identifiability_parser"]


def _identifiability(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from ..experiments.identifiability.experiment import run_identifiability

    out = Path(args.out)
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = shlex.join(["pullback-geom", "identifiability", *args.argv])
    prepare_out(out)
    if args.seeds is not None:
        checkpoints = _train_seeds(args, out / "models", device)
    else:
        checkpoints = [str(checkpoint_folder(c)) for c in args.checkpoints]
    print(
        f"pullback_geom identifiability: {len(checkpoints)} models, {args.pairs} test "
        f"pairs, metric{'s' * (len(args.metric) != 1)} {', '.join(args.metric)} -> {out}",
        flush=True,
    )
    result = run_identifiability(
        checkpoints,
        out,
        metrics=args.metric,
        n_pairs=args.pairs,
        pair_seed=args.pair_seed,
        n_points=args.nodes,
        disagreement_scale=args.disagreement_scale,
        energy_weight=args.energy_weight,
        graph_start=args.start == "graph",
        command=command,
        device=device,
    )
    rows = {}
    for kind, t in result["metrics"].items():
        e, g = t["euclidean"]["cv_summary"]["median"], t["geodesic"]["cv_summary"]["median"]
        rows[f"{kind}: median CV Euclidean / geodesic"] = f"{e:.3f} / {g:.3f}"
        if "truth" in t:  # digit-orbit models: how far from the true distances
            err = [max(t["truth"][key]["scale_free_error"]) for key in ("euclidean", "geodesic")]
            rows[f"{kind}: error vs truth Euclidean / geodesic (worst model)"] = (
                f"{err[0]:.1%} / {err[1]:.1%}"
            )
    rows["report"] = str(out / "identifiability.md")
    print_rows(rows)
    return 0


def _train_seeds(args: argparse.Namespace, folder: Path, device) -> list[str]:
    """Train (or reuse, resuming) one model per seed under ``folder``; their paths."""
    from ..data.datasets import load_splits
    from ..training import TrainConfig, train_vae

    train, test, dataset = load_splits(
        args.dataset, args.data_dir, limit=args.limit, orbit_digit=args.orbit_digit
    )
    paths = []
    for seed in args.seeds:
        cfg = TrainConfig(
            model=args.model,
            latent_dim=args.latent_dim,
            epochs=args.epochs,
            seed=seed,
            decoders=args.decoders,
            **arch_settings(args),
        )
        name = args.model if args.arch == "mlp" else f"{args.model}_conv"
        path = folder / f"{name}_seed{seed}"
        print(
            f"training {name} seed {seed} on {args.dataset} ({args.epochs} epochs) -> {path}",
            flush=True,
        )
        train_vae(
            cfg,
            train.images,
            test.images,
            test.labels,
            out=path,
            resume=True,  # a finished run with the same settings is reused as it is
            dataset=dataset,
            command=f"pullback-geom identifiability (seed {seed})",
            device=device,
        )
        paths.append(str(path))
    return paths


def add_identifiability_parser(sub) -> None:
    parser = sub.add_parser(
        "identifiability",
        help="are distances stable across retrainings? Euclidean vs geodesic",
        description="Measure the same random test-image pairs in K >= 3 models that differ "
        "only in their seed: the coefficient of variation of each pair's distance across "
        "the models (each model's distances divided by their mean) and the rank "
        "correlation between models, for Euclidean latent distances and geodesic ones. "
        "Writes identifiability.md, identifiability.json and a figure per metric to --out.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoints",
        type=comma_list(item=checkpoint, min_items=3),
        default=None,
        metavar="A,B,C",
        help="K >= 3 checkpoints to compare, comma-separated: folders written by "
        "'pullback-geom train' or bundled model names",
    )
    source.add_argument(
        "--seeds",
        type=comma_list(item=at_least(0), min_items=3),
        default=None,
        metavar="0,1,2",
        help="instead, train one model per seed, comma-separated, at least 3 (under "
        "OUT/models; reused when there)",
    )
    parser.add_argument(
        "--metric",
        type=comma_list(IDENTIFIABILITY_METRIC_NAMES),
        default=["mean"],
        metavar="METRICS",
        help="mean: the decoded mean; uncertainty: the Gaussian model's full metric; "
        "fisher-rao: the Bernoulli Fisher-Rao pullback; ensemble: a decoder ensemble's "
        "expected metric; disagreement: an ensemble's mean image plus the members' "
        "per-pixel std as a Gaussian decoder's metric; ensemble-energy: curves minimising "
        "Syrota et al.'s ensemble energy (not a metric), measured by the mean image "
        "(default: mean); comma-separated, from " + ", ".join(IDENTIFIABILITY_METRIC_NAMES),
    )
    parser.add_argument("--pairs", type=at_least(3), default=200, help="default: %(default)s")
    parser.add_argument(
        "--pair-seed", type=at_least(0), default=0, help="seed of the pairs (default: %(default)s)"
    )
    parser.add_argument(
        "--nodes", type=at_least(2), default=32, help="nodes per geodesic (default: %(default)s)"
    )
    parser.add_argument(
        "--start",
        choices=["straight", "graph"],
        default="straight",
        help="initial curves of the geodesics: straight lines, or shortest paths on a latent "
        "grid graph (d <= 3), which avoid some longer local minima (default: %(default)s)",
    )
    parser.add_argument(
        "--disagreement-scale",
        type=positive_float,
        default=1.0,
        help="weight of the members' std in the disagreement metric (default: %(default)s)",
    )
    parser.add_argument(
        "--energy-weight",
        type=nonnegative_float,
        default=1.0,
        help="weight of the disagreement potential in ensemble-energy (default: %(default)s)",
    )
    parser.add_argument("--out", default="outputs/identifiability", help="default: %(default)s")
    parser.add_argument(
        "--model",
        choices=["bernoulli", "gaussian", "ensemble"],
        default="bernoulli",
        help="with --seeds: the model to train (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=at_least(1), default=8, help="with --seeds (default: 8)")
    parser.add_argument(
        "--latent-dim", type=at_least(1), default=2, help="with --seeds (default: 2)"
    )
    parser.add_argument(
        "--decoders", type=at_least(2), default=4, help="with --seeds, ensemble model (default: 4)"
    )
    add_arch_options(parser, prefix="with --seeds: ")
    parser.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        default="mnist",
        help="with --seeds: the training data; digit-orbit (one digit rotated and scaled, "
        "no files needed) has a 2-D image manifold whose true geodesic distances the "
        "report compares the models' with (default: %(default)s)",
    )
    add_orbit_digit_option(parser)
    parser.add_argument(
        "--data-dir", default=None, help="with --seeds: the folder holding MNIST/raw/"
    )
    parser.add_argument(
        "--limit", type=at_least(1), default=None, help="with --seeds: first N images of each split"
    )
    parser.add_argument("--threads", type=at_least(1), default=None, help="CPU threads for torch")
    add_common_options(parser)
    parser.set_defaults(func=_identifiability)
