"""geomstats inputs as one flat core batch: shapes ``(..., d)`` broadcast to ``(B, d)`` in
the core's dtype and device, and results back in the inputs' own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["Batch", "Path", "as_tensor", "grad_only_if_needed"]

Path = Callable[[Tensor], Tensor]


def as_tensor(x) -> Tensor:
    """Tensors pass; NumPy arrays and Python numbers become tensors (float64 if not float)."""
    if isinstance(x, Tensor):
        return x
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.float64)


@contextmanager
def grad_only_if_needed(*xs: Tensor) -> Iterator[None]:
    """Record autograd only when an input asks for it, so results can go to ``.numpy()``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(x.requires_grad for x in xs)):
        yield


class Batch:
    """Broadcast geomstats inputs ``(..., d)`` to one flat core batch ``(B, d)`` and back."""

    def __init__(self, metric, *arrays) -> None:
        tensors = [as_tensor(a) for a in arrays]
        dim = metric._space.dim
        for t in tensors:
            if t.dim() == 0 or t.shape[-1] != dim:
                raise ValueError(
                    f"expected points or tangent vectors of shape (..., {dim}); "
                    f"got {tuple(t.shape)}"
                )
        self.out_dtype = tensors[0].dtype
        for t in tensors[1:]:
            self.out_dtype = torch.promote_types(self.out_dtype, t.dtype)
        self.batch_shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
        core_dtype = metric.dtype if metric.dtype is not None else self.out_dtype
        self.device = metric.device if metric.device is not None else tensors[0].device
        self.flat = [
            t.to(dtype=core_dtype, device=self.device)
            .expand(*self.batch_shape, dim)
            .reshape(-1, dim)
            .contiguous()  # expanded views break forward-mode AD (make_dual)
            for t in tensors
        ]
        self.in_device = tensors[0].device

    def out(self, x: Tensor, tail: tuple[int, ...]) -> Tensor:
        """Core result ``(B, *tail)`` as ``(*batch_shape, *tail)`` in the input dtype."""
        x = x.reshape((*self.batch_shape, *tail))
        return x.to(dtype=self.out_dtype, device=self.in_device)
