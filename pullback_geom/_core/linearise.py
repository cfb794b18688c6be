"""A decoder's linearisation at a batch of points: ``J v`` and ``J^T u`` without ``J``.

Matrix-free solvers need the Jacobian only through its products: ``J v`` (a latent
direction to an observation-space change) and ``J^T u`` (an observation-space residual
to a latent gradient). Both come from one forward pass recorded by autograd:
``J^T u`` is its backward pass, and ``J v`` the backward pass of that backward pass with
respect to its (dummy) cotangent, ``d/du <J^T u, v> = J v`` (the "double-vjp" trick).
Measured on a ConvTranspose decoder with a 3 x 64 x 64 output (``d = 32``, one thread),
the double backward costs ~0.85 forward passes and forward mode's ``torch.func.jvp``
~2.6: the linearised pass skips the nonlinearities' values, which the graph holds.
Decoders with an operation that has no double backward fall back to forward mode.

Memory is a recorded forward pass and its backward graph per point, a few activations'
worth, never a ``D x d`` Jacobian: the evaluator sizes the chunks (kind ``"linear"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Linearisation"]


class Linearisation:
    """``f`` linearised at ``z``: values, ``J v`` and ``J^T u``, in chunks of rows.

    Parameters
    ----------
    fn : callable
        ``(B, d) -> (B, D)`` on one chunk.
    z : Tensor, shape (B, d)
    rows : int
        Points per recorded chunk.

    Attributes
    ----------
    value : Tensor, shape (B, D)
        ``f(z)``, detached.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], z: Tensor, rows: int) -> None:
        self._fn, self._d = fn, z.shape[1]
        self._parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self._forward_mode = False
        with torch.enable_grad():
            for chunk in z.detach().split(max(rows, 1)):
                x = chunk.clone().requires_grad_(True)
                out = fn(x)
                dual = torch.zeros_like(out, requires_grad=True)
                if out.requires_grad:
                    (back,) = torch.autograd.grad(
                        out, x, dual, create_graph=True, allow_unused=True, materialize_grads=True
                    )
                else:  # f does not depend on z (a constant decoder)
                    back = torch.zeros_like(x)
                self._parts.append((x, out, dual, back))
        if not self._parts:
            raise ValueError("Linearisation needs at least one point")
        self.value = torch.cat([part[1].detach() for part in self._parts])

    def _split(self, t: Tensor) -> list[Tensor]:
        return list(t.split([part[0].shape[0] for part in self._parts]))

    def jvp(self, v: Tensor) -> Tensor:
        """``J v``: (B, d) -> (B, D)."""
        out = []
        for (x, value, dual, back), vc in zip(self._parts, self._split(v), strict=True):
            if not back.requires_grad:  # f does not depend on z (a constant decoder)
                out.append(torch.zeros_like(value))
                continue
            if not self._forward_mode:
                try:
                    (jv,) = torch.autograd.grad(
                        back, dual, vc, retain_graph=True, allow_unused=True,
                        materialize_grads=True,
                    )  # fmt: skip
                    out.append(jv)
                    continue
                except RuntimeError:
                    # An operation without a double backward: forward mode from now on.
                    self._forward_mode = True
            out.append(torch.func.jvp(self._fn, (x.detach(),), (vc,))[1].detach())
        return torch.cat(out)

    def vjp(self, u: Tensor) -> Tensor:
        """``J^T u``: (B, D) -> (B, d)."""
        out = []
        for (x, value, _, _), uc in zip(self._parts, self._split(u), strict=True):
            if not value.requires_grad:
                out.append(torch.zeros_like(x))
                continue
            (g,) = torch.autograd.grad(
                value, x, uc, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            out.append(g)
        return torch.cat(out)
