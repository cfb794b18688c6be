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

from ._checks import batch_curves, same_shape
from .geodesics._common import _tolerance, damped_tridiagonal_step, refined_length
from .metric import _CHUNK_BUDGET, PullbackMetric

__all__ = ["EnsembleGeodesic", "ensemble_curve_energy", "ensemble_geodesic"]


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


class _MeanImage(nn.Module):
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
    return torch.stack([m.embed(z) for m in metrics])


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
    p, single = metrics[0]._points(p, "p")
    q, _ = metrics[0]._points(q, "q")
    same_shape(p, q, "p and q")
    t = torch.linspace(0, 1, n_points, dtype=p.dtype, device=p.device)[None, :, None]
    curve = p[:, None] + t * (q - p)[:, None]
    curve[:, -1] = q
    tol = _tolerance(p.dtype, tol, 1e-10)
    # chunks of pairs bound the (K, B, N, D, d) Jacobians, as in connecting_geodesic
    per_chunk = _CHUNK_BUDGET // (n_points * metrics[0].obs_dim * len(metrics) * (p.shape[1] + 1))
    per_chunk = max(1, per_chunk)
    parts = [
        _levenberg_marquardt(metrics, curve[i : i + per_chunk], weight, max_iter, tol)
        for i in range(0, len(curve), per_chunk)
    ]
    curve, converged, iterations = (torch.cat(x) for x in zip(*parts, strict=True))
    with torch.no_grad():
        b, n, d = curve.shape
        x = _decode(metrics, curve.reshape(-1, d)).reshape(len(metrics), b, n, -1)
        # every (k, l): member k at the segment's end, member l at its start
        seg = x[:, None, :, 1:] - x[None, :, :, :-1]
        length = torch.linalg.vector_norm(seg, dim=-1).mean((0, 1)).sum(-1)
        mean_image = PullbackMetric(_MeanImage(members), latent_dim=d)
        mean_image._points(p)  # learns the output size, which chunking needs
        mean_length = refined_length(mean_image, curve, 4)
        energy = ensemble_curve_energy(members, curve, weight=weight)
    result = EnsembleGeodesic(curve, length, mean_length, energy, converged, iterations)
    if single:
        result = EnsembleGeodesic(*(getattr(result, k)[0] for k in result.__dataclass_fields__))
    return result


def _levenberg_marquardt(
    metrics: list[PullbackMetric], curve: Tensor, weight: float, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Gauss–Newton with Levenberg damping on the interior nodes, per pair.

    Residuals: ``fbar(z_{t+1}) - fbar(z_t)`` per segment and ``sqrt(2 w / K) (f_k - fbar)``
    per interior node, so the Gauss–Newton matrix is block-tridiagonal with diagonal
    blocks ``2 Jbar^T Jbar + (2 w / K) sum_k (J_k - Jbar)^T (J_k - Jbar)`` and off-diagonal
    ones ``-Jbar_t^T Jbar_{t+1}`` (for ``w = 1`` the diagonal is twice the expected metric).
    """
    b, n_pts, d = curve.shape
    k = len(metrics)
    converged = torch.zeros(b, dtype=torch.bool, device=curve.device)
    iterations = torch.zeros(b, dtype=torch.long, device=curve.device)

    def decode(free: Tensor) -> tuple[Tensor, Tensor]:
        """Members' values (K, B, m, D) and Jacobians (K, B, m, D, d) at the free nodes."""
        parts = [mt.value_and_jacobian(free.reshape(-1, d)) for mt in metrics]
        val = torch.stack([v for v, _ in parts]).reshape(k, *free.shape[:2], -1)
        return val, torch.stack([j for _, j in parts]).reshape(*val.shape, d)

    def nodes(ends: Tensor, val: Tensor) -> Tensor:  # (K, B, N, D)
        return torch.cat([ends[:, :, :1], val, ends[:, :, 1:]], dim=2)

    def objective(ends: Tensor, val: Tensor) -> Tensor:  # energy / (N - 1) without ends' V
        mean = nodes(ends, val).mean(0)
        v = (val - mean[:, 1:-1]).square().sum(-1).mean(0)
        return mean.diff(dim=1).square().sum((1, 2)) + 2 * weight * v.sum(-1)

    with torch.no_grad():
        # As in connecting_geodesic's solver: the end points are decoded once, each
        # iteration decodes the trial with its Jacobians, which an accepted step keeps,
        # and only the running pairs are kept.
        idx = torch.arange(b, device=curve.device)
        ends = _decode(metrics, curve[:, [0, -1]].reshape(-1, d)).reshape(k, b, 2, -1)
        free = curve[:, 1:-1].clone()
        val, jac = decode(free)
        s = objective(ends, val)
        lam = torch.full((b,), 1e-3, dtype=curve.dtype, device=curve.device)
        for _ in range(max_iter):
            if idx.numel() == 0:
                break
            fbar = nodes(ends, val).mean(0)
            r = fbar.diff(dim=1)  # (B, N-1, D)
            ji = jac.mean(0)  # (B, m, D, d)
            dev = val - fbar[:, 1:-1]  # (K, B, m, D)
            jdev = jac - ji  # (K, B, m, D, d)
            spread = (jdev.mT @ jdev).mean(0)  # (B, m, d, d)
            pull = (jdev.mT @ dev.unsqueeze(-1)).squeeze(-1).mean(0)  # (B, m, d)
            grad = (ji.mT @ (r[:, :-1] - r[:, 1:]).unsqueeze(-1)).squeeze(-1)
            grad = grad + 2 * weight * pull  # (1/2) dS/dz
            base = 2 * (ji.mT @ ji) + 2 * weight * spread
            couple = ji[:, :-1].mT @ ji[:, 1:]
            step, predicted, lam = damped_tridiagonal_step(base, couple, grad, lam)
            trial = free + step
            val_t, jac_t = decode(trial)
            s_t = objective(ends, val_t)
            accept = s_t <= s
            a = accept[None, :, None, None]
            free = torch.where(accept[:, None, None], trial, free)
            val, jac = torch.where(a, val_t, val), torch.where(a[..., None], jac_t, jac)
            s = torch.where(accept, s_t, s)
            lam = torch.where(accept, (lam / 3).clamp_min(1e-9), lam * 4)
            iterations[idx] += 1
            done = (accept | (lam > 1e8)) & (predicted <= tol * s.clamp_min(1e-300))
            if bool(done.any()):
                converged[idx[done]] = True
                curve[idx[done], 1:-1] = free[done]
                keep = ~done
                idx, free, s, lam = idx[keep], free[keep], s[keep], lam[keep]
                ends, val, jac = ends[:, keep], val[:, keep], jac[:, keep]
        curve[idx, 1:-1] = free  # ran out of iterations
    return curve, converged, iterations
