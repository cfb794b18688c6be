r"""Curvature of a pullback metric from the decoder's first and second derivatives.

The latent space with ``G = J^T J`` is (locally) the surface ``f(R^d)`` immersed in
``R^D``, so the Gauss equation gives its Riemann tensor from the second fundamental form
``II_ij = H_ij - J G^{-1} J^T H_ij`` (``H_ij = d_i d_j f``; the part normal to the columns
of ``J``), with no derivative of ``G``. Curvature needs only the inner products

.. math::
    P_{ijkl} = \langle II_{ij}, II_{kl} \rangle
             = \langle H_{ij}, H_{kl} \rangle - (J^T H_{ij})^T G^{-1} (J^T H_{kl}),

because ``J G^{-1} J^T`` is the orthogonal projector onto the tangent space: the
``D x D`` normal projector is never formed. All of ``G``, ``J^T H`` and ``<H, H>`` are
blocks of one small Gram matrix of the stacked derivative rows
``[d_1 f, ..., d_d f, d_i d_j f (i <= j)]`` (:func:`jet_gram`), ``(d + p) x (d + p)``
with ``p = d (d + 1) / 2``: one batched matrix product over ``D``.

Index conventions are geomstats' (``RiemannianMetric.riemann_tensor``), with
``R(X, Y) Z = nabla_X nabla_Y Z - nabla_Y nabla_X Z - nabla_[X, Y] Z``:

- :func:`riemann_from_sff`: ``out[..., i, j, k, l] = R^l_{ijk} = dx^l(R(e_j, e_k) e_i)``
  ``= G^{lm} (P_{ki,jm} - P_{ji,km})``;
- :func:`ricci_from_sff`: ``Ric_{ik} = R^j_{ijk}`` (trace over the second and last
  index), ``= <II_ik, h> - G^{jm} P_{ij,km}`` with the mean curvature vector
  ``h = G^{jm} II_jm``;
- :func:`scalar_from_sff`: ``S = G^{ik} Ric_ik = |h|^2 - G^{ik} G^{jl} P_{ij,kl}``;
- :func:`sectional_from_sff`: ``K(u, v) = (P(u,u,v,v) - P(u,v,u,v)) / (|u|^2 |v|^2 -
  <u, v>^2)``, 1 on the unit sphere.

A singular ``G`` (dead ReLUs, saturated sigmoids) gets the core's local ridge
``G + eps I`` with a :class:`~pullback_geom.SingularMetricWarning`; that is
exactly the curvature of the immersion ``z -> (f(z), sqrt(eps) z)``, whose extra block
adds ``eps I`` to ``G`` and nothing to ``J^T H`` or ``<H, H>``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .derivatives import _pair_table, pair_indices
from .linalg import spd_cholesky

__all__ = [
    "jet_gram",
    "gram_from_derivatives",
    "second_fundamental_inner",
    "riemann_from_sff",
    "ricci_from_sff",
    "scalar_from_sff",
    "sectional_from_sff",
    "gaussian_from_sff",
    "check_plane",
]


def jet_gram(tangents: Tensor, second: Tensor) -> Tensor:
    """Gram matrix of the stacked derivative rows ``[d_i f; d_i d_j f]``.

    Parameters
    ----------
    tangents : Tensor, shape (..., d, D)
    second : Tensor, shape (..., p, D)
        Pairs in :func:`pair_indices` order.

    Returns
    -------
    Tensor, shape (..., d + p, d + p)
        Blocks ``[[G, J^T H], [H^T J, <H, H>]]``.
    """
    rows = torch.cat([tangents, second], dim=-2)
    return rows @ rows.mT


def gram_from_derivatives(jac: Tensor, hess: Tensor) -> Tensor:
    """:func:`jet_gram` from a Jacobian and a full Hessian.

    Parameters
    ----------
    jac : Tensor, shape (B, D, d)
    hess : Tensor, shape (B, D, d, d)
        ``hess[b, a, i, j] = d_i d_j f_a`` (:func:`pullback_geom._core.derivatives.hessian`).

    Returns
    -------
    Tensor, shape (B, d + p, d + p)
    """
    iu, ju = pair_indices(jac.shape[-1], jac.device)
    return jet_gram(jac.mT, hess[..., iu, ju].mT)


def second_fundamental_inner(gram: Tensor, d: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Metric, its inverse and ``P_{ijkl} = <II_ij, II_kl>`` from :func:`jet_gram`.

    ``P = <H, H> - (J^T H)^T G^{-1} (J^T H)``: the normal parts' inner products, by the
    tangent projector ``J G^{-1} J^T`` applied in the ``d``-dimensional coordinates.
    Singular ``G`` gets the core's local ridge and a ``SingularMetricWarning``.

    Parameters
    ----------
    gram : Tensor, shape (B, d + p, d + p)
    d : int

    Returns
    -------
    metric : Tensor, shape (B, d, d)
        ``G`` (with the ridge where it was singular).
    inverse : Tensor, shape (B, d, d)
        ``G^{-1}``.
    sff : Tensor, shape (B, d, d, d, d)
        ``sff[b, i, j, k, l] = <II_ij, II_kl>``.
    """
    chol = spd_cholesky(gram[:, :d, :d], stacklevel=4)
    metric = chol @ chol.mT
    inverse = torch.cholesky_inverse(chol)
    cross = gram[:, :d, d:]  # J^T H, (B, d, p)
    packed = gram[:, d:, d:] - cross.mT @ torch.cholesky_solve(cross, chol)  # (B, p, p)
    table = _pair_table(d, gram.device)
    full = packed[:, table][:, :, :, table]  # (B, d, d, d, d)
    return metric, inverse, full


def riemann_from_sff(sff: Tensor, inverse: Tensor) -> Tensor:
    """Riemann tensor by the Gauss equation, geomstats' layout.

    Parameters
    ----------
    sff : Tensor, shape (B, d, d, d, d)
    inverse : Tensor, shape (B, d, d)

    Returns
    -------
    Tensor, shape (B, d, d, d, d)
        ``out[b, i, j, k, l] = R^l_{ijk} = dx^l(R(e_j, e_k) e_i)``.
    """
    covariant = sff.permute(0, 2, 3, 1, 4) - sff.permute(0, 2, 1, 3, 4)  # [i, j, k, m]
    # covariant[i, j, k, m] = P_{ki,jm} - P_{ji,km} = <R(e_j, e_k) e_i, e_m>
    return covariant @ inverse.unsqueeze(1).unsqueeze(1)


def ricci_from_sff(sff: Tensor, inverse: Tensor) -> Tensor:
    """Ricci tensor ``Ric_ik = <II_ik, h> - G^{jm} <II_ij, II_km>``.

    Parameters
    ----------
    sff : Tensor, shape (B, d, d, d, d)
    inverse : Tensor, shape (B, d, d)

    Returns
    -------
    Tensor, shape (B, d, d)
    """
    return torch.einsum("bikjm,bjm->bik", sff, inverse) - torch.einsum(
        "bijkm,bjm->bik", sff, inverse
    )


def scalar_from_sff(sff: Tensor, inverse: Tensor) -> Tensor:
    """Scalar curvature ``S = |h|^2 - G^{ik} G^{jl} <II_ij, II_kl>``.

    Parameters
    ----------
    sff : Tensor, shape (B, d, d, d, d)
    inverse : Tensor, shape (B, d, d)

    Returns
    -------
    Tensor, shape (B,)
    """
    b, d = inverse.shape[:2]
    mean = inverse.reshape(b, 1, d * d)  # G^{ij} as a row over the pair (i, j)
    p = sff.reshape(b, d * d, d * d)
    # G^{ik} G^{jl} as a (d*d, d*d) matrix over pairs (i, j) x (k, l)
    cross = (inverse[:, :, None, :, None] * inverse[:, None, :, None, :]).reshape(b, d * d, d * d)
    return (mean @ p @ mean.mT).reshape(b) - (cross * p).sum((-1, -2))


def sectional_from_sff(sff: Tensor, metric: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Sectional curvature of the plane spanned by ``u`` and ``v``.

    ``K = (<II(u,u), II(v,v)> - |II(u,v)|^2) / (|u|^2 |v|^2 - <u, v>^2)`` in ``G``; call
    :func:`check_plane` first.

    Parameters
    ----------
    sff : Tensor, shape (B, d, d, d, d)
    metric : Tensor, shape (B, d, d)
    u, v : Tensor, shape (B, d)

    Returns
    -------
    Tensor, shape (B,)
    """
    uu, uv, vv = (torch.einsum("bi,bj->bij", a, c) for a, c in ((u, u), (u, v), (v, v)))
    num = torch.einsum("bij,bijkl,bkl->b", uu, sff, vv) - torch.einsum(
        "bij,bijkl,bkl->b", uv, sff, uv
    )
    gu, gv = (metric @ u.unsqueeze(-1)).squeeze(-1), (metric @ v.unsqueeze(-1)).squeeze(-1)
    den = (u * gu).sum(-1) * (v * gv).sum(-1) - (u * gv).sum(-1).square()
    return num / den


def gaussian_from_sff(sff: Tensor, metric: Tensor) -> Tensor:
    """Gaussian curvature of a 2-D latent space, ``(P_{11,22} - P_{12,12}) / det G``.

    Parameters
    ----------
    sff : Tensor, shape (B, 2, 2, 2, 2)
    metric : Tensor, shape (B, 2, 2)

    Returns
    -------
    Tensor, shape (B,)
    """
    det = metric[:, 0, 0] * metric[:, 1, 1] - metric[:, 0, 1] * metric[:, 1, 0]
    return (sff[:, 0, 0, 1, 1] - sff[:, 0, 1, 0, 1]) / det


def check_plane(u: Tensor, v: Tensor) -> None:
    """Raise a ValueError unless every pair of rows of ``u``, ``v`` spans a plane.

    Zero or (numerically) parallel tangent vectors have no sectional curvature: their
    Gram determinant ``|u|^2 |v|^2 - (u . v)^2`` vanishes. Judged in latent coordinates,
    relative to ``|u|^2 |v|^2`` (so the test does not depend on the vectors' scale).

    Parameters
    ----------
    u, v : Tensor, shape (B, d)
    """
    uu, vv, uv = u.square().sum(-1), v.square().sum(-1), (u * v).sum(-1)
    area = uu * vv - uv.square()
    bad = ~(area > 64 * torch.finfo(u.dtype).eps * uu * vv) | (uu == 0) | (vv == 0)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"sectional curvature needs two linearly independent tangent vectors; u and v "
            f"are zero or parallel at {int(bad.sum())} of {bad.numel()} points "
            f"(first at index {first}: u = {u[first].tolist()}, v = {v[first].tolist()})"
        )
