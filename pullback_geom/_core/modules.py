"""The ``nn.Module`` layers a decoder is made of, wherever they hide.

A decoder may be a module, a bound method of one, a ``functools.partial``, or a closure
over one (``lambda z: vae.decode(z)["reconstruction"]``). What the metric must know of its
layers (the dtype and device they compute in, whether they are smooth, whether one is a
batch-dependent layer left in training mode) is read off the modules found here.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterator

from torch import Tensor, nn

__all__ = ["batch_dependent_layers", "modules_in", "reference_tensor"]

# How far to follow wrappers (bound methods, partials, closures) to the modules inside.
_DEPTH = 3

#: Layers whose output, in training mode, depends on the other points of the batch
#: (batch statistics) or on chance (dropout).
_BATCH_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def modules_in(decoder) -> list[nn.Module]:
    """The ``nn.Module`` objects ``decoder`` is or wraps: the decoder itself if it is a
    module (with the plain functions it holds, e.g. a Gaussian decoder's mean and std), a
    bound method's object, a ``functools.partial``'s function and arguments, the variables
    a function closes over and the globals it names, an object's attributes; followed a
    few wrappers deep.

    Parameters
    ----------
    decoder : callable

    Returns
    -------
    list of nn.Module
        Outermost first; empty for a plain function of tensors.
    """
    return list(_modules_in(decoder, _DEPTH, set()))


def reference_tensor(decoder) -> Tensor | None:
    """A parameter (else a buffer) of the modules inside ``decoder``: its dtype and device
    are the ones points must have. ``None`` for plain functions and parameter-free modules.
    """
    for module in modules_in(decoder):
        for t in module.parameters():
            return t
        for t in module.buffers():
            return t
    return None


def batch_dependent_layers(decoder) -> list[nn.Module]:
    """BatchNorm and dropout layers inside ``decoder`` (in training mode or not)."""
    found = []
    for module in modules_in(decoder):
        found += [m for m in module.modules() if isinstance(m, _BATCH_DEPENDENT)]
    return list({id(m): m for m in found}.values())


def _modules_in(obj, depth: int, seen: set[int]) -> Iterator[nn.Module]:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        yield obj
        # Plain callables a module holds (a Gaussian decoder's mean and std functions).
        for value in vars(obj).values():
            if callable(value) and not isinstance(value, nn.Module) and depth > 0:
                yield from _modules_in(value, depth - 1, seen)
        return
    if depth == 0:
        return
    for inner in _wrapped(obj):
        yield from _modules_in(inner, depth - 1, seen)


def _wrapped(obj) -> list:
    """What a wrapper holds: the objects a decoder built from ``obj`` may call."""
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, dict):
        return list(obj.values())
    if inspect.ismethod(obj):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if inspect.isfunction(obj):
        held = []
        for cell in obj.__closure__ or ():
            try:
                held.append(cell.cell_contents)
            except ValueError:  # a cell not yet filled
                continue
        # A function defined at module level reaches its network as a global.
        held += [obj.__globals__[n] for n in obj.__code__.co_names if n in obj.__globals__]
        return held
    if isinstance(obj, (type, types.ModuleType)) or not hasattr(obj, "__dict__"):
        return []
    return list(vars(obj).values())  # an object whose method or __call__ is the decoder
