"""Optional dependencies: import one, or say which extra to install.

The core (``pullback_geom``, ``metric``, ``geodesics``, ``surfaces``, ``vae``) needs torch,
numpy, scipy and tqdm only. Adapters and tools that need more import it through
:func:`require`, so that a missing library ends in one sentence that names the extra
(``pip install 'pullback-geom[geomstats]'``) instead of a bare ``No module named ...``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ModuleNotFoundError):
    """An optional library is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra to install.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"geomstats"`` or ``"matplotlib.figure"``.
    extra : str
        The extra of ``pullback-geom`` that installs it, e.g. ``"geomstats"``.
    what : str
        What needs it, as the message's subject, e.g. ``"pullback_geom.geomstats"``.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    MissingExtraError
        ``module`` (or a module it imports) is not installed. A ``ModuleNotFoundError``
        (hence an ``ImportError``) whose ``name`` is the missing module.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or module
        top = module.split(".")[0]
        # A library of the extra that is present but lacks one of its own dependencies
        # (geomstats without pandas) is fixed by the same install; say which one is missing.
        detail = "" if missing.split(".")[0] == top else f" (it could not import {missing!r})"
        raise MissingExtraError(
            f"{what} needs {top}{detail}: pip install 'pullback-geom[{extra}]'",
            name=missing,
        ) from err
