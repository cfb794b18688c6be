"""Sections that map the latent space: codes, decoded grid, volume element, density and
curvature."""

from __future__ import annotations

import math

import torch

from . import analysis as A
from .context import (
    ReportContext,
    extent,
    quartiles,
)
from .document import Section

__all__ = ["latent_space_section", "volume_section", "density_section", "curvature_section"]


def latent_space_section(ctx: ReportContext) -> Section:
    from ... import viz

    ctx.step("latent space")
    ck = ctx.ck
    s = Section("The latent space")
    s.text.append(
        f"{len(ck.codes):,} test-set codes (encoder means) of the {ck.kind} VAE, "
        f"{ck.name}, and images decoded from a regular grid over the central 99 % "
        "of the codes."
    )
    fig = viz.latent_scatter(ck.codes, ck.labels)
    s.figures.append((ctx.figure(fig, "latent_space.png"), "1. Latent codes by class"))
    fig = viz.decoded_grid(ck.model.decode, extent(ck.codes, 0.0), n=20)
    s.figures.append((ctx.figure(fig, "decoded_grid.png"), "2. Decoded latent grid"))
    ctx.done()
    return s


def volume_section(ctx: ReportContext) -> Section:
    from ... import viz

    ctx.step("volume element")
    ck = ctx.ck
    s = Section("The volume element")
    logvol = ck.metric.log_volume(ck.codes).detach().double() / math.log(10)
    grid = viz._common.log10_volume(ck.metric, ctx.extent, ctx.options.resolution)
    finite = torch.as_tensor(grid)[torch.isfinite(torch.as_tensor(grid))]
    ctx.numbers["volume"] = {
        "log10_at_codes": quartiles(logvol[torch.isfinite(logvol)]),
        "log10_over_region": quartiles(finite),
    }
    q_codes = ctx.numbers["volume"]["log10_at_codes"]["median"]
    q_grid = ctx.numbers["volume"]["log10_over_region"]["median"]
    s.text.append(
        "The write-up says the metric is larger where the data is concentrated. Median "
        f"log10 sqrt(det G) at the codes: {q_codes:.2f}; over the whole region drawn: "
        f"{q_grid:.2f}."
    )
    s.rows += [
        ("median log10 √det G at the test codes", f"{q_codes:.2f}"),
        ("median log10 √det G over the drawn region", f"{q_grid:.2f}"),
    ]
    fig = viz.volume_heatmap(
        ck.metric, ctx.extent, codes=ck.codes[:3000], resolution=ctx.options.resolution
    )
    s.figures.append((ctx.figure(fig, "volume_element.png"), "3. Volume element"))
    ctx.done()
    return s


def density_section(ctx: ReportContext) -> Section:
    from ... import viz

    ctx.step("density connection")
    ck = ctx.ck
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
    ctx.numbers["density"] = {"pearson": pearson, "spearman": rho, "slope": slope}
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
    s.figures.append((ctx.figure(fig, "density_connection.png"), "8. Density connection"))
    ctx.done()
    return s


def curvature_section(ctx: ReportContext) -> Section:
    from ...viz import curvature_map
    from ..curvature_stats import curvature_statistics

    ctx.step("curvature")
    ck, opt = ctx.ck, ctx.options
    s = Section("Curvature")
    fig = curvature_map(
        ck.metric,
        ctx.extent,
        ck.codes[:3000],
        ck.labels[:3000],
        resolution=max(60, opt.resolution // 2),
    )
    s.figures.append((ctx.figure(fig, "curvature.png"), "9. Gaussian curvature"))
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
        numbers["geodesic_over_line_mean_abs_K"] = quartiles(ratio)
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
        "(`pullback_geom.experiments.curvature_stats`; docs/curvature.md)."
    )
    ctx.numbers["curvature"] = numbers
    ctx.done()
    return s
