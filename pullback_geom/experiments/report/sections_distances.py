"""The similarity section: geodesic against Euclidean distances, against pixel distances,
between classes and in kNN."""

from __future__ import annotations

import torch

from . import analysis as A
from .context import (
    ReportContext,
)
from .document import Section

__all__ = ["similarity_section"]


def similarity_section(ctx: ReportContext) -> Section:
    from ... import viz

    ctx.step("distances and classes")
    ck, opt = ctx.ck, ctx.options
    s = Section("Distances reflect similarity")
    numbers: dict = {}
    if ck.images is not None:
        idx = A.random_pairs(ck.n_images, opt.n_similarity_pairs, opt.seed + 1)
        result = ctx.geodesics(ck.metric, idx)
        pixel = (ck.images[idx[:, 0]] - ck.images[idx[:, 1]]).norm(dim=-1)
        euclid = (ck.codes[idx[:, 0]] - ck.codes[idx[:, 1]]).norm(dim=-1)
        numbers["spearman_pixel_vs_euclidean"] = A.spearman(pixel, euclid)
        numbers["spearman_pixel_vs_geodesic"] = A.spearman(pixel, result.length.detach())
        numbers["similarity_pairs"] = opt.n_similarity_pairs
        numbers["similarity_pairs_converged"] = int(result.converged.sum())
        s.rows += [
            (
                f"Spearman ρ with pixel distance, {opt.n_similarity_pairs} pairs: Euclidean",
                f"{numbers['spearman_pixel_vs_euclidean']:.3f}",
            ),
            (
                f"Spearman ρ with pixel distance, {opt.n_similarity_pairs} pairs: geodesic",
                f"{numbers['spearman_pixel_vs_geodesic']:.3f}",
            ),
        ]
    else:
        s.text.append(f"No test images ({ck.image_source}): pixel distances skipped.")

    from ...geodesics import pairwise_distances

    limit = ck.n_images or len(ck.codes)
    labels = ck.labels[:limit]
    sel = torch.cat([torch.nonzero(labels == k)[: opt.per_class, 0] for k in torch.unique(labels)])
    z, lab = ck.codes[sel], labels[sel]
    euclid_d = torch.cdist(z.double(), z.double())
    # A lighter graph than route="graph"'s default (192^2, edges decoded in 4 pieces,
    # ~0.5 % from the solver): chords on 128^2 (~3 % low on ReLU decoders, the same
    # for every pair, so neighbours barely change) keep the demo to seconds.
    light = {"resolution": 128, "reach": 3, "subdivide": 1}
    geo_d = pairwise_distances(
        ck.metric, z, route="graph", graph_options=light, progress=False
    ).double()
    numbers["knn_k"] = opt.knn
    numbers["knn_points"] = len(sel)
    numbers["knn_accuracy_euclidean"] = A.knn_accuracy(euclid_d, lab, opt.knn)
    numbers["knn_accuracy_geodesic"] = A.knn_accuracy(geo_d, lab, opt.knn)
    if ck.images is not None:
        pix = ck.images[sel].double()
        numbers["knn_accuracy_pixels"] = A.knn_accuracy(torch.cdist(pix, pix), lab, opt.knn)
    s.rows += [
        (
            f"{opt.knn}-NN accuracy (leave-one-out, {len(sel)} codes): Euclidean latent",
            f"{100 * numbers['knn_accuracy_euclidean']:.1f} %",
        ),
        (
            f"{opt.knn}-NN accuracy: geodesic",
            f"{100 * numbers['knn_accuracy_geodesic']:.1f} %",
        ),
    ]
    if "knn_accuracy_pixels" in numbers:
        s.rows.append(
            (
                f"{opt.knn}-NN accuracy: pixels (reference)",
                f"{100 * numbers['knn_accuracy_pixels']:.1f} %",
            )
        )
    e_cls = A.class_mean_distances(euclid_d, lab)
    g_cls = A.class_mean_distances(geo_d, lab)
    closest_e = A.closest_class_pairs(e_cls)
    closest_g = A.closest_class_pairs(g_cls)
    k = len(e_cls)
    if k > 9:  # the write-up's pairs, when the classes are digits
        numbers["seed_pair_ranks"] = {
            f"{a}–{b}": {
                "euclidean": A.class_pair_rank(e_cls, a, b),
                "geodesic": A.class_pair_rank(g_cls, a, b),
                "of": k * (k - 1) // 2,
            }
            for a, b in ((4, 9), (3, 8))
        }
    numbers["closest_classes_euclidean"] = closest_e
    numbers["closest_classes_geodesic"] = closest_g
    numbers["class_distances_euclidean"] = e_cls.tolist()
    numbers["class_distances_geodesic"] = g_cls.tolist()
    s.rows += [
        (
            "closest class pairs, Euclidean",
            ", ".join(f"{k} ({v:.3g})" for k, v in closest_e),
        ),
        ("closest class pairs, geodesic", ", ".join(f"{k} ({v:.3g})" for k, v in closest_g)),
    ]
    s.text.append(
        "The write-up says geodesic distances reflect the similarity of the images, and "
        "expects 4–9 and 3–8 among the closest classes. Rank correlations use the "
        "energy solver on random test pairs; the class matrices and kNN use all pairs of "
        f"{opt.per_class} codes per class, by shortest paths on a latent grid graph "
        "(sums of decoded chords: on the bundled ReLU model about 3 % below the "
        "solver's lengths, nearly uniformly, so rankings are kept)."
    )
    fig = viz.distance_matrices(e_cls, g_cls)
    data = {
        "code_indices": sel,  # rows of the checkpoint's test-set codes
        "labels": lab,
        "euclidean_distances": euclid_d,
        "geodesic_distances": geo_d,
        "class_means_euclidean": e_cls,
        "class_means_geodesic": g_cls,
    }
    if ck.images is not None:
        data |= {
            "similarity_pairs": idx,
            "similarity_pixel_distance": pixel,
            "similarity_euclidean_length": euclid,
            "similarity_geodesic_length": result.length.detach(),
            "similarity_converged": result.converged,
        }
    figure = ctx.figure(fig, "class_distances.png", data=data)
    s.figures.append((figure, "6. Class distance matrices"))
    ctx.numbers["similarity"] = numbers
    ctx.done()
    return s
