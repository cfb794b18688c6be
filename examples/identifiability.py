"""Are distances identifiable? The same test pairs measured in several trained models.

Loads K >= 3 checkpoints of ``pullback-geom train`` (models differing only in their
seed), measures 200 random test-image pairs in each with the Euclidean latent distance
and the geodesic distance of the chosen metric, and prints the per-pair coefficient of
variation across models (each model's distances divided by their mean first) and the
rank correlations between models. The same as ``pullback-geom identifiability``, step by
step with the library's functions.

Usage::

    pullback-geom train --model bernoulli --epochs 8 --seed 0 \\
        --data-dir /path/to/data --out runs/s0        # and seeds 1, 2
    python examples/identifiability.py runs/s0 runs/s1 runs/s2 [--metric fisher-rao]
"""

from __future__ import annotations

import argparse

import torch

from pullback_geom.experiments.identifiability import (
    identifiability_table,
    load_models,
    model_distances,
)
from pullback_geom.experiments.report.analysis import random_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--metric", default="mean")
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()

    models, codes, _ = load_models(args.checkpoints)  # codes: (K, N, d) stored test codes
    pairs = random_pairs(codes.shape[1], args.pairs, seed=0)  # the same pairs everywhere
    runs = [
        model_distances(model.pullback_metric(args.metric), z, pairs)
        for model, z in zip(models, codes, strict=True)
    ]
    table = identifiability_table(
        torch.stack([r["euclidean"] for r in runs]),
        torch.stack([r["geodesic"] for r in runs]),
        names=args.checkpoints,
    )
    for kind in ("euclidean", "geodesic"):
        s, (lo, hi) = table[kind]["cv_summary"], table[kind]["spearman_range"]
        print(
            f"{kind:>9}: CV median {s['median']:.3f} [q1 {s['q1']:.3f}, q3 {s['q3']:.3f}], "
            f"Spearman between models {lo:.2f}-{hi:.2f}"
        )
    print(f"median geodesic CV / median Euclidean CV: {table['cv_ratio']:.2f}")


if __name__ == "__main__":
    main()
