"""Identifiable geometry on a known 2-D image manifold: the digit orbit.

One MNIST digit rotated (within +-45 degrees) and scaled (0.6-1.1x) is a 2-D image
manifold with a known parametrisation, so every retraining of a 2-D VAE can learn the
same manifold, and the manifold's own metric (the pullback through the renderer) gives
the true geodesic distance of any two images. This script measures 200 test pairs in
K >= 3 models trained on those images, and prints how much their Euclidean and geodesic
distances vary across the models, and how close each comes to the true distances. The
same as ``pullback-geom identifiability --dataset digit-orbit``, step by step.

Usage (no data files needed; about 90 s per model on 2 cores)::

    pullback-geom train --dataset digit-orbit --epochs 20 --seed 0 --out runs/orbit0
    # ... and --seed 1 --out runs/orbit1, --seed 2 --out runs/orbit2
    python examples/digit_orbit.py runs/orbit0 runs/orbit1 runs/orbit2
    python examples/digit_orbit.py --grid orbit.png   # only the figure of the images
"""

from __future__ import annotations

import argparse

import torch

from pullback_geom.data.digit_orbit import digit_orbit
from pullback_geom.experiments.identifiability import (
    identifiability_table,
    load_models,
    model_distances,
    truth_table,
)
from pullback_geom.experiments.report.analysis import random_pairs


def grid_figure(path: str) -> None:
    """The orbit's images on a grid of angles and scales."""
    import math

    from pullback_geom.viz._common import new_figure

    orbit = digit_orbit()
    angles = torch.linspace(-orbit.max_angle, orbit.max_angle, 7)
    scales = torch.linspace(*(math.log(s) for s in orbit.scale_range), 4)
    params = torch.stack(torch.meshgrid(scales, angles, indexing="ij")[::-1], -1)  # (4, 7, 2)
    images = orbit.render(params)
    fig = new_figure((7.5, 4.6))
    axes = fig.subplots(4, 7)
    for i in range(4):
        for j in range(7):
            ax = axes[3 - i, j]
            ax.imshow(images[i, j].view(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_xlabel(f"{math.degrees(angles[j]):+.0f}°")
            if j == 0:
                ax.set_ylabel(f"x{math.exp(scales[i]):.2f}")
    fig.suptitle("digit-orbit images: angle (columns) and scale (rows)")
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--grid", help="save a figure of the orbit's images here")
    args = parser.parse_args()
    if args.grid:
        grid_figure(args.grid)
    if not args.checkpoints:
        if not args.grid:
            parser.error("pass K >= 3 checkpoints (or --grid PATH)")
        return

    models, codes, _ = load_models(args.checkpoints)  # codes: (K, N, d) stored test codes
    pairs = random_pairs(codes.shape[1], args.pairs, seed=0)  # the same pairs everywhere

    # The truth: geodesics of the renderer's pullback metric between the test images'
    # (angle, log-scale) parameters.
    orbit = digit_orbit()
    params = orbit.split_params(train=False)[: codes.shape[1]]
    truth = orbit.true_distances(params[pairs[:, 0]], params[pairs[:, 1]])

    runs = [
        model_distances(model.pullback_metric("mean"), z, pairs)
        for model, z in zip(models, codes, strict=True)
    ]
    euclidean = torch.stack([r["euclidean"] for r in runs])
    geodesic = torch.stack([r["geodesic"] for r in runs])
    table = identifiability_table(euclidean, geodesic, names=args.checkpoints)
    against = truth_table(truth, euclidean, geodesic)
    for kind in ("euclidean", "geodesic"):
        s, (lo, hi) = table[kind]["cv_summary"], table[kind]["spearman_range"]
        err = ", ".join(f"{e:.1%}" for e in against[kind]["scale_free_error"])
        rho = ", ".join(f"{r:.3f}" for r in against[kind]["spearman"])
        print(
            f"{kind:>9}: CV across models median {s['median']:.3f} [q1 {s['q1']:.3f}, "
            f"q3 {s['q3']:.3f}], Spearman between models {lo:.2f}-{hi:.2f}\n"
            f"{'':>11}scale-free error against the truth {err}; Spearman with it {rho}"
        )
    print(f"median geodesic CV / median Euclidean CV: {table['cv_ratio']:.2f}")
    ratios = ", ".join(f"{r:.3f}" for r in against["geodesic"]["ratio"])
    print(f"model geodesic length / true length (median per model): {ratios}")


if __name__ == "__main__":
    main()
