"""Training the VAEs of :mod:`pullback_geom.vae`: reproducible, resumable, atomic.

The whole training set sits in memory as one float tensor and is batched by indexing
with a seeded permutation: no ``DataLoader``, no worker processes. One
``torch.Generator`` seeded with ``seed`` draws every permutation and every latent
sample, and the weights are initialised under ``torch.manual_seed(seed)``, so the same
seed on the same machine gives identical weights. After every epoch the run is saved
(:mod:`pullback_geom.vae.checkpoint`) with the optimizer and generator states, and
``resume=True`` continues from there exactly as if never interrupted.

The Gaussian model trains in two stages: ``epochs`` of the Bernoulli VAE's objective
for the encoder and the mean, then the RBF std network (k-means centres of the training
codes, bandwidths from the cluster spreads, weights initialised from each cluster's
residual variance) for ``rbf_epochs`` maximising the Gaussian log-likelihood with
everything else fixed.

The public names live here; the modules behind them are private, one concept each:
``_config`` (:class:`TrainConfig`, :class:`TrainResult`), ``_evaluation``
(:func:`encode_images`, :func:`evaluate`), ``_stages`` (one epoch of each stage, the
RBF fit), ``_saved`` (what ``config.json`` and ``training.pt`` hold, the resume check)
and ``_loop`` (:func:`train_vae`).
"""

from __future__ import annotations

from ._config import TrainConfig, TrainResult
from ._evaluation import encode_images, evaluate
from ._loop import train_vae

__all__ = ["TrainConfig", "TrainResult", "encode_images", "evaluate", "train_vae"]
