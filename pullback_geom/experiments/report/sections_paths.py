"""Sections about curves: geodesics against straight lines between class pairs and random
pairs, and the uncertainty term's effect on them."""

from __future__ import annotations

import copy

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
from .document import Section

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

        v = log_map(ck.metric, p, q, n_points=opt.n_points, warn=False)
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
        ends = ck.images[idx.reshape(-1)].reshape(len(idx), 2, 28, 28)
    fig = viz.geodesics_figure(
        ck.metric,
        curves,
        ends,
        extent=ctx.extent,
        codes=ck.codes[:3000],
        resolution=ctx.options.resolution,
    )
    s.rows += rows
    s.figures.append((ctx.figure(fig, "geodesics.png"), "4. Geodesics between digits"))

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
    s.figures.append(
        (
            ctx.figure(fig, "interpolation.png"),
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
    ctx.done()
    return s


def uncertainty_section(ctx: ReportContext, ck: Checkpoint) -> Section:
    from ... import viz

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
    box = extent(ck.codes, 0.35)  # wider than the data: sigma grows away from it
    fig = viz.uncertainty_figure(
        mean64,
        std64,
        model64.decode_std,
        box,
        codes=ck.codes[:3000],
        curves_with=curves["full geodesic"][:4],
        curves_without=curves["mean-only geodesic"][:4],
        resolution=max(60, opt.resolution // 2),
    )
    s.figures.append(
        (ctx.figure(fig, "uncertainty.png"), "7. Mean term, uncertainty term and σ(z)")
    )
    stats = A.path_statistics(ck.metric, curves, ck.codes, std_fn=model.decode_std)
    numbers = {k: {m: quartiles(v) for m, v in st.items()} for k, st in stats.items()}
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
    ctx.numbers["uncertainty"] = numbers
    ctx.done()
    return s
