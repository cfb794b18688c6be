"""The write-up's claims, each put against the number the report measured for it."""

from __future__ import annotations

from .document import Section, table

__all__ = ["claims_section"]


def _verdict(ok: bool, close: bool = False) -> str:
    """``close``: the two sides differ by less than the measurement can resolve."""
    if close:
        return "no clear difference"
    return "holds" if ok else "does not hold here"


def _close(a: float, b: float, rel: float = 0.02) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _uncertainty_rows(u: dict) -> list[tuple[str, str, str]]:
    """The closing claim of Latent Space Oddity, each part on both metrics, same pairs."""
    gap, rand = u["gap_pairs"], u["random_pairs"]
    full, mean_only = "full geodesic", "mean-only geodesic"
    wall = u["wall"]
    rows = [
        (
            "moving away from data increases uncertainty (σ rises where the data ends)",
            f"median σ farther than 2·r95 / 2·r99 from every code: {wall['ratio_2r95']:.1f}× "
            f"/ {wall['ratio_2r99']:.1f}× its median at the codes (criterion: 3× / 5×)",
            _verdict(wall["ratio_2r95"] >= 3 and wall["ratio_2r99"] >= 5),
        )
    ]
    a, b = gap[full]["sigma_max"]["median"], gap[mean_only]["sigma_max"]["median"]
    rows.append(
        (
            "the uncertainty term keeps geodesics where the decoder is certain",
            f"largest σ on the path (median, {u['n_gap_pairs']} gap-crossing pairs): "
            f"{a:.3g} with the term, {b:.3g} without (straight line "
            f"{gap['straight']['sigma_max']['median']:.3g})",
            _verdict(a < b, _close(a, b)),
        )
    )
    a, b = gap[full]["far_fraction"]["mean"], gap[mean_only]["far_fraction"]["mean"]
    rows.append(
        (
            "… and out of the holes between clusters",
            f"share of the path's latent length farther than 2·r99 = {u['far_radius']:.3g} "
            f"from every code (mean, gap-crossing pairs): {100 * a:.1f} % with the term, "
            f"{100 * b:.1f} % without (straight line "
            f"{100 * gap['straight']['far_fraction']['mean']:.1f} %)",
            _verdict(a < b, abs(a - b) < 0.01),
        )
    )
    for k, name in ((full, "full metric"), (mean_only, "mean term only")):
        frac = u["closer_to_data_fraction_random"][k]
        rows.append(
            (
                f"geodesics stay closer to the data than straight lines (Gaussian model, {name})",
                f"closer on {100 * frac:.0f} % of {u['n_random_pairs']} random pairs; median "
                f"path distance to data {rand[k]['distance_to_data']['median']:.3g} vs "
                f"{rand['straight']['distance_to_data']['median']:.3g}",
                _verdict(frac > 0.5, abs(frac - 0.5) < 0.05),
            )
        )
    if "frame_distance" in gap[full]:
        a, b = gap[full]["frame_distance"]["median"], gap[mean_only]["frame_distance"]["median"]
        rows.append(
            (
                "… so the interpolations look more like real digits",
                f"RMS pixel distance from the decoded frames to the nearest of {u['images']:,} "
                f"test images (median, gap-crossing pairs): {a:.3g} with the term, {b:.3g} "
                f"without (straight line {gap['straight']['frame_distance']['median']:.3g})",
                _verdict(a < b, _close(a, b)),
            )
        )
    return rows


def claims_section(n: dict) -> Section:
    """The write-up's claims, each against the number measured for it."""
    s = Section("The write-up's claims against the measurements")
    rows = []
    if "volume" in n and "density" in n:
        d = n["density"]
        rows.append(
            (
                "the metric is larger where the data is concentrated",
                f"Spearman(log √det G, log density) = {d['spearman']:.2f}",
                _verdict(d["spearman"] > 0),
            )
        )
        rows.append(
            (
                "Lebanon: the inverse volume element models the density (slope -1)",
                f"slope {d['slope']:.2f}",
                _verdict(d["slope"] < 0),
            )
        )
    if "paths" in n:
        p = n["paths"]
        frac = p["geodesic_closer_to_data_fraction"]
        rows.append(
            (
                "geodesics stay closer to the data than straight lines",
                f"closer on {100 * frac:.0f} % of {p['pairs']} random pairs; median path "
                f"distance to data {p['distance_to_data_geodesic']['median']:.3g} vs "
                f"{p['distance_to_data_straight']['median']:.3g}",
                _verdict(frac > 0.5, abs(frac - 0.5) < 0.05),
            )
        )
    sim = n.get("similarity", {})
    if "spearman_pixel_vs_geodesic" in sim:
        ge, eu = sim["spearman_pixel_vs_geodesic"], sim["spearman_pixel_vs_euclidean"]
        rows.append(
            (
                "geodesic distances reflect image similarity better than Euclidean ones",
                f"Spearman with pixel distance {ge:.3f} vs {eu:.3f}",
                _verdict(ge > eu),
            )
        )
    if "knn_accuracy_geodesic" in sim:
        ge, eu = sim["knn_accuracy_geodesic"], sim["knn_accuracy_euclidean"]
        rows.append(
            (
                "… and classify better (kNN)",
                f"{100 * ge:.1f} % vs {100 * eu:.1f} % ({sim['knn_points']} codes)",
                _verdict(ge > eu, _close(ge, eu)),
            )
        )
    for pair, r in sim.get("seed_pair_ranks", {}).items():
        rows.append(
            (
                f"{pair} are among the closest classes",
                f"geodesic rank {r['geodesic']} of {r['of']} (Euclidean {r['euclidean']})",
                _verdict(r["geodesic"] <= 5),
            )
        )
    if "uncertainty" in n:
        rows += _uncertainty_rows(n["uncertainty"])
    if "curvature" in n and "gaps" in n["curvature"] and "clusters" in n["curvature"]:
        c = n["curvature"]
        gaps, clusters = c["gaps"]["mean_abs"], c["clusters"]["mean_abs"]
        rows.append(
            (
                "beyond the write-up (Latent Space Oddity): the manifold curves between clusters",
                f"mean |K| in the gaps {gaps:.2e} vs inside clusters {clusters:.2e}",
                _verdict(gaps > clusters),
            )
        )
    s.text.append(table(("claim of the write-up", "measured", "verdict"), rows))
    return s
