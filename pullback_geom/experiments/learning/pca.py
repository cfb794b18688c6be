"""Tangent PCA at a base point, with the principal geodesics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from geomstats.learning.pca import TangentPCA
from torch import Tensor

from ..._core.linalg import spd_cholesky
from ...metric import PullbackMetric
from ._common import (
    F64,
    check_codes,
    check_metric,
    space_or_default,
)

__all__ = ["TangentPCAResult", "tangent_pca"]


@dataclass
class TangentPCAResult:
    """geomstats ``TangentPCA`` at a base point (:func:`tangent_pca`).

    Attributes
    ----------
    base_point : Tensor, shape (d,)
    components : Tensor, shape (k, d)
        Principal directions in latent coordinates (unit Euclidean length, as geomstats
        returns them).
    explained_variance : Tensor, shape (k,)
        Of the log vectors in latent coordinates (geomstats' definition).
    explained_variance_ratio : Tensor, shape (k,)
    metric_variance_ratio : Tensor, shape (d,)
        The same ratios with the tangent space measured by ``G(base_point)`` (eigenvalues
        of ``L^T C L``, ``G = L L^T``, ``C`` the covariance of the log vectors): the
        variance the metric sees, which geomstats' coordinate PCA does not.
    tangent_vectors : Tensor, shape (n, d)
        ``log_base(codes)``.
    geodesics : Tensor, shape (k, n_curve, d)
        ``exp_base(t * s_i * components[i])``, ``t`` from -2 to 2, ``s_i`` the standard
        deviation along component ``i``: the principal geodesics.
    """

    base_point: Tensor
    components: Tensor
    explained_variance: Tensor
    explained_variance_ratio: Tensor
    metric_variance_ratio: Tensor
    tangent_vectors: Tensor
    geodesics: Tensor


def tangent_pca(
    metric: PullbackMetric,
    codes,
    base_point=None,
    *,
    n_components: int | None = None,
    n_curve: int = 41,
    space=None,
) -> TangentPCAResult:
    """geomstats ``TangentPCA`` of ``codes`` at ``base_point``, with principal geodesics.

    Parameters
    ----------
    metric : PullbackMetric
    codes : array-like, shape (n, d)
        ``n >= 2``.
    base_point : array-like, shape (d,), optional
        Default: the codes' Fréchet mean by the joint solve, whose curves' initial
        velocities are then the tangent vectors (no logarithm is solved).
    n_components : int, optional
        Default ``min(n, d)``.
    n_curve : int, default 41
        Points per principal geodesic.
    space : optional
        See :func:`class_frechet_means`.

    Returns
    -------
    TangentPCAResult
    """
    d = check_metric(metric)
    z = check_codes(codes, d)
    if z.shape[0] < 2:
        raise ValueError(f"tangent_pca needs at least 2 codes; got {z.shape[0]}")
    k = min(z.shape[0], d) if n_components is None else n_components
    if not isinstance(k, int) or not 1 <= k <= min(z.shape[0], d):
        raise ValueError(f"n_components must be an integer in [1, {min(z.shape[0], d)}]; got {k}")
    if n_curve < 2:
        raise ValueError(f"n_curve must be at least 2; got {n_curve}")
    space = space_or_default(metric, space)
    pca = TangentPCA(space, n_components=k)
    if base_point is None:
        # The mean by the joint solve, and the logs its curves' initial velocities: one
        # solve, no round of logarithms (geomstats.learning.tangent_pca_fit).
        pca.fit(z)
        base = torch.as_tensor(pca.mean_estimator.estimate_, dtype=F64)
        logs = torch.as_tensor(pca.mean_estimator.result_.velocity, dtype=F64)
    else:
        base = check_codes(torch.as_tensor(base_point).reshape(1, -1), d, "base_point")[0]
        pca.fit(z, base_point=base)
        logs = torch.as_tensor(space.metric.log(z, base), dtype=F64)
    comps = torch.as_tensor(pca.components_, dtype=F64)
    var = torch.as_tensor(pca.explained_variance_, dtype=F64)
    ratio = torch.as_tensor(pca.explained_variance_ratio_, dtype=F64)
    # Variance as the metric measures it: whiten the tangent space with G = L L^T.
    g = torch.as_tensor(space.metric.metric_matrix(base), dtype=F64)
    chol = spd_cholesky(g[None])[0]
    centred = logs - logs.mean(0)
    cov = centred.T @ centred / max(z.shape[0] - 1, 1)
    eig = torch.linalg.eigvalsh(chol.T @ cov @ chol).flip(0).clamp_min(0)
    t = torch.linspace(-2.0, 2.0, n_curve, dtype=F64)
    vecs = t[None, :, None] * (var.sqrt()[:, None] * comps)[:, None, :]  # (k, T, d)
    curves = torch.as_tensor(space.metric.exp(vecs.reshape(-1, d), base), dtype=F64)
    return TangentPCAResult(
        base,
        comps,
        var,
        ratio,
        eig / eig.sum(),
        logs,
        curves.reshape(k, n_curve, d),
    )
