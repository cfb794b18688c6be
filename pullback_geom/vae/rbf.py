r"""A standard deviation that grows away from the data: the RBF precision network.

Arvanitidis, Hansen & Hauberg ("Latent Space Oddity", ICLR 2018) model a Gaussian
decoder's precision as

.. math:: \beta(z) = W^T v(z) + \zeta, \qquad v_k(z) = \exp(-\lambda_k \lVert z - c_k \rVert^2),

with centres :math:`c_k` from k-means of the training codes, bandwidths from the cluster
sizes, :math:`W \ge 0` and :math:`\sigma(z) = \beta(z)^{-1/2}`. Near the data the RBFs
carry a large fitted precision; away from it they vanish and :math:`\sigma` rises to
:math:`1/\sqrt\zeta`, which an ordinary neural std network does not guarantee.

**The data gate.** With bandwidths wide enough to fit the data's precision smoothly (the
construction above, ``a = 1.5``), the RBFs also cover the holes between clusters: on the
write-up's MNIST model ``sigma`` there is no larger than on the data. Narrow bandwidths open
the holes but leave dips between the codes, which cost 9-16 % of the test likelihood.
So the fitted precision is multiplied by a gate that reads the data density:

.. math:: \beta(z) = g(z)\, W^T v(z) + \zeta, \qquad
          g(z) = \operatorname{sigmoid}\big((\log \rho(z) - \tau) / w + 3\big),

with :math:`\rho(z) = \sum_j n_j \exp(-\lVert z - u_j \rVert^2 / 2h^2)` a kernel density
of the training codes summarised by ``G`` k-means centres :math:`u_j` with their cluster
sizes :math:`n_j` (``G`` evaluations per point instead of one per training code), ``h`` a
fraction of the centres' median nearest-neighbour distance, :math:`\tau` a low quantile
of :math:`\log\rho` over the training codes (there :math:`g = 0.95`) and :math:`w` the
width of the transition in e-folds of density. On the data :math:`g \approx 1` and the fit
is unchanged; where the density falls (the holes, the space around the data)
:math:`g \to 0` and :math:`\sigma` rises to :math:`1/\sqrt\zeta`. ``sigma`` stays smooth
(a logsumexp and a sigmoid), so the metric's uncertainty term is usable by every solver.
See :meth:`RBFStd.fit_gate`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "RBFStd",
    "kmeans",
    "nearest_neighbour_distances",
    "pixel_mean_sigma",
    "rbf_bandwidths",
    "sigma_wall",
]


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


def nearest_neighbour_distances(x: Tensor, block: int = 4096) -> Tensor:
    """Distance from each point to its nearest other point, in blocks of rows.

    Parameters
    ----------
    x : Tensor, shape (N, d), N >= 2

    Returns
    -------
    Tensor, shape (N,)
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (N, d) with N >= 2; got {tuple(x.shape)}")
    return _nearest_distances(x, x, block, exclude_self=True)


def _nearest_distances(x: Tensor, y: Tensor, block: int, exclude_self: bool = False) -> Tensor:
    """``min_j |x_i - y_j|`` for each row of ``x`` (B, d) against ``y`` (M, d), in blocks
    of rows of ``x``; with ``exclude_self`` (``y is x``), each point's own distance is left
    out."""
    out = []
    for i in range(0, len(x), block):
        dist = torch.cdist(x[i : i + block], y)
        if exclude_self:
            rows = torch.arange(dist.shape[0], device=x.device)
            dist[rows, rows + i] = float("inf")
        out.append(dist.min(1).values)
    return torch.cat(out)


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
    gate_points : int, default 0
        ``G``, k-means centres of the data gate's density (module docstring); 0: no gate,
        the plain construction of Latent Space Oddity (and of checkpoints written before
        the gate).

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
        gate_points: int = 0,
    ) -> None:
        super().__init__()
        if not (zeta > 0 and math.isfinite(zeta)):
            raise ValueError(f"zeta must be a finite number > 0; got {zeta}")
        if isinstance(gate_points, bool) or not isinstance(gate_points, int) or gate_points < 0:
            raise ValueError(f"gate_points must be an integer >= 0; got {gate_points!r}")
        self.out_shape = tuple(out_shape)
        self.zeta = float(zeta)
        out = math.prod(self.out_shape)
        self.register_buffer("centres", torch.zeros(n_centres, latent_dim))
        self.register_buffer("bandwidths", torch.zeros(n_centres))
        self.register_buffer("fitted", torch.tensor(False))
        self.log_weight = nn.Parameter(torch.zeros(n_centres, out))
        self.gate_points = gate_points
        if gate_points:
            # Registered only when asked for, so checkpoints without a gate still load.
            self.register_buffer("gate_centres", torch.zeros(gate_points, latent_dim))
            self.register_buffer("gate_log_weights", torch.zeros(gate_points))
            self.register_buffer("gate_bandwidth", torch.tensor(1.0))
            self.register_buffer("gate_threshold", torch.tensor(0.0))
            self.register_buffer("gate_width", torch.tensor(1.0))
            self._register_load_state_dict_pre_hook(_unit_gate_weights)

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

    def fit_gate(
        self,
        codes: Tensor,
        *,
        bandwidth: float = 0.6,
        quantile: float = 3e-3,
        width: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Set the data gate from training codes (see the module docstring).

        Parameters
        ----------
        codes : Tensor, shape (N, d)
            Latent codes of the training data. Their density is carried by
            ``min(G, max(2, N // 16))`` k-means centres weighted by their cluster
            sizes, repeated to fill ``G``.
        bandwidth : float, default 0.6
            ``h`` in units of the median distance from a centre to its nearest other
            centre. A median, not a high percentile: the sparse outskirts' wide spacing
            must not widen the kernel that has to resolve the holes.
        quantile : float, default 3e-3
            ``tau`` is this quantile of ``log rho`` over all ``codes``: the fraction of
            training codes where the gate is below 0.95.
        width : float, default 1
            ``w``, e-folds of density over which the gate opens.
        generator : torch.Generator, optional
            For reproducible k-means seeding.
        """
        if not self.gate_points:
            raise RuntimeError("this RBFStd has no gate (gate_points=0)")
        for name, value in (("bandwidth", bandwidth), ("width", width)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0; got {value}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1); got {quantile}")
        codes = codes.detach().to(self.gate_centres)
        if codes.dim() != 2 or codes.shape[0] < 2 or codes.shape[1] != self.gate_centres.shape[1]:
            raise ValueError(
                f"the gate needs codes of shape (N, {self.gate_centres.shape[1]}) with N >= 2; "
                f"got {tuple(codes.shape)}"
            )
        if not bool(torch.isfinite(codes).all()):
            raise ValueError("the gate's codes contain NaN or inf")
        # Each centre summarises 16 codes or more: a density of a few codes resolves the
        # gaps between single codes, and the gate would wall them off inside the data.
        k = min(self.gate_points, max(2, len(codes) // 16))
        # Lloyd iterations refine coverage, not a clustering anyone reads: 30 are plenty.
        centres, assign = kmeans(codes, k, generator=generator, iters=30)
        counts = torch.bincount(assign, minlength=k).to(codes.dtype)
        gaps = nearest_neighbour_distances(centres if k > 1 else codes)
        gaps = gaps[gaps > 0]  # repeated codes give coincident centres
        if not len(gaps):
            raise ValueError("the gate's codes are all the same point: no density to read")
        spacing = gaps.median()
        # Fewer clusters than buffer rows: the centres repeat and split their weight, so
        # the density is the same.
        rows = torch.arange(self.gate_points, device=codes.device) % k
        self.gate_centres.copy_(centres[rows])
        share = torch.bincount(rows, minlength=k).to(codes.dtype)
        self.gate_log_weights.copy_((counts / share).log()[rows])
        self.gate_bandwidth.fill_(float(bandwidth * spacing))
        self.gate_width.fill_(float(width))
        log_rho = torch.cat(
            [self._log_density(codes[i : i + 4096]) for i in range(0, len(codes), 4096)]
        )
        self.gate_threshold.fill_(float(torch.quantile(log_rho, quantile)))

    def _distinct_centres(self) -> tuple[Tensor, Tensor]:
        """The gate's centres and log weights with the buffer's cyclic repeats folded.

        :meth:`fit_gate` fills the ``gate_points`` rows with ``k`` centres repeated
        cyclically when it finds fewer clusters than rows (few codes), each repeat
        carrying its share of the weight. The density is the same over the ``k`` distinct
        centres with their whole weights, at ``k / gate_points`` of the cost: 16 of 1,024
        rows for a model of 256 codes.
        """
        u, w = self.gate_centres, self.gate_log_weights
        same = (u == u[0]).all(-1).nonzero().squeeze(1)
        if len(same) > 1:
            k = int(same[1])
            if torch.equal(u[k:], u[:-k]) and torch.equal(w[k:], w[:-k]):
                rows = torch.arange(len(u), device=u.device) % k
                share = torch.bincount(rows, minlength=k).to(w.dtype)
                return u[:k], w[:k] + share.log()
        return u, w

    def _log_density(self, z: Tensor) -> Tensor:
        """``log rho(z)`` up to a constant, shape (B,)."""
        u, log_w = self._distinct_centres()
        # |z - u|^2 expanded: a (B, G) product, not a (B, G, d) difference tensor.
        sq = (z.square().sum(-1, keepdim=True) - 2 * z @ u.T + u.square().sum(-1)).clamp_min(0)
        return torch.logsumexp(log_w - sq / (2 * self.gate_bandwidth**2), dim=-1)

    def gate(self, z: Tensor) -> Tensor:
        """``g(z)``, in (0, 1): about 1 on the data, 0 far from it; ones without a gate.

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B,)
        """
        if not self.gate_points:
            return z.new_ones(z.shape[0])
        return torch.sigmoid((self._log_density(z) - self.gate_threshold) / self.gate_width + 3)

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
        """``beta(z) = g(z) W^T v(z) + zeta`` (``g = 1`` without a gate).

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, prod(out_shape))
        """
        fitted = self.activations(z) @ self.log_weight.exp()
        if self.gate_points:
            fitted = self.gate(z)[:, None] * fitted
        return fitted + self.zeta

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
        return (
            f"latent_dim={d}, n_centres={k}, out_shape={self.out_shape}, zeta={self.zeta}, "
            f"gate_points={self.gate_points}"
        )


def _unit_gate_weights(state_dict, prefix, *args) -> None:
    """Gates saved before the centres carried weights were random training codes, each of
    weight one: load them as such."""
    key = prefix + "gate_log_weights"
    centres = state_dict.get(prefix + "gate_centres")
    if key not in state_dict and centres is not None:
        state_dict[key] = centres.new_zeros(centres.shape[0])


def pixel_mean_sigma(std, z: Tensor, chunk: int = 2048) -> Tensor:
    """``sigma(z)`` averaged over pixels, in chunks of points, without gradients.

    Parameters
    ----------
    std : callable
        ``(B, d) -> (B, ...)``, e.g. ``GaussianVAE.decode_std``.
    z : Tensor, shape (N, d)

    Returns
    -------
    Tensor, shape (N,)
    """
    with torch.no_grad():
        return torch.cat([std(c).flatten(1).mean(1) for c in z.split(chunk)])


def sigma_wall(std, codes: Tensor, resolution: int = 160) -> dict[str, float]:
    """How much higher ``sigma`` is off the data than on it: the wall of the uncertainty term.

    ``sigma(z)`` is summarised as its mean over pixels. ``r95`` and ``r99`` are the 95th and
    99th percentiles of the codes' nearest-neighbour distances; on a ``resolution`` square
    grid over the codes' bounding box, the points farther than ``2 r95`` from every code
    are the holes between clusters and those farther than ``2 r99`` the space clearly off
    the data. The ratios are the median ``sigma`` there over the median ``sigma`` at the
    codes.

    Parameters
    ----------
    std : callable
        ``(B, d) -> (B, ...)``, e.g. ``GaussianVAE.decode_std``.
    codes : Tensor, shape (N, d)
    resolution : int, default 160

    Returns
    -------
    dict
        ``r95``, ``r99``, ``sigma_codes``, ``ratio_2r95``, ``ratio_2r99`` and the grid
        points counted (``points_2r95``, ``points_2r99``); ratios are NaN where no grid
        point is that far.
    """
    codes = codes.detach()
    nn_dist = nearest_neighbour_distances(codes)
    r95, r99 = (float(torch.quantile(nn_dist, q)) for q in (0.95, 0.99))
    lo, hi = codes.amin(0), codes.amax(0)
    axes = [
        torch.linspace(float(lo[i]), float(hi[i]), resolution, dtype=codes.dtype)
        for i in range(codes.shape[1])
    ]
    grid = torch.cartesian_prod(*axes).reshape(-1, codes.shape[1]).to(codes.device)
    far = _nearest_distances(grid, codes, 4096)

    on_data = float(pixel_mean_sigma(std, codes).median())
    off = pixel_mean_sigma(std, grid)
    out = {"r95": r95, "r99": r99, "sigma_codes": on_data}
    for name, radius in (("2r95", 2 * r95), ("2r99", 2 * r99)):
        sel = far > radius
        out[f"points_{name}"] = int(sel.sum())
        out[f"ratio_{name}"] = float(off[sel].median()) / on_data if bool(sel.any()) else math.nan
    return out
