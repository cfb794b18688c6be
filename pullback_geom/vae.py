"""VAE models of 28 x 28 images: the seed's Bernoulli VAE, a Gaussian VAE whose
uncertainty grows away from the data and a decoder ensemble; loading checkpoints and the
bundled defaults.

All models share the seed's architecture: an encoder 784 -> 512 (ReLU) -> mean and log
standard deviation of a ``d``-dimensional latent, and a decoder d -> 512 (ReLU) -> 784
(sigmoid), an ``nn.Sequential`` so that :class:`~pullback_geom.PullbackMetric` uses its
fast chain-rule Jacobian.

- :class:`BernoulliVAE`: pixel intensities under a Bernoulli likelihood with the
  decoder's output as mean. Its metric is the pullback through the mean.
- :class:`GaussianVAE`: the same mean plus ``sigma(z)`` from an RBF precision network
  (:class:`~pullback_geom.rbf.RBFStd`, "Latent Space Oddity"), so that
  ``G = J_mu^T J_mu + J_sigma^T J_sigma`` grows away from the data. Training has two
  stages: the encoder and mean decoder are trained exactly as the Bernoulli VAE (a
  Gaussian likelihood with a learnt std lets the mean go blurry where the std is
  large; with the same seed the two models' means are identical), then, with them
  fixed, the RBF weights maximise the Gaussian log-likelihood.
- :class:`EnsembleVAE`: one encoder and ``K`` decoders trained on their own bootstrap
  weights of every batch; its metric is the ensemble's expected metric
  ``(1/K) sum_k J_k^T J_k`` (Syrota et al., 2024), or (``kind="disagreement"``) the
  Gaussian metric of the members' mean image and per-pixel std.

``model.pullback_metric(kind=...)`` also offers the Fisher–Rao pullback of the
Bernoulli mean (``"fisher-rao"``, :mod:`pullback_geom.fisher_rao`); without ``kind`` each
model gives its own metric, as before.

Checkpoints come from ``pullback-geom train`` (:mod:`pullback_geom.training`); read
them with :func:`load` and :func:`load_latents`. The package ships one trained 2-D
Bernoulli and one Gaussian model (:func:`load_default`), regenerated from the repository root with::

    pullback-geom train --model bernoulli --epochs 30 --latent-dim 2 --seed 0 \\
        --data-dir ../shared/data --out pullback_geom/defaults/bernoulli --compact --threads 1
    pullback-geom train --model gaussian --epochs 30 --latent-dim 2 --seed 0 \\
        --data-dir ../shared/data --out pullback_geom/defaults/gaussian --compact --threads 1
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import batch_points
from .checkpoint import read_latents, read_weights
from .datasets import to_unit_float
from .fisher_rao import fisher_rao_decoder, fisher_rao_metric, logit_decoder
from .metric import PullbackMetric
from .rbf import RBFStd

__all__ = [
    "BernoulliVAE",
    "EnsembleDecoder",
    "EnsembleVAE",
    "Encoder",
    "GaussianVAE",
    "Latents",
    "MODELS",
    "VAE",
    "build_model",
    "default_checkpoint",
    "load",
    "load_default",
    "load_latents",
    "mean_decoder",
    "ACTIVATIONS",
]

IMAGE_SHAPE = (1, 28, 28)
_PIXELS = 784
_LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    """The seed's encoder: ``x (B, 784) -> 512 (ReLU) -> (mean, log_std)``, each (B, d).

    The seed writes ``sigma = exp(linear3(x))`` and samples ``mu + sigma * eps``: the
    output of ``linear3`` is therefore the log of the posterior's standard deviation
    (not a log-variance), and is returned as such.

    Parameters
    ----------
    latent_dim : int
        ``d``.
    hidden : int, default 512
    """

    def __init__(self, latent_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.linear1 = nn.Linear(_PIXELS, hidden)
        self.linear2 = nn.Linear(hidden, latent_dim)  # mean
        self.linear3 = nn.Linear(hidden, latent_dim)  # log standard deviation

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` of shape (B, 784) in [0, 1] -> ``mean, log_std`` of shape (B, d)."""
        h = F.relu(self.linear1(x))
        return self.linear2(h), self.linear3(h)


#: Hidden activations of the decoders, by name (``--activation``): the seed's ReLU, and
#: smooth ones under which the metric is smooth and the geodesic ODE well-posed.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def check_activation(activation: str) -> str:
    """``activation`` if it names one of :data:`ACTIVATIONS`, else a ValueError."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}")
    return activation


def mean_decoder(latent_dim: int, hidden: int = 512, activation: str = "relu") -> nn.Sequential:
    """The seed's decoder, ``(B, d) -> (B, 1, 28, 28)`` in (0, 1), with the hidden
    ``activation`` (the seed's is ``"relu"``)."""
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        ACTIVATIONS[check_activation(activation)](),
        nn.Linear(hidden, _PIXELS),
        nn.Sigmoid(),
        nn.Unflatten(1, IMAGE_SHAPE),
    )


class VAE(nn.Module):
    """What both models share: the seed's encoder and mean decoder.

    Parameters
    ----------
    latent_dim : int, default 2
    hidden : int, default 512
    activation : {"relu", "elu", "softplus", "silu", "tanh"}, default "relu"
        The decoder's hidden activation (the seed's ReLU; the encoder keeps ReLU).
    """

    kind: ClassVar[str] = ""
    #: the ``kind`` values :meth:`pullback_metric` accepts; the first is its default
    metric_kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, latent_dim: int = 2, hidden: int = 512, activation: str = "relu") -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.latent_dim, self.hidden = latent_dim, hidden
        self.activation = check_activation(activation)
        self.encoder = Encoder(latent_dim, hidden)
        self.decoder = mean_decoder(latent_dim, hidden, activation)

    # ------------------------------------------------------------------ the public maps
    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation of the posterior ``q(z | x)``.

        Parameters
        ----------
        x : Tensor, shape (B, 1, 28, 28), (B, 28, 28) or (B, 784)
            ``uint8`` images, or floats in [0, 1].

        Returns
        -------
        mean, log_std : Tensor, shape (B, d)
        """
        return self.encoder(self._images(x))

    def encode(self, x: Tensor) -> Tensor:
        """Latent codes: the posterior means.

        Parameters
        ----------
        x : Tensor, shape (B, 1, 28, 28), (B, 28, 28) or (B, 784)
            ``uint8`` images, or floats in [0, 1].

        Returns
        -------
        Tensor, shape (B, d)
        """
        return self.encode_distribution(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Decoded means.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, 1, 28, 28) or (1, 28, 28)
        """
        z, single = self._points(z)
        out = self.decoder(z)
        return out[0] if single else out

    def pullback_metric(self, kind: str | None = None, **kwargs: Any) -> PullbackMetric:
        """The latent space's Riemannian metric.

        Parameters
        ----------
        kind : str, optional
            One of :attr:`metric_kinds` (default: the first, the model's own metric).
            ``"mean"``: the pullback through the decoded mean; ``"fisher-rao"``: the
            Fisher–Rao pullback of the Bernoulli mean
            (:func:`~pullback_geom.fisher_rao.fisher_rao_metric`); ``"uncertainty"``
            (Gaussian model), ``"ensemble"`` and ``"disagreement"`` (ensemble model): see
            those classes.
        **kwargs
            Passed to :class:`PullbackMetric`.
        """
        kind = self.metric_kinds[0] if kind is None else kind
        if kind not in self.metric_kinds:
            raise ValueError(
                f"a {self.kind} model has no {kind!r} metric; "
                f"choose one of {list(self.metric_kinds)}"
            )
        return self._metric(kind, **kwargs)

    def _metric(self, kind: str, **kwargs: Any) -> PullbackMetric:
        if kind == "mean":
            return PullbackMetric(self.decoder, **kwargs)
        if kind == "fisher-rao":
            return fisher_rao_metric(self.decoder, **kwargs)
        raise NotImplementedError(kind)

    # ------------------------------------------------------------------ likelihoods
    def sample_latent(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """One reparametrised sample ``z ~ q(z | x)`` and ``KL(q(z | x) || N(0, I))``.

        Parameters
        ----------
        x : Tensor, shape (B, 784), floats in [0, 1]
        generator : torch.Generator, optional

        Returns
        -------
        z : Tensor, shape (B, d)
        kl : Tensor, shape (B,)
        """
        mean, log_std = self.encoder(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        z = mean + log_std.exp() * eps
        kl = 0.5 * (mean.square() + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
        return z, kl

    def bernoulli_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log p(x | z)`` under a Bernoulli likelihood with the decoded mean, (B,) nats.

        Parameters
        ----------
        x : Tensor, shape (B, 784), floats in [0, 1]
        z : Tensor, shape (B, d)
        """
        logits = self.decoder[:3](z)  # Linear, ReLU, Linear: the sigmoid's input
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log p(x | z)`` under the model's likelihood, shape (B,), in nats."""
        raise NotImplementedError

    def training_nll(
        self, x: Tensor, z: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The reconstruction term that training minimises, shape (B,), in nats.

        The Bernoulli ``-log p(x | z)`` for every model here (stage 1 of the Gaussian
        model too); the ensemble model weights it per decoder (see :class:`EnsembleVAE`).
        """
        return self.bernoulli_nll(x, z)

    def negative_elbo(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """One-sample estimate of the negative ELBO of each image, in nats.

        Parameters
        ----------
        x : Tensor, shape (B, 1, 28, 28), (B, 28, 28) or (B, 784)
        generator : torch.Generator, optional
            For the sample of ``z``.

        Returns
        -------
        Tensor, shape (B,)
        """
        x = self._images(x)
        z, kl = self.sample_latent(x, generator)
        return self.reconstruction_nll(x, z) + kl

    def architecture(self) -> dict[str, Any]:
        """The constructor's arguments, as stored in a checkpoint's ``config.json``."""
        return {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "activation": self.activation,
            "image_shape": [1, 28, 28],
        }

    # ------------------------------------------------------------------ plumbing
    def _reference(self) -> Tensor:
        return self.decoder[0].weight

    def _images(self, x: Tensor) -> Tensor:
        ref = self._reference()
        x = to_unit_float(x, ref.dtype)
        if x.dtype != ref.dtype or x.device != ref.device:
            raise TypeError(
                f"images are {x.dtype} on {x.device}, but the model is {ref.dtype} on "
                f"{ref.device}; convert with x.to(dtype={ref.dtype}, device='{ref.device}')"
            )
        return x

    def _points(self, z: Tensor) -> tuple[Tensor, bool]:
        z, single = batch_points(z, self.latent_dim)
        ref = self._reference()
        if z.dtype != ref.dtype or z.device != ref.device:
            raise TypeError(
                f"z is {z.dtype} on {z.device}, but the model is {ref.dtype} on {ref.device}; "
                f"convert with z.to(dtype={ref.dtype}, device='{ref.device}')"
            )
        return z, single


class BernoulliVAE(VAE):
    """The seed's VAE: Bernoulli likelihood on pixel intensities.

    Parameters
    ----------
    latent_dim : int, default 2
    hidden : int, default 512

    Examples
    --------
    >>> import torch
    >>> from pullback_geom.vae import BernoulliVAE
    >>> model = BernoulliVAE(latent_dim=2)
    >>> model.decode(torch.zeros(3, 2)).shape
    torch.Size([3, 1, 28, 28])
    >>> model.pullback_metric().metric_tensor(torch.zeros(3, 2)).shape
    torch.Size([3, 2, 2])
    """

    kind = "bernoulli"

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        return self.bernoulli_nll(x, z)

    metric_kinds = ("mean", "fisher-rao")

    def pullback_metric(self, kind: str | None = None, **kwargs: Any) -> PullbackMetric:
        """``PullbackMetric(self.decoder)`` (``kind="mean"``, the default): the pullback
        through the decoded mean; ``kind="fisher-rao"``: the Fisher–Rao pullback
        ``J^T diag(1/(mu(1-mu))) J`` (:func:`~pullback_geom.fisher_rao.fisher_rao_metric`).
        ``kwargs`` go to :class:`PullbackMetric`."""
        return super().pullback_metric(kind, **kwargs)


class GaussianVAE(VAE):
    """A Gaussian decoder whose standard deviation grows away from the data.

    Parameters
    ----------
    latent_dim : int, default 2
    hidden : int, default 512
    n_centres : int, default 64
        RBF centres of the std network.
    zeta : float, default 0.1
        Precision far from the data: there ``sigma`` tends to ``1/sqrt(zeta)``.
    """

    kind = "gaussian"

    def __init__(
        self,
        latent_dim: int = 2,
        hidden: int = 512,
        n_centres: int = 64,
        zeta: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__(latent_dim, hidden, activation)
        if isinstance(n_centres, bool) or not isinstance(n_centres, int) or n_centres < 1:
            raise ValueError(f"n_centres must be a positive integer; got {n_centres!r}")
        self.std = RBFStd(latent_dim, n_centres, IMAGE_SHAPE, zeta)

    def decode_std(self, z: Tensor) -> Tensor:
        """``sigma(z)``, the decoder's standard deviation per pixel.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, 1, 28, 28) or (1, 28, 28)
        """
        z, single = self._points(z)
        out = self.std(z)
        return out[0] if single else out

    def gaussian_nll(self, x: Tensor, z: Tensor) -> Tensor:
        """``-log N(x | mu(z), sigma(z)^2)`` summed over pixels, shape (B,), in nats.

        A density of continuous intensities: it can be negative.
        """
        mean = self.decoder(z).reshape(x.shape)
        beta = self.std.precision(z)
        return 0.5 * (_LOG_2PI - beta.log() + beta * (x - mean).square()).sum(-1)

    def reconstruction_nll(self, x: Tensor, z: Tensor) -> Tensor:
        return self.gaussian_nll(x, z)

    metric_kinds = ("uncertainty", "mean", "fisher-rao")

    def pullback_metric(self, kind: str | None = None, **kwargs: Any) -> PullbackMetric:
        """``PullbackMetric.gaussian(mean, std)``: ``G = J_mu^T J_mu + J_sigma^T J_sigma``
        (``kind="uncertainty"``, the default); ``"mean"`` and ``"fisher-rao"`` use the
        mean alone, as for :class:`BernoulliVAE`. ``kwargs`` go to :class:`PullbackMetric`."""
        return super().pullback_metric(kind, **kwargs)

    def _metric(self, kind: str, **kwargs: Any) -> PullbackMetric:
        if kind != "uncertainty":
            return super()._metric(kind, **kwargs)
        if not self.std.is_fitted:
            raise RuntimeError(
                "the Gaussian model's std network is not fitted yet, so it has no metric; "
                "finish training ('pullback-geom train --model gaussian ... --resume')"
            )
        return PullbackMetric.gaussian(self.decoder, self.std, **kwargs)

    def architecture(self) -> dict[str, Any]:
        k = self.std.centres.shape[0]
        return {**super().architecture(), "n_centres": k, "zeta": self.std.zeta}


class EnsembleDecoder(nn.Module):
    """``K`` seed decoders; ``forward`` is their mean image, :meth:`stacked` all of them.

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
        weights = torch.poisson(torch.ones_like(nll), generator=generator)
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


#: model name -> class
MODELS: dict[str, type[VAE]] = {
    "bernoulli": BernoulliVAE,
    "gaussian": GaussianVAE,
    "ensemble": EnsembleVAE,
}


def build_model(kind: str, architecture: dict[str, Any]) -> VAE:
    """A fresh, untrained model from its name and ``architecture`` dict.

    Raises
    ------
    ValueError
        Unknown ``kind``, or an architecture this package cannot build.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(MODELS)}")
    arch = dict(architecture)
    shape = arch.pop("image_shape", [1, 28, 28])
    if list(shape) != [1, 28, 28]:
        raise ValueError(f"only 28 x 28 single-channel images are supported; got {shape}")
    try:
        return MODELS[kind](**arch)
    except TypeError as err:
        raise ValueError(f"cannot build a {kind} model from {architecture}: {err}") from None


# ---------------------------------------------------------------------- checkpoints
def load(path: str | os.PathLike) -> VAE:
    """A trained model from a checkpoint written by ``pullback-geom train``.

    Parameters
    ----------
    path : path
        The ``--out`` folder, or its ``model.pt`` (``config.json`` must sit beside it).

    Returns
    -------
    BernoulliVAE, GaussianVAE or EnsembleVAE
        In eval mode, float32, on the CPU.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path``, or a file of it missing.
    ValueError
        A corrupt file, or weights that do not fit the architecture in ``config.json``;
        the message names the file. Files are read with ``torch.load(weights_only=True)``,
        so loading an untrusted checkpoint runs no code.
    """
    config, state = read_weights(path)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        model = build_model(config.get("model"), config.get("architecture") or {})
    except ValueError as err:
        raise ValueError(f"{folder / 'config.json'}: {err}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{folder / 'model.pt'} does not fit the architecture in {folder / 'config.json'} "
            f"({config.get('model')}, {config.get('architecture')}): {err}"
        ) from None
    return model.eval()


class Latents(NamedTuple):
    """Latent codes of a test set.

    Attributes
    ----------
    codes : Tensor, shape (N, d), float32
        Encoder means.
    labels : Tensor, shape (N,), int64
    """

    codes: Tensor
    labels: Tensor


def load_latents(path: str | os.PathLike) -> Latents:
    """The test-set latent codes and labels stored with a checkpoint (see :func:`load`)."""
    return Latents(*read_latents(path))


#: The bundled 2-D MNIST models (``pullback_geom/defaults/<name>``) and how each was
#: trained (``docs/models.md``).
BUNDLED: dict[str, str] = {
    "bernoulli": "--model bernoulli",
    "gaussian": "--model gaussian",
    "smooth": "--model bernoulli --activation silu",
}


def default_checkpoint(name: str = "bernoulli") -> Path:
    """The folder of a bundled checkpoint: ``"bernoulli"``, ``"gaussian"`` or ``"smooth"``
    (the Bernoulli model with SiLU hidden units, whose metric is smooth)."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled model {name!r}; choose one of {sorted(BUNDLED)}")
    folder = Path(str(resources.files("pullback_geom") / "defaults" / name))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled {name} checkpoint is missing from {folder}; regenerate it with "
            f"'pullback-geom train {BUNDLED[name]} --epochs 30 --latent-dim 2 --seed 0 "
            f"--data-dir ../shared/data --out pullback_geom/defaults/{name} --compact' "
            "(see docs/models.md)"
        )
    return folder


def load_default(name: str = "bernoulli") -> VAE:
    """The bundled 2-D model trained on MNIST: ``"bernoulli"``, ``"gaussian"`` or
    ``"smooth"`` (see :func:`default_checkpoint`).

    Its test-set codes: ``load_latents(default_checkpoint(name))``.
    """
    return load(default_checkpoint(name))
