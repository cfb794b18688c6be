r"""Are latent distances identifiable? The same image pairs measured in retrained models.

Latent coordinates of a VAE are not identifiable: retraining with another seed moves,
rotates and bends the latent space. Geodesic distances of the pullback metric are
invariant under any reparametrisation of the latent space, so if two models learn the
same decoded manifold they agree on them (Syrota et al., "Identifying metric structures
of deep latent variable models", ICML 2025). This module measures how far that holds:

1. the same ``P`` test-image pairs are measured in ``K`` models, giving a ``(K, P)``
   array of Euclidean latent distances and one of geodesic distances;
2. each model's row is divided by its own mean (:func:`scale_free`): Euclidean latent
   distances have an arbitrary scale (the prior fixes it only loosely), and geodesic
   distances are divided the same way so that both are compared on the same footing;
3. per pair, the coefficient of variation across the models
   (:func:`coefficient_of_variation`, std / mean, population std): 0 means every model
   gives the pair the same (relative) distance;
4. the Spearman rank correlation between every two models (:func:`rank_correlations`),
   which needs no rescaling at all.

:func:`identifiability_table` does 2-4 for both kinds of distance;
:func:`model_distances` measures one model; :mod:`pullback_geom.experiments.identifiability.report`
draws the result and writes the report. ``pullback-geom identifiability`` runs it all on
checkpoints.

Where the true distances are known — models of the ``digit-orbit`` images
(:mod:`pullback_geom.data.digit_orbit`), whose image manifold is an exactly known 2-D
surface — :func:`truth_table` also says how close each model's distances come to the
true geodesic distances of the same image pairs.
"""

from .experiment import (
    ENERGIES,
    METRICS,
    ensemble_energy_distances,
    load_models,
    model_distances,
    run_identifiability,
)
from .measures import (
    coefficient_of_variation,
    identifiability_table,
    rank_correlations,
    scale_free,
    summarise,
    truth_table,
)
from .report import identifiability_figure, render_markdown, truth_figure

__all__ = [
    "ENERGIES",
    "METRICS",
    "coefficient_of_variation",
    "ensemble_energy_distances",
    "identifiability_figure",
    "identifiability_table",
    "load_models",
    "model_distances",
    "rank_correlations",
    "render_markdown",
    "run_identifiability",
    "scale_free",
    "summarise",
    "truth_figure",
    "truth_table",
]
