"""geomstats' exp and log solvers, backed by the core's geodesics: discrete geodesic
calculus by default, the geodesic ODE or the curve energy by name."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from geomstats.geometry.riemannian_metric import RiemannianMetric
from geomstats.numerics.geodesic import ExpSolver, LogSolver
from geomstats.numerics.path import UniformlySampledDiscretePath
from torch import Tensor

from .. import geodesics
from ..geodesics._common import below_resolution, initial_velocity
from ..metric import PullbackMetric
from ._batch import Batch, Path, as_tensor, grad_only_if_needed

__all__ = ["EXP_METHODS", "LOG_METHODS", "PullbackExpSolver", "PullbackLogSolver"]


#: exp methods of :class:`PullbackExpSolver` and log methods of :class:`PullbackLogSolver`.
EXP_METHODS = ("discrete", "dopri5", "rk4")
LOG_METHODS = ("discrete", "shooting", "energy")


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
        pair = Batch(metric, tangent_vec, base_point)
        with grad_only_if_needed(*pair.flat):
            out = self._exp(metric.pullback, pair.flat[1], pair.flat[0])
        return pair.out(out, (self._space.dim,))

    def nodes(self, tangent_vec, base_point) -> tuple[Batch, Tensor]:
        """The flat batch and the nodes ``(B, n_steps + 1, d)`` of the geodesics."""
        metric = _pullback_metric(self._space)
        pair = Batch(metric, tangent_vec, base_point)
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

    def _solve(self, point, base_point) -> tuple[Batch, Tensor, Tensor | None]:
        """Velocities ``(B, d)`` and, for ``"discrete"``/``"energy"``, the curves."""
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


def _pullback_metric(space) -> RiemannianMetric:
    metric = getattr(space, "metric", None)
    # Recognised by its core metric (the class is defined above this module's layer).
    if not isinstance(getattr(metric, "pullback", None), PullbackMetric):
        raise TypeError(
            "this solver needs a space equipped with PullbackRiemannianMetric "
            f"(see pullback_geom.geomstats.latent_space); got {type(metric).__name__}"
        )
    return metric
