"""How much memory a decoder needs per point, and how much the evaluator may use.

Forward mode carries every tangent through every layer, so evaluating a kernel on a point
holds the decoder's intermediate activations once per tangent stream: a convolutional
decoder's feature maps (megabytes a point), not just its output, are what fill memory.
:func:`activation_bytes` measures them once per decoder (every tensor its forward pass
allocates, per point); :func:`memory_budget` is the bytes one chunk may take; the
evaluator (:mod:`~pullback_geom._core.evaluate`) cuts batches so that a chunk's points
times their streams times their activations stay within it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["ENV_VAR", "activation_bytes", "memory_budget", "parse_bytes"]

#: The environment variable that sets the default budget (``"2GB"``, ``"512MiB"``, bytes).
ENV_VAR = "PULLBACK_GEOM_MEMORY_BUDGET"
#: The default budget on the CPU: this much at most, and at most 1/16 of the machine's
#: memory. A chunk's real peak stays below it (every allocation of a pass is counted, as
#: if none were freed before the last), so the default leaves the process well within a
#: few GB of its baseline whatever the decoder.
CPU_BUDGET = 512 * 2**20
#: The share of a GPU's free memory a chunk may use by default.
GPU_SHARE = 0.25

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """A memory size in bytes from a number or a string such as ``"2GB"`` or ``"512MiB"``.

    Raises
    ------
    ValueError
        Naming the value, if it is not a positive size.
    """
    if isinstance(value, bool):
        raise ValueError(f"a memory size must be a number of bytes or e.g. '2GB'; got {value!r}")
    if isinstance(value, (int, float)):
        size = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?)?b?\s*", str(value).lower())
        if match is None:
            raise ValueError(
                f"a memory size must be a number of bytes or e.g. '2GB', '512MiB'; got {value!r}"
            )
        unit = match.group(2) or ""
        size = float(match.group(1)) * (_BINARY[unit] if unit in _BINARY else _UNITS[unit])
    if not size >= 1:
        raise ValueError(f"a memory size must be at least 1 byte; got {value!r}")
    return int(size)


def memory_budget(device: torch.device, budget: int | None = None) -> int:
    """Bytes one chunk of evaluation may take on ``device``.

    Parameters
    ----------
    device : torch.device
    budget : int, optional
        The metric's own (``PullbackMetric(memory_budget=)``); else the environment
        variable :data:`ENV_VAR`; else :data:`GPU_SHARE` of a GPU's free memory, or on the
        CPU :data:`CPU_BUDGET` and at most 1/16 of the machine's memory.

    Returns
    -------
    int
    """
    if budget is not None:
        return budget
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return parse_bytes(env)
        except ValueError as err:
            raise ValueError(f"{ENV_VAR}: {err}") from None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(GPU_SHARE * free)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return CPU_BUDGET
    return int(min(CPU_BUDGET, total // 16))


class _Allocations(TorchDispatchMode):
    """Bytes of every tensor the operations under it create (views and in-place results
    excluded: they allocate nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo's disable unless told not to,
        # which imports torch._dynamo (and sympy): ~1 s at a process's first metric call.
        # Nothing is ever compiled under this mode.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and id(t) not in inputs and not t._is_view():
                self.bytes += t.numel() * t.element_size()
        return out


def activation_bytes(fn: Callable[[Tensor], Tensor], z: Tensor) -> int:
    """Bytes a forward pass of ``fn`` allocates per point, measured at ``z``'s dtype.

    Two passes, on 2 and on 4 copies of a point, under no_grad; their difference halved is
    what grows with the batch (what is spent once per call, e.g. on the weights, is not).
    Every allocation counts, as if none were freed before the pass ends: an upper bound
    on the pass's peak.

    Parameters
    ----------
    fn : callable
        ``(B, d) -> (B, D)``.
    z : Tensor, shape (1, d)

    Returns
    -------
    int
        At least the output's ``D`` values.
    """
    counts = []
    with torch.no_grad():
        for n in (2, 4):
            mode = _Allocations()
            with mode:
                out = fn(z.expand(n, -1).clone())
            counts.append(mode.bytes)
    per_point = (counts[1] - counts[0]) // 2
    return max(per_point, out.shape[-1] * out.element_size())
