"""The report's sections: each draws its figures into the report folder and records its
numbers (:class:`_Builder`, driven by :func:`~pullback_geom.report.build_report`)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import PullbackMetric
from . import analysis as A
from .document import Section, save_figure

if TYPE_CHECKING:
    from .build import ReportOptions, _Checkpoint

#: Class pairs joined in the geodesics figure (4) and the interpolation figure (5); the
#: seed's examples (a 0 and a 1) and the pairs it expects to be close (4–9, 3–8).
GEODESIC_CLASS_PAIRS = ((0, 1), (4, 9), (3, 8), (2, 7), (5, 6))
INTERPOLATION_CLASS_PAIRS = ((0, 1), (1, 7), (6, 9))


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _quartiles(x: Tensor) -> dict[str, float]:
    q = torch.quantile(x.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"q25": float(q[0]), "median": float(q[1]), "q75": float(q[2])}


def _class_pairs(ck: _Checkpoint, wanted, limit: int | None) -> tuple[Tensor, list[str]]:
    reps = A.class_representatives(ck.codes, ck.labels, limit)
    pairs = [(a, b) for a, b in wanted if a in reps and b in reps]
    if not pairs:  # not digits 0-9: the first classes, in order
        keys = sorted(reps)
        pairs = list(zip(keys[::2], keys[1::2], strict=False))[: len(wanted)]
    idx = torch.tensor([[reps[a], reps[b]] for a, b in pairs])
    return idx, [f"{a}→{b}" for a, b in pairs]


def _shoot(metric: PullbackMetric, p: Tensor, v: Tensor) -> Tensor:
    """ODE paths from ``p`` with velocities ``v``, shape (B, 51, d); NaN where one diverged.

    A shot that runs off to infinity makes the metric non-finite and the integrator
    raise; the pairs are then shot one by one, so that only the diverging ones are lost.
    """
    from ..geodesics import exp_map

    try:
        return exp_map(metric, p, v, return_path=True).detach()
    except ValueError:
        paths = []
        for i in range(len(p)):
            try:
                paths.append(exp_map(metric, p[i : i + 1], v[i : i + 1], return_path=True))
            except ValueError:
                paths.append(torch.full((1, 51, p.shape[-1]), float("nan"), dtype=p.dtype))
        return torch.cat(paths).detach()


def _extent(codes: Tensor, pad: float) -> tuple[float, float, float, float]:
    """The box of the central 99 % of the codes, widened by ``pad`` of its size."""
    q = torch.tensor([0.005, 0.995], dtype=codes.dtype)
    lo, hi = torch.quantile(codes, q, dim=0)
    w = pad * (hi - lo)
    return (float(lo[0] - w[0]), float(hi[0] + w[0]), float(lo[1] - w[1]), float(hi[1] + w[1]))


class _Builder:
    def __init__(self, ck: _Checkpoint, options: ReportOptions, folder: Path, bar) -> None:
        self.ck, self.opt, self.folder, self.bar = ck, options, folder, bar
        self.numbers: dict = {}
        self.figures: list[str] = []
        self.extent = _extent(ck.codes, 0.15)
        self.limit = ck.n_images or None

    # ------------------------------------------------------------------ helpers
    def figure(self, fig, name: str) -> str:
        save_figure(fig, self.folder / name, dpi=self.opt.dpi)
        self.figures.append(name)
        return name

    def step(self, what: str) -> None:
        self.bar.set_postfix_str(what)

    def done(self) -> None:
        self.bar.update()

    def geodesics(self, metric: PullbackMetric, idx: Tensor):
        from ..geodesics import connecting_geodesic

        codes = self.ck.codes
        return connecting_geodesic(
            metric,
            codes[idx[:, 0]],
            codes[idx[:, 1]],
            method=self.opt.solver,
            n_points=self.opt.n_points,
            # From straight lines, ~1 pair in 8 settles in a longer local minimum on the
            # bundled ReLU model (up to 20 %); graph paths start near the shortest curve.
            init_curve="graph" if self.opt.graph_start else None,
        )

    # ------------------------------------------------------------------ sections
    def latent_space(self) -> Section:
        from .. import viz

        self.step("latent space")
        ck = self.ck
        s = Section("The latent space")
        s.text.append(
            f"{len(ck.codes):,} test-set codes (encoder means) of the {ck.kind} VAE, "
            f"{ck.name}, and images decoded from a regular grid over the central 99 % "
            "of the codes."
        )
        fig = viz.latent_scatter(ck.codes, ck.labels)
        s.figures.append((self.figure(fig, "latent_space.png"), "1. Latent codes by class"))
        fig = viz.decoded_grid(ck.model.decode, _extent(ck.codes, 0.0), n=20)
        s.figures.append((self.figure(fig, "decoded_grid.png"), "2. Decoded latent grid"))
        self.done()
        return s

    def volume(self) -> Section:
        from .. import viz

        self.step("volume element")
        ck = self.ck
        s = Section("The volume element")
        logvol = ck.metric.log_volume(ck.codes).detach().double() / math.log(10)
        grid = viz._common.log10_volume(ck.metric, self.extent, self.opt.resolution)
        finite = torch.as_tensor(grid)[torch.isfinite(torch.as_tensor(grid))]
        self.numbers["volume"] = {
            "log10_at_codes": _quartiles(logvol[torch.isfinite(logvol)]),
            "log10_over_region": _quartiles(finite),
        }
        q_codes = self.numbers["volume"]["log10_at_codes"]["median"]
        q_grid = self.numbers["volume"]["log10_over_region"]["median"]
        s.text.append(
            "The seed says the metric is larger where the data is concentrated. Median "
            f"log10 sqrt(det G) at the codes: {q_codes:.2f}; over the whole region drawn: "
            f"{q_grid:.2f}."
        )
        s.rows += [
            ("median log10 √det G at the test codes", f"{q_codes:.2f}"),
            ("median log10 √det G over the drawn region", f"{q_grid:.2f}"),
        ]
        fig = viz.volume_heatmap(
            ck.metric, self.extent, codes=ck.codes[:3000], resolution=self.opt.resolution
        )
        s.figures.append((self.figure(fig, "volume_element.png"), "3. Volume element"))
        self.done()
        return s

    def geodesic_pairs(self) -> Section:
        from .. import viz
        from ..geodesics import log_map

        self.step("geodesics")
        ck, opt = self.ck, self.opt
        s = Section("Geodesics between digits")
        idx, names = _class_pairs(ck, GEODESIC_CLASS_PAIRS, self.limit)
        result = self.geodesics(ck.metric, idx)
        curves = {f"energy ({opt.solver.upper()})": result.points.detach()}
        p, q = ck.codes[idx[:, 0]], ck.codes[idx[:, 1]]
        rows = [("pairs (class representatives)", ", ".join(names))]
        rows.append(("energy solver: lengths", ", ".join(_fmt(float(x)) for x in result.length)))
        self.numbers["geodesic_pairs"] = {
            "pairs": names,
            "energy_length": result.length.tolist(),
            "energy_converged": result.converged.tolist(),
        }
        if opt.ode:
            from ..geodesics._common import refined_length

            v = log_map(ck.metric, p, q, n_points=opt.n_points, warn=False)
            path = _shoot(ck.metric, p, v)
            reached = (path[:, -1] - q).norm(dim=-1) <= 1e-3 * (p - q).norm(dim=-1)
            ode_len = refined_length(ck.metric, path, 8).detach()
            curves[f"ODE shooting ({int(reached.sum())}/{len(reached)} reached q)"] = torch.where(
                reached[:, None, None], path, torch.full_like(path, float("nan"))
            )
            both = reached & result.converged
            rel = ((ode_len - result.length) / result.length).abs()
            self.numbers["geodesic_pairs"].update(
                ode_reached=reached.tolist(),
                ode_length=[float(x) if r else None for x, r in zip(ode_len, reached, strict=True)],
                ode_vs_energy_relative_length_difference=[
                    float(x) if b else None for x, b in zip(rel, both, strict=True)
                ],
            )
            rows.append(
                (
                    "ODE shooting: reached the end point",
                    f"{int(reached.sum())} of {len(reached)} pairs",
                )
            )
            if both.any():
                rows.append(
                    (
                        "ODE vs energy, relative length difference (largest, where both converged)",
                        f"{float(rel[both].max()):.1e}",
                    )
                )
            s.text.append(
                "Each pair joins the most typical test code of one class to that of another. "
                "Solid: the energy solver's geodesic; dashed: the geodesic ODE shot from the "
                "start with Newton's method on the initial velocity, drawn where it reached "
                "the end point. On a ReLU decoder the metric jumps across the units' "
                "boundaries and is nearly singular where units are dead, so shooting "
                "diverges on some pairs while the energy solver converges "
                "(`pullback-geom compare` shows this method by method)."
            )
        ends = None
        if ck.images is not None:
            ends = ck.images[idx.reshape(-1)].reshape(len(idx), 2, 28, 28)
        fig = viz.geodesics_figure(
            ck.metric,
            curves,
            ends,
            extent=self.extent,
            codes=ck.codes[:3000],
            resolution=self.opt.resolution,
        )
        s.rows += rows
        s.figures.append((self.figure(fig, "geodesics.png"), "4. Geodesics between digits"))

        idx, names = _class_pairs(ck, INTERPOLATION_CLASS_PAIRS, self.limit)
        result = self.geodesics(ck.metric, idx)
        straight = A.straight_lines(ck.codes[idx[:, 0]], ck.codes[idx[:, 1]], opt.n_points)
        fig = viz.interpolation_figure(
            ck.model.decode,
            straight,
            result.points.detach(),
            ck.metric,
            extent=self.extent,
            codes=ck.codes[:3000],
            resolution=self.opt.resolution,
        )
        s.figures.append(
            (
                self.figure(fig, "interpolation.png"),
                f"5. Euclidean vs Riemannian interpolation ({', '.join(names)})",
            )
        )
        self.done()
        return s

    def paths(self) -> Section:
        self.step(f"paths ({self.opt.n_pairs} pairs)")
        ck, opt = self.ck, self.opt
        s = Section("Geodesics versus straight lines")
        idx = A.random_pairs(len(ck.codes), opt.n_pairs, opt.seed)
        result = self.geodesics(ck.metric, idx)
        straight = A.straight_lines(ck.codes[idx[:, 0]], ck.codes[idx[:, 1]], opt.n_points)
        std_fn = getattr(ck.model, "decode_std", None) if ck.kind == "gaussian" else None
        stats = A.path_statistics(
            ck.metric,
            {"straight": straight, "geodesic": result.points.detach()},
            ck.codes,
            std_fn=std_fn,
        )
        ratio = stats["straight"]["length"] / stats["geodesic"]["length"]
        dist = {k: v["distance_to_data"] for k, v in stats.items()}
        head = ck.codes[:2000].double()
        spacing = torch.cdist(head, head).fill_diagonal_(float("inf")).min(1).values.median()
        numbers = {
            "pairs": opt.n_pairs,
            "converged": int(result.converged.sum()),
            "length_ratio_straight_over_geodesic": _quartiles(ratio),
            "distance_to_data_straight": _quartiles(dist["straight"]),
            "distance_to_data_geodesic": _quartiles(dist["geodesic"]),
            "geodesic_closer_to_data_fraction": float(
                (dist["geodesic"] < dist["straight"]).double().mean()
            ),
            "typical_code_spacing": float(spacing),
        }
        s.rows += [
            ("random test pairs (converged)", f"{opt.n_pairs} ({numbers['converged']})"),
            (
                "length of the straight line / geodesic (median [quartiles])",
                "{median:.3f} [{q25:.3f}, {q75:.3f}]".format(**_quartiles(ratio)),
            ),
            (
                "mean distance of the path to the nearest code: straight, geodesic (median)",
                f"{float(dist['straight'].median()):.3g}, {float(dist['geodesic'].median()):.3g}",
            ),
            (
                "pairs whose geodesic stays closer to the data",
                f"{100 * numbers['geodesic_closer_to_data_fraction']:.0f} %",
            ),
        ]
        if std_fn is not None:
            sig = {k: v["sigma"] for k, v in stats.items()}
            numbers["sigma_straight"] = _quartiles(sig["straight"])
            numbers["sigma_geodesic"] = _quartiles(sig["geodesic"])
            s.rows.append(
                (
                    "mean decoder σ along the path: straight, geodesic (median)",
                    f"{float(sig['straight'].median()):.3g}, {float(sig['geodesic'].median()):.3g}",
                )
            )
        s.text.append(
            f"{opt.n_pairs} random pairs of test codes, each joined by a straight latent line "
            "and by a geodesic; lengths are measured in observation space. The distance to "
            "the data is the latent distance from points along the path to the nearest test "
            f"code (for scale: the median distance from one of {len(head):,} codes to its "
            f"nearest neighbour among them is {float(spacing):.2g})."
        )
        self.numbers["paths"] = numbers
        self.done()
        return s

    def similarity(self) -> Section:
        from .. import viz

        self.step("distances and classes")
        ck, opt = self.ck, self.opt
        s = Section("Distances reflect similarity")
        numbers: dict = {}
        if ck.images is not None:
            idx = A.random_pairs(ck.n_images, opt.n_similarity_pairs, opt.seed + 1)
            result = self.geodesics(ck.metric, idx)
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

        from ..geodesics import pairwise_distances

        limit = ck.n_images or len(ck.codes)
        labels = ck.labels[:limit]
        sel = torch.cat(
            [torch.nonzero(labels == k)[: opt.per_class, 0] for k in torch.unique(labels)]
        )
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
        if k > 9:  # the seed's pairs, when the classes are digits
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
            "The seed says geodesic distances reflect the similarity of the images, and "
            "expects 4–9 and 3–8 among the closest classes. Rank correlations use the "
            "energy solver on random test pairs; the class matrices and kNN use all pairs of "
            f"{opt.per_class} codes per class, by shortest paths on a latent grid graph "
            "(sums of decoded chords: on the bundled ReLU model about 3 % below the "
            "solver's lengths, nearly uniformly, so rankings are kept)."
        )
        fig = viz.distance_matrices(e_cls, g_cls)
        s.figures.append((self.figure(fig, "class_distances.png"), "6. Class distance matrices"))
        self.numbers["similarity"] = numbers
        self.done()
        return s

    def curvature(self) -> Section:
        from ..curvature_stats import curvature_statistics
        from ..viz import curvature_map

        self.step("curvature")
        ck, opt = self.ck, self.opt
        s = Section("Curvature")
        fig = curvature_map(
            ck.metric,
            self.extent,
            ck.codes[:3000],
            ck.labels[:3000],
            resolution=max(60, opt.resolution // 2),
        )
        s.figures.append((self.figure(fig, "curvature.png"), "9. Gaussian curvature"))
        stats = curvature_statistics(
            ck.metric,
            ck.codes[:3000],
            ck.labels[:3000],
            resolution=max(40, opt.resolution // 2),
            n_pairs=min(32, opt.n_pairs),
            n_points=opt.n_points,
            seed=opt.seed,
        )
        numbers = {
            name: {
                "n": r.n,
                "mean_abs": r.mean_abs,
                "mean": r.mean,
                "positive": r.positive,
                "negative": r.negative,
            }
            for name, r in stats.regions.items()
        }
        for name, r in stats.regions.items():
            s.rows.append(
                (
                    f"{name}: mean |K|, share K < 0 ({r.n} points)",
                    f"{r.mean_abs:.2e}, {100 * r.negative:.0f} %",
                )
            )
        if stats.paths is not None:
            ratio = torch.as_tensor(stats.paths.ratio, dtype=torch.float64)
            numbers["geodesic_over_line_mean_abs_K"] = _quartiles(ratio)
            numbers["geodesic_lower_fraction"] = float((ratio < 1).double().mean())
            s.rows.append(
                (
                    "mean |K| along geodesics / along straight lines (median over pairs)",
                    f"{float(ratio.median()):.2f}; geodesic lower on "
                    f"{100 * numbers['geodesic_lower_fraction']:.0f} % of {len(ratio)} pairs",
                )
            )
        s.text.append(
            "Gaussian curvature K of the pullback metric by the Gauss equation (red: "
            "positive, blue: negative). Regions of the latent grid by the density of the "
            "codes and the purity of their classes: inside one class's cluster, dense but "
            "mixed, the sparse gaps between clusters, and outside the data "
            "(`pullback_geom.curvature_stats`; docs/curvature.md)."
        )
        self.numbers["curvature"] = numbers
        self.done()
        return s

    def density(self) -> Section:
        from .. import viz

        self.step("density connection")
        ck = self.ck
        s = Section("The density connection")
        z, lab = ck.codes[:2000], ck.labels[:2000]
        log_vol = ck.metric.log_volume(z).detach().double()
        log_den = viz.kde_log_density(ck.codes, z)
        keep = torch.isfinite(log_vol)
        pearson = float(torch.corrcoef(torch.stack([log_vol[keep], log_den[keep]]))[0, 1])
        rho = A.spearman(log_vol[keep], log_den[keep])
        slope = float(
            torch.linalg.lstsq(
                torch.stack([log_den[keep], torch.ones_like(log_den[keep])], 1),
                log_vol[keep, None],
            ).solution[0, 0]
        )
        self.numbers["density"] = {"pearson": pearson, "spearman": rho, "slope": slope}
        verdict = (
            "larger where the codes are dense (the opposite of 1/√det G ∝ p)"
            if slope > 0
            else "smaller where the codes are dense, as 1/√det G ∝ p predicts"
        )
        s.text.append(
            "Lebanon (UAI 2003) learns metrics whose inverse volume element models the "
            "density: log √det G = -log p + const, a slope of -1. Here the volume element "
            f"is {verdict}."
        )
        s.rows += [
            ("slope of log √det G on log KDE density", f"{slope:.2f}"),
            ("Pearson, Spearman", f"{pearson:.2f}, {rho:.2f}"),
        ]
        fig = viz.density_connection(log_vol, log_den, labels=lab)
        s.figures.append((self.figure(fig, "density_connection.png"), "8. Density connection"))
        self.done()
        return s

    def uncertainty(self, ck: _Checkpoint) -> Section:
        from .. import viz

        self.step("uncertainty term")
        opt = self.opt
        s = Section("The Gaussian decoder's uncertainty term")
        model = ck.model
        mean_metric = PullbackMetric(model.decoder)
        # The heatmaps in float64: where sigma levels off, J_sigma is ~1e-8 and its float32
        # round-off would speckle the uncertainty term's map.
        model64 = copy.deepcopy(model).double()
        mean64, std64 = PullbackMetric(model64.decoder), PullbackMetric(model64.std)
        sub = _Builder(ck, opt, self.folder, self.bar)
        # Where the uncertainty term matters: of 256 random pairs, the 16 whose straight
        # line crosses the largest sigma (a gap between clusters); the first 4 are drawn.
        cand = A.random_pairs(len(ck.codes), 256, opt.seed + 3)
        line = A.straight_lines(ck.codes[cand[:, 0]], ck.codes[cand[:, 1]], 24)
        with torch.no_grad():
            sigma = model.decode_std(line.reshape(-1, 2)).reshape(len(cand), 24, -1).mean(-1)
        idx = cand[sigma.max(1).values.argsort(descending=True)[:16]]
        curves = {
            "straight": A.straight_lines(ck.codes[idx[:, 0]], ck.codes[idx[:, 1]], opt.n_points),
            "mean-only geodesic": sub.geodesics(mean_metric, idx).points.detach(),
            "full geodesic": sub.geodesics(ck.metric, idx).points.detach(),
        }
        extent = _extent(ck.codes, 0.35)  # wider than the data: sigma grows away from it
        fig = viz.uncertainty_figure(
            mean64,
            std64,
            model64.decode_std,
            extent,
            codes=ck.codes[:3000],
            curves_with=curves["full geodesic"][:4],
            curves_without=curves["mean-only geodesic"][:4],
            resolution=max(60, opt.resolution // 2),
        )
        s.figures.append(
            (self.figure(fig, "uncertainty.png"), "7. Mean term, uncertainty term and σ(z)")
        )
        stats = A.path_statistics(ck.metric, curves, ck.codes, std_fn=model.decode_std)
        numbers = {k: {m: _quartiles(v) for m, v in st.items()} for k, st in stats.items()}
        for k, st in stats.items():
            s.rows.append(
                (
                    f"{k}: median over pairs of the mean σ, the largest σ, the distance to data",
                    f"{float(st['sigma'].median()):.3g}, {float(st['sigma_max'].median()):.3g}, "
                    f"{float(st['distance_to_data'].median()):.3g}",
                )
            )
        s.text.append(
            f"The Gaussian VAE, {ck.name}: G = J_μᵀJ_μ + J_σᵀJ_σ, with an RBF network "
            "for σ that grows away from the data. The seed says the uncertainty term keeps "
            "geodesics where the decoder is certain. Pairs: of 256 random test pairs, the 16 "
            "whose straight line crosses the largest σ (gaps between clusters); the first 4 "
            "are drawn, geodesics of the full metric solid and of the mean term alone "
            "dashed. σ is the pixel mean of the decoder's standard deviation."
        )
        self.numbers["uncertainty"] = numbers
        self.done()
        return s
