"""The identifiability experiment's figures and ``identifiability.md``
(:mod:`pullback_geom.experiments.identifiability` computes, this module presents)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["identifiability_figure", "render_markdown", "truth_figure"]

#: ``--metric`` values whose lengths are pixel-space lengths of (mean) images
_PIXEL_LENGTHS = ("mean", "ensemble", "ensemble-energy")


def identifiability_figure(table: dict[str, Any], euclidean: Any, geodesic: Any, title: str):
    """CV histograms of both kinds of distance and model A against model B.

    Parameters
    ----------
    table : dict
        From :func:`identifiability_table`.
    euclidean, geodesic : array_like, shape (K, P)
        The raw distances the table was made from.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ...viz._common import new_figure
    from .measures import scale_free

    euc, geo = scale_free(euclidean), scale_free(geodesic)
    names = table["models"]
    fig = new_figure((13, 4.2))
    ax_h, ax_e, ax_g = fig.subplots(1, 3)
    cv_e, cv_g = np.asarray(table["euclidean"]["cv"]), np.asarray(table["geodesic"]["cv"])
    bins = np.linspace(0, max(cv_e.max(), cv_g.max()) * 1.02, 30)
    for cv, label, colour in ((cv_e, "Euclidean", "tab:blue"), (cv_g, "geodesic", "tab:orange")):
        ax_h.hist(
            cv, bins=bins, alpha=0.55, color=colour, label=f"{label} (median {np.median(cv):.3f})"
        )
        ax_h.axvline(np.median(cv), color=colour, lw=1.5, ls="--")
    ax_h.set_xlabel("coefficient of variation across models (per pair)")
    ax_h.set_ylabel("pairs")
    ax_h.set_title(f"{len(names)} models, {table['pairs']} pairs")
    ax_h.legend()
    for ax, arr, key, label in (
        (ax_e, euc, "euclidean", "Euclidean latent distance"),
        (ax_g, geo, "geodesic", "geodesic distance"),
    ):
        rho = table[key]["spearman"][f"{names[0]} vs {names[1]}"]
        ax.scatter(arr[0], arr[1], s=8, alpha=0.6, label=f"pairs (Spearman {rho:.2f})")
        top = max(arr[0].max(), arr[1].max()) * 1.05
        ax.plot([0, top], [0, top], color="0.4", lw=1, ls=":", label="equal")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{label}, model {names[0]} (/ its mean)")
        ax.set_ylabel(f"model {names[1]} (/ its mean)")
        ax.set_title(f"{label}\nmodel {names[0]} vs model {names[1]}")
        ax.legend(loc="upper left")
    fig.suptitle(title)
    return fig


def truth_figure(
    table: dict[str, Any],
    truth: Any,
    euclidean: Any,
    geodesic: Any,
    names: Sequence[str],
    title: str,
):
    """Every model's distances against the true ones, Euclidean and geodesic.

    Parameters
    ----------
    table : dict
        From :func:`~pullback_geom.experiments.identifiability.truth_table` (its errors label the
        models).
    truth : array_like, shape (P,)
    euclidean, geodesic : array_like, shape (K, P)
        The raw distances the table was made from.
    names : sequence of str
        The ``K`` models' names.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ...viz._common import new_figure
    from .measures import scale_free

    t = np.asarray(truth, dtype=float)
    t = t / t.mean()
    fig = new_figure((9, 4.4))
    for ax, arr, key, label in zip(
        fig.subplots(1, 2),
        (scale_free(euclidean), scale_free(geodesic)),
        ("euclidean", "geodesic"),
        ("Euclidean latent distance", "geodesic distance"),
        strict=True,
    ):
        errors = table[key]["scale_free_error"]
        for row, name, err in zip(arr, names, errors, strict=True):
            ax.scatter(t, row, s=7, alpha=0.5, label=f"model {name} (median error {err:.1%})")
        top = max(t.max(), arr.max()) * 1.05
        ax.plot([0, top], [0, top], color="0.3", lw=1, ls=":", label="equal")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel("true geodesic distance on the data manifold (/ its mean)")
        ax.set_ylabel(f"{label} in the model (/ its mean)")
        ax.set_title(label)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    return fig


def render_markdown(result: dict[str, Any]) -> str:
    """``identifiability.md`` from :func:`run_identifiability`'s result."""
    k, p = len(result["models"]), len(result["pairs"])
    lines = [
        "# Identifiability of latent distances across retrainings",
        "",
        f"{k} models ({', '.join(result['models'])}), the same {p} random test-image pairs "
        f"(seed {result['pair_seed']}), geodesics with {result['n_points']} nodes "
        + (
            " (Levenberg–Marquardt from grid-graph shortest paths)"
            if result.get("start") == "graph"
            else " (Levenberg–Marquardt from the straight line)"
        )
        + (
            f"; disagreement scale {result['disagreement_scale']:g}"
            if "disagreement" in result["metrics"]
            else ""
        )
        + (
            f"; ensemble-energy weight {result['energy_weight']:g}"
            if "ensemble-energy" in result["metrics"]
            else ""
        )
        + ".",
        "",
        "Each model's distances are divided by their mean over the pairs (Euclidean and "
        "geodesic alike), then per pair the coefficient of variation (CV = population "
        "std / mean) across the models: 0 means every model agrees. Spearman: rank "
        "correlation of two models' raw distances over the pairs.",
        "",
    ]
    if result.get("command"):
        lines += ["```", result["command"], "```", ""]
    lines += [
        "| metric | CV Euclidean, median [q1, q3] | CV geodesic, median [q1, q3] | geodesic / "
        "Euclidean | Spearman Euclidean | Spearman geodesic | CV decoded chord | chord / "
        "Euclidean | converged | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cv(t):
        s = t["cv_summary"]
        return f"{s['median']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}]"

    def rho(t):
        lo, hi = t["spearman_range"]
        return f"{lo:.2f}–{hi:.2f}"

    def chord(t):
        if "chord" not in t:  # results written before the chord was measured
            return "– | –"
        return f"{t['chord']['cv_summary']['median']:.3f} | {t['chord_ratio']:.2f}"

    for kind, t in result["metrics"].items():
        lines.append(
            f"| {kind} | {cv(t['euclidean'])} | {cv(t['geodesic'])} | {t['cv_ratio']:.2f} | "
            f"{rho(t['euclidean'])} | {rho(t['geodesic'])} | {chord(t)} | "
            f"{100 * t['converged_fraction']:.0f}% | {t['seconds']:.0f} |"
        )
    lines += [
        "",
        "Decoded chord: `||f(a) - f(b)||`, the distance of the two decoded images in the "
        "metric's observation space (a lower bound of the geodesic distance that needs no "
        "path): how far the models agree on the images themselves.",
        "",
    ]
    for kind, t in result["metrics"].items():
        if "expected_length" in t:
            alt = t["expected_length"]
            lines += [
                f"{kind}: geodesic = length of the energy's minimiser decoded by the mean "
                "image. Its expected length over decoder pairs instead (which adds the "
                "members' disagreement at every node, an offset that grows with the number "
                f"of nodes and shrinks every CV): median CV {cv(alt)}, Spearman {rho(alt)}.",
                "",
            ]
    if "truth" in result:
        lines += _truth_markdown(result)
    for kind in result["metrics"]:
        lines += [f"![{kind} metric](identifiability_{kind}.png)", ""]
        if "truth" in result["metrics"][kind]:
            lines += [f"![{kind} metric against the truth](identifiability_{kind}_truth.png)", ""]
    return "\n".join(lines)


def _truth_markdown(result: dict[str, Any]) -> list[str]:
    def each(values, fmt):
        return " / ".join(format(v, fmt) for v in values)

    lines = [
        "## Against the true manifold",
        "",
        "The models were trained on `digit-orbit` images, whose manifold is known: "
        f"{result['truth']['what']}, {result['truth']['seconds']:.0f} s. One value per "
        "model. Scale-free error: median over pairs of the relative error once the model's "
        "and the true distances are each divided by their mean. The length ratio is shown "
        "for metrics that measure pixel-space lengths, as the truth does.",
        "",
        "| metric | geodesic / true length (median) | scale-free error Euclidean | "
        "scale-free error geodesic | Spearman with truth Euclidean | Spearman with truth "
        "geodesic |",
        "|---|---|---|---|---|---|",
    ]
    for kind, t in result["metrics"].items():
        e, g = t["truth"]["euclidean"], t["truth"]["geodesic"]
        # The truth is a pixel-space length; other metrics measure in other units.
        ratio = each(g["ratio"], ".3f") if kind in _PIXEL_LENGTHS else "–"
        lines.append(
            f"| {kind} | {ratio} | {each(e['scale_free_error'], '.1%')} | "
            f"{each(g['scale_free_error'], '.1%')} | {each(e['spearman'], '.3f')} | "
            f"{each(g['spearman'], '.3f')} |"
        )
    return [*lines, ""]
