"""Argument types and options shared by every subcommand.

Each ``type=`` validator here refuses a bad value at parse time, so argparse reports it as
``pullback-geom <command>: error: argument --flag: ...`` with exit status 2, before any
work starts. Nothing here imports torch: building the parser (``--help``) stays fast.

Every option that takes several values takes them comma-separated in one word
(``--methods lm,georce``, ``--checkpoints a,b,c``, ``--format png,pdf``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

__all__ = [
    "ACTIVATION_NAMES",
    "ARCH_NAMES",
    "BUNDLED_NAMES",
    "CONV_NORM_NAMES",
    "CONV_PRESET_NAMES",
    "DATA_ENV_VAR",
    "DATASET_CHOICES",
    "ENERGY_SOLVERS",
    "COMPARE_METHOD_CHOICES",
    "ROUTE_CHOICES",
    "RegistryNames",
    "FIGURE_FORMATS",
    "IDENTIFIABILITY_METRIC_NAMES",
    "add_common_options",
    "add_format_option",
    "at_least",
    "checkpoint",
    "comma_list",
    "device",
    "fraction",
    "positive_float",
    "nonnegative_float",
]

#: Figure formats matplotlib writes without extra dependencies.
FIGURE_FORMATS = ("png", "pdf", "svg")

# The choices of the options, spelled out here because importing the registries they
# mirror imports torch; tests/test_cli_options.py checks each against its registry.
#: :data:`pullback_geom.vae.BUNDLED`
BUNDLED_NAMES = ("bernoulli", "gaussian", "smooth")
#: :data:`pullback_geom.experiments.identifiability.experiment.METRICS`
IDENTIFIABILITY_METRIC_NAMES = (
    "mean", "uncertainty", "fisher-rao", "ensemble", "disagreement", "ensemble-energy",
)  # fmt: skip
#: :data:`pullback_geom.data.datasets.DATASET_NAMES`
DATASET_CHOICES = ("digit-orbit", "fashion-mnist", "mnist", "mnist-64-rgb")
#: :data:`pullback_geom.data.datasets.ENV_VAR`
DATA_ENV_VAR = "PULLBACK_GEOM_DATA"
#: :data:`pullback_geom.vae.ACTIVATIONS`
ACTIVATION_NAMES = ("relu", "elu", "softplus", "silu", "tanh", "gelu")
#: :data:`pullback_geom.vae.ARCHS`
ARCH_NAMES = ("mlp", "conv")
#: :data:`pullback_geom.vae.CONV_PRESETS`
CONV_PRESET_NAMES = ("default", "georce-mnist8", "georce-celeba32")
#: :data:`pullback_geom.vae.conv_presets.NORMS`
CONV_NORM_NAMES = ("batch", "none")


def at_least(low: int) -> Callable[[str], int]:
    """An ``int`` type that refuses values below ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < low:
            what = {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")
            raise argparse.ArgumentTypeError(f"must be {what}; got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite ``float`` > 0."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value:g}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite ``float`` >= 0."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value:g}")
    return value


def fraction(text: str) -> float:
    """A ``float`` strictly between 0 and 1."""
    value = _finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1; got {value:g}")
    return value


class RegistryNames(Sequence[str]):
    """The method names of a registry, imported at first use (not at ``--help``, which
    must not import torch): the one list of names stays the registry.

    Parameters
    ----------
    module, attribute : str
        Where the registry lives, e.g. ``"pullback_geom.geodesics.registry"``,
        ``"BOUNDARY_VALUE"``.
    keep : callable, optional
        ``(name, entry) -> bool``: the entries offered.
    first : str, optional
        A name offered before the registry's (``"auto"``).
    """

    def __init__(self, module: str, attribute: str, keep=None, first: str | None = None) -> None:
        self._where, self._keep, self._first, self._names = (module, attribute), keep, first, None

    def _load(self) -> list[str]:
        if self._names is None:
            import importlib

            registry = getattr(importlib.import_module(self._where[0]), self._where[1])
            keep = self._keep or (lambda name, entry: True)
            self._names = [name for name, entry in registry.items() if keep(name, entry)]
            if self._first is not None:
                self._names.insert(0, self._first)
        return self._names

    def __getitem__(self, i):
        return self._load()[i]

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, name) -> bool:
        return name in self._load()


#: The energy methods of :data:`pullback_geom.geodesics.BOUNDARY_VALUE` (``report --solver``).
ENERGY_SOLVERS = RegistryNames(
    "pullback_geom.geodesics.registry",
    "BOUNDARY_VALUE",
    keep=lambda name, solver: "init_curve" in solver.options and "n_points" in solver.options,
)
#: ``"auto"`` and :data:`pullback_geom.geodesics.PAIRWISE_ROUTES` (``distances --route``).
ROUTE_CHOICES = RegistryNames("pullback_geom.geodesics.registry", "PAIRWISE_ROUTES", first="auto")
#: :data:`pullback_geom.experiments.compare.COMPARE_METHODS` (``compare --methods``).
COMPARE_METHOD_CHOICES = RegistryNames("pullback_geom.experiments.compare", "COMPARE_METHODS")


def comma_list(
    choices: Sequence[str] | None = None,
    *,
    item: Callable[[str], object] = str,
    min_items: int = 1,
    unique: bool = True,
) -> Callable[[str], list]:
    """A comma-separated list type: ``"a,b"`` -> ``["a", "b"]``.

    Parameters
    ----------
    choices : sequence of str, optional
        The allowed items; others are refused, naming them and the choices.
    item : callable
        Parses one item (e.g. :func:`at_least(0)` for seeds, :func:`checkpoint`).
    min_items : int
        Fewer items (an empty string has none) are refused.
    unique : bool
        Refuse repeated items.
    """

    def parse(text: str) -> list:
        words = [w.strip() for w in text.split(",") if w.strip()]
        if len(words) < min_items:
            need = "at least one value" if min_items == 1 else f"at least {min_items} values"
            raise argparse.ArgumentTypeError(
                f"needs {need}, comma-separated; got {text!r}"
                + (f" (choose from {', '.join(choices)})" if choices else "")
            )
        if choices is not None:
            bad = [w for w in words if w not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(choices)}"
                )
        if unique and len(set(words)) != len(words):
            raise argparse.ArgumentTypeError(f"values must differ; got {text!r}")
        return [item(w) for w in words]

    parse.__name__ = "list"
    return parse


def checkpoint(text: str) -> str:
    """A checkpoint: a bundled model's name, or a path that exists.

    Only existence is checked here (no torch import); the folder is read by the command,
    whose errors name the file.
    """
    from pathlib import Path

    if text in BUNDLED_NAMES or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(
        f"no checkpoint at {text}: give a folder written by 'pullback-geom train' (model.pt, "
        "config.json, latents.pt), its model.pt, or one of "
        + ", ".join(f"'{k}'" for k in BUNDLED_NAMES)
        + " for a bundled model"
    )


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when there is one, else the CPU).

    Only the form is checked here; whether the device exists is checked when the command
    starts (:func:`pullback_geom.cli.common.resolve_device`), which imports torch.
    """
    name = text.strip().lower()
    if name in ("cpu", "cuda", "auto") or (
        name.startswith("cuda:") and name[5:].isdigit() and name[5:] != ""
    ):
        return name
    raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or auto; got {text!r}")


def add_common_options(parser: argparse.ArgumentParser, *, device_option: bool = True) -> None:
    """``--device`` and ``--quiet``, shared by every subcommand that computes."""
    if device_option:
        parser.add_argument(
            "--device",
            type=device,
            default="cpu",
            help="where to compute: cpu, cuda, cuda:N, or auto (CUDA when available) "
            "(default: %(default)s)",
        )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )


def add_format_option(parser: argparse.ArgumentParser, *, dpi: int = 110) -> None:
    """``--format`` and ``--dpi`` of the figures a command writes."""
    parser.add_argument(
        "--format",
        type=comma_list(FIGURE_FORMATS),
        default=["png"],
        metavar="FORMATS",
        help="figure formats, comma-separated, from " + ", ".join(FIGURE_FORMATS)
        + " (default: png)",
    )  # fmt: skip
    parser.add_argument(
        "--dpi",
        type=at_least(10),
        default=dpi,
        help="resolution of the PNGs (PDF and SVG are vector; default: %(default)s)",
    )
