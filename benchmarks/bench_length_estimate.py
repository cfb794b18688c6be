"""How well the refined length estimates a curve's length, and what that does to ``dist``.

``refined_length`` decodes the spline through a curve's nodes at ``refine`` points per
segment and Richardson-extrapolates the polygons at ``refine`` and ``refine / 2`` points
as if their error fell as ``h^2``. At a ReLU decoder's creases the decoded curve has
kinks, where it falls as ``h``. This measures, against each curve's own length at 256
points per segment:

* the extrapolation in use (``refine = 4`` and ``8``), the plain polygons, and two
  extrapolations that estimate the order ``rho = (L_2r - L_r) / (L_4r - L_2r)`` from
  three polygons (clamped to ``[2, 4]``, then ``L_4r + (L_4r - L_2r) / (rho - 1)``);
* on polylines with one kink at a random place (exact length 1);
* on 64 random pairs of test codes of the bundled ReLU and smooth models (16-node curves
  of ``connecting_geodesic``);
* and on the ReLU model, ``space.metric.dist`` (``latent_space`` defaults) against the
  same pairs' 64-node reference curves measured at 64 points per segment, split into
  how much longer the 16-node curve is and how far its estimate reads below it.

    python benchmarks/bench_length_estimate.py
"""

from __future__ import annotations

import warnings

import torch

# isort: off
import pullback_geom.geomstats as pg_geomstats  # before geomstats: selects its backend

# isort: on
from bench_learned_manifold import random_pairs

from pullback_geom.geodesics import connecting_geodesic
from pullback_geom.geodesics._common import spline_points

F64 = torch.float64


def polygon_lengths(x: torch.Tensor, steps: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Lengths of the polygons through every ``s``-th of the points ``x`` (B, M, D)."""
    return {s: torch.linalg.vector_norm(x[:, ::s].diff(dim=1), dim=-1).sum(-1) for s in steps}


def order_estimate(coarse, mid, fine) -> torch.Tensor:
    """Extrapolation with its order estimated from three nested polygons."""
    rho = ((mid - coarse) / (fine - mid)).nan_to_num(4.0).clamp(2.0, 4.0)
    return fine + (fine - mid) / (rho - 1)


def estimates(lengths: dict[int, torch.Tensor], top: int) -> dict[str, torch.Tensor]:
    """The estimators from polygons at ``top / s`` points per segment (``lengths[s]``)."""
    by_points = {top // s: v for s, v in lengths.items()}
    out = {}
    for r in (4, 8):
        out[f"plain, {r} points"] = by_points[r]
        out[f"Richardson h^2, refine={r}" + (" (the default)" if r == 4 else "")] = (
            by_points[r] + (by_points[r] - by_points[r // 2]) / 3
        )
    out["order from 1, 2, 4 points"] = order_estimate(by_points[1], by_points[2], by_points[4])
    out["order from 2, 4, 8 points"] = order_estimate(by_points[2], by_points[4], by_points[8])
    return out


def report(title: str, est: dict[str, torch.Tensor], truth: torch.Tensor) -> None:
    print(title)
    for name, value in est.items():
        e = (value - truth) / truth
        print(
            f"  {name:42s} median {e.median():+.1e}  |median| {e.abs().median():.1e}  "
            f"range {e.min():+.1e} .. {e.max():+.1e}"
        )


def kinks(n_curves: int = 2000, n_points: int = 16) -> None:
    """Unit-length polylines with one kink (angle 0.2–1.2 rad) at a random place."""
    gen = torch.Generator().manual_seed(0)
    at = torch.rand(n_curves, 1, generator=gen, dtype=F64)
    angle = 0.2 + torch.rand(n_curves, 1, generator=gen, dtype=F64)
    top = 256
    t = torch.linspace(0, 1, (n_points - 1) * top + 1, dtype=F64).expand(n_curves, -1)
    turned = torch.stack([angle.cos(), angle.sin()], -1)
    after = torch.stack([at, torch.zeros_like(at)], -1) + (t - at)[..., None] * turned
    x = torch.where((t < at)[..., None], torch.stack([t, torch.zeros_like(t)], -1), after)
    lengths = polygon_lengths(x, (top, top // 2, top // 4, top // 8))
    report(
        f"one kink, {n_curves} polylines of {n_points} nodes (exact length 1):",
        estimates(lengths, top),
        torch.ones(n_curves, dtype=F64),
    )


def decoded_curves(metric, curves: torch.Tensor, top: int = 256) -> dict[int, torch.Tensor]:
    b, _, d = curves.shape
    out = {s: [] for s in (top, top // 2, top // 4, top // 8, 1)}
    with torch.no_grad():
        for curve in curves.split(8):  # bounded memory: 8 curves x 3841 decoded points
            fine = spline_points(curve, top)
            x = metric.evaluator.embed(fine.reshape(-1, d)).reshape(len(curve), fine.shape[1], -1)
            for s, v in polygon_lengths(x, tuple(out)).items():
                out[s].append(v)
    return {s: torch.cat(v) for s, v in out.items()}


def model_curves(name: str, n_pairs: int = 64) -> None:
    # The 64 pairs bench_learned_manifold.py measures dist on.
    model, _, _, p, q = random_pairs(name, n_pairs, seed=0)
    metric = model.pullback_metric().to(dtype=F64)
    curves = connecting_geodesic(metric, p, q, warn=False).points
    lengths = decoded_curves(metric, curves)
    own = lengths.pop(1)  # 256 points per segment
    report(
        f"{name} model, {n_pairs} random pairs, 16-node curves, against their length at "
        "256 points per segment:",
        estimates(lengths, 256),
        own,
    )
    if name != "bernoulli":
        return
    refs = [
        connecting_geodesic(
            metric, p, q, n_points=64, init_curve=start, refine=8, max_iter=500, warn=False
        ).points
        for start in ("straight", "graph")
    ]
    truth = torch.minimum(*[decoded_curves(metric, r, top=64)[1] for r in refs])
    dist = pg_geomstats.latent_space(model).metric.dist(p, q)
    report(
        "  against the 64-node reference curves at 64 points per segment:",
        {
            "space.metric.dist (defaults)": dist,
            "16-node curve at 256 points (its length)": own,
        },
        truth,
    )


def main() -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    kinks()
    for name in ("bernoulli", "smooth"):
        model_curves(name)


if __name__ == "__main__":
    main()
