"""Analytic decoders with closed-form geometry: oracles for tests, examples and the demo."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "InverseStereographic",
    "LinearDecoder",
    "GaussianBump",
    "sphere_distance",
    "great_circle_arc",
]


class InverseStereographic(nn.Module):
    r"""The unit sphere :math:`S^d \subset \mathbb{R}^{d+1}` through inverse stereographic
    projection from the north pole.

    ``f(z) = (2 z, |z|^2 - 1) / (1 + |z|^2)``. Its pullback metric is conformal,
    ``G(z) = 4 / (1 + |z|^2)^2 I``, and its geodesic distances are great-circle angles
    (:func:`sphere_distance`).

    Shapes: ``(B, d) -> (B, d + 1)``.
    """

    def forward(self, z: Tensor) -> Tensor:
        sq = z.square().sum(-1, keepdim=True)
        return torch.cat([2 * z, sq - 1], dim=-1) / (1 + sq)

    @staticmethod
    def metric_tensor(z: Tensor) -> Tensor:
        """Closed form ``4 / (1 + |z|^2)^2 I``; ``z`` of shape ``(B, d)``, result ``(B, d, d)``."""
        scale = 4 / (1 + z.square().sum(-1)) ** 2
        return scale[:, None, None] * torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)

    @staticmethod
    def christoffel_symbols(z: Tensor) -> Tensor:
        r"""Closed form for the conformal metric :math:`e^{2\phi} I`, :math:`\phi = \log 2 -
        \log(1 + |z|^2)`: :math:`\Gamma^k_{ij} = \delta_{ik}\phi_j + \delta_{jk}\phi_i -
        \delta_{ij}\phi_k`. Shape ``(B, d) -> (B, d, d, d)`` in ``[b, k, i, j]`` order."""
        d = z.shape[-1]
        grad_phi = -2 * z / (1 + z.square().sum(-1, keepdim=True))
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        return (
            torch.einsum("ik,bj->bkij", eye, grad_phi)
            + torch.einsum("jk,bi->bkij", eye, grad_phi)
            - torch.einsum("ij,bk->bkij", eye, grad_phi)
        )


def sphere_distance(p: Tensor, q: Tensor) -> Tensor:
    """Great-circle distance between the sphere points of latent ``p`` and ``q``, shape
    ``(B, d)`` each, result ``(B,)``."""
    f = InverseStereographic()
    cos = (f(p) * f(q)).sum(-1).clamp(-1, 1)
    return torch.arccos(cos)


def great_circle_arc(p: Tensor, q: Tensor, n: int = 200) -> Tensor:
    """The geodesic from latent ``p`` to ``q`` on the sphere chart, in closed form.

    Slerp between the sphere points of ``p`` and ``q``, projected back to the chart.

    Parameters
    ----------
    p, q : Tensor, shape (d,)
    n : int, default 200
        Points on the arc, end points included.

    Returns
    -------
    Tensor, shape (n, d)
    """
    f = InverseStereographic()
    x0, x1 = f(p[None])[0], f(q[None])[0]
    angle = torch.arccos((x0 @ x1).clamp(-1, 1))
    t = torch.linspace(0, 1, n, dtype=p.dtype, device=p.device)[:, None]
    x = (torch.sin((1 - t) * angle) * x0 + torch.sin(t * angle) * x1) / torch.sin(angle)
    return x[:, :-1] / (1 - x[:, -1:])  # stereographic projection from the north pole


class LinearDecoder(nn.Module):
    """``f(z) = A z + b``: constant metric ``A^T A``, zero Christoffels, straight geodesics.

    Parameters
    ----------
    matrix : Tensor, shape (D, d)
    offset : Tensor, shape (D,), optional

    Shapes: ``(B, d) -> (B, D)``.
    """

    def __init__(self, matrix: Tensor, offset: Tensor | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(matrix.shape[1], matrix.shape[0], dtype=matrix.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(matrix)
            self.linear.bias.copy_(offset if offset is not None else torch.zeros(matrix.shape[0]))
        self.linear.requires_grad_(False)

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(z)


class GaussianBump(nn.Module):
    """The graph surface ``z -> (z, h exp(-|z|^2 / (2 w^2)))`` of a Gaussian bump.

    Geodesics bend around the bump (going over it is longer), so it is a small
    curved test surface with a non-trivial volume element.

    Shapes: ``(B, d) -> (B, d + 1)``.
    """

    def __init__(self, height: float = 2.0, width: float = 0.6) -> None:
        super().__init__()
        self.height, self.width = height, width

    def forward(self, z: Tensor) -> Tensor:
        bump = self.height * torch.exp(-z.square().sum(-1, keepdim=True) / (2 * self.width**2))
        return torch.cat([z, bump], dim=-1)
