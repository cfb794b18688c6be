"""Figures of a 2-D latent space and its pullback geometry.

Each function takes a metric and/or arrays and returns a :class:`matplotlib.figure.Figure`
built outside pyplot's global state (nothing to close; works with any backend, Agg
included). Save with ``fig.savefig(path)``. See ``docs/gallery.md``.

=====  ===========================  ==================================================
 no.   function                     shows
=====  ===========================  ==================================================
 1     :func:`latent_scatter`       codes coloured by class
 2     :func:`decoded_grid`         images decoded from a regular latent grid
 3     :func:`volume_heatmap`       ``sqrt(det G)``, log scale, codes overlaid
 4     :func:`geodesics_figure`     geodesics by method over (3), end-point images
 5     :func:`interpolation_figure` straight lines vs geodesics, decoded strips
 6     :func:`distance_matrices`    class distance matrices, Euclidean and geodesic
 7     :func:`uncertainty_figure`   mean and uncertainty terms, ``sigma(z)``
 8     :func:`density_connection`   log volume vs log KDE density
 9     :func:`curvature_map`        Gaussian curvature, codes and class names overlaid
 10    :func:`comparison_figure`    every geodesic method's curves over (3)
 11    :func:`training_curve`       a run's loss per epoch, by stage
=====  ===========================  ==================================================

:func:`draw_volume` draws (3) on any Axes; :func:`kde_log_density` is the KDE of (8).
"""

from .._core.extras import require

require("matplotlib", "viz", "pullback_geom.viz")  # first: a missing one names the extra

from ._common import Extent, draw_volume  # noqa: E402
from .compare import comparison_figure  # noqa: E402
from .curvature import curvature_map  # noqa: E402
from .distances import distance_matrices  # noqa: E402
from .latent import (  # noqa: E402
    decoded_grid,
    density_connection,
    kde_log_density,
    latent_scatter,
    volume_heatmap,
)
from .paths import geodesics_figure, interpolation_figure, uncertainty_figure  # noqa: E402
from .training import training_curve  # noqa: E402

__all__ = [
    "Extent",
    "draw_volume",
    "latent_scatter",
    "decoded_grid",
    "volume_heatmap",
    "geodesics_figure",
    "interpolation_figure",
    "distance_matrices",
    "training_curve",
    "uncertainty_figure",
    "density_connection",
    "kde_log_density",
    "curvature_map",
    "comparison_figure",
]
