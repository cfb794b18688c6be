"""Checkpoints as models: :func:`load`, :func:`load_latents` and the bundled defaults.

Checkpoints come from ``pullback-geom train`` (:mod:`pullback_geom.training`); the files
themselves (atomic writes, safe reads, hashes) are :mod:`~pullback_geom.vae.checkpoint`'s.
The package ships trained 2-D MNIST models (:data:`BUNDLED`, :func:`load_default`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from .checkpoint import read_latents, read_weights
from .conv import ConvVAE
from .ensemble import EnsembleVAE
from .models import VAE, BernoulliVAE, GaussianVAE

#: model name -> class
MODELS: dict[str, type[VAE]] = {
    "bernoulli": BernoulliVAE,
    "gaussian": GaussianVAE,
    "ensemble": EnsembleVAE,
}


#: ``architecture["arch"]`` values: the write-up's MLP (the default) and the conv VAEs
ARCHS = ("mlp", "conv")


def build_model(kind: str, architecture: dict[str, Any]) -> VAE:
    """A fresh, untrained model from its name and ``architecture`` dict.

    ``architecture["arch"]`` picks the networks: ``"mlp"`` (the default, also for
    checkpoints written before the key existed) or ``"conv"`` (:class:`ConvVAE`, Bernoulli
    models only).

    Raises
    ------
    ValueError
        Unknown ``kind``, or an architecture this package cannot build.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(MODELS)}")
    arch = dict(architecture)
    name = arch.pop("arch", "mlp")
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {list(ARCHS)}")
    if name == "conv":
        if kind != "bernoulli":
            raise ValueError(f"conv VAEs are Bernoulli models; got model {kind!r}")
        try:
            return ConvVAE(**arch)
        except TypeError as err:
            raise ValueError(f"cannot build a conv model from {architecture}: {err}") from None
    shape = arch.pop("image_shape", [1, 28, 28])
    if list(shape) != [1, 28, 28]:
        raise ValueError(
            f"the MLP VAEs take 28 x 28 single-channel images; got {shape} (conv VAEs, "
            "'arch': 'conv', take others)"
        )
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
    BernoulliVAE, GaussianVAE, EnsembleVAE or ConvVAE
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
            f"--data-dir /path/to/data --out pullback_geom/defaults/{name} --compact' "
            "(see docs/models.md)"
        )
    return folder


def load_default(name: str = "bernoulli") -> VAE:
    """The bundled 2-D model trained on MNIST: ``"bernoulli"``, ``"gaussian"`` or
    ``"smooth"`` (see :func:`default_checkpoint`).

    Its test-set codes: ``load_latents(default_checkpoint(name))``.
    """
    return load(default_checkpoint(name))
