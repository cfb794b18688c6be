"""geomstats learning on a decoder's latent manifold, against the Euclidean baseline.

Each function takes a :class:`~pullback_geom.PullbackMetric` and latent codes (and
labels), runs one geomstats estimator on :func:`pullback_geom.geomstats.latent_space`
(our batched solvers inside) and the same estimator on plain ``R^d``, and returns both:

* :func:`class_frechet_means`: ``FrechetMean`` of each class;
* :func:`kmeans_comparison`: ``RiemannianKMeans`` from the same initial centres,
  scored against the labels by :func:`adjusted_rand_index` and :func:`purity`;
* :func:`knn_comparison`: ``KNearestNeighborsClassifier`` under the geodesic distance;
* :func:`tangent_pca`: ``TangentPCA`` at a base point (a class's Fréchet mean), with
  the principal geodesics.

Importing this module imports geomstats with its PyTorch backend (through
:mod:`pullback_geom.geomstats`). See ``docs/learning.md``.
"""

from __future__ import annotations

# The adapter first: it imports geomstats with its PyTorch backend, which the modules
# below import at their top.
from ... import geomstats as _adapter  # noqa: F401
from ._common import learning_space
from .knn import KNNComparison, knn_comparison
from .means import ClassMeans, KMeansComparison, class_frechet_means, kmeans_comparison
from .pca import TangentPCAResult, tangent_pca
from .scores import adjusted_rand_index, purity

__all__ = [
    "ClassMeans",
    "KMeansComparison",
    "KNNComparison",
    "TangentPCAResult",
    "adjusted_rand_index",
    "purity",
    "learning_space",
    "class_frechet_means",
    "kmeans_comparison",
    "knn_comparison",
    "tangent_pca",
]
