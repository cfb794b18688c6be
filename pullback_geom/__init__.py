"""pullback_geom: Riemannian geometry of the latent spaces of generative models.

A decoder ``f: R^d -> R^D`` pulls the Euclidean metric of observation space back to its
latent space, ``G(z) = J(z)^T J(z)``. :class:`PullbackMetric` computes it and its
Christoffel symbols, geodesic accelerations, curve energies and lengths in batched
forward mode; :mod:`pullback_geom.geomstats` and :mod:`pullback_geom.stochman` plug it
into those libraries (imported on demand, so importing this package leaves torch's
defaults and geomstats' backend untouched).
"""

__all__ = ["PullbackMetric", "SingularMetricWarning"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Loaded on first use (PEP 562), so that the CLI's --help and the extras checks need
    # not import torch.
    if name == "PullbackMetric":
        from .metric import PullbackMetric

        return PullbackMetric
    if name == "SingularMetricWarning":
        from ._core.linalg import SingularMetricWarning

        return SingularMetricWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
