"""VAE models of 28 x 28 images: the write-up's Bernoulli VAE, a Gaussian VAE whose
uncertainty grows away from the data and a decoder ensemble; loading checkpoints and the
bundled defaults.

All models share the write-up's architecture: an encoder 784 -> 512 (ReLU) -> mean and log
standard deviation of a ``d``-dimensional latent, and a decoder d -> 512 (ReLU) -> 784
(sigmoid), an ``nn.Sequential`` so that :class:`~pullback_geom.PullbackMetric` uses its
fast chain-rule Jacobian.

- :class:`BernoulliVAE`: pixel intensities under a Bernoulli likelihood with the
  decoder's output as mean. Its metric is the pullback through the mean.
- :class:`GaussianVAE`: the same mean plus ``sigma(z)`` from an RBF precision network
  (:class:`~pullback_geom.vae.rbf.RBFStd`, "Latent Space Oddity"), so that
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
Bernoulli mean (``"fisher-rao"``, :mod:`pullback_geom.vae.fisher_rao`); without ``kind`` each
model gives its own metric, as before.

Checkpoints come from ``pullback-geom train`` (:mod:`pullback_geom.training`); read
them with :func:`~pullback_geom.vae.load` and :func:`~pullback_geom.vae.load_latents`
(:mod:`~pullback_geom.vae.io`). The package ships trained 2-D models
(:func:`~pullback_geom.vae.load_default`), regenerated from the repository root with::

    pullback-geom train --model bernoulli --epochs 30 --latent-dim 2 --seed 0 \\
        --data-dir /path/to/data --out pullback_geom/defaults/bernoulli --compact --threads 1
    pullback-geom train --model gaussian --epochs 30 --latent-dim 2 --seed 0 \\
        --data-dir /path/to/data --out pullback_geom/defaults/gaussian --compact --threads 1
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._core.checks import batch_points
from ..data.datasets import to_unit_float
from ..metric import PullbackMetric
from .fisher_rao import fisher_rao_metric
from .rbf import RBFStd

IMAGE_SHAPE = (1, 28, 28)
_PIXELS = 784
_LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    """The write-up's encoder: ``x (B, 784) -> 512 (ReLU) -> (mean, log_std)``, each (B, d).

    The write-up writes ``sigma = exp(linear3(x))`` and samples ``mu + sigma * eps``: the
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


#: Hidden activations of the decoders, by name (``--activation``): the write-up's ReLU, and
#: smooth ones under which the metric is smooth and the geodesic ODE well-posed.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def check_activation(activation: str) -> str:
    """``activation`` if it names one of :data:`ACTIVATIONS`, else a ValueError."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {activation!r}")
    return activation


def mean_decoder(latent_dim: int, hidden: int = 512, activation: str = "relu") -> nn.Sequential:
    """The write-up's decoder, ``(B, d) -> (B, 1, 28, 28)`` in (0, 1), with the hidden
    ``activation`` (the write-up's is ``"relu"``)."""
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        ACTIVATIONS[check_activation(activation)](),
        nn.Linear(hidden, _PIXELS),
        nn.Sigmoid(),
        nn.Unflatten(1, IMAGE_SHAPE),
    )


class VAE(nn.Module):
    """What both models share: the write-up's encoder and mean decoder.

    Parameters
    ----------
    latent_dim : int, default 2
    hidden : int, default 512
    activation : {"relu", "elu", "softplus", "silu", "tanh", "gelu"}, default "relu"
        The decoder's hidden activation (the write-up's ReLU; the encoder keeps ReLU).
    """

    kind: ClassVar[str] = ""
    #: ``(C, H, W)`` of the images the model encodes and decodes
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
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
            (:func:`~pullback_geom.vae.fisher_rao.fisher_rao_metric`); ``"uncertainty"``
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
        # Drawn where the generator lives (the CPU's, in training on any device), so that a
        # run draws the same noise on the CPU and on CUDA.
        where = mean.device if generator is None else generator.device
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=where)
        eps = eps.to(mean.device)
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
        x = to_unit_float(x, ref.dtype, self.image_shape)
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
    """The write-up's VAE: Bernoulli likelihood on pixel intensities.

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
        ``J^T diag(1/(mu(1-mu))) J`` (:func:`~pullback_geom.vae.fisher_rao.fisher_rao_metric`).
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
    gate_points : int, default 0
        Training codes of the std network's data gate (:class:`~pullback_geom.vae.rbf.RBFStd`);
        0 for none (models trained before the gate existed).
    """

    kind = "gaussian"

    def __init__(
        self,
        latent_dim: int = 2,
        hidden: int = 512,
        n_centres: int = 64,
        zeta: float = 0.1,
        activation: str = "relu",
        gate_points: int = 0,
    ) -> None:
        super().__init__(latent_dim, hidden, activation)
        if isinstance(n_centres, bool) or not isinstance(n_centres, int) or n_centres < 1:
            raise ValueError(f"n_centres must be a positive integer; got {n_centres!r}")
        self.std = RBFStd(latent_dim, n_centres, IMAGE_SHAPE, zeta, gate_points)

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
