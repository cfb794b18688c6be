"""Geodesics of a :class:`~pullback_geom.PullbackMetric`, batched over pairs.

Two families, one module each:

* :mod:`~pullback_geom.geodesics.ode`: the geodesic ODE ``c'' = -Gamma(c', c')``
  integrated by RK4 or adaptive Dormand–Prince 5(4)
  (:func:`exp_map`), and boundary values by Newton shooting on the
  initial velocity (:func:`log_map`) or by multiple shooting
  (:mod:`~pullback_geom.geodesics.bvp`, :func:`multiple_shooting`);
* :mod:`~pullback_geom.geodesics.discrete`: discrete geodesic calculus (exp, log and
  parallel transport from the decoded squared distance alone; exact on ReLU decoders),
  also reachable as ``exp_map(..., method="discrete")`` and
  ``log_map(..., method="discrete")``;
* :mod:`~pullback_geom.geodesics.energy`: minimisation of the discrete curve energy
  measured in observation space (:func:`connecting_geodesic`, :func:`geodesic_distance`),
  by Levenberg–Marquardt (default), :mod:`~pullback_geom.geodesics.georce` or L-BFGS;
* :mod:`~pullback_geom.geodesics.pairwise`: distance matrices in deterministic blocks
  (:func:`pairwise_distances`, :func:`distance_block`), optionally initialised by shortest
  paths on a latent grid graph (:mod:`~pullback_geom.geodesics.graph`);
* :mod:`~pullback_geom.experiments.compare`: every method (ours, geomstats', stochman's) on
  the same pairs, with the same diagnostics (:func:`compare_geodesics`).
"""

from ._common import GeodesicConvergenceWarning, GeodesicResult
from .bvp import BVPResult, multiple_shooting
from .discrete import DiscreteInfo, discrete_exp, discrete_log, discrete_transport
from .energy import connecting_geodesic, geodesic_distance
from .graph import LatentGraph, graph_geodesics, latent_graph
from .ode import IVPInfo, exp_map, log_map
from .pairwise import PairwiseInfo, block_slices, distance_block, pairwise_distances

__all__ = [
    "GeodesicResult",
    "GeodesicConvergenceWarning",
    "connecting_geodesic",
    "exp_map",
    "multiple_shooting",
    "BVPResult",
    "discrete_exp",
    "discrete_log",
    "discrete_transport",
    "DiscreteInfo",
    "IVPInfo",
    "log_map",
    "geodesic_distance",
    "pairwise_distances",
    "distance_block",
    "block_slices",
    "PairwiseInfo",
    "compare_geodesics",
    "GeodesicComparison",
    "MethodRow",
    "COMPARE_METHODS",
    "LatentGraph",
    "latent_graph",
    "graph_geodesics",
]

#: Names re-exported lazily from :mod:`pullback_geom.experiments.compare`: the one
#: import that points up the layers, whitelisted by name in tests/test_layers.py.
_FROM_EXPERIMENTS = ("COMPARE_METHODS", "GeodesicComparison", "MethodRow", "compare_geodesics")


def __getattr__(name: str):
    if name in _FROM_EXPERIMENTS:
        from ..experiments import compare

        return getattr(compare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
