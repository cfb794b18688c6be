"""Progress bars: one function decides whether a bar is drawn.

A bar is drawn when its caller asks for one, stderr is a terminal (or the code runs in a
notebook, where tqdm draws a widget) and ``PULLBACK_GEOM_QUIET`` is unset or ``0``. On a
stderr that is a file or a pipe, tqdm's carriage-return frames would fill the log with
hundreds of lines; the command line's ``--quiet`` sets the variable, which worker
processes started afterwards (a Dask ``LocalCluster``) inherit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["QUIET_ENV", "progress_bar"]

#: Environment variable that turns every bar off.
QUIET_ENV = "PULLBACK_GEOM_QUIET"


def progress_bar(iterable: Iterable | None = None, *, show: bool = True, **kwargs: Any):
    """A ``tqdm`` bar on stderr, drawn only where it can be read (see the module docstring).

    Parameters
    ----------
    iterable : iterable, optional
        Wrapped as ``tqdm(iterable)`` does.
    show : bool
        The caller's wish; ``False`` never draws.
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).
    """
    import warnings

    from tqdm.std import TqdmWarning
    from tqdm.std import tqdm as terminal_tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    quiet = os.environ.get(QUIET_ENV, "").strip() not in ("", "0")
    if not show or quiet:  # no bar: nothing to choose, and no widget library to look for
        return terminal_tqdm(iterable, disable=True, **kwargs)
    with warnings.catch_warnings():
        # Experimental, or "IProgress not found" in a kernel without ipywidgets, where
        # tqdm falls back to the terminal's bar (which the rule below then leaves off).
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.autonotebook import tqdm  # the widget in a notebook, else the terminal's

    if tqdm is not terminal_tqdm:  # a notebook widget: no terminal to ask
        disable: bool | None = False
    else:
        disable = None  # tqdm's own rule: only when the stream is a terminal
    return tqdm(iterable, disable=disable, **kwargs)
