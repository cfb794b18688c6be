"""Geodesics of a :class:`~pullback_geom.PullbackMetric`, batched over pairs.

One function per problem (:mod:`~pullback_geom.geodesics.api`), every method looked up by
name in :mod:`~pullback_geom.geodesics.registry`:

* boundary values, ``c(0) = p``, ``c(1) = q``: :func:`connecting_geodesic` (a
  :class:`GeodesicResult`), and its conveniences :func:`geodesic_distance` (lengths) and
  :func:`log_map` (initial velocities). Methods: minimisers of the discrete curve energy
  measured in observation space (:mod:`~pullback_geom.geodesics.energy`: ``"lm"``,
  the matrix-free ``"newton-cg"``, ``"georce"``, ``"lbfgs"``), shooting on the geodesic
  ODE (``"shooting"``, ``"multiple"``), the discrete logarithm (``"discrete"``);
* initial values, ``c(0) = z``, ``c'(0) = v``: :func:`integrate_geodesic` (an
  :class:`InitialValueResult`) and :func:`exp_map` (end points). Methods: the geodesic ODE
  by ``"rk4"`` or ``"dopri5"``, the discrete geodesic (``"discrete"``);
* :func:`discrete_transport`: parallel transport along a curve;
* :func:`frechet_mean`: weighted Fréchet means of one or many sets of points, by one
  joint solve over the mean and the geodesics to every point
  (:mod:`~pullback_geom.geodesics.frechet`);
* distance matrices in deterministic blocks (:func:`pairwise_distances`,
  :func:`distance_matrix`, :func:`distance_block`), optionally started by shortest paths
  on a latent grid graph (:mod:`~pullback_geom.geodesics.graph`) or on the points' own
  graph (:mod:`~pullback_geom.geodesics.knn`), on a Dask cluster
  (:mod:`~pullback_geom.geodesics.cluster`) and resumable on disk
  (:mod:`~pullback_geom.geodesics.distance_store`);
* :mod:`~pullback_geom.geodesics.ensemble`: the ensemble curve energy.

``method="auto"`` chooses by the decoder (:attr:`PullbackMetric.smooth`): the geodesic ODE
where it is well-posed, the discrete calculus and the energy where the metric jumps; and
for shortest curves by the latent dimension (``"lm"`` below 8, ``"newton-cg"`` from 8).
"""

from ._common import GeodesicConvergenceWarning
from ._solver import GeodesicResult, InitialValueResult, Registry, Solver
from .api import connecting_geodesic, exp_map, geodesic_distance, integrate_geodesic, log_map
from .discrete import discrete_transport
from .frechet import FrechetResult, frechet_mean
from .graph import LatentGraph, graph_geodesics, latent_graph
from .pairwise import (
    PairwiseResult,
    block_slices,
    distance_block,
    distance_matrix,
    pairwise_distances,
)
from .registry import BOUNDARY_VALUE, INITIAL_VALUE, PAIRWISE_ROUTES

__all__ = [
    "BOUNDARY_VALUE",
    "INITIAL_VALUE",
    "PAIRWISE_ROUTES",
    "FrechetResult",
    "GeodesicConvergenceWarning",
    "GeodesicResult",
    "InitialValueResult",
    "LatentGraph",
    "PairwiseResult",
    "Registry",
    "Solver",
    "block_slices",
    "connecting_geodesic",
    "discrete_transport",
    "distance_block",
    "distance_matrix",
    "exp_map",
    "frechet_mean",
    "geodesic_distance",
    "graph_geodesics",
    "integrate_geodesic",
    "latent_graph",
    "log_map",
    "pairwise_distances",
]
