"""The kernels of a decoder's flat map ``f: (B, d) -> (B, D)``: values, first and second
derivatives, geodesic accelerations and curvature terms, on one chunk of checked points.

``f`` flattens the decoder's output (concatenating a tuple, e.g. a Gaussian decoder's
mean and std) and appends the ridge block ``sqrt(ridge) z``. Each kernel uses the
explicit chain rule of :mod:`~pullback_geom._core.chain` for an ``nn.Sequential`` of
Linear layers and element-wise activations (``method="chain"``), else nested forward
mode (:mod:`~pullback_geom._core.derivatives`). The evaluator
(:mod:`~pullback_geom._core.evaluate`) checks points, chunks batches and delegates here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from . import curvature as C
from . import derivatives as F
from .chain import (
    sequential_curvature_tape,
    sequential_jet,
    sequential_second_derivatives,
    sequential_value_and_jacobian,
    supports_chain,
)

__all__ = [
    "COMMON_OUTPUTS",
    "Decoder",
    "DecoderKernels",
    "GaussianDecoder",
    "infer_latent_dim",
    "select_output",
]

Decoder = Callable[[Tensor], "Tensor | Sequence[Tensor]"]


class DecoderKernels:
    """The kernels of one decoder's flat map (see the module docstring).

    Parameters
    ----------
    decoder : callable
        ``(B, d) -> (B, *obs)`` or a tuple of such outputs.
    ridge : float
        Appends ``sqrt(ridge) z`` to the output, i.e. adds ``ridge * I`` to ``G``.
    method : {"chain", "forward"}
    auto : bool
        The method was chosen automatically: a Gaussian decoder may then mix a chain-rule
        mean with a forward-mode std in its curvature terms.
    detach : bool
        Evaluate with the decoder's parameters detached.
    output : str, optional
        The key (of a mapping output) or attribute (of an object output) that holds the
        observation; see :func:`select_output`.
    """

    def __init__(
        self,
        decoder: Decoder,
        *,
        ridge: float,
        method: str,
        auto: bool,
        detach: bool,
        output: str | None = None,
    ) -> None:
        self.decoder, self.ridge, self.method = decoder, ridge, method
        self.auto, self.detach, self.output = auto, detach, output
        self._twins: dict[torch.dtype, tuple[tuple, DecoderKernels]] = {}

    def embed(self, z: Tensor) -> Tensor:
        """The flattened decoder output (concatenated for tuples, with the ridge block).

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, D)
        """
        try:
            if self.detach and isinstance(self.decoder, nn.Module):
                state = {k: v.detach() for k, v in self.decoder.state_dict(keep_vars=True).items()}
                out = functional_call(self.decoder, state, (z,))
            else:
                out = self.decoder(z)
        except (RuntimeError, IndexError) as err:
            # Wrapped once, here, so a wrong dimension, dtype or device is named at the
            # user's level rather than as a matmul failure deep in the decoder.
            raise ValueError(
                f"the decoder failed on latent points of shape {tuple(z.shape)}, dtype "
                f"{z.dtype} on {z.device}: {err}. Check the latent dimension, and pass points "
                "in the dtype and on the device the decoder computes in (e.g. z.float())"
            ) from err
        out = select_output(out, self.output)
        parts = list(out) if isinstance(out, (tuple, list)) else [out]
        flat = []
        for k, part in enumerate(parts):
            if not isinstance(part, Tensor):
                raise TypeError(f"decoder output {k} must be a Tensor; got {type(part).__name__}")
            if part.dim() == 0 or part.shape[0] != z.shape[0]:
                raise ValueError(
                    f"decoder returned shape {tuple(part.shape)} for a batch of {z.shape[0]} "
                    "points: it must map (B, d) to (B, ...)"
                )
            # Sized from the trailing shape, which an empty batch has too.
            flat.append(part.reshape(z.shape[0], math.prod(part.shape[1:])))
        if self.ridge > 0:
            flat.append(math.sqrt(self.ridge) * z)
        return torch.cat(flat, dim=-1) if len(flat) > 1 else flat[0]

    def value_and_jacobian(
        self, z: Tensor, tangent_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """``f(z)`` (B, D) and ``J(z)`` (B, D, d), the latter in ``tangent_dtype`` if given
        (computed in it by the chain rule; by forward mode computed in ``z``'s dtype and
        cast)."""
        if self.method == "chain":
            value, jac = sequential_value_and_jacobian(
                self.decoder, z, detach=self.detach, tangent_dtype=tangent_dtype
            )
            if self.ridge > 0:
                eye = torch.eye(z.shape[1], dtype=jac.dtype, device=z.device)
                eye = math.sqrt(self.ridge) * eye
                value = torch.cat([value, math.sqrt(self.ridge) * z], dim=-1)
                jac = torch.cat([jac, eye.expand(z.shape[0], -1, -1)], dim=1)
            return value, jac
        twin = self._twin(tangent_dtype, z)
        if twin is not None:
            # float64 values, the Jacobian's tangents at the lower dtype's speed (a
            # convolutional decoder, d = 8: 0.9 s for 700 points against 2.3 s).
            _, jac = twin.value_and_jacobian(z.to(tangent_dtype))
            return self.embed(z), jac
        value, jac = F.value_and_jacobian(self.embed, z)
        return value, jac if tangent_dtype is None else jac.to(tangent_dtype)

    def _twin(self, dtype: torch.dtype | None, z: Tensor) -> DecoderKernels | None:
        """These kernels over a copy of the decoder converted to ``dtype``, for forward-mode
        Jacobians in a lower precision than ``z``'s; None where that cannot hold (no
        module to convert, or a graph to the parameters or to ``z`` is wanted). Rebuilt
        whenever a parameter or buffer changed (their version counters), so it is always
        the decoder these kernels compute with."""
        if dtype is None or torch.finfo(dtype).bits >= torch.finfo(z.dtype).bits:
            return None
        if not isinstance(self.decoder, nn.Module):
            return None
        tensors = [*self.decoder.parameters(), *self.decoder.buffers()]
        params_grad = not self.detach and any(p.requires_grad for p in tensors)
        if torch.is_grad_enabled() and (z.requires_grad or params_grad):
            return None
        state = tuple((id(t), t._version) for t in tensors)
        cached = self._twins.get(dtype)
        if cached is None or cached[0] != state:
            decoder = copy.deepcopy(self.decoder).to(dtype=dtype)
            twin = DecoderKernels(
                decoder,
                ridge=self.ridge,
                method=self.method,
                auto=self.auto,
                detach=True,
                output=self.output,
            )
            self._twins[dtype] = cached = (state, twin)
        return cached[1]

    def curvature_tape(
        self, z: Tensor, tangent_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        """``f(z)`` (B, D), ``J(z)`` (B, D, d) and ``contract``: (B, D) -> (B, d, d), the
        second derivatives contracted with an output vector (``sum_a a_a D^2 f_a``), by
        :func:`~pullback_geom._core.chain.sequential_curvature_tape`, the last two in
        ``tangent_dtype`` (default ``z``'s); chain rule only (:attr:`method` ``"chain"``)."""
        if self.method != "chain":
            raise TypeError("curvature_tape needs a chain-rule decoder (method 'chain')")
        value, jac, contract = sequential_curvature_tape(
            self.decoder, z, detach=self.detach, tangent_dtype=tangent_dtype
        )
        if self.ridge > 0:  # the ridge block z -> sqrt(ridge) z has no second derivatives
            width, decoder_part = value.shape[1], contract
            eye = math.sqrt(self.ridge) * torch.eye(z.shape[1], dtype=jac.dtype, device=z.device)
            value = torch.cat([value, math.sqrt(self.ridge) * z], dim=-1)
            jac = torch.cat([jac, eye.expand(z.shape[0], -1, -1)], dim=1)

            def contract(a: Tensor) -> Tensor:
                return decoder_part(a[:, :width])

        return value, jac, contract

    def christoffels(self, z: Tensor, groups: int = 1) -> Tensor:
        """``Gamma^k_ij(z)``, (B, d, d, d), from one Jacobian and one Hessian (forward
        mode: its outer directions in ``groups``, see :func:`derivatives.hessian`)."""
        if self.method != "chain":
            return F.christoffel_symbols(self.embed, z, groups)
        _, jac, hess = sequential_second_derivatives(self.decoder, z, detach=self.detach)
        if self.ridge > 0:  # the ridge block z -> sqrt(ridge) z has no second derivatives
            jac, hess = self.with_ridge(z, jac, hess)
        return F.christoffels_from_derivatives(jac, hess)

    def acceleration(self, z: Tensor, v: Tensor) -> Tensor:
        """``-Gamma(v, v)`` at ``z``, (B, d), without forming the Christoffel symbols."""
        if self.method != "chain":
            return F.geodesic_acceleration(self.embed, z, v)
        _, jac, hvv = sequential_second_derivatives(self.decoder, z, v, detach=self.detach)
        if self.ridge > 0:
            jac, hvv = self.with_ridge(z, jac, hvv)
        return F.acceleration_from_derivatives(jac, hvv)

    def second_derivatives(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``J (B, D, d)`` and ``H (B, D, d, d)`` of the flat map, ridge block included."""
        if self.method == "chain":
            _, jac, hess = sequential_second_derivatives(self.decoder, z, detach=self.detach)
            if self.ridge > 0:
                jac, hess = self.with_ridge(z, jac, hess)
            return jac, hess
        return F.hessian(self.embed, z)

    def with_ridge(self, z: Tensor, jac: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """``J`` and second derivatives with the ridge block's rows (``sqrt(ridge) I``, 0)."""
        b, d = z.shape
        eye = math.sqrt(self.ridge) * torch.eye(d, dtype=z.dtype, device=z.device)
        jac = torch.cat([jac, eye.expand(b, d, d)], dim=1)
        zeros = second.new_zeros((b, d, *second.shape[2:]))
        return jac, torch.cat([second, zeros], dim=1)

    def curvature_terms(self, z: Tensor, groups: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """``G``, ``G^{-1}`` and ``<II_ij, II_kl>`` at ``z`` (see :mod:`.curvature`;
        ``groups`` as in :meth:`christoffels`)."""
        d = z.shape[1]
        if self.method == "chain":
            gram = C.jet_gram(*sequential_jet(self.decoder, z, detach=self.detach)[1:])
        elif self.auto and isinstance(self.decoder, GaussianDecoder):
            # The Gram matrix of stacked outputs is the sum of the parts' Gram matrices,
            # so a chain-rule mean (the VAEs' nn.Sequential) and a forward-mode std mix.
            parts = (self.decoder.mean, self.decoder.std)
            gram = sum(C.jet_gram(*self.part_jet(part, z, groups)) for part in parts)
        else:
            return C.second_fundamental_inner(C.jet_gram(*F.jet(self.embed, z, groups)), d)
        if self.ridge > 0:  # the ridge block adds ridge * I to G and nothing else
            ridge = torch.zeros_like(gram[0])
            ridge[:d, :d] = self.ridge * torch.eye(d, dtype=z.dtype, device=z.device)
            gram = gram + ridge
        return C.second_fundamental_inner(gram, d)

    def part_jet(self, part: Decoder, z: Tensor, groups: int = 1) -> tuple[Tensor, Tensor]:
        """First and second derivative rows of one output of a tuple decoder (forward
        mode's outer directions in ``groups``, as in :meth:`christoffels`)."""
        if isinstance(part, nn.Module) and supports_chain(part):
            return sequential_jet(part, z, detach=self.detach)[1:]

        def flat(x: Tensor) -> Tensor:
            if self.detach and isinstance(part, nn.Module):
                state = {k: v.detach() for k, v in part.state_dict(keep_vars=True).items()}
                return functional_call(part, state, (x,)).reshape(x.shape[0], -1)
            return part(x).reshape(x.shape[0], -1)

        return F.jet(flat, z, groups)


#: Where libraries keep a decoder's observation (documented for ``output=``): a mapping's
#: key (pythae's ``ModelOutput``, dicts) or an object's attribute (diffusers'
#: ``DecoderOutput.sample``, a torch ``Distribution``'s ``mean``).
COMMON_OUTPUTS = ("reconstruction", "recon_x", "x_recon", "sample", "mean", "loc", "logits")


def select_output(out, output: str | None):
    """The observation in a decoder's output ``out``.

    Tensors, tuples and lists pass as they are; with ``output``, a mapping's value at that
    key or an object's attribute of that name. A mapping or an object without ``output``
    is a TypeError that names the keys or attributes it has and the fix.
    """
    if output is not None:
        if isinstance(out, Mapping):
            if output not in out:
                raise ValueError(
                    f"the decoder's output has no key {output!r}; its keys are "
                    f"{list(out)}: pass one of them as PullbackMetric(..., output=)"
                )
            return out[output]
        if not hasattr(out, output):
            raise ValueError(
                f"the decoder's output ({type(out).__name__}) has no attribute {output!r}: "
                "pass the key or attribute that holds the observation as "
                "PullbackMetric(..., output=)"
            )
        return getattr(out, output)
    if isinstance(out, (Tensor, tuple, list)):
        return out
    if isinstance(out, Mapping):
        raise TypeError(
            f"the decoder returned a mapping with keys {list(out)}: say which holds the "
            "observation with PullbackMetric(decoder, output=<key>), e.g. output="
            f"{_guess(list(out))!r}"
        )
    have = [name for name in COMMON_OUTPUTS if hasattr(out, name)]
    raise TypeError(
        f"the decoder returned a {type(out).__name__}, not a Tensor: say which attribute "
        "holds the observation with PullbackMetric(decoder, output=<attribute>)"
        + (f", e.g. output={have[0]!r}" if have else "")
    )


def _guess(keys: list) -> str:
    return next((k for k in COMMON_OUTPUTS if k in keys), str(keys[0]) if keys else "...")


class GaussianDecoder(nn.Module):
    """``z -> (mean(z), std(z))``; an ``nn.Module`` so parameters of both are visible."""

    def __init__(self, mean: Decoder, std: Decoder) -> None:
        super().__init__()
        for name, fn in (("mean", mean), ("std", std)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
        self.mean, self.std = mean, std

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(z), self.std(z)


def infer_latent_dim(decoder) -> int | None:
    """``d`` where the decoder's structure says it, else ``None`` (learned at first call).

    Only an ``nn.Sequential`` runs its modules in the order they are registered, so only
    there (or in a bare ``nn.Linear``) is the first ``nn.Linear`` the input layer; leading
    parameter-free modules (reshapes, activations) are skipped. A Gaussian decoder's input
    is its mean's.
    """
    if isinstance(decoder, GaussianDecoder):
        return infer_latent_dim(decoder.mean)
    if isinstance(decoder, nn.Linear):
        return decoder.in_features
    if not isinstance(decoder, nn.Sequential):
        return None
    for layer in decoder:
        if isinstance(layer, nn.Linear):
            return layer.in_features
        if isinstance(layer, nn.Sequential):
            return infer_latent_dim(layer)
        if any(True for _ in layer.parameters()):
            return None
    return None
