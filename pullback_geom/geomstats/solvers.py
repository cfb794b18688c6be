"""geomstats' exp and log solvers, backed by the core's geodesics: any method of the
core's registries by name, ``"auto"`` by default (the geodesic ODE on smooth decoders, the
discrete calculus on piecewise-linear ones)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from geomstats.geometry.riemannian_metric import RiemannianMetric
from geomstats.numerics.geodesic import ExpSolver, LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath
from torch import Tensor

from .. import geodesics
from ..geodesics._common import below_resolution
from ..metric import PullbackMetric
from ._batch import Batch, Path, as_tensor, grad_only_if_needed

__all__ = ["PullbackExpSolver", "PullbackLogSolver"]


def _path(metric: RiemannianMetric, tangent_vec, base_point, exp: Callable[..., Tensor]) -> Path:
    """``t -> exp_base(t * tangent_vec)`` for a batch of times, shaped as geomstats wants."""
    pair = Batch(metric, tangent_vec, base_point)
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
        t = as_tensor(t).to(dtype=v.dtype, device=v.device).reshape(-1)
        n_t = t.shape[0]
        vt = (t[None, :, None] * v[:, None]).reshape(-1, d)
        zt = z[:, None].expand(-1, n_t, d).reshape(-1, d).contiguous()
        with grad_only_if_needed(vt, zt):
            out = exp(metric.pullback, zt, vt)
        return pair.out(out, (n_t, d))

    return path


def _discrete_path(metric: RiemannianMetric, pair: Batch, nodes: Tensor) -> Path:
    """The discrete geodesic through ``nodes`` (B, K + 1, d), linear between nodes."""
    curve = pair.out(nodes, tuple(nodes.shape[1:]))
    return UniformlySampledDiscretePath(curve, point_ndim=1)


# ---------------------------------------------------------------------------- solvers
class _RegistryMethod:
    """A method of the core's registries for one purpose, named now and resolved on the
    space's decoder at first use (the space's metric is built after its solvers), its
    options checked against the method's."""

    _purpose: str  # "exp" or "velocity", see geodesics.registry.resolve
    _caller: str

    def _name_method(self, space, method: str, options: dict) -> None:
        self._space = space
        self._method, self._options = method, {k: v for k, v in options.items() if v is not None}
        self._resolved: tuple[str, dict] | None = None
        # Refuse an unknown method or option now ("checked here"), not at the first exp or
        # log: resolved if the space already carries its pullback metric (it does not
        # while that metric builds its default solvers), else a named method's options are
        # checked against its registry entry.
        if isinstance(getattr(getattr(space, "metric", None), "pullback", None), PullbackMetric):
            self._resolve()
        elif method != "auto":
            registry = geodesics.registry.registry_for(self._purpose)
            registry[method].with_defaults(self._options, self._caller)

    def _defaults(self, solver: geodesics.Solver) -> dict:
        """Options this adapter gives the method beneath the caller's."""
        return {}

    def _resolve(self) -> tuple[str, dict]:
        """The method ``"auto"`` names on the space's decoder, and its checked options."""
        if self._resolved is None:
            pullback = _pullback_metric(self._space).pullback
            dim = getattr(self._space, "dim", None)
            solver = geodesics.registry.resolve(self._method, self._purpose, pullback, dim)
            options = {**self._defaults(solver), **self._options}
            solver.with_defaults(options, self._caller)
            self._resolved = solver.name, options
        return self._resolved

    @property
    def method(self) -> str:
        """The method in use (``"auto"`` resolved on the space's decoder)."""
        return self._resolve()[0]


class PullbackExpSolver(_RegistryMethod, ExpSolver):
    """geomstats exp solver: :func:`pullback_geom.geodesics.integrate_geodesic`.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    method : str, default "auto"
        A key of :data:`pullback_geom.geodesics.INITIAL_VALUE`: ``"dopri5"`` (the geodesic
        ODE by adaptive Dormand–Prince, accurate to ``rtol``), ``"rk4"`` (fixed steps, no
        error control), ``"discrete"`` (the discrete geodesic of ``n_steps`` steps, the
        inverse of the ``"discrete"`` log with the same ``n_steps``; it needs only the
        decoder's values and Jacobians, so it is right on ReLU decoders, where the
        geodesic ODE is ill-posed). ``"auto"``: ``"dopri5"`` on smooth decoders,
        ``"discrete"`` on piecewise-linear ones. Curves that diverge or do not extend are
        NaN, with a warning.
    **options
        The method's options (e.g. ``n_steps``, ``rtol``), checked here.
    """

    _purpose, _caller = "exp", "PullbackExpSolver"

    def __init__(self, space, method: str = "auto", **options) -> None:
        ExpSolver.__init__(self, solves_ivp=True)
        self._name_method(space, method, options)

    def _exp(self, pullback: PullbackMetric, z: Tensor, v: Tensor, path: bool = False):
        method, options = self._resolve()
        return geodesics.integrate_geodesic(pullback, z, v, method=method, path=path, **options)

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
        pair = Batch(metric, tangent_vec, base_point)
        with grad_only_if_needed(*pair.flat):
            out = self._exp(metric.pullback, pair.flat[1], pair.flat[0]).point
        return pair.out(out, (self._space.dim,))

    def nodes(self, tangent_vec, base_point) -> tuple[Batch, Tensor]:
        """The flat batch and the nodes ``(B, n_steps + 1, d)`` of the geodesics."""
        metric = _pullback_metric(self._space)
        pair = Batch(metric, tangent_vec, base_point)
        with torch.no_grad():
            nodes = self._exp(metric.pullback, pair.flat[1], pair.flat[0], path=True).path
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
        if geodesics.INITIAL_VALUE[self._resolve()[0]].smooth_only:

            def exp(pullback, z, v):
                return self._exp(pullback, z, v).point

            return _path(_pullback_metric(self._space), tangent_vec, base_point, exp)
        pair, nodes = self.nodes(tangent_vec, base_point)
        return _discrete_path(_pullback_metric(self._space), pair, nodes)


class PullbackLogSolver(_RegistryMethod, LogSolver):
    """geomstats log solver: the initial velocity of the geodesic from ``base_point``,
    :func:`pullback_geom.geodesics.connecting_geodesic`'s ``velocity``.

    Batched: all pairs are solved together. The result carries no gradient.

    Parameters
    ----------
    space : geomstats Manifold
        A space equipped with a :class:`PullbackRiemannianMetric`.
    method : str, default "auto"
        A key of :data:`pullback_geom.geodesics.BOUNDARY_VALUE`: ``"discrete"`` (the
        discrete logarithm, the inverse of the ``"discrete"`` exp with the same
        ``n_steps``: the energy-minimising curve's first step, refined by shooting so
        that ``exp(log q) == q``; right on any decoder, ReLU included, where a crease
        makes the discrete exp jump the round trip can miss: it warns), ``"shooting"``
        (Newton shooting on the geodesic ODE, smooth decoders), ``"lm"`` and the other
        energy methods (the energy curve's velocity by a one-sided second-order
        difference, ``O(1 / n_points^2)``). ``"auto"``: ``"shooting"`` on smooth
        decoders up to ``geodesics.registry.SHOOTING_MAX_DIM`` latent dimensions (its
        cost grows as ``d^2``), the energy method above, ``"discrete"`` on
        piecewise-linear ones.
    **options
        The method's options, checked here.
    """

    _purpose, _caller = "velocity", "PullbackLogSolver"

    def __init__(self, space, method: str = "auto", **options) -> None:
        LogSolver.__init__(self, solves_bvp=True)
        warn = options.pop("warn", None)  # None, like any option left unset: the default
        self.warn = True if warn is None else warn
        self._name_method(space, method, options)

    def _defaults(self, solver: geodesics.Solver) -> dict:
        if "init_curve" in solver.options and "n_points" in solver.options:
            # Many small calls (FrechetMean, k-means): straight starts skip the graph's
            # build, and 32 nodes keep the one-sided velocity's O(1/N^2) error near 1e-3.
            return {"n_points": 32, "init_curve": "straight"}
        return {}

    def _solve(self, point, base_point) -> tuple[Batch, Tensor, Tensor]:
        """Velocities ``(B, d)`` and the curves ``(B, N, d)``."""
        metric = _pullback_metric(self._space)
        pair = Batch(metric, base_point, point)
        p, q = pair.flat
        # Coincident and nearly coincident pairs are common in geomstats (FrechetMean and
        # RiemannianKMeans start at a data point; converged means are compared), and the
        # solvers cannot meet their relative tolerance on a curve shorter than about
        # sqrt(eps). There log_p(q) = q - p + O(|q - p|^2) and the curve is straight.
        step = q - p
        same = below_resolution(step, p)
        v = torch.where(same[:, None], step, torch.zeros_like(p))
        method, options = self._resolve()
        solver = geodesics.BOUNDARY_VALUE[method]
        n = solver.nodes(solver.with_defaults(options, "PullbackLogSolver"))
        t = torch.linspace(0, 1, n, dtype=p.dtype, device=p.device)[None, :, None]
        curves = p[:, None] + t * step[:, None]
        if bool(same.all()):
            return pair, v, curves
        ps, qs = p[~same], q[~same]
        with torch.no_grad():
            result = geodesics.connecting_geodesic(
                metric.pullback, ps, qs, method=method, warn=False, **options
            )
        v[~same], curves[~same] = result.velocity, result.points
        if self.warn and not bool(result.converged.all()):
            # One fixed message, so that Python shows it once, not at every step of
            # geomstats' iterative estimators.
            warnings.warn(
                f"log: method {method!r} did not converge for some pairs (on a ReLU "
                "decoder the discrete exp jumps where a node crosses a unit's boundary; "
                "docs/geomstats.md); the vector is the energy curve's first step there, "
                "and dist is unaffected",
                geodesics.GeodesicConvergenceWarning,
                stacklevel=4,
            )
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
        """Geodesic from ``base_point`` to ``point``: the method's curve, linearly
        interpolated in ``t``.

        Parameters
        ----------
        point, base_point : array-like, shape (..., d)

        Returns
        -------
        callable
            ``path(t)``, ``t`` of shape (T,) -> points of shape (..., T, d).
        """
        pair, _, curves = self._solve(point, base_point)
        return _discrete_path(_pullback_metric(self._space), pair, curves)


def _pullback_metric(space) -> RiemannianMetric:
    metric = getattr(space, "metric", None)
    # Recognised by its core metric (the class is defined above this module's layer).
    if not isinstance(getattr(metric, "pullback", None), PullbackMetric):
        raise TypeError(
            "this solver needs a space equipped with PullbackRiemannianMetric "
            f"(see pullback_geom.geomstats.latent_space); got {type(metric).__name__}"
        )
    return metric
