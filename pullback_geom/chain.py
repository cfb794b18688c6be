"""The seed's layer-by-layer Jacobian chain for ``nn.Sequential`` decoders, without
``(B, D, D)`` diagonal matrices.

The chain rule ``J = J_L ... J_1`` is carried forward as a tangent block ``T^T`` of shape
``(B, d, width)``: a linear layer maps it by ``W``, an element-wise activation scales its
rows by ``sigma'(pre-activation)``. That is forward-mode differentiation written out, at the
cost of one matrix product per layer and tangent direction, where the seed's
``diag_embed`` version multiplies ``(B, D, D)`` matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["sequential_value_and_jacobian", "supports_chain"]


def _activation_derivative(layer: nn.Module, pre: Tensor, post: Tensor) -> Tensor:
    """Element-wise derivative of an activation at ``pre``; ``post`` is its output."""
    if isinstance(layer, nn.ReLU):
        return (pre > 0).to(pre.dtype)
    if isinstance(layer, nn.LeakyReLU):
        # Not torch.where(..., 1.0, slope): two Python scalars give a default-dtype (float32)
        # result, which rounds the slope before a cast back to float64.
        return torch.where(
            pre > 0, torch.ones_like(pre), torch.full_like(pre, layer.negative_slope)
        )
    if isinstance(layer, nn.ELU):
        return torch.where(pre > 0, torch.ones_like(pre), post + layer.alpha)
    if isinstance(layer, nn.Softplus):
        scaled = pre * layer.beta
        return torch.where(scaled > layer.threshold, torch.ones_like(pre), torch.sigmoid(scaled))
    if isinstance(layer, nn.Tanh):
        return 1 - post.square()
    if isinstance(layer, nn.Sigmoid):
        return post * (1 - post)
    raise TypeError(f"no chain rule for layer {layer!r}")


_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Tanh, nn.Sigmoid)
_RESHAPES = (nn.Flatten, nn.Unflatten, nn.Identity)


def supports_chain(decoder: nn.Module) -> bool:
    """Whether :func:`sequential_value_and_jacobian` handles ``decoder``.

    True for an ``nn.Sequential`` of ``nn.Linear``, element-wise activations (ReLU,
    LeakyReLU, ELU, Softplus, Tanh, Sigmoid) and reshapes (Flatten, Unflatten, Identity),
    where every ``nn.Linear`` acts on flat ``(B, width)`` features (not after an
    ``Unflatten`` that no full ``Flatten`` undoes).
    """
    if not isinstance(decoder, nn.Sequential):
        return False
    flat = True
    for layer in decoder:
        if not isinstance(layer, (nn.Linear, *_ACTIVATIONS, *_RESHAPES)):
            return False
        if isinstance(layer, nn.Linear) and not flat:
            return False
        if isinstance(layer, nn.Unflatten):
            flat = False
        elif isinstance(layer, nn.Flatten):
            flat = flat or (layer.start_dim == 1 and layer.end_dim == -1)
    return True


def sequential_value_and_jacobian(
    decoder: nn.Sequential, z: Tensor, *, detach: bool = False
) -> tuple[Tensor, Tensor]:
    """Output and Jacobian of an ``nn.Sequential`` decoder by the explicit chain rule.

    Parameters
    ----------
    decoder : nn.Sequential
        Linear layers, element-wise activations and reshapes (see :func:`supports_chain`).
    z : Tensor, shape (B, d)
    detach : bool, default False
        Use detached weights: no autograd graph to the decoder's parameters.

    Returns
    -------
    value : Tensor, shape (B, D)
        The flattened output.
    jac : Tensor, shape (B, D, d)
    """
    if not supports_chain(decoder):
        raise TypeError(
            "the chain Jacobian needs an nn.Sequential of Linear layers, element-wise "
            "activations (ReLU, LeakyReLU, ELU, Softplus, Tanh, Sigmoid) and reshapes; "
            f"got {decoder!r}. Use jacobian='forward' for any other decoder."
        )
    b, d = z.shape
    x = z
    # Tangents are rows, (B, d, width): a linear layer is then one (B*d, width) GEMM.
    tangent = torch.eye(d, dtype=z.dtype, device=z.device).expand(b, d, d)
    for layer in decoder:
        if isinstance(layer, nn.Linear):
            weight, bias = layer.weight, layer.bias
            if detach:
                weight = weight.detach()
                bias = bias.detach() if bias is not None else None
            x = nn.functional.linear(x, weight, bias)
            tangent = tangent @ weight.mT
        elif isinstance(layer, _ACTIVATIONS):
            pre, x = x, layer(x)
            tangent = _activation_derivative(layer, pre, x).unsqueeze(-2) * tangent
        # Reshapes do not change the flat tangent; only the value's shape.
        else:
            x = layer(x)
            x = x.reshape(b, -1) if x.dim() > 2 else x
    return x.reshape(b, -1), tangent.mT
