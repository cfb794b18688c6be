"""Input checks shared by the core and the adapters: errors that name the problem."""

from __future__ import annotations

import torch
from torch import Tensor


def as_tensor(x, name: str) -> Tensor:
    """``x`` as a floating-point tensor, or a TypeError naming ``name``."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}") from err
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    return x


def _nonfinite_rows(x: Tensor) -> Tensor | None:
    """Rows (along the first axis) holding NaN or inf, as a bool mask; ``None`` if none."""
    # One reduction instead of an elementwise mask: a NaN or inf makes the sum non-finite.
    # Only a non-finite sum (or an overflowing one) pays for the exact test.
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return None
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return None
    return (~finite).reshape(x.shape[0], -1).any(-1) if x.dim() > 1 else ~finite


def check_finite(x: Tensor, name: str) -> None:
    """Raise a ValueError if input ``x`` holds NaN or inf, saying how many and where."""
    bad = _nonfinite_rows(x)
    if bad is not None:
        raise ValueError(
            f"{name} contains NaN or inf at {int(bad.sum())} of {bad.numel()} entries "
            f"(first at index {int(torch.nonzero(bad)[0, 0])})"
        )


class NonFiniteOutputError(ValueError):
    """A computed quantity is NaN or inf at some points (the decoder's values or derivatives
    there, or a numerically singular metric); ``.rows`` is their mask, shape (B,)."""

    def __init__(self, message: str, rows: Tensor) -> None:
        super().__init__(message)
        self.rows = rows


def check_finite_output(x: Tensor, what: str) -> Tensor:
    """Return ``x``, shape ``(B, ...)``, or raise a :class:`NonFiniteOutputError` (a
    ValueError) blaming the decoder for the points where the computed ``what`` is NaN or
    inf."""
    bad = _nonfinite_rows(x)
    if bad is not None:
        raise NonFiniteOutputError(
            f"the {what} is NaN or inf at {int(bad.sum())} of {x.shape[0]} points "
            f"(first at index {int(torch.nonzero(bad)[0, 0])}): the decoder produced "
            "non-finite values or derivatives there",
            bad,
        )
    return x


def batch_points(z, dim: int | None, name: str = "z") -> tuple[Tensor, bool]:
    """Points of shape ``(d,)`` or ``(B, d)`` as ``(B, d)``; also whether a batch axis was added.

    Raises
    ------
    TypeError
        Not a floating-point tensor.
    ValueError
        Wrong number of axes, wrong latent dimension, or NaN/inf.
    """
    z = as_tensor(z, name)
    if z.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape (d,) or (B, d); got {tuple(z.shape)}")
    single = z.dim() == 1
    z = z.unsqueeze(0) if single else z
    if dim is not None and z.shape[-1] != dim:
        raise ValueError(
            f"{name} has latent dimension {z.shape[-1]} (shape {tuple(z.shape)}), "
            f"but the decoder takes d = {dim}"
        )
    check_finite(z, name)
    # Expanded (stride-0) inputs would break in-place writes downstream.
    return z.contiguous(), single


def batch_curves(c, dim: int | None, name: str = "curve") -> tuple[Tensor, bool]:
    """Curves of shape ``(N, d)`` or ``(B, N, d)`` as ``(B, N, d)``; also whether one was added."""
    c = as_tensor(c, name)
    if c.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape (N, d) or (B, N, d); got {tuple(c.shape)}")
    single = c.dim() == 2
    c = c.unsqueeze(0) if single else c
    if c.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 points per curve; got shape {tuple(c.shape)}")
    if dim is not None and c.shape[-1] != dim:
        raise ValueError(
            f"{name} has latent dimension {c.shape[-1]} (shape {tuple(c.shape)}), "
            f"but the decoder takes d = {dim}"
        )
    check_finite(c, name)
    return c.contiguous(), single


def same_shape(a: Tensor, b: Tensor, names: str) -> None:
    """Raise a ValueError if ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def metric_of_model(obj):
    """``obj.pullback_metric()`` for a model that has one (a VAE), else ``obj`` itself.

    The adapters recognise models by this attribute, so they need not import them.
    """
    method = getattr(obj, "pullback_metric", None)
    return method() if callable(method) else obj
