r"""A standard deviation that grows away from the data: the RBF precision network.

Arvanitidis, Hansen & Hauberg ("Latent Space Oddity", ICLR 2018) model a Gaussian
decoder's precision as

.. math:: \beta(z) = W^T v(z) + \zeta, \qquad v_k(z) = \exp(-\lambda_k \lVert z - c_k \rVert^2),

with centres :math:`c_k` from k-means of the training codes, bandwidths from the cluster
sizes, :math:`W \ge 0` and :math:`\sigma(z) = \beta(z)^{-1/2}`. Near the data the RBFs
carry a large fitted precision; away from it they vanish and :math:`\sigma` rises to
:math:`1/\sqrt\zeta`, which an ordinary neural std network does not guarantee.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RBFStd", "kmeans", "rbf_bandwidths"]


def kmeans(
    x: Tensor, k: int, *, generator: torch.Generator | None = None, iters: int = 100
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding, batched in torch.

    Parameters
    ----------
    x : Tensor, shape (N, d)
    k : int
        Number of clusters, ``1 <= k <= N``.
    generator : torch.Generator, optional
        Source of randomness for the seeding (reproducible results).
    iters : int, default 100
        Maximum Lloyd iterations; stops earlier when assignments stop changing.

    Returns
    -------
    centres : Tensor, shape (k, d)
    assign : Tensor, shape (N,), int64
        Cluster of each point. Every cluster is non-empty.
    """
    n = x.shape[0]
    if x.dim() != 2 or not 1 <= k <= n:
        raise ValueError(f"kmeans needs x of shape (N, d) with N >= k = {k}; got {tuple(x.shape)}")
    # k-means++: each new centre drawn with probability proportional to squared distance.
    first = torch.randint(n, (1,), generator=generator)
    centres = x[first]
    nearest = (x - centres).square().sum(-1)
    for _ in range(1, k):
        weights = nearest if float(nearest.sum()) > 0 else torch.ones_like(nearest)
        pick = torch.multinomial(weights, 1, generator=generator)
        centres = torch.cat([centres, x[pick]])
        nearest = torch.minimum(nearest, (x - x[pick]).square().sum(-1))

    assign = torch.full((n,), -1, dtype=torch.int64)
    for _ in range(iters):
        new = _sq_dists(x, centres).argmin(-1)
        counts = torch.bincount(new, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            # Re-seed empty clusters at the points worst served by their centre.
            worst = _sq_dists(x, centres).gather(1, new[:, None]).squeeze(1)
            far = worst.topk(len(empty)).indices
            centres = centres.clone()
            centres[empty] = x[far]
            new[far] = empty
            counts = torch.bincount(new, minlength=k)
        if torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = sums / counts[:, None].to(x.dtype)
    return centres, assign


def _sq_dists(x: Tensor, c: Tensor) -> Tensor:
    """Squared Euclidean distances ``(N, d), (K, d) -> (N, K)``."""
    return (x.square().sum(-1, keepdim=True) - 2 * x @ c.T + c.square().sum(-1)).clamp_min(0)


def rbf_bandwidths(x: Tensor, centres: Tensor, assign: Tensor, a: float = 1.5) -> Tensor:
    """``lambda_k = 1/2 (a * mean_{j in C_k} ||x_j - c_k||)^-2``, as in Latent Space Oddity.

    Clusters too small to have a spread (one point) get a tenth of the median spread.

    Parameters
    ----------
    x : Tensor, shape (N, d)
    centres : Tensor, shape (K, d)
    assign : Tensor, shape (N,)
        Cluster of each point (from :func:`kmeans`).
    a : float, default 1.5
        Kernel width in units of the cluster's mean distance to its centre; larger ``a``
        spreads the fitted precision further from the data.

    Returns
    -------
    Tensor, shape (K,)
    """
    k = centres.shape[0]
    dist = (x - centres[assign]).norm(dim=-1)
    counts = torch.bincount(assign, minlength=k).clamp_min(1).to(x.dtype)
    spread = torch.zeros(k, dtype=x.dtype).index_add_(0, assign, dist) / counts
    positive = spread[spread > 0]
    floor = 0.1 * positive.median() if len(positive) else torch.tensor(1.0, dtype=x.dtype)
    return 0.5 / (a * spread.clamp_min(floor)).square()


class RBFStd(nn.Module):
    r"""``sigma(z) = (W^T v(z) + zeta)^(-1/2)``, per output pixel.

    Parameters
    ----------
    latent_dim : int
        ``d``.
    n_centres : int
        ``K``.
    out_shape : tuple of int, default (1, 28, 28)
        Shape of one output; ``W`` has shape ``(K, prod(out_shape))``.
    zeta : float, default 0.1
        Precision far from the data: ``sigma`` tends to ``1/sqrt(zeta)`` (3.16 for
        pixels in ``[0, 1]``).

    Notes
    -----
    ``W = exp(log_weight)`` is positive by construction. The log keeps the optimiser's
    steps relative, so precisions that span several orders of magnitude (blank
    background pixels against stroke pixels) fit in a few epochs; a softplus would need
    steps of the size of ``W`` itself. Centres and bandwidths are buffers, set by
    :meth:`fit_centres`; until then the module is unfitted and refuses to evaluate.
    """

    def __init__(
        self,
        latent_dim: int,
        n_centres: int,
        out_shape: tuple[int, ...] = (1, 28, 28),
        zeta: float = 0.1,
    ) -> None:
        super().__init__()
        if not (zeta > 0 and math.isfinite(zeta)):
            raise ValueError(f"zeta must be a finite number > 0; got {zeta}")
        self.out_shape = tuple(out_shape)
        self.zeta = float(zeta)
        out = math.prod(self.out_shape)
        self.register_buffer("centres", torch.zeros(n_centres, latent_dim))
        self.register_buffer("bandwidths", torch.zeros(n_centres))
        self.register_buffer("fitted", torch.tensor(False))
        self.log_weight = nn.Parameter(torch.zeros(n_centres, out))

    @property
    def is_fitted(self) -> bool:
        """Whether centres and bandwidths have been set."""
        return bool(self.fitted)

    def fit_centres(
        self, codes: Tensor, *, a: float = 1.5, generator: torch.Generator | None = None
    ) -> Tensor:
        """Set centres by k-means of ``codes`` and bandwidths from the cluster spreads.

        Parameters
        ----------
        codes : Tensor, shape (N, d)
            Latent codes of the training data (encoder means).
        a : float, default 1.5
            See :func:`rbf_bandwidths`.
        generator : torch.Generator, optional
            For reproducible k-means seeding.

        Returns
        -------
        Tensor, shape (N,)
            The cluster of each code.
        """
        k, d = self.centres.shape
        if codes.dim() != 2 or codes.shape[1] != d:
            raise ValueError(f"codes must have shape (N, {d}); got {tuple(codes.shape)}")
        codes = codes.detach().to(self.centres.dtype)
        centres, assign = kmeans(codes, k, generator=generator)
        self.centres.copy_(centres)
        self.bandwidths.copy_(rbf_bandwidths(codes, centres, assign, a))
        self.fitted.fill_(True)
        return assign

    def activations(self, z: Tensor) -> Tensor:
        """``v(z)``, the RBF activations.

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, K)
        """
        if not self.is_fitted:
            raise RuntimeError(
                "the RBF std network is not fitted: call fit_centres(codes) and train its "
                "weights (the second stage of 'pullback-geom train --model gaussian')"
            )
        # Differences rather than the expanded-square trick: exact at the centres, and
        # friendly to forward-mode differentiation.
        sq = (z.unsqueeze(-2) - self.centres).square().sum(-1)
        return torch.exp(-self.bandwidths * sq)

    def precision(self, z: Tensor) -> Tensor:
        """``beta(z) = W^T v(z) + zeta``.

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, prod(out_shape))
        """
        return self.activations(z) @ self.log_weight.exp() + self.zeta

    def forward(self, z: Tensor) -> Tensor:
        """``sigma(z)``.

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, *out_shape)
        """
        return self.precision(z).rsqrt().reshape(z.shape[0], *self.out_shape)

    def extra_repr(self) -> str:
        k, d = self.centres.shape
        return f"latent_dim={d}, n_centres={k}, out_shape={self.out_shape}, zeta={self.zeta}"
