"""geomstats adapter: a decoder's latent space as a geomstats Riemannian manifold.

>>> import torch
>>> from pullback_geom import PullbackMetric
>>> from pullback_geom.geomstats import latent_space
>>> from pullback_geom.surfaces import InverseStereographic
>>> space = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))
>>> p = torch.tensor([0.0, 0.0], dtype=torch.float64)
>>> q = torch.tensor([1.0, 0.0], dtype=torch.float64)
>>> round(float(space.metric.dist(p, q)), 6)  # a quarter great circle
1.570796

``space.metric`` is a :class:`PullbackRiemannianMetric`: its metric matrix, Christoffel
symbols (and their derivatives) and geodesic equation come from the core
(:class:`~pullback_geom.PullbackMetric`). Its default exp/log solvers choose by the
decoder (``method="auto"``, :mod:`pullback_geom.geodesics.registry`): on smooth decoders
the geodesic ODE (exp by adaptive Dormand–Prince, log by Newton shooting), accurate to the
solvers' tolerance; on piecewise-linear (ReLU) decoders, whose metric jumps, discrete
geodesic calculus (``"discrete"``), exact there. Any method of the core's registries can
be named instead (``exp_options={"method": "rk4"}``, ``log_options={"method": "lm"}``),
and ``dist`` is the length of the shortest curve the energy solver finds.
Every geomstats solver can be swapped in, e.g.
``space.metric.log_solver = LogODESolver(space)``.

Importing this module imports geomstats with its PyTorch backend
(``GEOMSTATS_BACKEND=pytorch``); it needs the ``geomstats`` extra (geomstats 2.8 and
scikit-learn, ``pip install 'pullback-geom[geomstats]'``), and says so in its
``ImportError`` when that is missing. geomstats sets torch's global default dtype to float64
when it loads that backend; this module restores the default dtype you had before.
Points may be float32 or float64 (or NumPy arrays): they are cast to the decoder's dtype
for the computation and the results are cast back.
"""

# geomstats is imported here, first, with the patches pullback_geom needs (_compat.py
# lists each one with its reason); the modules below import geomstats at their top.
from ._compat import GeomstatsBackendError, prepare_geomstats

prepare_geomstats()

from .riemannian import PullbackRiemannianMetric  # noqa: E402
from .solvers import (  # noqa: E402
    PullbackExpSolver,
    PullbackLogSolver,
)
from .space import latent_space  # noqa: E402

__all__ = [
    "GeomstatsBackendError",
    "PullbackExpSolver",
    "PullbackLogSolver",
    "PullbackRiemannianMetric",
    "latent_space",
]
