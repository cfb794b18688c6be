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
(:class:`~pullback_geom.PullbackMetric`), and its default exp/log solvers call
:func:`pullback_geom.geodesics.exp_map` and :func:`pullback_geom.geodesics.log_map`.
Every geomstats solver can be swapped in, e.g.
``space.metric.log_solver = LogODESolver(space)``.

Importing this module imports geomstats with its PyTorch backend
(``GEOMSTATS_BACKEND=pytorch``). geomstats sets torch's global default dtype to float64
when it loads that backend; this module restores the default dtype you had before.
Points may be float32 or float64 (or NumPy arrays): they are cast to the decoder's dtype
for the computation and the results are cast back.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from . import geodesics
from .metric import PullbackMetric, _reference_tensor

__all__ = [
    "GeomstatsBackendError",
    "PullbackRiemannianMetric",
    "PullbackExpSolver",
    "PullbackLogSolver",
    "latent_space",
]


class GeomstatsBackendError(ImportError):
    """geomstats was imported with a backend other than PyTorch before this module."""


def _loaded_backend() -> str | None:
    """The backend of an already imported geomstats, or ``None`` if it is not imported."""
    backend = sys.modules.get("geomstats._backend")
    if backend is not None:
        return getattr(backend, "BACKEND_NAME", None)
    if "geomstats" in sys.modules:  # imported but not initialised: it reads the env var
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
            stacklevel=3,
        )
    os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    saved = torch.get_default_dtype()
    try:
        import geomstats  # noqa: F401  (loading the backend sets torch's default to float64)
        import geomstats.backend  # noqa: F401
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
    """Let geomstats' ``TangentPCA`` run on the PyTorch backend (see above). Idempotent."""
    import geomstats.learning.pca as pca

    if not getattr(pca.svd_flip, "_pullback_geom_patched", False):
        pca.svd_flip = _svd_flip_for_tensors(pca.svd_flip)


_import_geomstats()
_keep_geomstats_dtype()
_patch_tangent_pca()

from geomstats.geometry.euclidean import Euclidean  # noqa: E402
from geomstats.geometry.riemannian_metric import RiemannianMetric  # noqa: E402
from geomstats.numerics.geodesic import ExpSolver, LogSolver  # noqa: E402
from geomstats.numerics.path import UniformlySampledDiscretePath  # noqa: E402

Path = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------- plumbing
def _as_tensor(x) -> Tensor:
    """Tensors pass; NumPy arrays and Python numbers become tensors (float64 if not float)."""
    if isinstance(x, Tensor):
        return x
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.float64)


@contextmanager
def _grad_only_if_needed(*xs: Tensor) -> Iterator[None]:
    """Record autograd only when an input asks for it, so results can go to ``.numpy()``."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(x.requires_grad for x in xs)):
        yield


class _Batch:
    """Broadcast geomstats inputs ``(..., d)`` to one flat core batch ``(B, d)`` and back."""

    def __init__(self, metric: PullbackRiemannianMetric, *arrays) -> None:
        tensors = [_as_tensor(a) for a in arrays]
        dim = metric._space.dim
        for t in tensors:
            if t.dim() == 0 or t.shape[-1] != dim:
                raise ValueError(
                    f"expected points or tangent vectors of shape (..., {dim}); "
                    f"got {tuple(t.shape)}"
                )
        self.out_dtype = tensors[0].dtype
        for t in tensors[1:]:
            self.out_dtype = torch.promote_types(self.out_dtype, t.dtype)
        self.batch_shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
        core_dtype = metric.dtype if metric.dtype is not None else self.out_dtype
        self.device = metric.device if metric.device is not None else tensors[0].device
        self.flat = [
            t.to(dtype=core_dtype, device=self.device)
            .expand(*self.batch_shape, dim)
            .reshape(-1, dim)
            .contiguous()  # expanded views break forward-mode AD (make_dual)
            for t in tensors
        ]
        self.in_device = tensors[0].device

    def out(self, x: Tensor, tail: tuple[int, ...]) -> Tensor:
        """Core result ``(B, *tail)`` as ``(*batch_shape, *tail)`` in the input dtype."""
        x = x.reshape((*self.batch_shape, *tail))
        return x.to(dtype=self.out_dtype, device=self.in_device)


def _exp(metric: PullbackRiemannianMetric, v: Tensor, z: Tensor, n_steps: int) -> Tensor:
    """Flat core exp, ``(B, d)`` each; differentiable in ``z`` and ``v``."""
    return geodesics.exp_map(metric.pullback, z, v, n_steps=n_steps)


def _path(metric: PullbackRiemannianMetric, tangent_vec, base_point, n_steps: int) -> Path:
    """``t -> exp_base(t * tangent_vec)`` for a batch of times, shaped as geomstats wants."""
    pair = _Batch(metric, tangent_vec, base_point)
    v, z = pair.flat
    d = v.shape[-1]

    def path(t) -> Tensor:
        """Geodesic points at times ``t``.

        Parameters
        ----------
        t : float or array-like, shape (T,)

        Returns
        -------
        Tensor, shape (..., T, d)
        """
        t = _as_tensor(t).to(dtype=v.dtype, device=v.device).reshape(-1)
        n_t = t.shape[0]
        vt = (t[None, :, None] * v[:, None]).reshape(-1, d)
        zt = z[:, None].expand(-1, n_t, d).reshape(-1, d).contiguous()
        with _grad_only_if_needed(vt, zt):
            out = _exp(metric, vt, zt, n_steps)
        return pair.out(out, (n_t, d))

    return path


# ---------------------------------------------------------------------------- solvers
class PullbackExpSolver(ExpSolver):
    """geomstats exp solver: :func:`pullback_geom.geodesics.exp_map` (RK4).

    Integrates the core's geodesic equation over ``t in [0, 1]``. Differentiable with
    respect to the tangent vector and base point, so geomstats' autodiff-based tools
    (e.g. ``LogShootingSolver``) work on top of it.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    n_steps : int, default 50
        RK4 steps over ``t in [0, 1]``.
    """

    def __init__(self, space, n_steps: int = 50) -> None:
        super().__init__(solves_ivp=True)
        self._space = space
        self.n_steps = n_steps

    def exp(self, tangent_vec, base_point) -> Tensor:
        """Exponential map.

        Parameters
        ----------
        tangent_vec, base_point : array-like, shape (..., d)
            Broadcast against each other.

        Returns
        -------
        Tensor, shape (..., d)
        """
        metric = _pullback_metric(self._space)
        pair = _Batch(metric, tangent_vec, base_point)
        with _grad_only_if_needed(*pair.flat):
            out = _exp(metric, *pair.flat, self.n_steps)
        return pair.out(out, (self._space.dim,))

    def geodesic_ivp(self, tangent_vec, base_point) -> Path:
        """Geodesic with initial velocity ``tangent_vec`` at ``base_point``.

        Parameters
        ----------
        tangent_vec, base_point : array-like, shape (..., d)

        Returns
        -------
        callable
            ``path(t)``, ``t`` of shape (T,) -> points of shape (..., T, d).
        """
        return _path(_pullback_metric(self._space), tangent_vec, base_point, self.n_steps)


class PullbackLogSolver(LogSolver):
    """geomstats log solver: :func:`pullback_geom.geodesics.log_map`.

    The initial velocity of the geodesic on ``t in [0, 1]`` from ``base_point`` to
    ``point``: an energy minimisation in observation space gives a starting velocity that
    Newton shooting refines until ``exp(base_point, log) == point`` to ``tol``. Batched:
    all pairs are solved together. The result carries no gradient.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    method : {"shooting", "energy"}, default "shooting"
        ``"shooting"``: :func:`~pullback_geom.geodesics.log_map`, accurate to its ``tol``.
        ``"energy"``: only the energy minimisation
        (:func:`~pullback_geom.geodesics.connecting_geodesic`), whose discrete curve gives
        the velocity by a one-sided second-order difference: several times faster, with
        relative errors of order ``1 / n_points**2`` (about 1e-3 at this adapter's default
        32 points, started from straight lines). Good enough for clustering and nearest
        neighbours.
    **options
        Passed to :func:`~pullback_geom.geodesics.log_map` (``n_points``, ``n_steps``,
        ``max_newton``, ``tol``, ``warn``), or to
        :func:`~pullback_geom.geodesics.connecting_geodesic` for ``method="energy"``.
    """

    def __init__(self, space, method: str = "shooting", **options) -> None:
        if method not in ("shooting", "energy"):
            raise ValueError(f"method must be 'shooting' or 'energy'; got {method!r}")
        super().__init__(solves_bvp=True)
        self._space = space
        self.method = method
        if method == "energy":
            # Many small calls (FrechetMean, k-means): straight starts skip the graph's
            # build, and 32 nodes keep the one-sided velocity's O(1/N^2) error near 1e-3.
            options = {"n_points": 32, "init_curve": "straight", **options}
        self.options = options

    def log(self, point, base_point) -> Tensor:
        """Logarithm map.

        Parameters
        ----------
        point, base_point : array-like, shape (..., d)
            End and start points, broadcast against each other.

        Returns
        -------
        Tensor, shape (..., d)
            Initial velocities at ``base_point``.
        """
        metric = _pullback_metric(self._space)
        pair = _Batch(metric, base_point, point)
        p, q = pair.flat
        # Coincident and nearly coincident pairs are common in geomstats (FrechetMean and
        # RiemannianKMeans start at a data point; converged means are compared), and the
        # solvers cannot meet their relative tolerance on a curve shorter than about
        # sqrt(eps): they run to max_iter and warn. There log_p(q) = q - p + O(|q - p|^2).
        step = q - p
        scale = torch.finfo(p.dtype).eps ** 0.5 * (1 + p.norm(dim=-1))
        same = step.norm(dim=-1) <= scale
        v = torch.where(same[:, None], step, torch.zeros_like(p))
        if bool(same.all()):
            return pair.out(v, (self._space.dim,))
        p, q = p[~same], q[~same]
        with torch.no_grad():
            if self.method == "shooting":
                v[~same] = geodesics.log_map(metric.pullback, p, q, **self.options)
            else:
                x = geodesics.connecting_geodesic(metric.pullback, p, q, **self.options).points
                v[~same] = (x.shape[1] - 1) * (-1.5 * x[:, 0] + 2 * x[:, 1] - 0.5 * x[:, 2])
        return pair.out(v, (self._space.dim,))

    def geodesic_bvp(self, point, base_point) -> Path:
        """Geodesic from ``base_point`` to ``point``.

        ``"shooting"``: the exp of the log (it ends at ``point`` to ``tol``); ``"energy"``:
        the piecewise-linear interpolation of the discrete curve.

        Parameters
        ----------
        point, base_point : array-like, shape (..., d)

        Returns
        -------
        callable
            ``path(t)``, ``t`` of shape (T,) -> points of shape (..., T, d).
        """
        metric = _pullback_metric(self._space)
        if self.method == "energy":
            pair = _Batch(metric, base_point, point)
            with torch.no_grad():
                res = geodesics.connecting_geodesic(metric.pullback, *pair.flat, **self.options)
            curve = pair.out(res.points, tuple(res.points.shape[1:]))
            return UniformlySampledDiscretePath(curve, point_ndim=1)
        tangent_vec = self.log(point, base_point)
        n_steps = self.options.get("n_steps", 50)
        return _path(metric, tangent_vec, base_point, n_steps)


def _pullback_metric(space) -> PullbackRiemannianMetric:
    metric = getattr(space, "metric", None)
    if not isinstance(metric, PullbackRiemannianMetric):
        raise TypeError(
            "this solver needs a space equipped with PullbackRiemannianMetric "
            f"(see pullback_geom.geomstats.latent_space); got {type(metric).__name__}"
        )
    return metric


# ---------------------------------------------------------------------------- the metric
class PullbackRiemannianMetric(RiemannianMetric):
    r"""A :class:`~pullback_geom.PullbackMetric` as a geomstats ``RiemannianMetric``.

    The maths lives in the core; this class converts shapes and dtypes. All methods take
    geomstats-style arrays ``(..., d)`` (torch tensors, or NumPy arrays), broadcast them
    and return torch tensors in the inputs' dtype; the core computes in the decoder's
    dtype. Gradients flow to the inputs when they require grad; no autograd graph
    reaches the decoder's parameters (unless ``detach=False``).

    Parameters
    ----------
    space : geomstats Manifold
        The latent space, of dimension ``d`` (see :func:`latent_space`).
    pullback : PullbackMetric
        The core metric.
    dtype : torch.dtype, optional
        Dtype the core computes in. Default: that of the decoder's parameters, or the
        inputs' dtype for a decoder without parameters.
    detach : bool, default True
        Use ``pullback.detached()``, so no result holds a graph to the decoder's weights
        (geomstats' scipy optimisers call ``.numpy()`` on results).
    exp_solver : geomstats ExpSolver, optional
        Default :class:`PullbackExpSolver`.
    log_solver : geomstats LogSolver, optional
        Default :class:`PullbackLogSolver`.
    """

    def __init__(
        self,
        space,
        pullback: PullbackMetric,
        *,
        dtype: torch.dtype | None = None,
        detach: bool = True,
        exp_solver: ExpSolver | None = None,
        log_solver: LogSolver | None = None,
        signature: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(pullback, PullbackMetric):
            raise TypeError(f"pullback must be a PullbackMetric; got {type(pullback).__name__}")
        if pullback.latent_dim is not None and pullback.latent_dim != space.dim:
            raise ValueError(
                f"the space has dimension {space.dim} but the decoder's latent dimension "
                f"is {pullback.latent_dim}"
            )
        super().__init__(space, signature=signature)
        self.pullback = pullback.detached() if detach else pullback
        ref = _reference_tensor(pullback.decoder)
        self.dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        self.device = ref.device if ref is not None else None
        self.exp_solver = exp_solver if exp_solver is not None else PullbackExpSolver(space)
        self.log_solver = log_solver if log_solver is not None else PullbackLogSolver(space)

    def _base(self, base_point, what: str) -> _Batch:
        if base_point is None:
            raise ValueError(f"the pullback metric depends on the point: {what} needs base_point")
        return _Batch(self, base_point)

    def _pointwise(self, base_point, what: str, fn, rank: int) -> Tensor:
        """``fn`` of the core at the flattened base points, reshaped to the batch with
        ``rank`` trailing axes of size ``d``."""
        z = self._base(base_point, what)
        with _grad_only_if_needed(*z.flat):
            out = fn(z.flat[0])
        return z.out(out, (self._space.dim,) * rank)

    def metric_matrix(self, base_point=None) -> Tensor:
        """``G(z) = J(z)^T J(z)``.

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (..., d, d)
        """
        return self._pointwise(base_point, "metric_matrix", self.pullback.metric_tensor, 2)

    def christoffels(self, base_point=None) -> Tensor:
        r"""Christoffel symbols, closed form for a pullback metric (no derivative of ``G``).

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (..., d, d, d)
            ``out[..., k, i, j] = Gamma^k_ij``.
        """
        return self._pointwise(base_point, "christoffels", self.pullback.christoffel_symbols, 3)

    def jacobian_christoffels(self, base_point=None) -> Tensor:
        r"""Derivatives of the Christoffel symbols, by forward mode through the core.

        geomstats' ``LogODESolver`` (with ``use_jac=True``, its default) needs them.

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (..., d, d, d, d)
            ``out[..., k, i, j, l] = d Gamma^k_ij / d z_l``.
        """
        z = self._base(base_point, "jacobian_christoffels")
        x = z.flat[0]
        d = self._space.dim
        basis = torch.eye(d, dtype=x.dtype, device=x.device)
        with _grad_only_if_needed(x):
            cols = [
                torch.func.jvp(self.pullback.christoffel_symbols, (x,), (basis[i].expand_as(x),))[1]
                for i in range(d)
            ]
        return z.out(torch.stack(cols, dim=-1), (d, d, d, d))

    def geodesic_equation(self, state) -> Tensor:
        """Geodesic ODE ``(z, v)' = (v, -Gamma(v, v))``, from the core's acceleration.

        Parameters
        ----------
        state : array-like, shape (..., 2, d)
            Positions ``state[..., 0, :]`` and velocities ``state[..., 1, :]``.

        Returns
        -------
        Tensor, shape (..., 2, d)
        """
        state = _as_tensor(state)
        pair = _Batch(self, state[..., 0, :], state[..., 1, :])
        with _grad_only_if_needed(*pair.flat):
            acc = self.pullback.geodesic_acceleration(*pair.flat)
        d = self._space.dim
        velocity = state[..., 1, :].expand(*pair.batch_shape, d).to(pair.out_dtype)
        return torch.stack([velocity, pair.out(acc, (d,))], dim=-2)

    def inner_product(self, tangent_vec_a, tangent_vec_b, base_point=None) -> Tensor:
        """``a^T G(z) b``.

        Parameters
        ----------
        tangent_vec_a, tangent_vec_b, base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (...,)
        """
        if base_point is None:
            raise ValueError("the pullback metric depends on the point: pass base_point")
        batch = _Batch(self, base_point, tangent_vec_a, tangent_vec_b)
        with _grad_only_if_needed(*batch.flat):
            out = self.pullback.inner(*batch.flat)
        return batch.out(out, ())

    def squared_norm(self, vector, base_point=None) -> Tensor:
        """``v^T G(z) v``, shape (...,); see :meth:`inner_product`."""
        return self.inner_product(vector, vector, base_point)

    # Curvature: closed forms from the core (Gauss equation), not geomstats' autodiff of
    # the Christoffel symbols; geomstats' curvature(), covariant_riemann_tensor() and
    # directional_curvature() build on riemann_tensor() and so use it too.
    def riemann_tensor(self, base_point=None) -> Tensor:
        """Riemann tensor by the Gauss equation, geomstats' layout.

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (..., d, d, d, d)
            ``out[..., i, j, k, l] = R^l_{ijk} = dx^l(R(e_j, e_k) e_i)``.
        """
        return self._pointwise(base_point, "riemann_tensor", self.pullback.riemann_tensor, 4)

    def ricci_tensor(self, base_point=None) -> Tensor:
        """Ricci tensor ``Ric_ik = R^j_{ijk}``.

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (..., d, d)
        """
        return self._pointwise(base_point, "ricci_tensor", self.pullback.ricci_tensor, 2)

    def scalar_curvature(self, base_point=None) -> Tensor:
        """Scalar curvature ``S = G^{ij} Ric_ij``.

        Parameters
        ----------
        base_point : array-like, shape (..., d)

        Returns
        -------
        Tensor, shape (...,)
        """
        return self._pointwise(base_point, "scalar_curvature", self.pullback.scalar_curvature, 0)

    def sectional_curvature(self, tangent_vec_a, tangent_vec_b, base_point=None) -> Tensor:
        """Sectional curvature ``<R(a, b) b, a> / (|a|^2 |b|^2 - <a, b>^2)``.

        Unlike geomstats' default (0 for a degenerate plane), zero or parallel tangent
        vectors raise a ValueError.

        Parameters
        ----------
        tangent_vec_a, tangent_vec_b, base_point : array-like, shape (..., d)
            Broadcast against each other.

        Returns
        -------
        Tensor, shape (...,)
        """
        if base_point is None:
            raise ValueError("the pullback metric depends on the point: pass base_point")
        batch = _Batch(self, base_point, tangent_vec_a, tangent_vec_b)
        with _grad_only_if_needed(*batch.flat):
            out = self.pullback.sectional_curvature(*batch.flat)
        return batch.out(out, ())


def latent_space(
    metric: PullbackMetric,
    *,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    detach: bool = True,
    exp_solver: ExpSolver | None = None,
    log_solver: LogSolver | None = None,
    exp_options: dict | None = None,
    log_options: dict | None = None,
) -> Euclidean:
    """The latent space ``R^d`` as a geomstats manifold with the decoder's pullback metric.

    Parameters
    ----------
    metric : PullbackMetric
    dim : int, optional
        ``d``; needed only when the core cannot infer it (``metric.latent_dim is None``).
    dtype : torch.dtype, optional
        Dtype of the core computations; default the decoder's (see
        :class:`PullbackRiemannianMetric`).
    detach : bool, default True
        Keep autograd graphs away from the decoder's parameters.
    exp_solver, log_solver : geomstats solvers, optional
        Replace the defaults (:class:`PullbackExpSolver`, :class:`PullbackLogSolver`);
        they can also be assigned later, e.g. ``space.metric.log_solver =
        LogODESolver(space)``.
    exp_options, log_options : dict, optional
        Options of the default solvers: ``{"n_steps": 50}`` for exp; those of
        :func:`~pullback_geom.geodesics.log_map` for log.

    Returns
    -------
    geomstats.geometry.euclidean.Euclidean
        ``Euclidean(d, equip=False)`` equipped with :class:`PullbackRiemannianMetric`
        as ``space.metric``.
    """
    if not isinstance(metric, PullbackMetric):
        raise TypeError(f"metric must be a PullbackMetric; got {type(metric).__name__}")
    d = dim if dim is not None else metric.latent_dim
    if d is None:
        raise ValueError(
            "the latent dimension is unknown: pass latent_dim= to PullbackMetric or dim= here"
        )
    space = Euclidean(dim=d, equip=False)
    space.equip_with_metric(
        PullbackRiemannianMetric,
        pullback=metric,
        dtype=dtype,
        detach=detach,
        exp_solver=exp_solver,
        log_solver=log_solver,
    )
    if exp_solver is None:
        space.metric.exp_solver = PullbackExpSolver(space, **(exp_options or {}))
    if log_solver is None:
        space.metric.log_solver = PullbackLogSolver(space, **(log_options or {}))
    return space
