"""Sections about curves: geodesics against straight lines between class pairs and random
pairs, and the uncertainty term's effect on them."""

from __future__ import annotations

import copy
import math

import torch

from ...metric import PullbackMetric
from . import analysis as A
from .context import (
    GEODESIC_CLASS_PAIRS,
    INTERPOLATION_CLASS_PAIRS,
    Checkpoint,
    ReportContext,
    class_pairs,
    extent,
    fmt,
    quartiles,
    shoot,
)
from .document import Section, table

__all__ = ["geodesic_pairs_section", "paths_section", "uncertainty_section"]


def geodesic_pairs_section(ctx: ReportContext) -> Section:
    from ... import viz
    from ...geodesics import log_map

    ctx.step("geodesics")
    ck, opt = ctx.ck, ctx.options
    s = Section("Geodesics between digits")
    idx, names = class_pairs(ck, GEODESIC_CLASS_PAIRS, ctx.limit)
    result = ctx.geodesics(ck.metric, idx)
    curves = {f"energy ({opt.solver.upper()})": result.points.detach()}
    p, q = ck.codes[idx[:, 0]], ck.codes[idx[:, 1]]
    rows = [("pairs (class representatives)", ", ".join(names))]
    rows.append(("energy solver: lengths", ", ".join(fmt(float(x)) for x in result.length)))
    ctx.numbers["geodesic_pairs"] = {
        "pairs": names,
        "energy_length": result.length.tolist(),
        "energy_converged": result.converged.tolist(),
    }
    if opt.ode:
        from ...geodesics._common import refined_length

        v = log_map(ck.metric, p, q, method="shooting", n_points=opt.n_points, warn=False)
        path = shoot(ck.metric, p, v)
        reached = (path[:, -1] - q).norm(dim=-1) <= 1e-3 * (p - q).norm(dim=-1)
        ode_len = refined_length(ck.metric, path, 8).detach()
        curves[f"ODE shooting ({int(reached.sum())}/{len(reached)} reached q)"] = torch.where(
            reached[:, None, None], path, torch.full_like(path, float("nan"))
        )
        both = reached & result.converged
        rel = ((ode_len - result.length) / result.length).abs()
        ctx.numbers["geodesic_pairs"].update(
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
        ends = ck.images[idx.reshape(-1)].reshape(len(idx), 2, *ck.model.image_shape)
    fig = viz.geodesics_figure(
        ck.metric,
        curves,
        ends,
        extent=ctx.extent,
        codes=ck.codes[:3000],
        resolution=ctx.options.resolution,
    )
    s.rows += rows
    data = {
        "pair_indices": idx,  # rows of the checkpoint's test-set codes
        "energy_curves": result.points.detach(),
        "energy_length": result.length.detach(),
        "energy_converged": result.converged,
    }
    if opt.ode:
        data |= {"ode_curves": path.detach(), "ode_length": ode_len, "ode_reached": reached}
    figure = ctx.figure(fig, "geodesics.png", data=data)
    s.figures.append((figure, "4. Geodesics between digits"))

    idx, names = class_pairs(ck, INTERPOLATION_CLASS_PAIRS, ctx.limit)
    result = ctx.geodesics(ck.metric, idx)
    straight = A.straight_lines(ck.codes[idx[:, 0]], ck.codes[idx[:, 1]], opt.n_points)
    fig = viz.interpolation_figure(
        ck.model.decode,
        straight,
        result.points.detach(),
        ck.metric,
        extent=ctx.extent,
        codes=ck.codes[:3000],
        resolution=ctx.options.resolution,
    )
    data = {
        "pair_indices": idx,
        "straight_curves": straight,
        "geodesic_curves": result.points.detach(),
        "geodesic_length": result.length.detach(),
    }
    s.figures.append(
        (
            ctx.figure(fig, "interpolation.png", data=data),
            f"5. Euclidean vs Riemannian interpolation ({', '.join(names)})",
        )
    )
    ctx.done()
    return s


def paths_section(ctx: ReportContext) -> Section:
    ctx.step(f"paths ({ctx.options.n_pairs} pairs)")
    ck, opt = ctx.ck, ctx.options
    s = Section("Geodesics versus straight lines")
    idx = A.random_pairs(len(ck.codes), opt.n_pairs, opt.seed)
    result = ctx.geodesics(ck.metric, idx)
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
        "length_ratio_straight_over_geodesic": quartiles(ratio),
        "distance_to_data_straight": quartiles(dist["straight"]),
        "distance_to_data_geodesic": quartiles(dist["geodesic"]),
        "geodesic_closer_to_data_fraction": float(
            (dist["geodesic"] < dist["straight"]).double().mean()
        ),
        "typical_code_spacing": float(spacing),
    }
    s.rows += [
        ("random test pairs (converged)", f"{opt.n_pairs} ({numbers['converged']})"),
        (
            "length of the straight line / geodesic (median [quartiles])",
            "{median:.3f} [{q25:.3f}, {q75:.3f}]".format(**quartiles(ratio)),
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
        numbers["sigma_straight"] = quartiles(sig["straight"])
        numbers["sigma_geodesic"] = quartiles(sig["geodesic"])
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
    ctx.numbers["paths"] = numbers
    data = {"pair_indices": idx, "geodesic_converged": result.converged}
    for kind, st in stats.items():
        data |= {f"{kind}_{m}": v for m, v in st.items()}
    ctx.arrays("paths.npz", data)
    ctx.done()
    return s


#: random pairs of the uncertainty section's "closer to the data" comparison (at most; no
#: more than the report's ``n_pairs``)
UNCERTAINTY_RANDOM_PAIRS = 64
#: the pairs whose straight lines cross the largest sigma (at most; ``n_pairs // 8`` and at
#: least 4 in a smaller report), of UNCERTAINTY_CANDIDATES random
#: pairs: the gap-crossing pairs. Many candidates, because a 2-D MNIST latent space is one
#: blob with few holes: of a few hundred random lines, hardly any leaves the data.
UNCERTAINTY_GAP_PAIRS = 16
UNCERTAINTY_CANDIDATES = 4096
_KINDS = ("straight", "mean-only geodesic", "full geodesic")


def uncertainty_section(ctx: ReportContext, ck: Checkpoint) -> Section:
    """The write-up's closing claim on a Gaussian model: the full metric's geodesics against
    the mean term's alone, on the same pairs."""
    from ... import viz
    from ...vae.rbf import pixel_mean_sigma, sigma_wall

    ctx.step("uncertainty term")
    opt = ctx.options
    s = Section("The Gaussian decoder's uncertainty term")
    model = ck.model
    mean_metric = PullbackMetric(model.decoder)
    # The heatmaps in float64: where sigma levels off, J_sigma is ~1e-8 and its float32
    # round-off would speckle the uncertainty term's map.
    model64 = copy.deepcopy(model).double()
    mean64, std64 = PullbackMetric(model64.decoder), PullbackMetric(model64.std)
    sub = ReportContext(ck, opt, ctx.folder, ctx.bar)
    wall = sigma_wall(model.decode_std, ck.codes)
    far = 2 * wall["r99"]

    def joined(idx):
        return {
            "straight": A.straight_lines(ck.codes[idx[:, 0]], ck.codes[idx[:, 1]], opt.n_points),
            "mean-only geodesic": sub.geodesics(mean_metric, idx).points.detach(),
            "full geodesic": sub.geodesics(ck.metric, idx).points.detach(),
        }

    def measured(curves):
        return A.path_statistics(
            ck.metric,
            curves,
            ck.codes,
            std_fn=model.decode_std,
            far_radius=far,
            decode=model.decode,
            images=ck.images,
        )

    # Where the uncertainty term matters: of many random pairs with both ends in the data
    # (sigma at most its 90th percentile over the codes; an outlying code sits in the
    # wall itself and no path could avoid it), those whose straight line crosses the
    # largest sigma between its ends (a gap between clusters). The first 4 are drawn.
    cand = A.random_pairs(len(ck.codes), UNCERTAINTY_CANDIDATES, opt.seed + 3)
    line = A.straight_lines(ck.codes[cand[:, 0]], ck.codes[cand[:, 1]], 24).reshape(-1, 2)
    sigma = pixel_mean_sigma(model.decode_std, line, 8192).reshape(len(cand), 24)
    typical = torch.quantile(sigma[:, 0], 0.9)  # the start points are random codes
    inside = torch.maximum(sigma[:, 0], sigma[:, -1]) <= typical
    score = torch.where(inside, sigma[:, 1:-1].amax(1), -math.inf)
    # The demo's 128 pairs give 16 and 64; a smaller report (fewer --pairs) fewer.
    n_gap = min(UNCERTAINTY_GAP_PAIRS, max(4, opt.n_pairs // 8))
    n_random = min(UNCERTAINTY_RANDOM_PAIRS, opt.n_pairs)
    gap_idx = cand[score.argsort(descending=True)[:n_gap]]
    gap = joined(gap_idx)
    rand = joined(A.random_pairs(len(ck.codes), n_random, opt.seed + 4))
    gap_stats, rand_stats = measured(gap), measured(rand)

    box = extent(ck.codes, 0.35)  # wider than the data: sigma grows away from it
    fig = viz.uncertainty_figure(
        mean64,
        std64,
        model64.decode_std,
        box,
        codes=ck.codes[:3000],
        curves_with=gap["full geodesic"][:4],
        curves_without=gap["mean-only geodesic"][:4],
        straight=gap["straight"][:4],
        resolution=max(60, opt.resolution // 2),
    )
    data = {"gap_pair_indices": gap_idx}
    for kind in _KINDS:
        key = kind.replace(" ", "_").replace("-", "_")
        data[f"gap_{key}_curves"] = gap[kind]
        data |= {f"gap_{key}_{m}": v for m, v in gap_stats[kind].items()}
    s.figures.append(
        (
            ctx.figure(fig, "uncertainty.png", data=data),
            "7. Mean term, uncertainty term and σ(z)",
        )
    )

    def closer(stats):
        straight = stats["straight"]["distance_to_data"]
        return {
            k: float((stats[k]["distance_to_data"] < straight).double().mean()) for k in _KINDS[1:]
        }

    numbers = {
        "wall": wall,
        "far_radius": far,
        "gap_pairs": {k: {m: quartiles(v) for m, v in st.items()} for k, st in gap_stats.items()},
        "random_pairs": {
            k: {m: quartiles(v) for m, v in st.items()} for k, st in rand_stats.items()
        },
        "n_gap_pairs": len(gap_idx),
        "n_random_pairs": n_random,
        "closer_to_data_fraction_gap": closer(gap_stats),
        "closer_to_data_fraction_random": closer(rand_stats),
        "images": ck.n_images,
    }
    s.rows += [
        (
            "median σ farther than 2·r95 / 2·r99 from every code, over its median at the codes",
            f"{wall['ratio_2r95']:.2f}×, {wall['ratio_2r99']:.2f}× "
            f"(r95 {wall['r95']:.3g}, r99 {wall['r99']:.3g})",
        )
    ]
    header = ["pairs", "path", "mean σ", "largest σ", "distance to data", "beyond 2·r99"]
    if ck.n_images:
        header.append("frame to nearest image")
    path_rows = []
    for label, stats in (("gap-crossing", gap_stats), ("random", rand_stats)):
        for k in _KINDS:
            st = stats[k]
            row = [
                label,
                k,
                f"{float(st['sigma'].median()):.3g}",
                f"{float(st['sigma_max'].median()):.3g}",
                f"{float(st['distance_to_data'].median()):.3g}",
                f"{100 * float(st['far_fraction'].mean()):.1f} %",
            ]
            if "frame_distance" in st:
                row.append(f"{float(st['frame_distance'].median()):.3g}")
            path_rows.append(tuple(row))
    frac = numbers["closer_to_data_fraction_random"]
    s.rows.append(
        (
            "random pairs whose geodesic is closer to the data than the straight line: "
            "mean-only, full",
            f"{100 * frac['mean-only geodesic']:.0f} %, {100 * frac['full geodesic']:.0f} %",
        )
    )
    frames = (
        f", and the root-mean-square pixel distance from the decoded frames to the nearest "
        f"of {ck.n_images:,} test images (a proxy for how realistic the interpolation "
        "looks)"
        if ck.n_images
        else ""
    )
    s.text.append(
        f"The Gaussian VAE, {ck.name}: G = J_μᵀJ_μ + J_σᵀJ_σ, with an RBF network "
        "for σ that grows away from the data, gated by the codes' density. Latent Space "
        "Oddity says the uncertainty term keeps geodesics where the decoder is certain. "
        f"Pairs: {n_random} random test pairs, and of "
        f"{UNCERTAINTY_CANDIDATES:,} others whose ends both lie in the data (σ at most its "
        f"90th percentile over the codes) the {len(gap_idx)} whose straight line "
        "crosses the largest σ between its ends (gaps between clusters); each joined by a "
        "straight line, a geodesic of the mean term alone and one of the full metric. The "
        "first 4 gap-crossing pairs are drawn: full geodesics solid, mean-only dashed, "
        "straight lines dotted. σ is the pixel mean of the "
        "decoder's standard deviation. Each row gives, as medians over the pairs: the mean "
        "σ along the path, its largest σ, its mean distance to the nearest code, the "
        f"share of its latent length farther than 2·r99 = {far:.3g} from every code "
        f"(mean over pairs){frames}."
    )
    s.text.append(table(tuple(header), path_rows))
    ctx.numbers["uncertainty"] = numbers
    ctx.done()
    return s
