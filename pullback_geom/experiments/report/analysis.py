"""The numbers behind the write-up's claims, each a plain function of a metric and arrays.

Pairs are given as indices into an array of codes, so the same pairs can be measured
with several metrics and matched with their images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ...geodesics._common import resample_curves
from ...metric import PullbackMetric
from ..neighbours import knn_accuracy  # the one kNN of the experiments, re-exported

__all__ = [
    "class_representatives",
    "random_pairs",
    "straight_lines",
    "resample_curves",
    "distance_to_codes",
    "path_statistics",
    "nearest_image_distance",
    "spearman",
    "knn_accuracy",
    "class_mean_distances",
    "closest_class_pairs",
    "class_pair_rank",
]


def class_representatives(codes: Tensor, labels: Tensor, limit: int | None = None) -> dict:
    """One typical code per class: the code nearest its class's coordinate-wise median.

    Parameters
    ----------
    codes : Tensor, shape (n, d)
    labels : Tensor of int, shape (n,)
    limit : int, optional
        Only consider the first ``limit`` codes (those with images at hand).

    Returns
    -------
    dict of int to int
        Class -> index into ``codes``.
    """
    n = codes.shape[0] if limit is None else min(limit, codes.shape[0])
    codes, labels = codes[:n], labels[:n]
    reps = {}
    for k in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == k)[:, 0]
        centre = codes[idx].median(dim=0).values
        reps[int(k)] = int(idx[(codes[idx] - centre).norm(dim=-1).argmin()])
    return reps


def random_pairs(n: int, n_pairs: int, seed: int = 0) -> Tensor:
    """``n_pairs`` random index pairs ``(i, j)``, ``i != j``, from ``range(n)``, seeded.

    Returns
    -------
    Tensor of int64, shape (n_pairs, 2)
    """
    if n < 2:
        raise ValueError(f"need at least 2 points to draw pairs; got {n}")
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (n_pairs,), generator=gen)
    # A shift in [1, n) makes j != i without rejection sampling.
    j = (i + torch.randint(1, n, (n_pairs,), generator=gen)) % n
    return torch.stack([i, j], dim=1)


def straight_lines(p: Tensor, q: Tensor, n_points: int) -> Tensor:
    """Straight latent segments from ``p`` to ``q``, shape (B, n_points, d)."""
    t = torch.linspace(0, 1, n_points, dtype=p.dtype, device=p.device)[None, :, None]
    return p[:, None] + t * (q - p)[:, None]


def distance_to_codes(points: Tensor, codes: Tensor, chunk: int = 4096) -> Tensor:
    """Euclidean latent distance from each point to its nearest code.

    Parameters
    ----------
    points : Tensor, shape (..., d)
    codes : Tensor, shape (n, d)

    Returns
    -------
    Tensor, shape (...)
    """
    flat = points.reshape(-1, points.shape[-1]).to(codes.dtype)
    out = [torch.cdist(c, codes).min(dim=1).values for c in flat.split(chunk)]
    return torch.cat(out).reshape(points.shape[:-1])


def path_statistics(
    metric: PullbackMetric,
    curves: dict[str, Tensor],
    codes: Tensor,
    *,
    std_fn: Callable[[Tensor], Tensor] | None = None,
    far_radius: float | None = None,
    decode: Callable[[Tensor], Tensor] | None = None,
    images: Tensor | None = None,
    n_samples: int = 64,
) -> dict[str, dict[str, Tensor]]:
    """Per-path length, distance to the data and decoder ``sigma``, for several path kinds.

    Parameters
    ----------
    metric : PullbackMetric
        Lengths are measured with it (observation space).
    curves : dict of str to Tensor, each shape (B, N, d)
        The same ``B`` pairs joined by different paths (e.g. "straight", "geodesic").
    codes : Tensor, shape (n, d)
        Data codes for the distance to the data.
    std_fn : callable, optional
        ``(B, d) -> (B, ...)`` decoder standard deviation; its pixel mean is averaged
        along each path.
    far_radius : float, optional
        A latent distance: the share of each path farther than it from every code.
    decode, images : optional
        The decoder's mean ``(B, d) -> (B, ...)`` and test images ``(n, ...)`` of the same
        size: how far each decoded frame is from its nearest test image (root mean square
        over pixels), a proxy for how realistic the interpolation looks.
    n_samples : int, default 64
        Points per path, evenly spaced in latent arc length, for the averages.

    Returns
    -------
    dict of str to dict
        Per path kind: ``"length"``, ``"distance_to_data"`` (mean over the path);
        with ``std_fn``, ``"sigma"`` and ``"sigma_max"`` (the pixel-mean ``sigma``
        averaged over the path, and its largest value on it); with ``far_radius``,
        ``"far_fraction"``; with ``decode`` and ``images``, ``"frame_distance"`` (mean
        over the path) and ``"frame_distance_max"``. Each a Tensor of shape (B,).
    """
    from ...geodesics._common import refined_length

    out = {}
    for name, c in curves.items():
        c = c.to(codes.dtype)
        samples = resample_curves(c, n_samples)
        to_data = distance_to_codes(samples, codes)
        stats = {
            "length": refined_length(metric, c, 8).detach(),
            "distance_to_data": to_data.mean(-1),
        }
        if far_radius is not None:
            # Samples lie at equal steps of latent arc length: a share of them is a share
            # of the path's latent length.
            stats["far_fraction"] = (to_data > far_radius).to(codes.dtype).mean(-1)
        if decode is not None and images is not None:
            frames = nearest_image_distance(decode, samples, images)
            stats["frame_distance"] = frames.mean(-1)
            stats["frame_distance_max"] = frames.max(-1).values
        if std_fn is not None:
            with torch.no_grad():
                sigma = std_fn(samples.reshape(-1, samples.shape[-1]))
            sigma = sigma.reshape(*samples.shape[:2], -1).mean(-1)  # pixel mean, (B, n)
            stats["sigma"] = sigma.mean(-1)
            stats["sigma_max"] = sigma.max(-1).values
        out[name] = stats
    return out


def nearest_image_distance(
    decode: Callable[[Tensor], Tensor], points: Tensor, images: Tensor, chunk: int = 2048
) -> Tensor:
    """Root-mean-square pixel distance from each decoded point to its nearest image.

    Parameters
    ----------
    decode : callable
        ``(B, d) -> (B, ...)``, the decoder's mean.
    points : Tensor, shape (..., d)
    images : Tensor, shape (n, ...)
        With as many pixels per image as ``decode`` returns.

    Returns
    -------
    Tensor, shape (...)
    """
    flat = points.reshape(-1, points.shape[-1])
    ref = images.reshape(len(images), -1).to(flat.dtype)
    out = []
    with torch.no_grad():
        for c in flat.split(chunk):
            frames = decode(c).reshape(len(c), -1).to(ref.dtype)
            if frames.shape[1] != ref.shape[1]:
                raise ValueError(
                    f"decoded frames have {frames.shape[1]} pixels, the images {ref.shape[1]}"
                )
            out.append(torch.cdist(frames, ref).min(dim=1).values / ref.shape[1] ** 0.5)
    return torch.cat(out).reshape(points.shape[:-1])


def spearman(x, y) -> float:
    """Spearman rank correlation of two 1-D arrays (ties averaged)."""
    from scipy import stats

    x, y = (v.detach().cpu() if isinstance(v, torch.Tensor) else v for v in (x, y))
    return float(stats.spearmanr(np.asarray(x), np.asarray(y)).statistic)


def class_mean_distances(distances: Tensor, labels: Tensor) -> Tensor:
    """Mean distance between the points of class ``a`` and those of class ``b``.

    Parameters
    ----------
    distances : Tensor, shape (n, n)
    labels : Tensor of int, shape (n,), classes ``0 .. K-1``

    Returns
    -------
    Tensor, shape (K, K)
        Symmetric; the diagonal averages over distinct pairs within a class.
    """
    n_classes = int(labels.max()) + 1
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(distances.dtype)
    # A point's distance to itself is not a pair (cdist's is ~1e-8, not 0, anyway).
    off = distances - torch.diag_embed(distances.diagonal())
    sums = onehot.T @ off @ onehot
    counts = onehot.sum(0)
    pairs = counts[:, None] * counts[None, :] - torch.diag(counts)  # excludes i == j
    return sums / pairs.clamp_min(1)


def closest_class_pairs(
    class_distances: Tensor, names: Sequence[str] | None = None, top: int = 5
) -> list[tuple[str, float]]:
    """The ``top`` off-diagonal class pairs with the smallest mean distance.

    Returns
    -------
    list of (str, float)
        ``("a–b", distance)``, closest first.
    """
    k = class_distances.shape[0]
    names = [str(i) for i in range(k)] if names is None else list(names)
    iu = torch.triu_indices(k, k, offset=1)
    values = class_distances[iu[0], iu[1]]
    order = values.argsort()[:top]
    return [(f"{names[iu[0, o]]}–{names[iu[1, o]]}", float(values[o])) for o in order]


def class_pair_rank(class_distances: Tensor, a: int, b: int) -> int:
    """Rank (1 = closest) of the class pair ``a–b`` among all off-diagonal pairs."""
    k = class_distances.shape[0]
    iu = torch.triu_indices(k, k, offset=1)
    values = class_distances[iu[0], iu[1]]
    return int((values < class_distances[min(a, b), max(a, b)]).sum()) + 1
