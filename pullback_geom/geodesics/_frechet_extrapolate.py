"""The joint Fréchet mean extrapolated to zero node spacing (``frechet_mean(extrapolate=True)``).

On a smooth decoder the discrete mean of ``N``-node curves is ``O(h^2)`` off the Fréchet
mean, ``h = 1 / (N - 1)``. A second solve on :func:`fine_points` ``(N)`` nodes, warm-started
from the first, and Richardson's combination of the two means cancel that term. What is
left is ``O(h^4)``, small against the distance from the Euclidean mean unless that distance
is itself small: bundled smooth model, 50 codes of a digit 4, whose Euclidean mean is only
0.019 from the Fréchet mean, kept 1.1e-2 of that distance from 16 and 21 nodes. Where the
correction is more than :data:`RESOLVE_RATIO` of the extrapolated mean's distance from the
Euclidean mean, a third solve on ``fine_points`` of the second's nodes and the combination
of the finer two are taken instead, the third solve started where the ``h^2`` model of
the first two puts its mean (digit 4: 3.6e-4 of the distance to a 41/55-node reference,
6.9e-4 when warm-started from the 21-node mean itself, which took three iterations where
this start takes two; the three-level Romberg combination was worse, 4.0e-3, the solves'
own tolerances not being ``O(h^6)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from ._common import check_count, regrid_curves

#: The result type, ``frechet.FrechetResult`` (not imported: frechet imports this module).
FrechetResult = TypeVar("FrechetResult")

__all__ = ["NOISE", "RESOLVE_RATIO", "extrapolated", "fine_points"]

#: A set whose Richardson correction exceeds this fraction of the extrapolated mean's
#: distance from the weighted Euclidean mean is extrapolated again one level finer
#: (bundled smooth model, 50 codes of each digit: only digit 4, at 0.21; the others
#: 2e-3 to 3e-2).
RESOLVE_RATIO = 0.1
#: ... unless the correction is below this fraction of the set's spread (the solves'
#: tolerance, 1e-10 on the energy, places the means to about 1e-5 of it).
NOISE = 1e-6


def fine_points(n_points: int) -> int:
    """Nodes of ``frechet_mean(extrapolate=True)``'s second solve: a third more segments
    (16 -> 21). Bundled smooth model, 50 codes of digits 1 / 3 / 7: the extrapolated
    mean's gradient 9e-5 / 2.8e-4 / 4e-6 of the Euclidean mean's (doubling to 31 nodes:
    1e-5 / 5e-5 / 2e-5, for twice the second solve's cost)."""
    check_count(n_points, "n_points", 3)
    return round((n_points - 1) * 4 / 3) + 1


def extrapolated(
    solve: Callable[..., FrechetResult],
    measure: Callable[..., FrechetResult],
    result: FrechetResult,
    x: Tensor,
    w: Tensor,
    n_points: int,
) -> FrechetResult:
    """``result`` (a ``FrechetResult`` of the sets ``x`` (k, n, d), weights ``w`` (k, n), on
    ``n_points`` nodes) extrapolated to zero node spacing, with the fields of the finer
    solve on ``fine_points(n_points)`` nodes (see the module docstring).

    ``solve(x, w, mean, curves, n)`` solves the sets ``x`` on ``n`` nodes from the given
    means (k, d) and curves (k, n, N, d), leaving the measured fields NaN;
    ``measure(result, x, w, sets)`` measures the ``sets`` (bool, (k,)) of a result: only
    the solve whose fields are returned is measured.
    """
    n_fine = fine_points(n_points)
    fine = solve(x, w, result.mean, regrid_curves(result.curves, n_fine), n_fine)
    out = _richardson(result, fine, n_points, n_fine)
    euclidean = (w[..., None] * x).sum(1) / w.sum(1)[:, None]
    far = (euclidean - out.mean).norm(dim=-1)
    spread = torch.where(w[..., None] > 0, x - euclidean[:, None], 0).norm(dim=-1).amax(1)
    shift = (out.mean - fine.mean).norm(dim=-1)
    # Corrections below NOISE of the set's spread are within the solves' own accuracy (a
    # symmetric set's Euclidean mean is its Fréchet mean: both distances are rounding).
    again = (shift > RESOLVE_RATIO * far) & (shift > NOISE * spread)
    out = _richardson(result, measure(fine, x, w, ~again), n_points, n_fine)
    if not bool(again.any()):
        return out
    n_finer = fine_points(n_fine)
    sub = _sets(fine, again)
    # Started where the h^2 model puts the finer solve's mean: the extrapolated mean plus
    # the fine one's offset from it scaled to the finer spacing, the curves moved along.
    ratio = ((n_fine - 1) / (n_finer - 1)) ** 2
    predicted = out.mean[again] + ratio * (sub.mean - out.mean[again])
    curves = _moved_with_mean(sub.curves, predicted - sub.mean)
    finer = solve(x[again], w[again], predicted, regrid_curves(curves, n_finer), n_finer)
    finer = measure(finer, x[again], w[again], None)
    again_out = _richardson(sub, finer, n_fine, n_finer)
    # Kept on the second solve's nodes, as every set's curves are.
    again_out = dataclasses.replace(
        again_out,
        curves=regrid_curves(again_out.curves, n_fine),
        iterations=again_out.iterations + result.iterations[again],
        converged=again_out.converged & result.converged[again],
    )
    fields = {}
    for name, value in vars(out).items():
        value = value.clone()
        value[again] = getattr(again_out, name)
        fields[name] = value
    return dataclasses.replace(out, **fields)


def _sets(result: FrechetResult, which: Tensor) -> FrechetResult:
    """The sets ``which`` (bool, (k,)) of ``result``."""
    return dataclasses.replace(result, **{k: v[which] for k, v in vars(result).items()})


def _moved_with_mean(curves: Tensor, shift: Tensor) -> Tensor:
    """Curves (k, n, N, d) from their sets' means to the points, each node moved by the
    means' ``shift`` (k, d) in proportion to its distance from the point (the mean by all
    of it, the point not at all)."""
    n_nodes = curves.shape[2]
    towards_point = torch.linspace(1, 0, n_nodes, dtype=curves.dtype, device=curves.device)
    return curves + shift[:, None, None, :] * towards_point[:, None]


def _richardson(coarse: FrechetResult, fine: FrechetResult, n: int, n_fine: int) -> FrechetResult:
    """``fine`` with the mean extrapolated from both to zero node spacing, its curves' nodes
    moved by the shift in proportion to their distance from the point."""
    h2, h2_fine = (n - 1) ** -2, (n_fine - 1) ** -2
    mean = (h2 * fine.mean - h2_fine * coarse.mean) / (h2 - h2_fine)
    # Equal means (a set of one point, or duplicates) stay exact, not rounded.
    mean = torch.where(coarse.mean == fine.mean, fine.mean, mean)
    return dataclasses.replace(
        fine,
        mean=mean,
        curves=_moved_with_mean(fine.curves, mean - fine.mean),
        iterations=coarse.iterations + fine.iterations,
        converged=coarse.converged & fine.converged,
    )
