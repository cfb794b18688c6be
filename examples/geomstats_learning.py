"""geomstats learning on the bundled MNIST VAE's latent manifold, against Euclidean.

Runs the four tools of :mod:`pullback_geom.experiments.learning` on the bundled 2-D Bernoulli model:
Fréchet means of the ten digit classes, Riemannian versus Euclidean k-means, geodesic
versus Euclidean kNN, and tangent PCA at one class's Fréchet mean. Prints a table and
saves ``geomstats_learning.png`` (class means over the volume element, the principal
geodesics, and the decoded means).

Usage::

    python examples/geomstats_learning.py [OUTPUT_DIR]   # default ./outputs
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pullback_geom.experiments import learning  # noqa: E402  (imports geomstats, PyTorch backend)
from pullback_geom.vae import default_checkpoint, load_default, load_latents  # noqa: E402
from pullback_geom.viz._common import (  # noqa: E402
    decode_points,
    draw_volume,
    extent_around,
    new_figure,
    pair_colours,
    show_image,
)

PER_CLASS = 30  # codes per digit for the means, tangent PCA and kNN training
TEST_PER_CLASS = 10  # kNN test codes per digit
KMEANS_DIGITS = (4, 7, 9)  # the classes that overlap most in this latent space
KMEANS_PER_CLASS = 15
PCA_DIGIT = 2


def pick(labels: torch.Tensor, per_class: int, offset: int, digits=range(10)) -> torch.Tensor:
    """Indices of ``per_class`` codes of each digit, starting at the ``offset``-th."""
    return torch.cat([torch.nonzero(labels == c)[offset : offset + per_class, 0] for c in digits])


def timed(what: str, fn):
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    print(f"{what}: {elapsed:.1f} s", flush=True)
    return out, elapsed


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # small batches: per-op overhead dominates, threads contend
    model = load_default("bernoulli")
    codes, labels = load_latents(default_checkpoint("bernoulli"))
    metric = model.pullback_metric()

    train = pick(labels, PER_CLASS, 0)
    test = pick(labels, TEST_PER_CLASS, PER_CLASS)
    z, y = codes[train].double(), labels[train]

    means, t_means = timed("Frechet means", lambda: learning.class_frechet_means(metric, z, y))
    km_idx = pick(labels, KMEANS_PER_CLASS, 0, KMEANS_DIGITS)
    km, t_km = timed(
        "k-means", lambda: learning.kmeans_comparison(metric, codes[km_idx], labels[km_idx])
    )
    knn, t_knn = timed(
        "kNN",
        lambda: learning.knn_comparison(metric, z, y, codes[test], labels[test], n_neighbors=5),
    )
    cls = int((means.classes == PCA_DIGIT).nonzero())
    pca, t_pca = timed(
        "tangent PCA",
        lambda: learning.tangent_pca(metric, z[y == PCA_DIGIT], means.riemannian[cls]),
    )

    print(f"\n{'tool':<44} {'Riemannian':>11} {'Euclidean':>10} {'time':>8}")
    shift = means.shift
    print(
        f"{'Frechet means, 10 x ' + str(PER_CLASS) + ' codes: shift (geodesic)':<44}"
        f" {'median ' + format(float(shift.median()), '.2f'):>11} {'':>10} {t_means:7.1f}s"
    )
    print(
        f"{'k-means ' + str(KMEANS_DIGITS) + ' x ' + str(KMEANS_PER_CLASS) + ': ARI':<44}"
        f" {km.ari_riemannian:11.3f} {km.ari_euclidean:10.3f} {t_km:7.1f}s"
    )
    print(f"{'k-means: purity':<44} {km.purity_riemannian:11.3f} {km.purity_euclidean:10.3f}")
    print(
        f"{'5-NN, ' + str(len(train)) + ' train / ' + str(len(test)) + ' test: accuracy':<44}"
        f" {knn.riemannian_accuracy:11.3f} {knn.euclidean_accuracy:10.3f} {t_knn:7.1f}s"
    )
    r = pca.explained_variance_ratio.numpy()
    mr = pca.metric_variance_ratio.numpy()
    print(
        f"{'tangent PCA at digit ' + str(PCA_DIGIT) + ': PC1 variance ratio':<44}"
        f" {r[0]:11.3f} {'':>10} {t_pca:7.1f}s"
    )
    print(f"{'  same, tangent space measured by G':<44} {mr[0]:11.3f}")
    print("Frechet-mean shift per digit:", np.round(shift.numpy(), 2).tolist())

    # ------------------------------------------------------------ figure
    fig = new_figure((13, 6.2))
    grid = fig.add_gridspec(4, 11, width_ratios=[9] + [1] * 10)
    ax = fig.add_subplot(grid[:, 0])
    r_np, e_np = means.riemannian.numpy(), means.euclidean.numpy()
    # Zoom on the bulk of the codes (a few outlying codes would shrink the clusters).
    bulk = np.quantile(z.numpy(), [0.02, 0.98], axis=0)
    extent = extent_around(bulk, r_np, e_np, margin=0.1)
    draw_volume(ax, metric, extent, resolution=160)
    colours = pair_colours(10)
    for c in range(10):
        pts = z[y == means.classes[c]].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=9, color=colours[c], alpha=0.8, lw=0)
        ax.plot(*zip(e_np[c], r_np[c], strict=True), color="white", lw=1)
        ax.plot(*e_np[c], "x", color=colours[c], mew=2.5, ms=9)
        ax.plot(*r_np[c], "o", color=colours[c], mec="white", ms=9)
        ax.annotate(
            str(int(means.classes[c])),
            r_np[c],
            xytext=(6, 6),
            textcoords="offset points",
            color="white",
            fontsize=10,
            weight="bold",
        )
    for i, curve in enumerate(pca.geodesics.numpy()):
        ax.plot(
            curve[:, 0],
            curve[:, 1],
            color="black",
            lw=2.2 - 0.8 * i,
            ls="-" if i == 0 else "--",
            label=f"principal geodesic {i + 1} of digit {PCA_DIGIT} (±2 sd)",
        )
    ax.plot([], [], "o", color="grey", label="Fréchet mean (pullback metric)")
    ax.plot([], [], "x", color="grey", mew=2.5, label="Euclidean mean of the codes")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(f"Class means of {PER_CLASS} test codes per digit over the volume element")

    imgs_r = decode_points(model.decode, r_np.astype(np.float32))
    imgs_e = decode_points(model.decode, e_np.astype(np.float32))
    t = np.linspace(-2, 2, 4)
    idx = np.round(np.linspace(0, pca.geodesics.shape[1] - 1, 4)).astype(int)
    imgs_p = decode_points(model.decode, pca.geodesics[0, idx].numpy().astype(np.float32))
    for c in range(10):
        for row, imgs, name in ((0, imgs_r, "Fréchet mean"), (1, imgs_e, "Euclidean mean")):
            cell = fig.add_subplot(grid[row, c + 1])
            show_image(cell, imgs[c], colours[c], f"digit {c}")
            if c == 0:
                cell.set_ylabel(name, fontsize=9)
    for j in range(4):
        show_image(
            fig.add_subplot(grid[2, 1 + 2 * j : 3 + 2 * j]),
            imgs_p[j],
            "black",
            f"PC1, t = {t[j]:+.1f} sd",
        )
    txt = fig.add_subplot(grid[3, 1:])
    txt.axis("off")
    txt.text(
        0.0,
        0.95,
        f"k-means on digits {KMEANS_DIGITS} ({KMEANS_PER_CLASS} codes each), same start:\n"
        f"  ARI {km.ari_riemannian:.2f} (pullback) vs {km.ari_euclidean:.2f} (Euclidean); "
        f"purity {km.purity_riemannian:.2f} vs {km.purity_euclidean:.2f}\n"
        f"5-NN, {len(train)} train / {len(test)} test codes:\n"
        f"  accuracy {knn.riemannian_accuracy:.2f} (geodesic) vs "
        f"{knn.euclidean_accuracy:.2f} (Euclidean)\n"
        f"Tangent PCA at digit {PCA_DIGIT}: PC1 explains {r[0]:.0%} "
        f"({mr[0]:.0%} measured by G)",
        va="top",
        fontsize=9,
        family="monospace",
        transform=txt.transAxes,
    )
    fig.suptitle("geomstats on the bundled MNIST VAE: pullback metric vs Euclidean latent codes")
    path = out_dir / "geomstats_learning.png"
    fig.savefig(path, dpi=72)
    print(f"saved {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs"))
