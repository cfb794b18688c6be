"""Linear algebra of the metric and of the curve solvers: one policy for each.

- SPD solves (:func:`spd_cholesky`, :func:`spd_solve`, :func:`spd_inverse`): Cholesky where
  it succeeds; where the metric is numerically singular (dead ReLUs, saturated sigmoids, a
  decoder that ignores a latent direction) a ridge of ``1e-8`` (float64; ``1e-5`` in
  float32) times the mean diagonal is added at those points only, and a
  :class:`SingularMetricWarning` says how many needed it.
- Block-tridiagonal SPD systems (:func:`block_tridiagonal_cholesky`,
  :func:`block_tridiagonal_solve`): the Gauss–Newton matrices of discrete curves, whose
  ``m`` free nodes couple only to their neighbours. The block factorisation costs
  ``O(m d^3)`` per system against ``O((m d)^3)`` for the dense one.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .checks import check_finite_output

__all__ = [
    "SingularMetricWarning",
    "block_tridiagonal_cholesky",
    "block_tridiagonal_solve",
    "solve_square",
    "spd_cholesky",
    "spd_inverse",
    "spd_solve",
]


class SingularMetricWarning(RuntimeWarning):
    """The metric tensor was numerically singular at some points and was regularised."""


def spd_cholesky(mat: Tensor, *, what: str = "metric tensor", stacklevel: int = 3) -> Tensor:
    """Lower Cholesky factor of SPD blocks, regularised where singular (module docstring).

    Parameters
    ----------
    mat : Tensor, shape (B, d, d)
    what : str
        Names ``mat`` in the warning and in errors.
    stacklevel : int
        Of the :class:`SingularMetricWarning`.

    Returns
    -------
    Tensor, shape (B, d, d)
        ``L`` with ``L L^T = mat`` (plus the ridge at singular points).

    Raises
    ------
    ValueError
        Where ``mat`` holds NaN or inf (no ridge repairs those).
    """
    chol, info = torch.linalg.cholesky_ex(mat)
    bad = info != 0
    if bool(bad.any()):
        check_finite_output(mat, what)
        d = mat.shape[-1]
        eye = torch.eye(d, dtype=mat.dtype, device=mat.device)
        scale = (mat.diagonal(dim1=-2, dim2=-1).sum(-1) / d).clamp_min(torch.finfo(mat.dtype).tiny)
        jitter = 1e-8 * scale if mat.dtype == torch.float64 else 1e-5 * scale
        fixed = mat + bad[:, None, None] * jitter[:, None, None] * eye
        chol, info = torch.linalg.cholesky_ex(fixed)
        if bool((info != 0).any()):
            # Zero metric (all units dead): any ridge works; use an absolute one.
            fixed = fixed + (info != 0)[:, None, None] * eye
            chol = torch.linalg.cholesky(fixed)
        warnings.warn(
            f"the {what} is singular at {int(bad.sum())} of {mat.shape[0]} points; "
            "a small ridge was added there. Pass ridge=... to PullbackMetric to "
            "regularise the metric consistently.",
            SingularMetricWarning,
            stacklevel=stacklevel,
        )
    return chol


def spd_solve(mat: Tensor, rhs: Tensor, *, what: str = "metric tensor") -> Tensor:
    """Solve ``mat x = rhs`` for SPD (or numerically singular PSD) blocks.

    Parameters
    ----------
    mat : Tensor, shape (B, d, d)
    rhs : Tensor, shape (B, d, k)
    what : str
        Names ``mat`` in the warning.

    Returns
    -------
    Tensor, shape (B, d, k)
    """
    return torch.cholesky_solve(rhs, spd_cholesky(mat, what=what, stacklevel=4))


def solve_square(mat: Tensor, rhs: Tensor) -> Tensor:
    """``mat^{-1} rhs`` for general square blocks; the least-squares solution where singular.

    Parameters
    ----------
    mat : Tensor, shape (B, d, d)
    rhs : Tensor, shape (B, d, k)

    Returns
    -------
    Tensor, shape (B, d, k)
    """
    sol, info = torch.linalg.solve_ex(mat, rhs)
    bad = info != 0
    if bool(bad.any()):
        sol = sol.clone()
        sol[bad] = torch.linalg.pinv(mat[bad]) @ rhs[bad]
    return sol


def spd_inverse(mat: Tensor, *, what: str = "metric tensor") -> Tensor:
    """Inverses of SPD blocks, regularised where singular as :func:`spd_cholesky` does.

    Parameters
    ----------
    mat : Tensor, shape (..., d, d)
    what : str

    Returns
    -------
    Tensor, shape (..., d, d)
    """
    d = mat.shape[-1]
    flat = mat.reshape(-1, d, d)
    inv = torch.cholesky_inverse(spd_cholesky(flat, what=what, stacklevel=4))
    return inv.reshape(mat.shape)


def block_tridiagonal_cholesky(diag: Tensor, lower: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Block Cholesky factor of symmetric block-tridiagonal matrices, batched.

    The matrix has the diagonal blocks ``diag[:, k]`` and the blocks ``lower[:, k]`` at
    ``(k + 1, k)`` (their transposes at ``(k, k + 1)``). Its factor ``L`` is block
    lower-bidiagonal: ``L_kk L_kk^T = diag_k - L_k,k-1 L_k,k-1^T`` and
    ``L_k+1,k = lower_k L_kk^{-T}``, one ``d x d`` Cholesky and one triangular solve per
    block (``O(m d^3)``), vectorised over the batch.

    Parameters
    ----------
    diag : Tensor, shape (B, m, d, d)
    lower : Tensor, shape (B, m - 1, d, d)

    Returns
    -------
    chol_diag : Tensor, shape (B, m, d, d)
        ``L_kk``, lower triangular.
    chol_lower : Tensor, shape (B, m - 1, d, d)
        ``L_k+1,k``.
    ok : Tensor, shape (B,), bool
        Where the matrix was numerically positive definite (elsewhere the factors are
        meaningless).
    """
    chol_diag = torch.empty_like(diag)
    chol_lower = torch.empty_like(lower)
    c, info = torch.linalg.cholesky_ex(diag[:, 0])
    chol_diag[:, 0] = c
    ok = info == 0
    for k in range(1, diag.shape[1]):
        # L_k,k-1 = lower L_k-1^{-T}, i.e. L_k-1 (L_k,k-1)^T = lower^T
        x = torch.linalg.solve_triangular(chol_diag[:, k - 1], lower[:, k - 1].mT, upper=False)
        chol_lower[:, k - 1] = x.mT
        c, info = torch.linalg.cholesky_ex(diag[:, k] - x.mT @ x)
        chol_diag[:, k] = c
        ok &= info == 0
    return chol_diag, chol_lower, ok & torch.isfinite(chol_diag).all((1, 2, 3))


def block_tridiagonal_solve(chol_diag: Tensor, chol_lower: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``A x = rhs`` from :func:`block_tridiagonal_cholesky`'s factor of ``A``.

    Parameters
    ----------
    chol_diag : Tensor, shape (B, m, d, d)
    chol_lower : Tensor, shape (B, m - 1, d, d)
    rhs : Tensor, shape (B, m, d)

    Returns
    -------
    Tensor, shape (B, m, d)
    """
    m = rhs.shape[1]
    y = torch.empty_like(rhs)
    prev = rhs[:, 0, :, None]
    y[:, 0] = torch.linalg.solve_triangular(chol_diag[:, 0], prev, upper=False)[..., 0]
    for k in range(1, m):  # forward: L y = rhs
        r = rhs[:, k, :, None] - chol_lower[:, k - 1] @ y[:, k - 1, :, None]
        y[:, k] = torch.linalg.solve_triangular(chol_diag[:, k], r, upper=False)[..., 0]
    x = torch.empty_like(rhs)
    last = y[:, m - 1, :, None]
    x[:, m - 1] = torch.linalg.solve_triangular(chol_diag[:, m - 1].mT, last, upper=True)[..., 0]
    for k in range(m - 2, -1, -1):  # backward: L^T x = y
        r = y[:, k, :, None] - chol_lower[:, k].mT @ x[:, k + 1, :, None]
        x[:, k] = torch.linalg.solve_triangular(chol_diag[:, k].mT, r, upper=True)[..., 0]
    return x
