"""The checkpoint folder: atomic writes and safe, checked reads.

A checkpoint is a folder of four files, each written atomically (a temporary file in the
same folder, flushed and fsynced, then ``os.replace``):

``model.pt``
    The weights: a flat ``{name: Tensor}`` state dict saved with ``torch.save``, read with
    ``torch.load(weights_only=True)``, so an untrusted file cannot run code.
``latents.pt``
    ``{"codes": (N, d) float tensor, "labels": (N,) integer tensor}``: the encoder means of
    the test set and their labels.
``training.pt``
    What ``--resume`` needs: float32 weights, optimizer state, RNG state and progress.
    Compact checkpoints (the bundled defaults) leave it out.
``config.json``
    Written last: the model's architecture, dataset, seed, versions, metrics and the
    SHA-256 of the other files. A run interrupted between two writes leaves files whose
    hashes do not match ``config.json``; reading them then fails with a clear error, and
    ``--resume`` (which only reads ``training.pt``) rewrites them consistently.

This module knows files, not models: :mod:`pullback_geom.vae` builds models from what it
reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CONFIG",
    "FORMAT",
    "FORMAT_VERSION",
    "LATENTS",
    "STATE",
    "WEIGHTS",
    "atomic_write_bytes",
    "checkpoint_folder",
    "read_config",
    "read_latents",
    "read_training_state",
    "read_weights",
    "save_checkpoint",
]

FORMAT = "pullback_geom.vae"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, LATENTS, STATE = "model.pt", "config.json", "latents.pt", "training.pt"


# ---------------------------------------------------------------------------- writing
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(
    folder: str | os.PathLike,
    *,
    state_dict: dict[str, Tensor],
    config: dict[str, Any],
    latents: tuple[Tensor, Tensor] | None = None,
    training_state: dict[str, Any] | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a checkpoint folder; ``config.json`` last.

    Parameters
    ----------
    folder : path
    state_dict : dict of str to Tensor
        The model's weights and buffers.
    config : dict
        JSON-serialisable; ``format``, ``format_version``, ``weights_dtype`` and ``files``
        (SHA-256 of each file) are added.
    latents : (codes, labels), optional
        ``codes`` of shape (N, d), ``labels`` of shape (N,).
    training_state : dict, optional
        Saved as ``training.pt`` (tensors, numbers, strings, lists and dicts only). When
        omitted, a ``training.pt`` already in the folder is removed.
    weights_dtype : torch.dtype, default float32
        Floating-point weights are stored in this dtype (``float16`` halves the size) and
        read back as float32.

    Returns
    -------
    Path
        The folder.
    """
    folder = Path(folder)
    files: dict[str, dict[str, str]] = {}
    if training_state is not None:
        data = _torch_bytes(training_state)
        atomic_write_bytes(folder / STATE, data)
        files[STATE] = {"sha256": hashlib.sha256(data).hexdigest()}
    if latents is not None:
        codes, labels = latents
        labels = labels.detach().cpu().to(torch.int64)
        if labels.numel() and 0 <= int(labels.min()) and int(labels.max()) <= 255:
            labels = labels.to(torch.uint8)  # class labels: a byte each
        data = _torch_bytes({"codes": codes.detach().cpu(), "labels": labels})
        atomic_write_bytes(folder / LATENTS, data)
        files[LATENTS] = {"sha256": hashlib.sha256(data).hexdigest()}
    weights = {
        k: (v.detach().cpu().to(weights_dtype) if v.is_floating_point() else v.detach().cpu())
        for k, v in state_dict.items()
    }
    data = _torch_bytes(weights)
    atomic_write_bytes(folder / WEIGHTS, data)
    files[WEIGHTS] = {"sha256": hashlib.sha256(data).hexdigest()}
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **config,
        "weights_dtype": str(weights_dtype).removeprefix("torch."),
        "files": files,
    }
    text = json.dumps(full, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(folder / CONFIG, text.encode())
    if training_state is None and (folder / STATE).exists():
        os.remove(folder / STATE)
    return folder


# ---------------------------------------------------------------------------- reading
def checkpoint_folder(path: str | os.PathLike) -> Path:
    """The checkpoint folder of ``path``: the folder itself, or the folder of one of its files.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or the folder holds no ``config.json``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: no such file or folder. Pass the --out folder of "
            f"'pullback-geom train' or its {WEIGHTS}"
        )
    folder = path if path.is_dir() else path.parent
    if not path.is_dir() and not (folder / CONFIG).is_file():
        raise FileNotFoundError(
            f"{path} is not part of a checkpoint: {folder} holds no {CONFIG}. Pass the --out "
            f"folder of 'pullback-geom train' or its {WEIGHTS}"
        )
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(
            f"{folder / CONFIG} is missing: {folder} is not a checkpoint folder written by "
            f"'pullback-geom train' (it needs {CONFIG} beside {WEIGHTS})"
        )
    return folder


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a checkpoint (folder or any file in it).

    Raises
    ------
    FileNotFoundError
        No checkpoint there.
    ValueError
        Not JSON, or not a config of this package's format.
    """
    file = checkpoint_folder(path) / CONFIG
    try:
        config = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); the checkpoint is corrupt") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(
            f'{file} is not a pullback_geom VAE config (expected "format": "{FORMAT}")'
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{file} has format_version {config.get('format_version')!r}; this version of "
            f"pullback_geom reads version {FORMAT_VERSION}"
        )
    return config


def _safe_load(file: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a clear error."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing ({what})")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and unpickler-policy errors all mean "corrupt"
        # torch's own message may suggest weights_only=False: bad advice for an untrusted
        # file, so only the reader's plain diagnostics are passed on.
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        detail = "" if "weights_only" in first else f": {first[:200]}"
        raise ValueError(
            f"{file} is not a readable {what} ({type(err).__name__}{detail}); the file is "
            "corrupt, truncated or not written by pullback_geom. Retrain with "
            "'pullback-geom train' (--resume continues an interrupted run)"
        ) from None


def _check_hash(folder: Path, name: str, config: dict[str, Any]) -> None:
    expected = (config.get("files") or {}).get(name, {}).get("sha256")
    if expected is None:
        return
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    if digest != expected:
        raise ValueError(
            f"{folder / name} does not match {folder / CONFIG} (SHA-256 differs): the files "
            "come from different runs or a write was interrupted. Run 'pullback-geom train "
            "--resume' on this folder to rewrite them, or copy the folder again"
        )


def read_weights(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read ``config.json`` and ``model.pt`` of a checkpoint; weights come back as float32.

    Returns
    -------
    config : dict
    state_dict : dict of str to Tensor

    Raises
    ------
    FileNotFoundError, ValueError
        Missing, corrupt or mismatched files; the message names the file.
    """
    folder = checkpoint_folder(path)
    config = read_config(folder)
    file = folder / WEIGHTS
    state = _safe_load(file, "weights file")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{file} does not hold a state dict (a mapping of names to tensors)")
    _check_hash(folder, WEIGHTS, config)
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def read_latents(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read ``latents.pt`` of a checkpoint.

    Returns
    -------
    codes : Tensor, shape (N, d), float32
    labels : Tensor, shape (N,), int64
    """
    folder = checkpoint_folder(path)
    config = read_config(folder)
    file = folder / LATENTS
    data = _safe_load(file, "latents file")
    codes = data.get("codes") if isinstance(data, dict) else None
    labels = data.get("labels") if isinstance(data, dict) else None
    if not (
        isinstance(codes, Tensor)
        and isinstance(labels, Tensor)
        and codes.dim() == 2
        and labels.shape == codes.shape[:1]
    ):
        raise ValueError(f"{file} does not hold {{'codes': (N, d) tensor, 'labels': (N,) tensor}}")
    _check_hash(folder, LATENTS, config)
    return codes.float(), labels.to(torch.int64)


def read_training_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``training.pt`` of a folder, or ``None`` if it has none."""
    file = Path(folder) / STATE
    if not file.exists():
        return None
    state = _safe_load(file, "training state")
    if not isinstance(state, dict) or not {"model", "optimizer", "progress"} <= state.keys():
        raise ValueError(f"{file} is not a training state written by 'pullback-geom train'")
    return state
