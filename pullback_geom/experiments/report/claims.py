"""The seed's claims, each put against the number the report measured for it."""

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


def claims_section(n: dict) -> Section:
    """The seed's claims, each against the number measured for it."""
    s = Section("The seed's claims against the measurements")
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
        u = n["uncertainty"]
        full = u["full geodesic"]["sigma_max"]["median"]
        mean_only = u["mean-only geodesic"]["sigma_max"]["median"]
        rows.append(
            (
                "the uncertainty term keeps geodesics where the decoder is certain",
                f"largest σ on the path (median, gap-crossing pairs): {full:.3g} with the "
                f"term, {mean_only:.3g} without",
                _verdict(full < mean_only, _close(full, mean_only)),
            )
        )
    if "curvature" in n and "gaps" in n["curvature"] and "clusters" in n["curvature"]:
        c = n["curvature"]
        gaps, clusters = c["gaps"]["mean_abs"], c["clusters"]["mean_abs"]
        rows.append(
            (
                "beyond the seed (Latent Space Oddity): the manifold curves between clusters",
                f"mean |K| in the gaps {gaps:.2e} vs inside clusters {clusters:.2e}",
                _verdict(gaps > clusters),
            )
        )
    s.text.append(table(("claim of the seed", "measured", "verdict"), rows))
    return s
