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

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from . import geodesics
from ._core.checks import metric_of_model, reference_tensor
from .geodesics._common import below_resolution, initial_velocity
from .metric import PullbackMetric

__all__ = [
    "GeomstatsBackendError",
    "PullbackRiemannianMetric",
    "PullbackExpSolver",
    "PullbackLogSolver",
    "latent_space",
]


# geomstats is imported here, once, with the patches pullback_geom needs (see
# pullback_geom/_geomstats_compat.py for each one and the reason beside it).
from ._geomstats_compat import GeomstatsBackendError, prepare_geomstats  # noqa: E402

prepare_geomstats()

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


#: exp methods of :class:`PullbackExpSolver` and log methods of :class:`PullbackLogSolver`.
EXP_METHODS = ("discrete", "dopri5", "rk4")
LOG_METHODS = ("discrete", "shooting", "energy")


def _path(
    metric: PullbackRiemannianMetric, tangent_vec, base_point, exp: Callable[..., Tensor]
) -> Path:
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
            out = exp(metric.pullback, zt, vt)
        return pair.out(out, (n_t, d))

    return path


def _discrete_path(metric: PullbackRiemannianMetric, pair: _Batch, nodes: Tensor) -> Path:
    """The discrete geodesic through ``nodes`` (B, K + 1, d), linear between nodes."""
    curve = pair.out(nodes, tuple(nodes.shape[1:]))
    return UniformlySampledDiscretePath(curve, point_ndim=1)


# ---------------------------------------------------------------------------- solvers
class PullbackExpSolver(ExpSolver):
    """geomstats exp solver: :func:`pullback_geom.geodesics.exp_map`.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    method : {"discrete", "dopri5", "rk4"}, default "discrete"
        ``"discrete"``: the discrete geodesic of
        :func:`~pullback_geom.geodesics.discrete_exp` (``n_steps`` steps, the inverse of
        the default log solver with the same ``n_steps``); it needs only the decoder's
        values and Jacobians, so it is right on ReLU decoders, where the geodesic ODE is
        ill-posed, and ``O(1 / n_steps^2)`` from the continuous exp on smooth ones.
        ``"dopri5"``: the geodesic ODE by adaptive Dormand–Prince (for smooth decoders,
        accurate to ``rtol``). ``"rk4"``: fixed-step RK4 (no error control). Curves that
        diverge or do not extend are NaN, with a warning.
    n_steps : int, optional
        ``"discrete"``: steps of the discrete geodesic (default 16). ``"rk4"``: steps over
        ``t in [0, 1]`` (default 50).
    **options
        Passed to :func:`~pullback_geom.geodesics.exp_map` (e.g. ``rtol``, ``atol``).
    """

    def __init__(
        self, space, method: str = "discrete", n_steps: int | None = None, **options
    ) -> None:
        if method not in EXP_METHODS:
            raise ValueError(f"method must be one of {EXP_METHODS}; got {method!r}")
        super().__init__(solves_ivp=True)
        self._space = space
        self.method = method
        self.n_steps = n_steps
        self.options = options

    def _exp(self, pullback: PullbackMetric, z: Tensor, v: Tensor, **kwargs) -> Tensor:
        return geodesics.exp_map(
            pullback, z, v, method=self.method, n_steps=self.n_steps, **self.options, **kwargs
        )

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
            out = self._exp(metric.pullback, pair.flat[1], pair.flat[0])
        return pair.out(out, (self._space.dim,))

    def nodes(self, tangent_vec, base_point) -> tuple[_Batch, Tensor]:
        """The flat batch and the nodes ``(B, n_steps + 1, d)`` of the geodesics."""
        metric = _pullback_metric(self._space)
        pair = _Batch(metric, tangent_vec, base_point)
        with torch.no_grad():
            nodes = self._exp(metric.pullback, pair.flat[1], pair.flat[0], return_path=True)
        return pair, nodes

    def geodesic_ivp(self, tangent_vec, base_point) -> Path:
        """Geodesic with initial velocity ``tangent_vec`` at ``base_point``.

        ``"discrete"``: the discrete geodesic's nodes, linearly interpolated in ``t``;
        otherwise the ODE integrated to each ``t``.

        Parameters
        ----------
        tangent_vec, base_point : array-like, shape (..., d)

        Returns
        -------
        callable
            ``path(t)``, ``t`` of shape (T,) -> points of shape (..., T, d).
        """
        if self.method == "discrete":
            pair, nodes = self.nodes(tangent_vec, base_point)
            return _discrete_path(_pullback_metric(self._space), pair, nodes)
        return _path(_pullback_metric(self._space), tangent_vec, base_point, self._exp)


class PullbackLogSolver(LogSolver):
    """geomstats log solver: the initial velocity of the geodesic from ``base_point``.

    Batched: all pairs are solved together. The result carries no gradient.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    method : {"discrete", "shooting", "energy"}, default "discrete"
        ``"discrete"``: :func:`~pullback_geom.geodesics.discrete_log`, the inverse of the
        discrete exp (:class:`PullbackExpSolver`'s default, with the same ``n_steps``):
        the energy-minimising curve's first step, refined by shooting so that
        ``exp(log q) == q``; right on any decoder, ReLU included (where a crease makes
        the discrete exp jump, the round trip can miss: it warns). ``"shooting"``:
        :func:`~pullback_geom.geodesics.log_map`, Newton shooting on the geodesic ODE
        (smooth decoders; slow). ``"energy"``: the energy curve's velocity by a
        one-sided second-order difference, without refinement (``O(1 / n_points^2)``).
    n_steps : int, optional
        ``"discrete"``: ``K`` (default 16), the same as the exp solver's.
    **options
        Passed to :func:`~pullback_geom.geodesics.discrete_log` (``tol``,
        ``max_shooting``, ``init_curve``, ...), :func:`~pullback_geom.geodesics.log_map`
        (``"shooting"``) or :func:`~pullback_geom.geodesics.connecting_geodesic`
        (``"energy"``).
    """

    def __init__(
        self, space, method: str = "discrete", n_steps: int | None = None, **options
    ) -> None:
        if method not in LOG_METHODS:
            raise ValueError(f"method must be one of {LOG_METHODS}; got {method!r}")
        super().__init__(solves_bvp=True)
        self._space = space
        self.method = method
        self.n_steps = n_steps
        if method == "energy":
            # Many small calls (FrechetMean, k-means): straight starts skip the graph's
            # build, and 32 nodes keep the one-sided velocity's O(1/N^2) error near 1e-3.
            options = {"n_points": 32, "init_curve": "straight", **options}
        self.options = options

    def _solve(self, point, base_point) -> tuple[_Batch, Tensor, Tensor | None]:
        """Velocities ``(B, d)`` and, for ``"discrete"``/``"energy"``, the curves."""
        metric = _pullback_metric(self._space)
        pair = _Batch(metric, base_point, point)
        p, q = pair.flat
        # Coincident and nearly coincident pairs are common in geomstats (FrechetMean and
        # RiemannianKMeans start at a data point; converged means are compared), and the
        # solvers cannot meet their relative tolerance on a curve shorter than about
        # sqrt(eps). There log_p(q) = q - p + O(|q - p|^2) and the curve is straight.
        step = q - p
        same = below_resolution(step, p)
        v = torch.where(same[:, None], step, torch.zeros_like(p))
        k = self.n_steps or geodesics.discrete.DISCRETE_STEPS
        n = k + 1 if self.method == "discrete" else self.options.get("n_points", 32)
        t = torch.linspace(0, 1, n, dtype=p.dtype, device=p.device)[None, :, None]
        curves = p[:, None] + t * step[:, None]
        if bool(same.all()):
            return pair, v, curves
        ps, qs = p[~same], q[~same]
        pull = metric.pullback
        with torch.no_grad():
            if self.method == "discrete":
                options = {"warn": False, **self.options}
                v[~same], curves[~same], info = geodesics.discrete_log(
                    pull, ps, qs, n_steps=k, return_path=True, return_info=True, **options
                )
                if not bool(info.converged.all()) and self.options.get("warn", True):
                    # One fixed message, so that Python shows it once, not at every step
                    # of geomstats' iterative estimators.
                    warnings.warn(
                        "log: for some pairs the discrete exp of the returned vector does "
                        "not land on the point (on a ReLU decoder the discrete exp jumps "
                        "where a node crosses a unit's boundary; docs/geomstats.md); the "
                        "vector is the energy curve's first step there, and dist is "
                        "unaffected",
                        geodesics.GeodesicConvergenceWarning,
                        stacklevel=4,
                    )
            elif self.method == "shooting":
                v[~same] = geodesics.log_map(pull, ps, qs, **self.options)
                curves = None
            else:
                x = geodesics.connecting_geodesic(pull, ps, qs, **self.options).points
                v[~same] = initial_velocity(x)
                curves[~same] = x
        return pair, v, curves

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
        pair, v, _ = self._solve(point, base_point)
        return pair.out(v, (self._space.dim,))

    def geodesic_bvp(self, point, base_point) -> Path:
        """Geodesic from ``base_point`` to ``point``.

        ``"discrete"`` and ``"energy"``: the discrete curve, linearly interpolated in
        ``t``; ``"shooting"``: the exp of the log.

        Parameters
        ----------
        point, base_point : array-like, shape (..., d)

        Returns
        -------
        callable
            ``path(t)``, ``t`` of shape (T,) -> points of shape (..., T, d).
        """
        metric = _pullback_metric(self._space)
        if self.method == "shooting":
            tangent_vec = self.log(point, base_point)
            n_steps = self.options.get("n_steps", 50)

            def exp(pullback, z, v):
                return geodesics.exp_map(pullback, z, v, n_steps=n_steps)

            return _path(metric, tangent_vec, base_point, exp)
        pair, _, curves = self._solve(point, base_point)
        return _discrete_path(metric, pair, curves)


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
        Dtype the core computes in. Default float64 (a float64 copy of the decoder, as
        geomstats computes in float64 and the discrete solvers' tolerances need it); with
        ``detach=False``, the decoder's own dtype (no copy, so gradients reach it).
    detach : bool, default True
        Use ``pullback.detached()``, so no result holds a graph to the decoder's weights
        (geomstats' scipy optimisers call ``.numpy()`` on results).
    exp_solver : geomstats ExpSolver, optional
        Default :class:`PullbackExpSolver`.
    log_solver : geomstats LogSolver, optional
        Default :class:`PullbackLogSolver`.
    dist_options : dict, optional
        Options of :func:`~pullback_geom.geodesics.connecting_geodesic` for :meth:`dist`
        (default: its defaults, 16 nodes, lengths refined 4x, a graph start from 16 pairs
        in 2-D and 3-D; on the bundled ReLU model 3.3e-4 median and 4.9e-3 largest
        relative error against a dense reference).
    transport_steps : int, default 64
        Nodes of the curve along which :meth:`parallel_transport` transports (a
        first-order scheme: its error falls as ``1 / transport_steps``).
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
        dist_options: dict | None = None,
        transport_steps: int = 64,
    ) -> None:
        if not isinstance(pullback, PullbackMetric):
            raise TypeError(f"pullback must be a PullbackMetric; got {type(pullback).__name__}")
        if pullback.latent_dim is not None and pullback.latent_dim != space.dim:
            raise ValueError(
                f"the space has dimension {space.dim} but the decoder's latent dimension "
                f"is {pullback.latent_dim}"
            )
        if isinstance(transport_steps, bool) or not isinstance(transport_steps, int):
            raise TypeError(f"transport_steps must be an integer; got {transport_steps!r}")
        if transport_steps < 1:
            raise ValueError(f"transport_steps must be >= 1; got {transport_steps}")
        super().__init__(space, signature=signature)
        if dtype is None and detach:
            dtype = torch.float64
        if detach:
            pullback = pullback.detached().to(dtype=dtype)
        self.pullback = pullback
        ref = reference_tensor(pullback.decoder)
        self.dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        self.device = ref.device if ref is not None else None
        self.dist_options = dict(dist_options or {})
        self.transport_steps = transport_steps
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

    # Distances are lengths of energy-minimising curves, not geomstats' |log_a b|_G(a):
    # on a decoder whose metric jumps (ReLU), G at the start point says nothing about
    # the length (|log|_G was -45 % to +103 % off on the bundled ReLU model).
    def dist(self, point_a, point_b) -> Tensor:
        """Geodesic distance: the observation-space length of the shortest curve.

        :func:`~pullback_geom.geodesics.connecting_geodesic` with ``dist_options``,
        every pair in one batch; no gradient.

        Parameters
        ----------
        point_a, point_b : array-like, shape (..., d)
            Broadcast against each other.

        Returns
        -------
        Tensor, shape (...,)
        """
        pair = _Batch(self, point_a, point_b)
        p, q = pair.flat
        # Coincident points: the solver cannot meet a relative tolerance on a curve
        # shorter than ~sqrt(eps); there the distance is |q - p|_G(p) to first order.
        same = below_resolution(q - p, p)
        with torch.no_grad():
            out = self.pullback.norm(p, q - p) if p.shape[0] else p.new_zeros(0)
            if not bool(same.all()):
                out[~same] = geodesics.geodesic_distance(
                    self.pullback, p[~same], q[~same], **self.dist_options
                )
        return pair.out(out, ())

    def squared_dist(self, point_a, point_b) -> Tensor:
        """Squared geodesic distance, shape (...,); see :meth:`dist`."""
        return self.dist(point_a, point_b) ** 2

    def parallel_transport(self, tangent_vec, base_point, direction=None, end_point=None) -> Tensor:
        r"""Parallel transport along a geodesic, by discrete parallel transport.

        Along the discrete geodesic ``t -> exp(t direction)`` or the shortest curve to
        ``end_point`` (``transport_steps`` steps), each node's vector is the previous
        one's ambient image ``J v`` projected onto the next tangent plane
        (:func:`~pullback_geom.geodesics.discrete_transport`): first-order accurate on
        smooth decoders (norm kept to ``O(1 / transport_steps)``); on a ReLU decoder each
        crease costs a ``cos`` factor in norm.

        Parameters
        ----------
        tangent_vec, base_point : array-like, shape (..., d)
        direction : array-like, shape (..., d), optional
        end_point : array-like, shape (..., d), optional
            Exactly one of ``direction`` and ``end_point``.

        Returns
        -------
        Tensor, shape (..., d)
            The vector at the end of the geodesic.
        """
        if (direction is None) == (end_point is None):
            raise ValueError("parallel_transport needs exactly one of direction= and end_point=")
        k = self.transport_steps
        other = direction if end_point is None else end_point
        batch = _Batch(self, tangent_vec, base_point, other)
        v, z, w = batch.flat
        with torch.no_grad():
            if end_point is None:
                nodes = geodesics.discrete_exp(self.pullback, z, w, n_steps=k, return_path=True)
            else:
                nodes = geodesics.connecting_geodesic(
                    self.pullback, z, w, n_points=k + 1, refine=1, warn=False
                ).points
            out = geodesics.discrete_transport(self.pullback, nodes, v)
        return batch.out(out, (self._space.dim,))

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
    n_steps: int | None = None,
    dist_options: dict | None = None,
    transport_steps: int = 64,
) -> Euclidean:
    """The latent space ``R^d`` as a geomstats manifold with the decoder's pullback metric.

    Parameters
    ----------
    metric : PullbackMetric, or a model with a ``pullback_metric()`` method (a VAE)
    dim : int, optional
        ``d``; needed only when the core cannot infer it (``metric.latent_dim is None``).
    dtype : torch.dtype, optional
        Dtype of the core computations; default float64 (see
        :class:`PullbackRiemannianMetric`).
    detach : bool, default True
        Keep autograd graphs away from the decoder's parameters.
    exp_solver, log_solver : geomstats solvers, optional
        Replace the defaults (:class:`PullbackExpSolver`, :class:`PullbackLogSolver`);
        they can also be assigned later, e.g. ``space.metric.log_solver =
        LogODESolver(space)``.
    exp_options, log_options : dict, optional
        Options of the default solvers, e.g. ``{"method": "dopri5"}`` for exp and
        ``{"method": "shooting"}`` for log on a smooth decoder.
    n_steps : int, optional
        Steps ``K`` of the discrete geodesics of both default solvers (default 16): the
        discrete exp inverts the discrete log only with the same ``K``.
    dist_options : dict, optional
        Options of the energy solver behind ``dist`` (default: its own defaults).
    transport_steps : int, default 64
        Steps of the curves along which ``parallel_transport`` transports.

    Returns
    -------
    geomstats.geometry.euclidean.Euclidean
        ``Euclidean(d, equip=False)`` equipped with :class:`PullbackRiemannianMetric`
        as ``space.metric``.
    """
    metric = metric_of_model(metric)
    if not isinstance(metric, PullbackMetric):
        raise TypeError(
            f"metric must be a PullbackMetric or a model with a pullback_metric() method "
            f"(for a VAE: latent_space(model) or latent_space(model.pullback_metric())); "
            f"got {type(metric).__name__}"
        )
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
        dist_options=dist_options,
        transport_steps=transport_steps,
    )
    steps = {} if n_steps is None else {"n_steps": n_steps}
    if exp_solver is None:
        options = {**steps, **(exp_options or {})}
        space.metric.exp_solver = PullbackExpSolver(space, **options)
    if log_solver is None:
        options = {**steps, **(log_options or {})}
        space.metric.log_solver = PullbackLogSolver(space, **options)
    return space
