r"""Fisher–Rao pullback metric of a Bernoulli decoder.

A decoder with Bernoulli means ``mu(z)`` in (0, 1) per pixel induces on latent space the
pullback of the Fisher information metric of the Bernoulli family (Arvanitidis, Hauberg
and Schölkopf, "Pulling back information geometry", AISTATS 2022):

.. math:: G(z) = J_\mu(z)^T \operatorname{diag}\big(1 / (\mu (1 - \mu))\big) J_\mu(z),

which is the Euclidean pullback through ``z -> 2 arcsin(sqrt(mu(z)))``: the Bernoulli
family is isometric to a quarter circle of radius 2. Written naively this map has the
derivative ``1 / sqrt(mu (1 - mu))``, which is infinite where a float32 sigmoid rounds to
exactly 0 or 1 (logits beyond ~17). On the logits ``l`` (``mu = sigmoid(l)``) the same map
is

.. math:: 2 \arcsin\sqrt{\sigma(l)} = \pi/2 + 2 \arctan(\tanh(l/4)),

whose derivative ``1 / (2 cosh(l/2))`` is finite everywhere, so the metric below is
computed from the decoder's logits and never overflows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..metric import PullbackMetric

__all__ = [
    "BernoulliFisherRaoEmbedding",
    "fisher_rao_decoder",
    "fisher_rao_metric",
    "logit_decoder",
]


class BernoulliFisherRaoEmbedding(nn.Module):
    r"""Element-wise ``l -> pi/2 + 2 atan(tanh(l/4)) = 2 arcsin(sqrt(sigmoid(l)))``.

    Maps a Bernoulli logit to the Fisher–Rao isometric embedding of its mean, in
    ``(0, pi)``; stable for any finite logit.
    """

    def forward(self, logits: Tensor) -> Tensor:
        """``logits`` of any shape -> embedding of the same shape."""
        return math.pi / 2 + 2 * torch.atan(torch.tanh(logits / 4))


def logit_decoder(decoder: nn.Sequential) -> nn.Sequential:
    """The part of a sigmoid-output ``nn.Sequential`` decoder that computes the logits.

    Parameters
    ----------
    decoder : nn.Sequential
        Ends with ``nn.Sigmoid`` followed by nothing but reshapes (``nn.Unflatten``,
        ``nn.Flatten``, ``nn.Identity``), like the write-up's decoder
        ``Linear, ReLU, Linear, Sigmoid, Unflatten``.

    Returns
    -------
    nn.Sequential
        The layers before the sigmoid (sharing their parameters with ``decoder``), then
        the same trailing reshapes: ``(B, d) -> logits``.

    Raises
    ------
    ValueError
        ``decoder`` has no final sigmoid.
    """
    layers = list(decoder) if isinstance(decoder, nn.Sequential) else []
    reshapes = (nn.Unflatten, nn.Flatten, nn.Identity)
    tail = len(layers)
    while tail > 0 and isinstance(layers[tail - 1], reshapes):
        tail -= 1
    if tail == 0 or not isinstance(layers[tail - 1], nn.Sigmoid):
        raise ValueError(
            "the Fisher-Rao metric needs a Bernoulli decoder given as an nn.Sequential "
            "ending in nn.Sigmoid (then optional reshapes); pass the logit map to "
            f"fisher_rao_decoder instead. Got {type(decoder).__name__}"
        )
    return nn.Sequential(*layers[: tail - 1], *layers[tail:])


def fisher_rao_decoder(logits: nn.Module) -> nn.Sequential:
    """The Fisher–Rao embedding ``z -> 2 arcsin(sqrt(sigmoid(logits(z))))``.

    Parameters
    ----------
    logits : nn.Module
        Maps latent points ``(B, d)`` to Bernoulli logits ``(B, ...)``.

    Returns
    -------
    nn.Sequential
        ``(B, d) -> (B, ...)``, values in ``(0, pi)``.
    """
    return nn.Sequential(logits, BernoulliFisherRaoEmbedding())


def fisher_rao_metric(
    decoder: nn.Module, *, from_logits: bool = False, **kwargs: Any
) -> PullbackMetric:
    r"""The Fisher–Rao pullback metric ``J^T diag(1/(mu(1-mu))) J`` of a Bernoulli decoder.

    Parameters
    ----------
    decoder : nn.Module
        The Bernoulli means as an ``nn.Sequential`` ending in ``nn.Sigmoid`` (then
        optional reshapes), e.g. ``BernoulliVAE.decoder``; or, with
        ``from_logits=True``, any module mapping ``(B, d)`` to logits.
    from_logits : bool, default False
    **kwargs
        Passed to :class:`~pullback_geom.PullbackMetric` (``ridge``, ``chunk_size``, ...).

    Returns
    -------
    PullbackMetric
        ``metric_tensor(z)`` of shape ``(B, d, d)``; finite even where the sigmoid
        saturates. Its Jacobians use forward mode (the chain-rule fast path does not know
        the embedding's activation).

    Examples
    --------
    >>> import torch
    >>> from pullback_geom.vae import BernoulliVAE
    >>> metric = fisher_rao_metric(BernoulliVAE(latent_dim=2).decoder)
    >>> metric.metric_tensor(torch.zeros(3, 2)).shape
    torch.Size([3, 2, 2])
    """
    logits = decoder if from_logits else logit_decoder(decoder)
    return PullbackMetric(fisher_rao_decoder(logits), **kwargs)
