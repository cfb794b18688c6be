"""Helpers shared by the subcommands: error lines, aligned rows, output folders, devices,
checkpoints."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = [
    "add_arch_options",
    "add_orbit_digit_option",
    "arch_settings",
    "checkpoint_folder",
    "describe_os_error",
    "error",
    "prepare_out",
    "print_rows",
    "resolve_device",
]


def error(command: str, err: BaseException | str) -> int:
    """Print ``pullback-geom <command>: error: <err>`` to stderr; the exit status, 2."""
    print(f"pullback-geom {command}: error: {err}", file=sys.stderr)
    return 2


def describe_os_error(err: OSError) -> str:
    """``<path>: <reason>`` for an ``OSError`` (its ``str`` starts with ``[Errno 13]``)."""
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    reason = err.strerror or str(err)
    if not paths:
        return reason
    return f"{' -> '.join(map(str, paths))}: {reason}"


def prepare_out(path: str | os.PathLike, flag: str = "--out", *, parent_only: bool = False):
    """Create the output folder ``path`` (or only its parent) and check it is writable.

    Called before any work, so that a bad ``--out`` fails in a second, not after the
    computation.

    Raises
    ------
    ValueError
        The folder cannot be created or written, naming ``flag``, the path and why.
    """
    import tempfile

    path = Path(path)
    folder = path.parent if parent_only else path
    for above in (path, *path.parents):
        if above.exists():
            if not above.is_dir():
                what = f"{path}" if above == path else f"{path}: {above}"
                raise ValueError(f"{flag} {what} is a file, not a folder")
            break
    new = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _created.extend(new)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot write there ({describe_os_error(err)})") from None
    return path


#: folders :func:`prepare_out` created, deepest first, for :func:`settle_folders`
_created: list[Path] = []


def settle_folders(failed: bool) -> None:
    """After a command: if it ``failed``, remove the folders :func:`prepare_out` created
    that are still empty, so that it leaves no empty output folder behind."""
    while _created:
        folder = _created.pop(0)
        if failed:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                pass


def resolve_device(name: str):
    """The ``torch.device`` of ``--device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``).

    Raises
    ------
    ValueError
        A CUDA device this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use --device cpu, or auto to take CUDA when present"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0"
            )
    return device


def checkpoint_folder(name: str) -> Path:
    """The path of ``--checkpoint``: a bundled model's folder for its name, else the path.

    The argument's type (:func:`pullback_geom.cli.options.checkpoint`) has checked that
    it names a bundled model or a path that exists; reading the checkpoint names any file
    that is missing or corrupt.
    """
    from .. import vae

    return vae.default_checkpoint(name) if name in vae.BUNDLED else Path(name)


def print_rows(rows: dict, digits: int = 3) -> None:
    """``key  value`` lines, keys aligned, floats to ``digits`` significant digits."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")


def add_orbit_digit_option(parser: argparse.ArgumentParser) -> None:
    """``--orbit-digit``, shared by ``train`` and ``identifiability``."""
    from .options import at_least

    parser.add_argument(
        "--orbit-digit",
        type=at_least(0),
        default=1,
        help="with --dataset digit-orbit: which of the bundled MNIST test images is rotated "
        "and scaled (default: %(default)s, a 2)",
    )


def add_arch_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--arch``, ``--conv-preset``, ``--conv-width`` and ``--conv-norm``, shared by
    ``train`` and ``identifiability`` (whose help says ``with --seeds:``: ``prefix``)."""
    from .options import ARCH_NAMES, CONV_NORM_NAMES, CONV_PRESET_NAMES, at_least

    parser.add_argument(
        "--arch",
        choices=ARCH_NAMES,
        default="mlp",
        help=f"{prefix}the networks: the write-up's MLP (28 x 28 images), or a convolutional "
        "VAE (Bernoulli; any dataset, mnist-64-rgb included) (default: %(default)s)",
    )
    parser.add_argument(
        "--conv-preset",
        choices=CONV_PRESET_NAMES,
        default=None,
        help=f"{prefix}with --arch conv, the decoder: default (Linear, then stride-2 "
        "ConvTranspose layers with BatchNorm and GELU), georce-mnist8 or georce-celeba32 "
        "(the MNIST and CelebA decoders of GEORCE's repository; the latter 64 x 64 only) "
        "(default: default)",
    )
    parser.add_argument(
        "--conv-width",
        type=at_least(1),
        default=None,
        help=f"{prefix}with --arch conv, the first ConvTranspose layer's channels; the others "
        "keep the preset's ratios (default: the preset's, 64)",
    )
    parser.add_argument(
        "--conv-norm",
        choices=CONV_NORM_NAMES,
        default=None,
        help=f"{prefix}with --arch conv, BatchNorm2d after the hidden convolutions or none "
        "(default: the preset's; none for georce-mnist8)",
    )


def arch_settings(args: argparse.Namespace) -> dict:
    """The :class:`~pullback_geom.training.TrainConfig` fields of :func:`add_arch_options`
    and of ``--dataset`` (the image shape)."""
    from ..data.datasets import image_shape

    return {
        "arch": args.arch,
        "image_shape": image_shape(args.dataset),
        "conv_preset": args.conv_preset,
        "conv_width": args.conv_width,
        "conv_norm": args.conv_norm,
    }
