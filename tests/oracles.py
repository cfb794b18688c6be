"""Independent references for the core tests: decoders, autograd derivatives, closed forms.

Nothing here uses ``pullback_geom``: every reference is computed with reverse-mode
``torch.autograd.functional`` or written out from a textbook formula, so it can catch
errors in the package's forward-mode and chain-rule code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian as ag_jacobian

F64 = torch.float64
IMAGE = (1, 28, 28)


def seed_decoder(dtype: torch.dtype = torch.float32, latent_dim: int = 2) -> nn.Sequential:
    """The seed's architecture: image-shaped outputs ``(B, 1, 28, 28)``."""
    return nn.Sequential(
        nn.Linear(latent_dim, 512),
        nn.ReLU(),
        nn.Linear(512, 784),
        nn.Sigmoid(),
        nn.Unflatten(1, IMAGE),
    ).to(dtype)


class ReshapeDecoder(nn.Module):
    """A decoder that is not an ``nn.Sequential``: ``forward`` reshapes to ``(-1, 1, 28, 28)``."""

    def __init__(self, latent_dim: int = 2, width: int = 64) -> None:
        super().__init__()
        self.hidden = nn.Linear(latent_dim, width)
        self.out = nn.Linear(width, 784)

    def forward(self, z: Tensor) -> Tensor:
        h = nn.functional.softplus(self.hidden(z))
        return torch.sigmoid(self.out(h)).reshape(-1, *IMAGE)


def tanh_mlp(d: int = 2, out: int = 5, width: int = 16, dtype: torch.dtype = F64) -> nn.Sequential:
    """A smooth random decoder with non-trivial curvature."""
    return nn.Sequential(
        nn.Linear(d, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out)
    ).to(dtype)


def flat(f):
    """``x (d,) -> f(x[None]).reshape(-1)``: a decoder as a map of one point."""
    return lambda x: f(x.unsqueeze(0)).reshape(-1)


def autograd_jacobian(f, z: Tensor) -> Tensor:
    """Reverse-mode Jacobian of the flattened decoder, ``(B, d) -> (B, D, d)``."""
    return torch.stack([ag_jacobian(flat(f), x, vectorize=True) for x in z])


def autograd_metric(f, z: Tensor) -> Tensor:
    """``J^T J`` from the reverse-mode Jacobian, ``(B, d) -> (B, d, d)``."""
    jac = autograd_jacobian(f, z)
    return jac.mT @ jac


def levi_civita(metric_at, z: Tensor) -> Tensor:
    """Christoffel symbols ``[b, k, i, j]`` by differentiating a metric field with autograd.

    ``Gamma^k_ij = 1/2 G^{kl} (d_i G_lj + d_j G_li - d_l G_ij)``; ``metric_at`` maps one
    point ``(d,)`` to ``G`` of shape ``(d, d)`` and must be differentiable.
    """
    out = []
    for x in z:
        g = metric_at(x)
        dg = ag_jacobian(metric_at, x)  # dg[a, b, c] = d_c G_ab
        first = 0.5 * (dg.permute(0, 2, 1) + dg - dg.permute(2, 0, 1))  # [l, i, j]
        out.append(torch.einsum("kl,lij->kij", torch.linalg.inv(g), first))
    return torch.stack(out)


def pullback_metric_at(f):
    """``x (d,) -> J(x)^T J(x)`` with a differentiable (create_graph) Jacobian."""

    def metric_at(x: Tensor) -> Tensor:
        jac = ag_jacobian(flat(f), x, create_graph=True, vectorize=True)
        return jac.T @ jac

    return metric_at


# ---------------------------------------------------------------- the unit sphere
def stereographic(z: Tensor) -> Tensor:
    """Inverse stereographic projection onto the unit sphere, written out here again."""
    sq = (z * z).sum(-1, keepdim=True)
    return torch.cat([2 * z / (1 + sq), (sq - 1) / (1 + sq)], dim=-1)


def sphere_metric(z: Tensor) -> Tensor:
    """``4 / (1 + |z|^2)^2 I``."""
    d = z.shape[-1]
    lam = 4.0 / (1.0 + (z * z).sum(-1)) ** 2
    return lam[:, None, None] * torch.eye(d, dtype=z.dtype).expand(z.shape[0], d, d)


def sphere_christoffel(z: Tensor) -> Tensor:
    """Christoffels of the conformal metric ``e^{2 phi} I``, ``phi = log 2 - log(1 + |z|^2)``,
    entry by entry: ``Gamma^k_ij = delta_ik phi_j + delta_jk phi_i - delta_ij phi_k``."""
    b, d = z.shape
    dphi = -2 * z / (1 + (z * z).sum(-1, keepdim=True))
    gam = torch.zeros(b, d, d, d, dtype=z.dtype)
    for k in range(d):
        for i in range(d):
            for j in range(d):
                val = torch.zeros(b, dtype=z.dtype)
                if i == k:
                    val = val + dphi[:, j]
                if j == k:
                    val = val + dphi[:, i]
                if i == j:
                    val = val - dphi[:, k]
                gam[:, k, i, j] = val
    return gam


def great_circle(p: Tensor, q: Tensor) -> Tensor:
    """Angle between the sphere points of latent ``p`` and ``q`` (rows)."""
    cos = (stereographic(p) * stereographic(q)).sum(-1)
    return torch.arccos(cos.clamp(-1, 1))


def sphere_geodesic(z: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """Closed-form ``exp_z(s v)`` for ``s`` in ``t``: the great circle through ``f(z)`` with
    velocity ``J(z) v`` (``J`` by reverse-mode autograd), projected back to the chart.

    ``z, v`` of shape ``(B, d)``, ``t`` of shape ``(T,)``; result ``(B, T, d)``.
    """
    x = stereographic(z)
    jac = [ag_jacobian(stereographic, zi[None])[0, :, 0] for zi in z]
    u = torch.stack([j @ vi for j, vi in zip(jac, v, strict=True)])
    speed = u.norm(dim=-1, keepdim=True)[:, None]
    ang = speed * t[None, :, None]
    y = x[:, None] * ang.cos() + (u[:, None] / speed) * ang.sin()
    return y[..., :-1] / (1 - y[..., -1:])


def autograd_hessian(f, z: Tensor) -> Tensor:
    """Second derivatives ``(B, D, d, d)`` of a flat batched ``f`` by reverse mode, per point."""
    rows = [
        torch.autograd.functional.hessian(lambda x, a=a: f(x[None])[0, a], zb)
        for zb in z
        for a in range(f(z[:1]).shape[1])
    ]
    return torch.stack(rows).reshape(z.shape[0], -1, z.shape[1], z.shape[1])


def sphere_karcher_mean(y: Tensor, iterations: int = 200) -> Tensor:
    """The Fréchet mean of unit vectors ``y`` (n, 3) by Karcher's iteration with the
    sphere's closed-form logarithm and exponential."""
    m = y.mean(0) / y.mean(0).norm()
    for _ in range(iterations):
        cos = (y @ m).clamp(-1, 1)
        tangent = y - cos[:, None] * m
        angle = torch.acos(cos)
        v = (angle / tangent.norm(dim=1).clamp_min(1e-300))[:, None] * tangent
        step = v.mean(0)
        m = torch.cos(step.norm()) * m + torch.sinc(step.norm() / math.pi) * step
        m = m / m.norm()
    return m
