"""One metric's evaluation of its decoder: point checks, sizes, and chunked kernels.

Every solver evaluates the same few kernels of the flat decoder ``f: (B, d) -> (B, D)``
on batches of any size: values, Jacobians, second derivatives, geodesic accelerations.
Forward mode carries ``streams`` tangents through every layer (:data:`STREAMS`: one
for values, ``d + 1`` for Jacobians, ...), so a point costs its decoder's activations
(measured once per decoder, :func:`~pullback_geom._core.memory.activation_bytes`) times
its streams, and a batch is cut into chunks that fit one memory budget
(:func:`~pullback_geom._core.memory.memory_budget`).

:class:`Evaluator` is the one place a metric's decoder is evaluated. Each
:class:`~pullback_geom.PullbackMetric` builds one and hands it out as
``metric.evaluator``: the solvers' interface, not the users'. It checks points
(:meth:`Evaluator.check_points`, which learns ``d`` and ``D`` on first use) and cuts
batches into chunks; its kernels check nothing, so the solvers' inner loops call them on
points already checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import memory
from .checks import batch_curves, batch_points, check_finite_output
from .kernels import DecoderKernels
from .linearise import Linearisation
from .modules import batch_dependent_layers, reference_tensor

__all__ = ["MAX_ROWS", "STREAMS", "Evaluator", "chunked", "rows_per_chunk"]

#: Points evaluated at once at most, however small the decoder: larger chunks gain
#: nothing once the matrix products are big.
MAX_ROWS = 1 << 16

#: Tangent streams of each kernel's largest intermediate, as a function of ``d``: the
#: value, plus ``d`` Jacobian columns, plus the second derivatives it carries.
STREAMS: dict[str, Callable[[int], int]] = {
    "value": lambda d: 1,
    "jacobian": lambda d: d + 1,
    # The chain rule's recorded pass (Evaluator.curvature_tape): every layer's tangents
    # and pre-activations kept, and the backward pass's adjoint.
    "curvature_tape": lambda d: d + 2,
    # A recorded forward pass and its recorded backward (Linearisation): the saved
    # activations, their gradients and what the double backward saves, ~4 passes' worth.
    "linear": lambda d: 4,
    "acceleration": lambda d: d + 5,
    "christoffel": lambda d: 1 + d + d * d,
    "hessian": lambda d: 1 + d + d * d,
    "curvature": lambda d: 1 + d + d * (d + 1) // 2,
}

#: Kernels whose second derivatives forward mode can take a group of outer directions at
#: a time (:func:`derivatives.hessian`'s ``groups``), so that a point too large for all
#: of them at once still fits the budget.
GROUPED = frozenset({"christoffel", "curvature"})


def grouped_streams(latent_dim: int, groups: int) -> int:
    """Tangent streams a point carries with the outer directions in ``groups``."""
    return 1 + latent_dim + latent_dim * -(-latent_dim // groups)


def rows_per_chunk(
    bytes_per_point: int,
    latent_dim: int,
    kind: str,
    budget: int,
    *,
    per_row: int = 1,
    chunk_size: int | None = None,
    groups: int = 1,
) -> int:
    """Rows of a batch evaluated at once by kernel ``kind``.

    Parameters
    ----------
    bytes_per_point : int
        What one decoder pass allocates per point (its activations).
    latent_dim : int
        ``d``.
    kind : str
        A key of :data:`STREAMS`.
    budget : int
        Bytes a chunk may take.
    per_row : int, default 1
        Points per row: a row that is a curve of ``N`` nodes counts ``N`` times.
    chunk_size : int, optional
        Points per chunk chosen by the user (``PullbackMetric(chunk_size=)``), instead of
        the budget.
    groups : int, default 1
        Outer directions' groups of a :data:`GROUPED` kernel (:func:`grouped_streams`).

    Returns
    -------
    int
        At least 1; at most :data:`MAX_ROWS` points.

    Raises
    ------
    MemoryError
        When one point (``per_row = 1``) does not fit in the budget, naming it and the
        knobs that raise it.
    """
    if chunk_size is not None:
        return max(1, chunk_size // per_row)
    streams = STREAMS[kind](latent_dim) if groups == 1 else grouped_streams(latent_dim, groups)
    point = bytes_per_point * streams
    rows = budget // (point * per_row)
    if rows < 1 and per_row == 1:
        raise MemoryError(
            f"one point needs about {_size(point)} to evaluate its {kind} (the decoder's "
            f"activations, {_size(bytes_per_point)} a point, times {streams} tangent "
            f"streams), over the memory budget of {_size(budget)}: raise it with "
            f"PullbackMetric(..., memory_budget=) or the {memory.ENV_VAR} environment "
            "variable, or use a smaller decoder"
        )
    return int(min(max(rows, 1), max(MAX_ROWS // per_row, 1)))


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


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


class Evaluator:
    """One metric's decoder evaluation: point checks, ``d`` and ``D``, chunked kernels.

    Built once per :class:`~pullback_geom.PullbackMetric` (``metric.evaluator``) for the
    solvers. The checks (:meth:`check_points`, :meth:`check_curves`) name bad input and,
    on first use, call the decoder once to learn ``d`` and ``D``; the kernels
    (:meth:`embed`, :meth:`jacobian`, ...) check nothing and need ``D`` known, so they
    take points that a check has passed.

    Parameters
    ----------
    kernels : DecoderKernels
        The decoder's kernels on one chunk, with the metric's ridge, method and detach.
    latent_dim, obs_dim : int, optional
        ``d`` and ``D`` where known; else learned by the first check.
    chunk_size : int, optional
        Points per chunk chosen by the user, instead of the memory budget.
    memory_budget : int, optional
        Bytes a chunk may take (default
        :func:`~pullback_geom._core.memory.memory_budget`).
    dtype, device : optional
        What the decoder computes in, where no module inside it says so (a closure).
    """

    def __init__(
        self,
        kernels: DecoderKernels,
        *,
        latent_dim: int | None = None,
        obs_dim: int | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.kernels = kernels
        self.latent_dim = latent_dim
        self.obs_dim = obs_dim
        self.chunk_size = chunk_size
        self.memory_budget = memory_budget
        ref = reference_tensor(kernels.decoder)
        self.dtype = dtype if dtype is not None else (None if ref is None else ref.dtype)
        self.device = device if device is not None else (None if ref is None else ref.device)
        self._batch_layers = batch_dependent_layers(kernels.decoder)
        self._activations: int | None = None  # bytes a point, measured at the first check
        self._seen: Tensor | None = None  # a point of the last check: its dtype and device
        self._budget: tuple[torch.device, int] | None = None  # (device, bytes), read once

    # ------------------------------------------------------------------ checks
    def check_points(self, z, name: str = "z") -> tuple[Tensor, bool]:
        """Points checked for this metric, as a batch, and whether a batch axis was added.

        Shape ``(d,)`` or ``(B, d)``, finite, in the decoder's dtype and on its device; on
        first use the decoder is called once to learn ``d`` and ``D``.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)
        name : str
            Names ``z`` in errors.

        Returns
        -------
        z : Tensor, shape (B, d)
        single : bool

        Raises
        ------
        TypeError, ValueError
            Naming the argument, the shape, dtype or device received and the fix.
        """
        z, single = batch_points(z, self.latent_dim, name)
        self.check_dtype_device(z, name)
        self.check_eval_mode()
        self._probe(z)
        return z, single

    def check_curves(self, curve, name: str = "curve") -> tuple[Tensor, bool]:
        """Curves checked as :meth:`check_points` checks points.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d)
        name : str

        Returns
        -------
        curve : Tensor, shape (B, N, d)
        single : bool
            Whether a batch axis was added.
        """
        c, single = batch_curves(curve, self.latent_dim, name)
        self.check_dtype_device(c, name)
        self.check_eval_mode()
        self._probe(c.reshape(-1, c.shape[-1]))
        return c, single

    def check_dtype_device(self, x: Tensor, name: str) -> None:
        """Raise a TypeError naming ``name`` if ``x`` differs in dtype or device from what
        the decoder computes in (its modules' parameters, or the metric's ``dtype=`` and
        ``device=``); decoders that say neither accept any."""
        bad_dtype = self.dtype is not None and x.dtype != self.dtype
        bad_device = self.device is not None and x.device != self.device
        if bad_dtype or bad_device:
            dtype, device = self.dtype or x.dtype, self.device or x.device
            raise TypeError(
                f"{name} is {x.dtype} on {x.device}, but the decoder's parameters are "
                f"{dtype} on {device}; convert with {name}.to(dtype={dtype}, "
                f"device='{device}') or move the decoder"
            )

    def check_eval_mode(self) -> None:
        """Raise a ValueError if a BatchNorm or dropout layer of the decoder is in training
        mode: its output would depend on the other points of the batch, or on chance."""
        for layer in self._batch_layers:
            if layer.training:
                why = (
                    "normalises each point by the statistics of its batch"
                    if isinstance(layer, nn.modules.batchnorm._BatchNorm)
                    else "drops units at random"
                )
                raise ValueError(
                    f"the decoder's {type(layer).__name__} is in training mode: it {why}, "
                    "so the decoder is not a function of each point and has no metric; "
                    "call decoder.eval() first"
                )

    def _probe(self, z: Tensor) -> None:
        """On first use, learn ``D`` (and ``d``) from one decoder call with a clear error,
        and what a point's activations take (:func:`memory.activation_bytes`)."""
        one = (z[:1] if len(z) else z.new_zeros(1, z.shape[1])).detach()
        self._seen = one
        if self.obs_dim is not None:
            return
        with torch.no_grad():
            out = self.kernels.embed(one)
        self.obs_dim = out.shape[1]
        self.latent_dim = z.shape[1]

    def activation_bytes(self) -> int:
        """What a point's decoder pass allocates (:func:`memory.activation_bytes`),
        measured once, at a point of the last check."""
        if self._activations is None:
            if self._seen is None:
                ref = torch.zeros(1, self.latent_dim, dtype=self.dtype, device=self.device)
            else:
                ref = self._seen
            self._activations = memory.activation_bytes(self.kernels.embed, ref)
        return self._activations

    def params_require_grad(self) -> bool:
        """Whether autograd reaches the decoder's parameters through these kernels."""
        decoder = self.kernels.decoder
        if self.kernels.detach or not isinstance(decoder, nn.Module):
            return False
        return any(p.requires_grad for p in decoder.parameters())

    # ------------------------------------------------------------------ chunks
    def rows(self, kind: str, per_row: int = 1, groups: int = 1) -> int:
        """Rows evaluated at once by kernel ``kind`` (see :func:`rows_per_chunk`)."""
        if self.obs_dim is None or self.latent_dim is None:
            raise RuntimeError(
                "the metric has not seen points yet: pass them through "
                "metric.evaluator.check_points before evaluating"
            )
        if self.chunk_size is not None:
            return max(1, self.chunk_size // per_row)
        return rows_per_chunk(
            self.activation_bytes(),
            self.latent_dim,
            kind,
            self._chunk_budget(),
            per_row=per_row,
            chunk_size=self.chunk_size,
            groups=groups,
        )

    def groups(self, kind: str) -> int:
        """Outer directions' groups for a :data:`GROUPED` kernel: 1 where a point's
        streams fit the budget (or the chunk size is the user's, or the chain rule
        evaluates), else the fewest that make them fit, at most ``d`` (where
        :meth:`rows` then names the budget)."""
        d = self.latent_dim
        if kind not in GROUPED or self.chunk_size is not None or self.kernels.method == "chain":
            return 1
        point, budget = self.activation_bytes(), self._chunk_budget()
        if point * STREAMS[kind](d) <= budget:
            return 1
        fits = [g for g in range(2, d + 1) if point * grouped_streams(d, g) <= budget]
        return fits[0] if fits else d

    def _chunk_budget(self) -> int:
        """The memory budget on the device evaluated on, read once per device: ``rows``
        runs at every kernel call (each RK4 stage), and a GPU's free memory is a sync."""
        seen = None if self._seen is None else self._seen.device
        device = self.device or seen or torch.device("cpu")
        if self._budget is None or self._budget[0] != device:
            self._budget = device, memory.memory_budget(device, self.memory_budget)
        return self._budget[1]

    def map(self, fn: Callable[..., Tensor], kind: str, *xs: Tensor, groups: int = 1) -> Tensor:
        """``fn`` on chunks of ``xs`` (rows first), sized for kernel ``kind`` (with its
        outer directions in ``groups``)."""
        recompute = torch.is_grad_enabled() and (
            any(x.requires_grad for x in xs) or self.params_require_grad()
        )
        return chunked(fn, self.rows(kind, groups=groups), *xs, recompute=recompute)

    # ------------------------------------------------------------------ kernels
    def embed(self, z: Tensor) -> Tensor:
        """``f(z)``: (B, d) -> (B, D), the flattened decoder output (tuples concatenated,
        ridge block appended).

        In chunks once ``D`` is known; before any check, in one unchunked pass.
        """
        if self.obs_dim is None:
            return self.kernels.embed(z)
        return self.map(self.kernels.embed, "value", z)

    def value_and_jacobian(
        self, z: Tensor, *, tangent_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """The flattened decoder output and its Jacobian in one pass; checks ``z``.

        Parameters
        ----------
        z : Tensor, shape (B, d)
        tangent_dtype : torch.dtype, optional
            The Jacobian's dtype, e.g. ``torch.bfloat16`` for an approximate Jacobian whose
            chain-rule products run ~3x faster on CPUs with AVX-512 BF16 or AMX (slower on
            CPUs without). Only ``nn.Sequential`` decoders on the chain rule compute in it;
            other decoders compute in ``z``'s dtype and cast. Default: ``z``'s dtype.

        Returns
        -------
        value : Tensor, shape (B, D)
            In ``z``'s dtype.
        jac : Tensor, shape (B, D, d)
        """
        _check_tangent_dtype(tangent_dtype)
        z, _ = self.check_points(z)
        size = self.rows("jacobian")
        if z.shape[0] <= size:  # no copy through torch.cat
            value, jac = self.kernels.value_and_jacobian(z, tangent_dtype)
        else:
            parts = [
                self.kernels.value_and_jacobian(z[i : i + size], tangent_dtype)
                for i in range(0, len(z), size)
            ]
            value, jac = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return value, check_finite_output(jac, "Jacobian")

    def curvature_tape(
        self, z: Tensor, *, tangent_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        """``f(z)``, ``J(z)`` and the second derivatives contracted with output vectors
        (:meth:`~pullback_geom._core.kernels.DecoderKernels.curvature_tape`; chain-rule
        decoders only), in one chunk: callers size ``z`` by ``rows("curvature_tape")``.

        Parameters
        ----------
        z : Tensor, shape (B, d)
        tangent_dtype : torch.dtype, optional
            The dtype of the Jacobian and the contraction (e.g. float32 for float64 points,
            the value staying in float64). Default: ``z``'s dtype.

        Returns
        -------
        value : Tensor, shape (B, D)
        jac : Tensor, shape (B, D, d)
        contract : callable
            ``a`` (B, D) -> ``sum_a a_a D^2 f_a(z)`` (B, d, d).
        """
        _check_tangent_dtype(tangent_dtype)
        z, _ = self.check_points(z)
        value, jac, contract = self.kernels.curvature_tape(z, tangent_dtype)
        return value, check_finite_output(jac, "Jacobian"), contract

    def linearise(self, z: Tensor) -> Linearisation:
        """The decoder linearised at ``z`` (B, d): ``f(z)``, ``J v`` and ``J^T u`` without
        forming ``J`` (:class:`~pullback_geom._core.linearise.Linearisation`), recorded in
        chunks sized for kind ``"linear"``; ``z`` must be checked and non-empty."""
        return Linearisation(self.kernels.embed, z, self.rows("linear"))

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
        groups = self.groups("christoffel")
        fn = functools.partial(self.kernels.christoffels, groups=groups)
        return self.map(fn, "christoffel", z, groups=groups)

    def acceleration(self, z: Tensor, v: Tensor) -> Tensor:
        """``-Gamma(v, v)`` at ``z``: (B, d), (B, d) -> (B, d)."""
        return self.map(self.kernels.acceleration, "acceleration", z, v)

    def curvature(self, from_terms: Callable[..., Tensor], z: Tensor, *xs: Tensor) -> Tensor:
        """``from_terms(G, G^{-1}, <II, II>, *xs)`` on chunks of ``z`` (B, d) and ``xs``
        (B, ...): curvature from the second fundamental form (see
        :meth:`DecoderKernels.curvature_terms`)."""

        groups = self.groups("curvature")

        def fn(x: Tensor, *rest: Tensor) -> Tensor:
            return from_terms(*self.kernels.curvature_terms(x, groups), *rest)

        return self.map(fn, "curvature", z, *xs, groups=groups)


def _check_tangent_dtype(tangent_dtype) -> None:
    """``tangent_dtype`` is None or a floating-point ``torch.dtype``."""
    if tangent_dtype is not None and not (
        isinstance(tangent_dtype, torch.dtype) and tangent_dtype.is_floating_point
    ):
        raise TypeError(
            f"tangent_dtype must be a floating-point torch.dtype; got {tangent_dtype!r}"
        )
