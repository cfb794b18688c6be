"""What every geodesic method is: a :class:`Solver` with declared options, kept in a
:class:`Registry`, returning one result type per problem.

A boundary-value method (``c(0) = p``, ``c(1) = q``) returns a :class:`GeodesicResult`;
an initial-value method (``c(0) = z``, ``c'(0) = v``) an :class:`InitialValueResult`.
The registries themselves (the one place method names are listed) are in
:mod:`~pullback_geom.geodesics.registry`; this module holds only the types, so that the
solver modules can build their entries without importing the table that lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

__all__ = ["GeodesicResult", "InitialValueResult", "Registry", "Solver"]


@dataclass
class GeodesicResult:
    """Geodesics of ``B`` boundary-value problems: what every boundary-value method returns.

    Attributes
    ----------
    points : Tensor, shape (B, N, d)
        The discrete curves, end points included (``N`` depends on the method: its
        ``n_points``, ``n_steps + 1`` or ``segments + 1``).
    length : Tensor, shape (B,)
        Observation-space length of the curve (the decoded latent polygon, each segment
        refined; see ``refine`` of the energy methods).
    energy : Tensor, shape (B,)
        Its discrete energy, ``(N - 1) * sum ||f(x_{i+1}) - f(x_i)||^2``.
    converged : Tensor, shape (B,), bool
        The method's own criterion was met (energy decrease, end-point error), never that
        its damping or line search gave up.
    iterations : Tensor, shape (B,), int
    velocity : Tensor, shape (B, d)
        ``c'(0)``, the logarithm ``log_p q``: exact for the shooting and discrete methods,
        the curve's second-order one-sided difference for the energy methods.
    info : dict of str to Tensor
        What the method reports beyond these, per pair (e.g. ``"error"``, the end-point
        residual of the shooting methods).
    """

    points: Tensor
    length: Tensor
    energy: Tensor
    converged: Tensor
    iterations: Tensor
    velocity: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)

    def select(self, index) -> GeodesicResult:
        """The result of the pairs ``index`` (an int drops the batch axis)."""
        return _select(self, index)


@dataclass
class InitialValueResult:
    """Geodesics of ``B`` initial-value problems: what every initial-value method returns.

    Attributes
    ----------
    point : Tensor, shape (B, d)
        ``c(t)``; NaN where the curve failed (``converged`` False).
    converged : Tensor, shape (B,), bool
        Reached ``t`` with the method's tolerance met and stayed finite.
    path : Tensor, shape (B, T, d), optional
        With ``path=True``: the curve at the method's own ``T`` equally spaced times on
        ``[0, t]``, ``z`` first and ``point`` last; otherwise None.
    info : dict of str to Tensor
        What the method reports beyond these, per curve (e.g. ``"steps"``, ``"rejected"``
        of the adaptive method).
    """

    point: Tensor
    converged: Tensor
    path: Tensor | None = None
    info: dict[str, Tensor] = field(default_factory=dict)

    def select(self, index) -> InitialValueResult:
        """The result of the curves ``index`` (an int drops the batch axis)."""
        return _select(self, index)


def _select(result, index):
    values = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if isinstance(value, dict):
            value = {k: v[index] for k, v in value.items()}
        elif isinstance(value, Tensor):
            value = value[index]
        values[f.name] = value
    return type(result)(**values)


@dataclass(frozen=True)
class Solver:
    """One geodesic method: its name, its declared options and the function that runs it.

    Attributes
    ----------
    name : str
        The name users pass as ``method=``.
    run : callable
        Boundary-value: ``run(metric, p, q, **options) -> GeodesicResult``; initial-value:
        ``run(metric, z, v, *, t, path, **options) -> InitialValueResult``. Points are
        checked batches ``(B, d)`` with ``B >= 1``; ``options`` hold every declared
        option, defaults filled in.
    options : mapping of str to object
        Every option the method accepts and its default (``None``: chosen by dtype).
    smooth_only : bool
        The method integrates the geodesic ODE, which is ill-posed on decoders whose metric
        jumps (ReLU networks).
    summary : str
        One line for tables and errors.
    slow : bool
        Minutes per pair: comparisons run it only when asked for by name.
    n_nodes : callable, optional
        ``options -> N``, the nodes of its curves (an empty batch's ``points`` have that
        shape); default ``n_points``, else ``n_steps + 1``.
    empty_info : callable, optional
        ``points (0, d) -> info``: the method's ``info`` for an empty batch, the same keys
        with zero rows (default: no keys).
    """

    name: str
    run: Callable[..., Any]
    options: Mapping[str, Any]
    smooth_only: bool = False
    summary: str = ""
    slow: bool = False
    n_nodes: Callable[[Mapping[str, Any]], int] | None = None
    empty_info: Callable[[Tensor], dict[str, Tensor]] | None = None

    def nodes(self, options: Mapping[str, Any]) -> int:
        """Nodes of this method's curves under ``options`` (defaults filled in)."""
        if self.n_nodes is not None:
            return self.n_nodes(options)
        return options["n_points"] if "n_points" in options else options["n_steps"] + 1

    def with_defaults(self, options: Mapping[str, Any], caller: str) -> dict[str, Any]:
        """``options`` over this method's defaults; an option it does not declare is a
        ``TypeError`` naming it and the ones it accepts, before any work."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(
                f"{caller}: method {self.name!r} got unknown option"
                f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(sorted(self.options)) or 'none'}"
            )
        return {**self.options, **options}


class Registry(Mapping[str, Solver]):
    """Solvers of one problem by name (torchdiffeq's ``SOLVERS`` table, as an object).

    Parameters
    ----------
    problem : str
        What its methods solve, for errors ("boundary-value", "initial-value", ...).
    solvers : iterable of Solver
    """

    def __init__(self, problem: str, solvers=()) -> None:
        self.problem = problem
        self._solvers: dict[str, Solver] = {}
        for solver in solvers:
            self.register(solver)

    def register(self, solver: Solver) -> Solver:
        """Add ``solver`` (a name already taken is a ``ValueError``); returns it."""
        if not isinstance(solver, Solver):
            raise TypeError(f"expected a Solver; got {type(solver).__name__}")
        if solver.name in self._solvers or solver.name == "auto":
            raise ValueError(f"{self.problem} method {solver.name!r} is already registered")
        self._solvers[solver.name] = solver
        return solver

    def __getitem__(self, name: str) -> Solver:
        try:
            return self._solvers[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.problem} method {name!r}; choose from 'auto', "
                f"{', '.join(map(repr, self._solvers))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        # Mapping's default calls __getitem__ and catches only KeyError; ours raises
        # ValueError for an unknown name.
        return name in self._solvers

    def __iter__(self) -> Iterator[str]:
        return iter(self._solvers)

    def __len__(self) -> int:
        return len(self._solvers)

    def __repr__(self) -> str:
        return f"Registry({self.problem!r}, {list(self._solvers)})"
