"""The decoder ensemble: one encoder and ``K`` decoders (Syrota et al., 2024).

:class:`EnsembleVAE`'s metric is the ensemble's expected metric ``(1/K) sum_k J_k^T J_k``,
or (``kind="disagreement"``) the Gaussian metric of the members' mean image and per-pixel std.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..metric import PullbackMetric
from .fisher_rao import fisher_rao_decoder, logit_decoder
from .models import VAE, mean_decoder


class EnsembleDecoder(nn.Module):
    """``K`` decoders of the write-up's architecture; ``forward`` is their mean image,
    :meth:`stacked` all of them.

    Parameters
    ----------
    members : sequence of nn.Sequential
        Decoders ``(B, d) -> (B, 1, 28, 28)`` ending in a sigmoid.
    """

    def __init__(self, members: list[nn.Sequential]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, z: Tensor) -> Tensor:
        """The ensemble's mean image, ``(B, d) -> (B, 1, 28, 28)``."""
        return torch.stack([m(z) for m in self.members]).mean(0)

    def logits(self, z: Tensor) -> Tensor:
        """Every member's logits, ``(B, d) -> (K, B, 784)``."""
        return torch.stack([m[:3](z) for m in self.members])


class _Stacked(nn.Module):
    """``z -> (f_1(z), ..., f_K(z)) / sqrt(K)``: a tuple, which PullbackMetric concatenates."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.scale = 1 / math.sqrt(len(members))

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.scale * m(z) for m in self.members)


class _MemberStd(nn.Module):
    """``z -> scale * sqrt(Var_k f_k(z) + floor^2)``, per pixel: ``(B, d) -> (B, *obs)``.

    The members' population standard deviation. The floor keeps the map smooth where the
    members agree (``sqrt`` has no derivative at 0); where they agree exactly the std is
    the constant ``scale * floor`` and adds nothing to the metric.
    """

    def __init__(self, members: list[nn.Module], floor: float, scale: float = 1.0) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.floor, self.scale = floor, scale

    def forward(self, z: Tensor) -> Tensor:
        images = torch.stack([m(z) for m in self.members])
        variance = (images - images.mean(0)).square().mean(0)
        return self.scale * (variance + self.floor**2).sqrt()


class EnsembleVAE(VAE):
    r"""One encoder, ``K`` decoders: the metrics of a decoder ensemble.

    Syrota, Moreno-Muñoz and Hauberg ("Decoder ensembling for learned latent geometries",
    2024) use the disagreement of independently trained decoders, instead of an RBF
    network, as the uncertainty that makes the metric grow away from the data. The
    metric (``kind="ensemble"``, the default) is the expected one,

    .. math:: G(z) = \frac1K \sum_k J_k(z)^T J_k(z),

    the Euclidean pullback through ``z -> (f_1(z), ..., f_K(z)) / sqrt(K)``, so every tool
    of :class:`PullbackMetric` applies unchanged. ``kind="disagreement"`` treats the
    ensemble as one Gaussian decoder, mean ``fbar`` (the members' mean image) and std
    ``s`` (their per-pixel spread, :meth:`decode_std`), and takes its metric as
    :class:`GaussianVAE` does,

    .. math:: G(z) = J_{\bar f}^T J_{\bar f} + J_s^T J_s;

    it lies between the mean image's metric and the expected one (Cauchy–Schwarz: the
    gradient of a pixel's std is the projection of the members' Jacobian spread), equal
    to the expected one for ``K = 2`` and no floor. ``kind="fisher-rao"`` is the expected
    Fisher–Rao metric of the members, ``kind="mean"`` the pullback through the ensemble's
    mean image.

    Training (``pullback-geom train --model ensemble --decoders K``) minimises the
    Bernoulli negative ELBO with the reconstruction term averaged over the decoders, each
    decoder starting from its own random initialisation and seeing its own bootstrap
    resample of every batch (Poisson(1) weights per image and decoder,
    :meth:`training_nll`). Both sources of randomness matter only where the data do not
    pin the decoders down, so the members agree on the data and disagree away from it.

    Parameters
    ----------
    latent_dim : int, default 2
    hidden : int, default 512
    decoders : int, default 4
        ``K >= 2``.
    """

    kind = "ensemble"
    metric_kinds = ("ensemble", "disagreement", "fisher-rao", "mean")

    def __init__(
        self, latent_dim: int = 2, hidden: int = 512, decoders: int = 4, activation: str = "relu"
    ) -> None:
        super().__init__(latent_dim, hidden, activation)
        if isinstance(decoders, bool) or not isinstance(decoders, int) or decoders < 2:
            raise ValueError(f"decoders must be an integer >= 2; got {decoders!r}")
        # The base class's decoder is member 0: with the same seed, a Bernoulli model and
        # an ensemble start from the same encoder and first decoder.
        others = [mean_decoder(latent_dim, hidden, activation) for _ in range(decoders - 1)]
        self.decoder = EnsembleDecoder([self.decoder, *others])

    @property
    def n_decoders(self) -> int:
        """``K``."""
        return len(self.decoder.members)

    def decode_std(self, z: Tensor, floor: float = 0.0) -> Tensor:
        """The members' disagreement: per pixel, ``sqrt(Var_k f_k(z) + floor^2)``.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)
        floor : float, default 0

        Returns
        -------
        Tensor, shape (B, 1, 28, 28) or (1, 28, 28)
            The population standard deviation of the ``K`` decoded images.
        """
        z, single = self._points(z)
        out = _MemberStd(list(self.decoder.members), floor)(z)
        return out[0] if single else out

    def pullback_metric(
        self,
        kind: str | None = None,
        *,
        floor: float = 1e-3,
        scale: float = 1.0,
        **kwargs: Any,
    ) -> PullbackMetric:
        """The ensemble's metric; ``kind`` is one of :attr:`metric_kinds` (see the class).

        Parameters
        ----------
        kind : {"ensemble", "disagreement", "fisher-rao", "mean"}, optional
            Default ``"ensemble"``.
        floor : float, default 1e-3
            ``"disagreement"`` only: the std is ``sqrt(Var_k f_k + floor^2)``, smooth
            where the members agree.
        scale : float, default 1
            ``"disagreement"`` only: the std is multiplied by ``scale``, so that
            ``G = J_fbar^T J_fbar + scale^2 J_s^T J_s``.
        **kwargs
            Passed to :class:`PullbackMetric`.
        """
        for name, value, default in (("floor", floor, 1e-3), ("scale", scale, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number; got {type(value).__name__}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
            if value != default and kind != "disagreement":
                raise ValueError(f"{name}= applies to kind='disagreement' only; got {kind=}")
        if kind == "disagreement":
            kwargs.update(floor=float(floor), scale=float(scale))
        return super().pullback_metric(kind, **kwargs)

    def member_logits(self, z: Tensor) -> Tensor:
        """Every decoder's logits, ``(B, d) -> (K, B, 784)``."""
        return self.decoder.logits(z)

    def bernoulli_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log p(x | z)`` averaged over the decoders, shape (B,), in nats.

        Parameters
        ----------
        x : Tensor, shape (B, 784), floats in [0, 1]
        z : Tensor, shape (B, d)
        """
        return self._member_nll(x, z).mean(0)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        return self.bernoulli_nll(x, z)

    def training_nll(
        self, x: Tensor, z: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Each decoder's ``-log p(x | z)`` weighted by its own bootstrap weights
        (Poisson(1) per image, drawn from ``generator``), averaged over decoders: (B,)."""
        nll = self._member_nll(x, z)
        where = nll.device if generator is None else generator.device  # as in sample_latent
        ones = torch.ones(nll.shape, dtype=nll.dtype, device=where)
        weights = torch.poisson(ones, generator=generator).to(nll.device)
        return (weights * nll).mean(0)

    def _member_nll(self, x: Tensor, z: Tensor) -> Tensor:
        logits = self.member_logits(z)
        target = x.expand_as(logits)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def _metric(self, kind: str, **kwargs: Any) -> PullbackMetric:
        members = list(self.decoder.members)
        if kind == "ensemble":
            return PullbackMetric(_Stacked(members), latent_dim=self.latent_dim, **kwargs)
        if kind == "disagreement":
            std = _MemberStd(members, kwargs.pop("floor"), kwargs.pop("scale"))
            return PullbackMetric.gaussian(self.decoder, std, latent_dim=self.latent_dim, **kwargs)
        if kind == "fisher-rao":
            embeddings = [fisher_rao_decoder(logit_decoder(m)) for m in members]
            return PullbackMetric(_Stacked(embeddings), latent_dim=self.latent_dim, **kwargs)
        return super()._metric(kind, latent_dim=self.latent_dim, **kwargs)

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "decoders": self.n_decoders}

    def _reference(self) -> Tensor:
        return self.decoder.members[0][0].weight
