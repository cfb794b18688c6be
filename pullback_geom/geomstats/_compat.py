"""What pullback_geom changes in geomstats, in one place, each change with its reason.

geomstats 2.8 is imported with its PyTorch backend and patched as little as it takes for
its learning tools and solvers to run on a learned latent space:

1. **The backend** (:func:`_import_geomstats`): ``GEOMSTATS_BACKEND=pytorch`` is set
   before the first import (geomstats reads it once); an earlier import with another
   backend is an error (:class:`GeomstatsBackendError`), not a silent NumPy run.
2. **torch's default dtype** (:func:`_keep_geomstats_dtype`): loading the backend sets it
   to float64 for the whole process. It is restored, and each backend function runs with
   geomstats' own default for the duration of the call, so that geomstats never mixes
   float32 and float64 tensors.
3. **TangentPCA** (:func:`_patch_tangent_pca`): scikit-learn's ``svd_flip`` rejects torch
   tensors; a version that takes them, same sign convention, replaces it in
   ``geomstats.learning.pca`` only. And without a ``base_point``, on a latent space with a
   joint ``mean_estimator``, ``_fit`` takes the tangent vectors from the joint Fréchet
   solve's curves (:func:`~pullback_geom.geomstats.learning.tangent_pca_fit`) instead of
   fitting the mean and then solving every logarithm again.
4. **FrechetMean** (:func:`_patch_frechet_mean`): geomstats picks the estimator by the
   metric in ``FrechetMean.__new__`` (the circle, linear and elastic means); on a latent
   space its gradient descent needs a geodesic solve per step and stops on an absolute
   criterion that fits no single scale (5-15 s for 50 codes on the bundled models). The
   pullback metric is added to that choice: ``FrechetMean(space)`` is a
   :class:`~pullback_geom.geomstats.learning.PullbackFrechetMean`, the joint solver by
   default, geomstats' gradient descent by name (``method="default"``).
5. **RiemannianKMeans** (:func:`_patch_kmeans`): its ``fit`` calls ``dist`` once per
   centre and fits one ``FrechetMean`` per cluster, a Python loop over batched solvers;
   on a latent space with a joint ``mean_estimator`` it runs
   :func:`~pullback_geom.geomstats.kmeans.kmeans_fit` (the same steps, one batched
   ``dist`` and one joint solve for all clusters), elsewhere geomstats' own.

:func:`prepare_geomstats` applies them all; it is idempotent.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._core.extras import require

__all__ = ["GeomstatsBackendError", "prepare_geomstats"]


class GeomstatsBackendError(ImportError):
    """geomstats was imported with a backend other than PyTorch before this module."""


def _loaded_backend() -> str | None:
    """The backend of an already imported geomstats, or ``None`` if it is not imported."""
    backend = sys.modules.get("geomstats._backend")
    if backend is not None:
        return getattr(backend, "BACKEND_NAME", None)
    if sys.modules.get("geomstats") is not None:  # imported, not initialised: reads the env var
        return os.environ.get("GEOMSTATS_BACKEND", "numpy")
    return None


def _import_geomstats() -> None:
    """Import geomstats with the PyTorch backend, keeping torch's default dtype."""
    loaded = _loaded_backend()
    if loaded is not None:
        if loaded != "pytorch":
            raise GeomstatsBackendError(
                f"pullback_geom.geomstats needs geomstats' PyTorch backend, but geomstats "
                f"was already imported with the {loaded!r} backend, and geomstats picks its "
                "backend once, at its first import. Set the environment variable "
                "GEOMSTATS_BACKEND=pytorch before anything imports geomstats (e.g. run "
                "`GEOMSTATS_BACKEND=pytorch python script.py`, or put "
                "`os.environ['GEOMSTATS_BACKEND'] = 'pytorch'` at the very top of your "
                "script), or import pullback_geom.geomstats before geomstats; in a notebook, "
                "restart the kernel first."
            )
        return
    requested = os.environ.get("GEOMSTATS_BACKEND")
    if requested not in (None, "", "pytorch"):
        warnings.warn(
            f"GEOMSTATS_BACKEND={requested!r} is overridden: pullback_geom.geomstats needs "
            "GEOMSTATS_BACKEND=pytorch and sets it for this process",
            stacklevel=4,
        )
    os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    saved = torch.get_default_dtype()
    try:
        # Loading the backend sets torch's default dtype to float64. A missing geomstats
        # (or a library it imports, such as scipy) names the extra to install.
        require("geomstats.backend", "geomstats", "pullback_geom.geomstats")
    finally:
        torch.set_default_dtype(saved)


def _in_geomstats_dtype(fn: Callable, config, wrap_result: bool = False) -> Callable:
    """``fn`` run with torch's default dtype set to geomstats' default dtype."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        target, saved = config.DEFAULT_DTYPE, torch.get_default_dtype()
        if target == saved:
            out = fn(*args, **kwargs)
        else:
            torch.set_default_dtype(target)
            try:
                out = fn(*args, **kwargs)
            finally:
                torch.set_default_dtype(saved)
        if wrap_result and callable(out) and not isinstance(out, type):
            return _in_geomstats_dtype(out, config)
        return out

    wrapper._pullback_geom_dtype_wrapper = True  # type: ignore[attr-defined]
    return wrapper


def _keep_geomstats_dtype() -> None:
    """Make geomstats' backend create tensors in its own default dtype again.

    The PyTorch backend creates tensors with torch's global default dtype
    (``gs.ones``, ``gs.array([1.0])``, ``gs.isclose(x, 0.0)``, ...), which is why loading
    it sets that default to float64. Once the user's default (usually float32) is back,
    geomstats would mix float32 and float64 tensors (``FrechetMean`` fails with "Double did
    not match Float"). Each backend function is therefore wrapped to run with torch's
    default set to geomstats' configured dtype (``gs.get_default_dtype()``) for the
    duration of the call only. Idempotent.
    """
    from geomstats._backend import _backend_config as config

    gs = sys.modules["geomstats.backend"]
    for module in (gs, gs.linalg, gs.random, gs.autodiff):
        for name, attr in list(vars(module).items()):
            if (
                name.startswith("__")
                or not callable(attr)
                or isinstance(attr, type)
                or getattr(attr, "_pullback_geom_dtype_wrapper", False)
            ):
                continue
            setattr(module, name, _in_geomstats_dtype(attr, config, module is gs.autodiff))


def _svd_flip_for_tensors(original: Callable) -> Callable:
    """sklearn's ``svd_flip`` that also takes torch tensors.

    geomstats' ``TangentPCA`` passes its backend's arrays (torch tensors here) to
    scikit-learn's ``svd_flip``, whose array-API dispatch (scikit-learn >= 1.5) treats
    them as NumPy arrays and fails with "Cannot interpret 'torch.float64' as a data
    type". Same convention: each singular pair's sign makes the largest ``|u|`` entry
    of its column positive.
    """

    @functools.wraps(original)
    def svd_flip(u, v, u_based_decision: bool = True):
        if not isinstance(u, Tensor):
            return original(u, v, u_based_decision=u_based_decision)
        if u_based_decision:
            rows = u.abs().argmax(0)
            signs = torch.sign(u[rows, torch.arange(u.shape[1], device=u.device)])
        else:
            cols = v.abs().argmax(1)
            signs = torch.sign(v[torch.arange(v.shape[0], device=v.device), cols])
        signs = torch.where(signs == 0, torch.ones_like(signs), signs)
        return u * signs[None, :], (None if v is None else v * signs[:, None])

    svd_flip._pullback_geom_patched = True  # type: ignore[attr-defined]
    return svd_flip


def _patch_tangent_pca() -> None:
    """Let geomstats' ``TangentPCA`` run on the PyTorch backend, and on a latent space from
    the joint solve's velocities (see above). Idempotent."""
    pca = require("geomstats.learning.pca", "geomstats", "pullback_geom.geomstats")
    if not getattr(pca.svd_flip, "_pullback_geom_patched", False):
        pca.svd_flip = _svd_flip_for_tensors(pca.svd_flip)
    original = pca.TangentPCA._fit
    if getattr(original, "_pullback_geom_patched", False):
        return

    from .learning import tangent_pca_fit

    @functools.wraps(original)
    def _fit(self, X, base_point=None):
        return tangent_pca_fit(self, original, X, base_point)

    _fit._pullback_geom_patched = True  # type: ignore[attr-defined]
    pca.TangentPCA._fit = _fit


def _patch_frechet_mean() -> None:
    """Make ``FrechetMean(space)`` on a latent space the joint solver (see above). Idempotent."""
    from geomstats.learning.frechet_mean import FrechetMean

    from .learning import PullbackFrechetMean, uses_pullback_metric

    original = FrechetMean.__new__
    if getattr(original, "_pullback_geom_patched", False):
        return

    def __new__(cls, space, **kwargs):
        if cls is FrechetMean and uses_pullback_metric(space):
            cls = PullbackFrechetMean
        return original(cls, space, **kwargs)

    __new__._pullback_geom_patched = True  # type: ignore[attr-defined]
    FrechetMean.__new__ = staticmethod(__new__)


def _patch_kmeans() -> None:
    """Make ``RiemannianKMeans.fit`` batched on a latent space (see above). Idempotent."""
    from geomstats.learning.kmeans import RiemannianKMeans

    from .kmeans import kmeans_fit
    from .learning import uses_joint_mean

    original = RiemannianKMeans.fit
    if getattr(original, "_pullback_geom_patched", False):
        return

    @functools.wraps(original)
    def fit(self, X):
        return kmeans_fit(self, X) if uses_joint_mean(self) else original(self, X)

    fit._pullback_geom_patched = True  # type: ignore[attr-defined]
    RiemannianKMeans.fit = fit


def prepare_geomstats() -> None:
    """Import geomstats with the PyTorch backend and apply the patches above. Idempotent."""
    _import_geomstats()
    _keep_geomstats_dtype()
    _patch_tangent_pca()
    _patch_frechet_mean()
    _patch_kmeans()
