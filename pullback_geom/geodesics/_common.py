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


def refined_length(metric: PullbackMetric, curve: Tensor, refine: int) -> Tensor:
    """Observation-space length of the piecewise-linear latent curve through the nodes.

    Each latent segment is split into ``refine`` pieces before decoding, so the decoded
    polygon follows the decoded curve between the nodes; with ``refine = 1`` it is the
    chord length of the nodes, which undershoots by ``O(1/N)`` on ReLU decoders (their
    decoded curves bend sharply between nodes) and by ``O(1/N^2)`` on smooth ones.

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
    t = torch.arange(refine, dtype=curve.dtype, device=curve.device) / refine
    seg = curve[:, :-1, None] + t[None, None, :, None] * curve.diff(dim=1)[:, :, None]
    fine = torch.cat([seg.reshape(b, -1, d), curve[:, -1:]], dim=1)
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
