"""Shared pieces of the geodesic solvers: the result type, the warning, input checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import same_shape
from ..metric import PullbackMetric

__all__ = ["GeodesicConvergenceWarning", "GeodesicResult"]


class GeodesicConvergenceWarning(RuntimeWarning):
    """A geodesic solver stopped before meeting its tolerance for some pairs."""


@dataclass
class GeodesicResult:
    """Connecting geodesics of ``B`` pairs.

    Attributes
    ----------
    points : Tensor, shape (B, N, d)
        The discrete curves, end points included.
    length : Tensor, shape (B,)
        Observation-space length of the curve (the decoded latent polygon, each segment
        refined; see ``refine`` in :func:`connecting_geodesic`).
    energy : Tensor, shape (B,)
        Its discrete energy, ``(N - 1) * sum ||f(x_{i+1}) - f(x_i)||^2``.
    converged : Tensor, shape (B,), bool
    iterations : Tensor, shape (B,), int
    """

    points: Tensor
    length: Tensor
    energy: Tensor
    converged: Tensor
    iterations: Tensor


def _pair(metric: PullbackMetric, p, q) -> tuple[Tensor, Tensor, bool]:
    p, single = metric._points(p, "p")
    q, _ = metric._points(q, "q")
    same_shape(p, q, "p and q")
    return p, q, single


def _tolerance(dtype: torch.dtype, tol: float | None, default64: float) -> float:
    if tol is not None:
        return tol
    return default64 if dtype == torch.float64 else max(default64, 1e-5)


def spline_points(curve: Tensor, refine: int) -> Tensor:
    """Points of the centripetal Catmull–Rom spline through the nodes, ``refine`` per segment.

    A cubic Hermite interpolant whose knots are spaced by the square root of the latent
    distance between nodes (centripetal parametrisation): unlike uniform knots it does not
    overshoot where the latent spacing of the nodes changes fast, as it does on a
    constant-speed geodesic through a region where the metric varies by orders of
    magnitude. Tangents are the three-point non-uniform differences inside and the chord
    directions at the two ends.

    Parameters
    ----------
    curve : Tensor, shape (B, N, d)
    refine : int

    Returns
    -------
    Tensor, shape (B, (N - 1) * refine + 1, d)
        The nodes themselves at every ``refine``-th position.
    """
    b, n, d = curve.shape
    chord = curve.diff(dim=1)  # (B, N - 1, d)
    h = torch.linalg.vector_norm(chord, dim=-1, keepdim=True)
    h = h.clamp_min(torch.finfo(curve.dtype).tiny).sqrt()  # knot spacing
    slope = chord / h  # dx/dt on each segment
    tangent = torch.empty_like(curve)
    h0, h1 = h[:, :-1], h[:, 1:]
    tangent[:, 1:-1] = (h1 * slope[:, :-1] + h0 * slope[:, 1:]) / (h0 + h1)
    tangent[:, 0], tangent[:, -1] = slope[:, 0], slope[:, -1]
    t = torch.arange(refine, dtype=curve.dtype, device=curve.device) / refine
    t2, t3 = t * t, t * t * t
    # Hermite basis in the form x0 + h01 (x1 - x0) + h h10 m0 + h h11 m1 (h00 = 1 - h01), so
    # that equal nodes give exactly that point: (refine, 3)
    basis = torch.stack([-2 * t3 + 3 * t2, t3 - 2 * t2 + t, t3 - t2], -1)
    coeffs = torch.stack([chord, h * tangent[:, :-1], h * tangent[:, 1:]], 2)
    seg = curve[:, :-1, None] + torch.einsum("rk,bnkd->bnrd", basis, coeffs)
    return torch.cat([seg.reshape(b, -1, d), curve[:, -1:]], dim=1)


def refined_length(metric: PullbackMetric, curve: Tensor, refine: int) -> Tensor:
    """Observation-space length of the smooth latent curve through the nodes.

    With ``refine > 1`` the curve between the nodes is the centripetal Catmull–Rom
    spline of :func:`spline_points`, sampled ``refine`` times per segment and decoded; the
    decoded polygon then follows the decoded curve between the nodes (sphere, 200 pairs
    with ``|z| < 1.5``, N = 32: median relative error 1.2e-6 against 4.6e-5 for the
    latent polygon, largest 1.7e-3 against 8.7e-3, on a curve over the far pole where
    the chart stretches a hundredfold). With ``refine = 1`` it is the chord length of the
    nodes, which undershoots by ``O(1/N)`` on ReLU decoders (their decoded curves bend
    sharply between nodes) and by ``O(1/N^2)`` on smooth ones.

    Parameters
    ----------
    metric : PullbackMetric
    curve : Tensor, shape (B, N, d)
    refine : int

    Returns
    -------
    Tensor, shape (B,)
    """
    b, n, d = curve.shape
    fine = spline_points(curve, refine) if refine > 1 else curve
    m = fine.shape[1]
    with torch.no_grad():
        x = metric._map(metric.embed, 1, fine.reshape(-1, d)).reshape(b, m, -1)
    return torch.linalg.vector_norm(x.diff(dim=1), dim=-1).sum(-1)


def resample_curves(curves: Tensor, n_points: int) -> Tensor:
    """Curves resampled at ``n_points`` nodes evenly spaced in latent arc length.

    Parameters
    ----------
    curves : Tensor, shape (B, N, d)
    n_points : int

    Returns
    -------
    Tensor, shape (B, n_points, d)
    """
    seg = (curves[:, 1:] - curves[:, :-1]).norm(dim=-1)
    s = torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(1)], dim=1)
    total = s[:, -1:].clamp_min(torch.finfo(s.dtype).tiny)
    s = s / total
    target = torch.linspace(0, 1, n_points, dtype=s.dtype, device=s.device).expand(len(s), -1)
    k = torch.searchsorted(s.contiguous(), target.contiguous(), right=True).clamp(1, s.shape[1] - 1)
    s0, s1 = s.gather(1, k - 1), s.gather(1, k)
    w = ((target - s0) / (s1 - s0).clamp_min(torch.finfo(s.dtype).tiny)).clamp(0, 1)[..., None]
    idx = k[..., None].expand(-1, -1, curves.shape[-1])
    return (1 - w) * curves.gather(1, idx - 1) + w * curves.gather(1, idx)
