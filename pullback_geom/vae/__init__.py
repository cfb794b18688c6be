"""VAE models of images and their checkpoints: the write-up's MLPs of 28 x 28 MNIST
images, and convolutional ones of 28 x 28 or 64 x 64, 1- or 3-channel images.

- :mod:`~pullback_geom.vae.models`: the write-up's Bernoulli VAE and the Gaussian VAE whose
  RBF ``sigma(z)`` grows away from the data (:mod:`~pullback_geom.vae.rbf`);
- :mod:`~pullback_geom.vae.conv`: convolutional Bernoulli VAEs of 28 x 28 and 64 x 64,
  1- or 3-channel images, their decoders named in :mod:`~pullback_geom.vae.conv_presets`;
- :mod:`~pullback_geom.vae.ensemble`: one encoder and ``K`` decoders;
- :mod:`~pullback_geom.vae.fisher_rao`: the Fisher–Rao pullback of a Bernoulli decoder;
- :mod:`~pullback_geom.vae.io`: :func:`load`, :func:`load_latents`, the bundled models
  (:func:`load_default`); :mod:`~pullback_geom.vae.checkpoint` knows the files.
"""

from .conv import ConvEncoder, ConvVAE
from .conv_presets import CONV_PRESETS, conv_decoder
from .ensemble import EnsembleDecoder, EnsembleVAE
from .io import (
    ARCHS,
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
    "ARCHS",
    "BUNDLED",
    "CONV_PRESETS",
    "IMAGE_SHAPE",
    "MODELS",
    "VAE",
    "BernoulliVAE",
    "ConvEncoder",
    "ConvVAE",
    "EnsembleDecoder",
    "EnsembleVAE",
    "Encoder",
    "GaussianVAE",
    "Latents",
    "build_model",
    "check_activation",
    "conv_decoder",
    "default_checkpoint",
    "load",
    "load_default",
    "load_latents",
    "mean_decoder",
]
