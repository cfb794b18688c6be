"""The geodesic methods by name: the one place they are listed, and the one rule that
chooses among them (``method="auto"``).

:data:`BOUNDARY_VALUE` holds the methods that join ``p`` to ``q`` (what
:func:`~pullback_geom.geodesics.connecting_geodesic`, ``geodesic_distance``, ``log_map``,
``pairwise_distances``' solver routes and the adapters call); :data:`INITIAL_VALUE` the
methods that start at ``z`` with velocity ``v`` (``exp_map``, ``integrate_geodesic``).

Adding a method is one module that builds a :class:`~pullback_geom.geodesics._solver.Solver`
(an energy minimiser: :func:`~pullback_geom.geodesics.energy.energy_solver`) and one line
below; ``tests/test_solver_contract.py`` then runs it against the shared contract (the
sphere oracle, bad input, empty batches, dtype and device).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..metric import PullbackMetric
from ._solver import Registry, Solver
from .bvp import MULTIPLE
from .chord import LM
from .discrete import DISCRETE_EXP
from .discrete_log import DISCRETE_LOG
from .georce import GEORCE
from .lbfgs import LBFGS
from .newton_cg import NEWTON_CG
from .ode import DOPRI5, RK4
from .shooting import SHOOTING

__all__ = [
    "BOUNDARY_VALUE",
    "INITIAL_VALUE",
    "NEWTON_CG_MIN_DIM",
    "PAIRWISE_ROUTES",
    "SHOOTING_MAX_DIM",
    "registry_for",
    "resolve",
]

#: Boundary-value methods: ``run(metric, p, q, **options) -> GeodesicResult``.
BOUNDARY_VALUE = Registry(
    "boundary-value", [LM, NEWTON_CG, GEORCE, LBFGS, SHOOTING, MULTIPLE, DISCRETE_LOG]
)
#: Initial-value methods: ``run(metric, z, v, *, t, path, **options) -> InitialValueResult``.
INITIAL_VALUE = Registry("initial-value", [RK4, DOPRI5, DISCRETE_EXP])


class Route(NamedTuple):
    """A route of :func:`~pullback_geom.geodesics.pairwise_distances`.

    Attributes
    ----------
    solver : bool
        It runs a boundary-value method (and so takes its options).
    grid : bool
        It builds a latent grid graph (so ``d <= 3``).
    """

    solver: bool
    grid: bool


#: Routes of :func:`~pullback_geom.geodesics.pairwise_distances` (besides ``"auto"``):
#: ``"graph"`` (shortest paths on a fine latent grid graph), ``"graph+solver"`` (a coarse
#: graph's paths refined by the solver), ``"solver"`` (the solver from straight lines),
#: ``"knn"`` (shortest paths on a graph of the points themselves).
PAIRWISE_ROUTES = {
    "graph": Route(solver=False, grid=True),
    "graph+solver": Route(solver=True, grid=True),
    "solver": Route(solver=True, grid=False),
    "knn": Route(solver=False, grid=False),
}

#: Latent dimension from which ``method="auto"`` solves shortest curves by ``"newton-cg"``
#: rather than ``"lm"``: forming a node's Jacobian costs ``d`` forward-mode tangents (or
#: the chain rule's ``d`` columns), a conjugate-gradient step two passes, whatever ``d``.
#: Measured (one thread, 24 pairs, both at the 64-node reference's accuracy): MLPs
#: ``d -> 512 -> 784`` at ``d = 2, 4, 8, 16``: lm 2.6x, 1.3x faster, newton-cg 1.2x, 1.8x
#: faster; convolutional MNIST decoders at ``d = 8, 16``: newton-cg 1.7x; GEORCE's CelebA
#: shape (``d = 32``, 3 x 64 x 64): 2.7x (``benchmarks/bench_highd.py``).
#: With ``jacobian_dtype`` (bfloat16 Jacobians), ``"auto"`` stays ``"lm"`` at any ``d``:
#: ``"lm"``'s Jacobians then cost a third, while ``"newton-cg"``'s blocks only precondition
#: and every step runs its float32 conjugate gradients (``d = 16`` MLP, 4,000 pairs, two
#: threads: 4 nodes 0.51 against 0.74 ms a pair, 16 nodes 9.9 against 13.8).
NEWTON_CG_MIN_DIM = 8

#: Latent dimension up to which ``method="auto"`` takes velocities on smooth decoders by
#: Newton shooting. Each of its Newton steps shoots ``2 d + 1`` trajectories of 200
#: geodesic accelerations, each of which needs the node's Jacobian (``d`` tangents): its
#: cost grows as ``d^2`` where the energy solvers' grows as ``d``. Measured (two threads,
#: 16 pairs, float64, tanh MLPs ``d -> 512 -> 784``, all converged in 1-2 Newton steps):
#: 24x the energy solver's time at ``d = 2``, 60x at 4, 37x at 8, 530x at 16 (69 s
#: against 0.13 s); on a LayerNorm MLP at ``d = 16`` 75 s for 4 pairs. Above it
#: ``"auto"`` takes the energy curve's velocity (``exp(log q)`` ~1e-3 from ``q``);
#: ``method="shooting"`` is still there for the solver's tolerance.
SHOOTING_MAX_DIM = 3

#: What ``method="auto"`` picks, by purpose and by whether the decoder is smooth
#: (:attr:`PullbackMetric.smooth`: no piecewise-linear layer in it).
#:
#: * ``"curve"`` (shortest curves and distances): Levenberg–Marquardt on the chord energy,
#:   right on any decoder (it needs values and Jacobians only): ``"lm"`` below
#:   :data:`NEWTON_CG_MIN_DIM` latent dimensions, ``"newton-cg"`` from it; ``"lm"`` in
#:   any dimension where the call asks for low-precision Jacobians (``jacobian_dtype``).
#: * ``"velocity"`` (``log_map``, geomstats' ``log``): Newton shooting on the geodesic ODE
#:   where it is well-posed, up to :data:`SHOOTING_MAX_DIM` latent dimensions: the
#:   velocity to the solver's tolerance (``exp(log q)`` within 3e-9 of ``q`` in the median
#:   on the sphere, 1e-6 on the bundled smooth model), where multiple shooting leaves 3e-7
#:   and 1e-4 and the energy curve's one-sided difference 1e-3 and 2e-2, at 5-10x their
#:   cost (``benchmarks/bench_auto_methods.py``); above it the ``"curve"`` method's
#:   energy curve; the discrete logarithm on piecewise-linear decoders, where the ODE is
#:   ill-posed and the discrete calculus is exact.
#: * ``"exp"`` (``exp_map``, geomstats' ``exp``): adaptive Dormand–Prince on smooth
#:   decoders (accurate to ``rtol``: on the unit sphere within 1e-5 of the great circle,
#:   where the discrete geodesic is ``O(1 / K^2)`` off, 1.8e-3 at ``K = 16``); the discrete
#:   geodesic, the inverse of the discrete logarithm, on piecewise-linear ones.
AUTO = {
    "velocity": {True: "shooting", False: "discrete"},
    "exp": {True: "dopri5", False: "discrete"},
}


def resolve(
    method: str,
    purpose: str,
    metric: PullbackMetric,
    latent_dim: int | None = None,
    options: Mapping[str, object] | None = None,
) -> Solver:
    """The solver ``method`` names, ``"auto"`` resolved for ``purpose`` on ``metric``.

    Parameters
    ----------
    method : str
        A key of the purpose's registry, or ``"auto"``.
    purpose : {"curve", "velocity", "exp"}
    metric : PullbackMetric
    latent_dim : int, optional
        ``d``, where the metric does not know it yet (a closure before any point).
    options : mapping, optional
        The options the call passes (``"auto"`` for curves reads ``jacobian_dtype``).

    Returns
    -------
    Solver

    Raises
    ------
    ValueError
        For an unknown method, naming the registry's methods.
    """
    if method == "auto":
        d = latent_dim if latent_dim is not None else metric.latent_dim
        high_dim_velocity = purpose == "velocity" and d is not None and d > SHOOTING_MAX_DIM
        if purpose == "curve" or (high_dim_velocity and metric.smooth):
            low_precision = (options or {}).get("jacobian_dtype") is not None
            high_dim = d is not None and d >= NEWTON_CG_MIN_DIM
            method = "newton-cg" if high_dim and not low_precision else "lm"
        else:
            method = AUTO[purpose][bool(metric.smooth)]
    return registry_for(purpose)[method]


def registry_for(purpose: str) -> Registry:
    """The registry of ``purpose``'s methods: initial values for ``"exp"``, boundary
    values for ``"curve"`` and ``"velocity"``."""
    return INITIAL_VALUE if purpose == "exp" else BOUNDARY_VALUE
