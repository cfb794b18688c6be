"""What the learning tools share: input checks and the latent space they run on."""

from __future__ import annotations

import torch
from torch import Tensor

from ... import geomstats as pg_geomstats
from ...metric import PullbackMetric

F64 = torch.float64


def check_metric(metric) -> int:
    if not isinstance(metric, PullbackMetric):
        raise TypeError(f"metric must be a PullbackMetric; got {type(metric).__name__}")
    if metric.latent_dim is None:
        raise ValueError("the latent dimension is unknown: pass latent_dim= to PullbackMetric")
    return metric.latent_dim


def check_codes(codes, d: int, name: str = "codes") -> Tensor:
    """``(n, d)`` float64 tensor, finite, at least one row."""
    z = torch.as_tensor(codes)
    if z.dim() != 2 or z.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}); got {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    z = z.detach().to(F64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


def check_labels(labels, n: int, name: str = "labels") -> Tensor:
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one per code; got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integers; got {y.dtype}")
    return y.to(torch.int64)


def learning_space(metric: PullbackMetric, *, log_method: str = "discrete"):
    """The latent space as a geomstats manifold, with the log solver these tools default to.

    ``"discrete"`` (the adapter's default, :class:`~pullback_geom.geomstats.PullbackLogSolver`):
    the discrete log, whose vector is minus half the gradient of the squared distance on
    any decoder, ReLU included, so Fréchet means and k-means follow the right gradients.
    ``"energy"``: the energy curve's one-sided velocity (no refinement); ``"shooting"``:
    Newton shooting on the geodesic ODE (smooth decoders).

    Parameters
    ----------
    metric : PullbackMetric
    log_method : {"discrete", "energy", "shooting"}, default "discrete"

    Returns
    -------
    geomstats Euclidean space equipped with the pullback metric.
    """
    check_metric(metric)
    return pg_geomstats.latent_space(metric, log_options={"method": log_method})


def space_or_default(metric: PullbackMetric, space):
    if space is None:
        return learning_space(metric)
    if not isinstance(getattr(space, "metric", None), pg_geomstats.PullbackRiemannianMetric):
        raise TypeError("space must come from pullback_geom.geomstats.latent_space")
    return space


def decoder_dtype(metric: PullbackMetric) -> torch.dtype:
    return metric.dtype or F64
