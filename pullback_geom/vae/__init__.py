"""VAE models of 28 x 28 images and their checkpoints.

- :mod:`~pullback_geom.vae.models`: the write-up's Bernoulli VAE and the Gaussian VAE whose
  RBF ``sigma(z)`` grows away from the data (:mod:`~pullback_geom.vae.rbf`);
- :mod:`~pullback_geom.vae.ensemble`: one encoder and ``K`` decoders;
- :mod:`~pullback_geom.vae.fisher_rao`: the Fisher–Rao pullback of a Bernoulli decoder;
- :mod:`~pullback_geom.vae.io`: :func:`load`, :func:`load_latents`, the bundled models
  (:func:`load_default`); :mod:`~pullback_geom.vae.checkpoint` knows the files.
"""

from .ensemble import EnsembleDecoder, EnsembleVAE
from .io import (
    BUNDLED,
    MODELS,
    Latents,
    build_model,
    default_checkpoint,
    load,
    load_default,
    load_latents,
)
from .models import (
    ACTIVATIONS,
    IMAGE_SHAPE,
    VAE,
    BernoulliVAE,
    Encoder,
    GaussianVAE,
    check_activation,
    mean_decoder,
)

__all__ = [
    "ACTIVATIONS",
    "BUNDLED",
    "IMAGE_SHAPE",
    "MODELS",
    "VAE",
    "BernoulliVAE",
    "EnsembleDecoder",
    "EnsembleVAE",
    "Encoder",
    "GaussianVAE",
    "Latents",
    "build_model",
    "check_activation",
    "default_checkpoint",
    "load",
    "load_default",
    "load_latents",
    "mean_decoder",
]
