r"""The discrete curve energy of a decoder ensemble (Syrota et al., 2024) and its minimiser.

A discrete curve ``z_0, ..., z_{N-1}`` is decoded by ``K`` decoders ``f_k``; each segment
draws the decoders of its two ends independently and uniformly, and the energy is the
expected squared length of the decoded segments:

.. math::

    E = (N - 1) \sum_t \mathbb{E}_{k,l} \|f_k(z_{t+1}) - f_l(z_t)\|^2
      = (N - 1) \sum_t \big(\|\bar f(z_{t+1}) - \bar f(z_t)\|^2 + V(z_t) + V(z_{t+1})\big),

with :math:`\bar f` the members' mean image and :math:`V(z) = \frac1K \sum_k
\|f_k(z) - \bar f(z)\|^2` their disagreement. It is the energy of the mean image plus a
potential at the nodes, so it is **not** the energy of a Riemannian metric: the potential
does not shrink with the segments, and its weight against the first term grows with
``N`` (``N`` nodes, ``~2N`` potential terms, against a first term of ``~L^2 / N``). It
keeps curves where the members agree, i.e. on the data, which no metric of the mean or
expected pullback does when the decoders' sigmoids saturate off the data (there the
metric shrinks).

:func:`ensemble_geodesic` minimises it over the interior nodes by the same batched
Levenberg–Marquardt method as :func:`~pullback_geom.geodesics.connecting_geodesic` (the
energy is a sum of squares: the mean image's differences and, per interior node,
``sqrt(2/K) (f_k - fbar)``); :func:`ensemble_curve_energy` evaluates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._core.checks import batch_curves, same_shape
from ..metric import PullbackMetric
from ._common import _tolerance, refined_length, straight_curves
from .lm import levenberg_marquardt

__all__ = [
    "EnsembleEnergy",
    "EnsembleGeodesic",
    "MeanImage",
    "ensemble_curve_energy",
    "ensemble_geodesic",
]


@dataclass
class EnsembleGeodesic:
    """Minimisers of the ensemble energy for ``B`` pairs.

    Attributes
    ----------
    points : Tensor, shape (B, N, d)
        The discrete curves, end points included.
    length : Tensor, shape (B,)
        Expected decoded length, ``sum_t E_{k,l} ||f_k(z_{t+1}) - f_l(z_t)||`` (exact over
        the ``K^2`` decoder pairs): depends on ``N`` through the disagreement.
    mean_length : Tensor, shape (B,)
        Length of the curve decoded by the mean image (spline refined 4 times per segment, as
        :func:`~pullback_geom.geodesics.connecting_geodesic` measures lengths).
    energy : Tensor, shape (B,)
        :func:`ensemble_curve_energy` of ``points``.
    converged : Tensor, shape (B,), bool
    iterations : Tensor, shape (B,), int
    """

    points: Tensor
    length: Tensor
    mean_length: Tensor
    energy: Tensor
    converged: Tensor
    iterations: Tensor


class MeanImage(nn.Module):
    """The members' mean image ``z -> (1/K) sum_k f_k(z)``, a decoder of its own."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, z: Tensor) -> Tensor:
        return torch.stack([m(z) for m in self.members]).mean(0)


def _members(members: Sequence[nn.Module]) -> list[PullbackMetric]:
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 decoders; got {len(members)}")
    return [PullbackMetric(m) for m in members]


def _decode(metrics: list[PullbackMetric], z: Tensor) -> Tensor:
    """Every member's flattened images, ``(K, B, D)``."""
    return torch.stack([m.evaluator.embed(z) for m in metrics])


def ensemble_curve_energy(
    members: Sequence[nn.Module], curves: Tensor, *, weight: float = 1.0
) -> Tensor:
    """The ensemble energy of discrete curves (see the module docstring).

    Parameters
    ----------
    members : sequence of nn.Module
        ``K >= 2`` decoders ``(B, d) -> (B, *obs)``.
    curves : Tensor, shape (B, N, d) or (N, d)
    weight : float, default 1
        Multiplies the disagreement potential ``V`` (1: Syrota et al.'s energy; 0: the
        mean image's discrete energy).

    Returns
    -------
    Tensor, shape (B,) or ()
    """
    metrics = _members(members)
    curves, single = batch_curves(curves, metrics[0].latent_dim, "curves")
    b, n, d = curves.shape
    x = _decode(metrics, curves.reshape(-1, d)).reshape(len(metrics), b, n, -1)
    mean = x.mean(0)
    potential = (x - mean).square().sum(-1).mean(0)  # V, (B, N)
    inner = mean.diff(dim=1).square().sum(-1) + weight * (potential[:, 1:] + potential[:, :-1])
    out = (n - 1) * inner.sum(-1)
    return out[0] if single else out


def ensemble_geodesic(
    members: Sequence[nn.Module],
    p: Tensor,
    q: Tensor,
    *,
    n_points: int = 32,
    weight: float = 1.0,
    max_iter: int = 200,
    tol: float | None = None,
) -> EnsembleGeodesic:
    """Curves from ``p`` to ``q`` minimising the ensemble energy, from straight lines.

    Parameters
    ----------
    members : sequence of nn.Module
        ``K >= 2`` decoders ``(B, d) -> (B, *obs)``, e.g. ``EnsembleVAE.decoder.members``.
    p, q : Tensor, shape (B, d) or (d,)
    n_points : int, default 32
        ``N``, nodes per curve including the end points; the minimiser depends on it.
    weight : float, default 1
        Multiplies the disagreement potential (see :func:`ensemble_curve_energy`).
    max_iter : int, default 200
    tol : float, optional
        Stop when the predicted relative energy decrease of a step is below ``tol``
        (default ``1e-10`` in float64, ``1e-5`` in float32).

    Returns
    -------
    EnsembleGeodesic
        Unbatched if ``p`` was ``(d,)``.
    """
    metrics = _members(members)
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3; got {n_points}")
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0; got {weight}")
    p, single = metrics[0].evaluator.check_points(p, "p")
    q, _ = metrics[0].evaluator.check_points(q, "q")
    same_shape(p, q, "p and q")
    curve = straight_curves(p, q, n_points)
    tol = _tolerance(p.dtype, tol, 1e-10)
    # chunks of pairs bound the (K, B, N, D, d) Jacobians, as in connecting_geodesic
    per_chunk = metrics[0].evaluator.rows("jacobian", per_row=n_points * len(metrics))
    parts = []
    for i in range(0, len(curve), per_chunk):
        chunk = curve[i : i + per_chunk]
        out = levenberg_marquardt(
            EnsembleEnergy(metrics, chunk, weight), chunk[:, 1:-1], max_iter, tol
        )
        chunk = torch.cat([chunk[:, :1], out.free, chunk[:, -1:]], dim=1)
        parts.append((chunk, out.converged, out.iterations))
    curve, converged, iterations = (torch.cat(x) for x in zip(*parts, strict=True))
    with torch.no_grad():
        b, n, d = curve.shape
        x = _decode(metrics, curve.reshape(-1, d)).reshape(len(metrics), b, n, -1)
        # every (k, l): member k at the segment's end, member l at its start
        seg = x[:, None, :, 1:] - x[None, :, :, :-1]
        length = torch.linalg.vector_norm(seg, dim=-1).mean((0, 1)).sum(-1)
        mean_image = PullbackMetric(MeanImage(members), latent_dim=d)
        mean_image.evaluator.check_points(p)  # learns the output size, which chunking needs
        mean_length = refined_length(mean_image, curve, 4)
        energy = ensemble_curve_energy(members, curve, weight=weight)
    result = EnsembleGeodesic(curve, length, mean_length, energy, converged, iterations)
    if single:
        result = EnsembleGeodesic(*(getattr(result, k)[0] for k in result.__dataclass_fields__))
    return result


class EnsembleEnergy:
    """The ensemble energy over ``N - 1`` (its end points' potential left out, a constant)
    as a :class:`~pullback_geom.geodesics.lm.CurveProblem`.

    Residuals: ``fbar(z_{t+1}) - fbar(z_t)`` per segment and ``sqrt(2 w / K) (f_k - fbar)``
    per interior node, so half the Gauss–Newton matrix has the diagonal blocks
    ``2 Jbar^T Jbar + (2 w / K) sum_k (J_k - Jbar)^T (J_k - Jbar)`` and the couplings
    ``Jbar_t^T Jbar_{t+1}`` (for ``w = 1`` the diagonal is twice the expected metric).
    State: the members' values (b, K, m, D) and Jacobians (b, K, m, D, d).
    """

    def __init__(self, metrics: list[PullbackMetric], curve: Tensor, weight: float) -> None:
        self.metrics, self.weight = metrics, weight
        b, _, self.d = curve.shape
        ends = _decode(metrics, curve[:, [0, -1]].reshape(-1, self.d))
        self.ends = ends.reshape(len(metrics), b, 2, -1).transpose(0, 1)  # (B, K, 2, D)

    def decode(self, free: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        b, m, d = free.shape
        parts = [mt.evaluator.value_and_jacobian(free.reshape(-1, d)) for mt in self.metrics]
        k = len(parts)
        val = torch.stack([v for v, _ in parts]).reshape(k, b, m, -1).transpose(0, 1)
        jac = torch.stack([j for _, j in parts]).reshape(k, b, m, -1, d).transpose(0, 1)
        return val, jac

    def decode_values(self, free: Tensor, idx: Tensor) -> Tensor:
        b, m, d = free.shape
        return (
            _decode(self.metrics, free.reshape(-1, d))
            .reshape(len(self.metrics), b, m, -1)
            .transpose(0, 1)
        )

    def nodes(self, val: Tensor, idx: Tensor) -> Tensor:  # (b, K, N, D)
        ends = self.ends[idx]
        return torch.cat([ends[:, :, :1], val, ends[:, :, 1:]], dim=2)

    def objective(self, state: tuple[Tensor, Tensor], idx: Tensor) -> Tensor:
        val = state[0]
        mean = self.nodes(val, idx).mean(1)
        v = (val - mean[:, None, 1:-1]).square().sum(-1).mean(1)
        return mean.diff(dim=1).square().sum((1, 2)) + 2 * self.weight * v.sum(-1)

    def system(self, state: tuple[Tensor, Tensor], idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        val, jac = state
        fbar = self.nodes(val, idx).mean(1)
        r = fbar.diff(dim=1)  # (b, N-1, D)
        ji = jac.mean(1)  # (b, m, D, d)
        dev = val - fbar[:, None, 1:-1]  # (b, K, m, D)
        jdev = jac - ji[:, None]  # (b, K, m, D, d)
        spread = (jdev.mT @ jdev).mean(1)  # (b, m, d, d)
        pull = (jdev.mT @ dev.unsqueeze(-1)).squeeze(-1).mean(1)  # (b, m, d)
        grad = (ji.mT @ (r[:, :-1] - r[:, 1:]).unsqueeze(-1)).squeeze(-1)
        grad = grad + 2 * self.weight * pull  # (1/2) dS/dz
        base = 2 * (ji.mT @ ji) + 2 * self.weight * spread
        couple = ji[:, :-1].mT @ ji[:, 1:]
        return base, couple, grad
