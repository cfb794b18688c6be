"""Chunked evaluation of a metric's kernels, with its memory budget in one place.

Every solver evaluates the same few kernels of the flat decoder ``f: (B, d) -> (B, D)``
on batches of any size: values, Jacobians, second derivatives, geodesic accelerations.
Their largest intermediate is ``(B, D, streams)`` with a number of tangent streams that
depends on the kernel (:data:`STREAMS`), so a batch is cut into chunks of at most
:data:`CHUNK_BUDGET` elements of that intermediate. :class:`Evaluator` holds one metric's
kernels and does the cutting; :class:`~pullback_geom.PullbackMetric` hands one out as
``metric.evaluator``. It checks nothing: the solvers' inner loops call it on points the
metric has already checked (``metric.check_points``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["CHUNK_BUDGET", "STREAMS", "Evaluator", "Kernels", "chunked", "rows_per_chunk"]

# Elements of the largest intermediate (B x D x streams) evaluated at once; 2**25 float32
# entries are 128 MiB, so a chunk of the write-up's decoder's metric stays well under 1 GiB.
CHUNK_BUDGET = 2**25

#: Tangent streams of each kernel's largest intermediate, as a function of ``d``: the
#: value, plus ``d`` Jacobian columns, plus the second derivatives it carries.
STREAMS: dict[str, Callable[[int], int]] = {
    "value": lambda d: 1,
    "jacobian": lambda d: d + 1,
    "acceleration": lambda d: d + 5,
    "christoffel": lambda d: 1 + d + d * d,
    "hessian": lambda d: 1 + d + d * d,
    "curvature": lambda d: 1 + d + d * (d + 1) // 2,
}


def rows_per_chunk(
    obs_dim: int, latent_dim: int, kind: str, *, per_row: int = 1, chunk_size: int | None = None
) -> int:
    """Rows of a batch evaluated at once by kernel ``kind``.

    Parameters
    ----------
    obs_dim, latent_dim : int
        ``D`` and ``d``.
    kind : str
        A key of :data:`STREAMS`.
    per_row : int, default 1
        Points per row: a row that is a curve of ``N`` nodes counts ``N`` times.
    chunk_size : int, optional
        Points per chunk chosen by the user (``PullbackMetric(chunk_size=)``), instead of
        the budget.

    Returns
    -------
    int
        At least 1; for points (``per_row = 1``) between 64 and 65,536 unless
        ``chunk_size`` says otherwise.
    """
    if chunk_size is not None:
        return max(1, chunk_size // per_row)
    rows = CHUNK_BUDGET // (obs_dim * STREAMS[kind](latent_dim) * per_row)
    if per_row == 1:
        return int(min(max(rows, 64), 1 << 16))
    return max(1, int(rows))


def chunked(fn: Callable[..., Tensor], size: int, *xs: Tensor, recompute: bool) -> Tensor:
    """``fn`` applied to chunks of ``size`` rows of ``xs``, concatenated along rows.

    Parameters
    ----------
    fn : callable
        ``(*chunks) -> Tensor`` with the chunks' rows first.
    size : int
        Rows per chunk.
    *xs : Tensor, shape (B, ...)
    recompute : bool
        Checkpoint each chunk (``torch.utils.checkpoint``): autograd would otherwise keep
        every chunk's intermediates alive until backward (~30 KiB a point for the write-up's
        decoder); checkpointed, only the inputs are kept and a chunk is recomputed during
        backward, so memory stays bounded by one chunk.

    Returns
    -------
    Tensor, shape (B, ...)
        For an empty batch, an empty tensor of the right trailing shape.
    """
    n = xs[0].shape[0]
    if n == 0:
        # An empty batch (chunked pipelines make them) has an empty answer, but its
        # trailing shape is only known from one evaluation: many decoders cannot run on
        # zero rows (a reshape with -1), so evaluate one placeholder row instead.
        return fn(*(x.new_zeros((1, *x.shape[1:])) for x in xs))[:0]
    if n <= size:
        return fn(*xs)
    if recompute:

        def run(*chunk: Tensor) -> Tensor:
            return checkpoint(fn, *chunk, use_reentrant=False)
    else:
        run = fn
    return torch.cat([run(*(x[i : i + size] for x in xs)) for i in range(0, n, size)])


@dataclass(frozen=True)
class Kernels:
    """One metric's kernels on one chunk of checked points ``(B, d)``, flat map ``f``.

    Attributes
    ----------
    embed : callable
        ``z -> f(z)``, shapes (B, d) -> (B, D).
    value_and_jacobian : callable
        ``z -> (f(z), J(z))``, (B, D) and (B, D, d).
    christoffels : callable
        ``z -> Gamma``, (B, d, d, d) with ``out[..., k, i, j] = Gamma^k_ij``.
    acceleration : callable
        ``(z, v) -> -Gamma(v, v)``, (B, d).
    second_derivatives : callable
        ``z -> (J, H)``, (B, D, d) and (B, D, d, d).
    """

    embed: Callable[[Tensor], Tensor]
    value_and_jacobian: Callable[[Tensor], tuple[Tensor, Tensor]]
    christoffels: Callable[[Tensor], Tensor]
    acceleration: Callable[[Tensor, Tensor], Tensor]
    second_derivatives: Callable[[Tensor], tuple[Tensor, Tensor]]


class Sizes(Protocol):
    """What the evaluator reads off its metric at call time."""

    @property
    def latent_dim(self) -> int | None: ...

    @property
    def obs_dim(self) -> int | None: ...

    chunk_size: int | None

    def params_require_grad(self) -> bool: ...


class Evaluator:
    """A metric's kernels, evaluated in memory-bounded chunks, unchecked.

    Parameters
    ----------
    kernels : Kernels
    sizes : Sizes
        The metric: ``d``, ``D`` (known once it has checked points), the user's
        ``chunk_size`` and whether its parameters require grad.
    """

    def __init__(self, kernels: Kernels, sizes: Sizes) -> None:
        self.kernels = kernels
        self._sizes = sizes

    def rows(self, kind: str, per_row: int = 1) -> int:
        """Rows evaluated at once by kernel ``kind`` (see :func:`rows_per_chunk`)."""
        s = self._sizes
        if s.obs_dim is None or s.latent_dim is None:
            raise RuntimeError(
                "the metric has not seen points yet: pass them through metric.check_points "
                "before evaluating"
            )
        return rows_per_chunk(
            s.obs_dim, s.latent_dim, kind, per_row=per_row, chunk_size=s.chunk_size
        )

    def map(self, fn: Callable[..., Tensor], kind: str, *xs: Tensor) -> Tensor:
        """``fn`` on chunks of ``xs`` (rows first), sized for kernel ``kind``."""
        recompute = torch.is_grad_enabled() and (
            any(x.requires_grad for x in xs) or self._sizes.params_require_grad()
        )
        return chunked(fn, self.rows(kind), *xs, recompute=recompute)

    def embed(self, z: Tensor) -> Tensor:
        """``f(z)``: (B, d) -> (B, D)."""
        return self.map(self.kernels.embed, "value", z)

    def jacobian(self, z: Tensor) -> Tensor:
        """``J(z)``: (B, d) -> (B, D, d)."""
        return self.map(lambda x: self.kernels.value_and_jacobian(x)[1], "jacobian", z)

    def metric_tensor(self, z: Tensor) -> Tensor:
        """``G(z) = J^T J``: (B, d) -> (B, d, d)."""

        def fn(x: Tensor) -> Tensor:
            jac = self.kernels.value_and_jacobian(x)[1]
            return jac.mT @ jac

        return self.map(fn, "jacobian", z)

    def christoffels(self, z: Tensor) -> Tensor:
        """``Gamma^k_ij(z)``: (B, d) -> (B, d, d, d)."""
        return self.map(self.kernels.christoffels, "christoffel", z)

    def acceleration(self, z: Tensor, v: Tensor) -> Tensor:
        """``-Gamma(v, v)`` at ``z``: (B, d), (B, d) -> (B, d)."""
        return self.map(self.kernels.acceleration, "acceleration", z, v)
