"""Helpers shared by the subcommands: error lines, aligned rows, shared options."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_orbit_digit_option", "checkpoint_folder", "error", "print_rows"]


def error(command: str, err: BaseException) -> int:
    """Print ``pullback-geom <command>: error: <err>`` to stderr; the exit status, 2."""
    print(f"pullback-geom {command}: error: {err}", file=sys.stderr)
    return 2


def checkpoint_folder(name: str):
    """The folder of ``--checkpoint``: a bundled model's name or a path that exists.

    Raises
    ------
    FileNotFoundError
        Neither, with what to give instead.
    """
    from pathlib import Path

    from .. import vae

    folder = vae.default_checkpoint(name) if name in vae.BUNDLED else Path(name)
    if not folder.exists():
        raise FileNotFoundError(
            f"no checkpoint at {name}: give a folder written by 'pullback-geom train' "
            "(model.pt, config.json, latents.pt) or one of "
            + ", ".join(f"'{k}'" for k in vae.BUNDLED)
            + " for the bundled models"
        )
    return folder


def print_rows(rows: dict, digits: int = 3) -> None:
    """``key  value`` lines, keys aligned, floats to ``digits`` significant digits."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")


def add_orbit_digit_option(parser: argparse.ArgumentParser) -> None:
    """``--orbit-digit``, shared by ``train`` and ``identifiability``."""
    parser.add_argument(
        "--orbit-digit",
        type=int,
        default=1,
        help="with --dataset digit-orbit: which of the bundled MNIST test images is rotated "
        "and scaled (default: %(default)s, a 2)",
    )
