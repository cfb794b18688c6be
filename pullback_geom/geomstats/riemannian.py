"""``PullbackRiemannianMetric``: a core metric as a geomstats ``RiemannianMetric`` (the
manifold that carries it: :func:`~pullback_geom.geomstats.space.latent_space`)."""

from __future__ import annotations

import torch
from geomstats.geometry.riemannian_metric import RiemannianMetric
from geomstats.numerics.geodesic import ExpSolver, LogSolver
from torch import Tensor, nn

from .. import geodesics
from ..geodesics._common import below_resolution
from ..metric import PullbackMetric
from ._batch import Batch, as_tensor, grad_only_if_needed
from .solvers import PullbackExpSolver, PullbackLogSolver

__all__ = ["PullbackRiemannianMetric"]


#: :meth:`PullbackRiemannianMetric.dist`'s solver tolerance in float64, measured in
#: :data:`pullback_geom.geodesics.energy.DISTANCE_TOL`.
DIST_TOL_FLOAT64 = geodesics.energy.DISTANCE_TOL
#: :meth:`PullbackRiemannianMetric.dist`'s ``bend_tol``
#: (:func:`~pullback_geom.geodesics.geodesic_distance`), measured in
#: :data:`pullback_geom.geodesics.energy.BEND_TOL`.
DIST_BEND_TOL = geodesics.energy.BEND_TOL
#: :meth:`PullbackRiemannianMetric.dist`'s ``basin_tol``: pairs whose solutions from a
#: graph start and from a straight one differ by more than it are solved again, measured
#: in :data:`pullback_geom.geodesics.energy.BASIN_TOL`.
DIST_BASIN_TOL = geodesics.energy.BASIN_TOL
#: Dtype of :meth:`PullbackRiemannianMetric.dist`'s solves when the metric computes in
#: float64: a length needs none of the float64 nodes a logarithm does. On the bundled ReLU
#: model float32 solves at ``DIST_TOL_FLOAT32`` give the float64 lengths to within 5e-6
#: relative (450 pairs from three codes to a k-means batch) in ~0.4x the time: the
#: decoder's matrix products run twice as fast.
DIST_DTYPE = torch.float32
#: :meth:`PullbackRiemannianMetric.dist`'s solver tolerance in float32 (the solver's own
#: float32 default, 1e-4, moves lengths by up to 4e-3 against float64 solves).
DIST_TOL_FLOAT32 = 1e-6


def _dist_tol(dtype: torch.dtype) -> dict:
    """:meth:`PullbackRiemannianMetric.dist`'s default solver tolerance in ``dtype``."""
    tol = {torch.float64: DIST_TOL_FLOAT64, torch.float32: DIST_TOL_FLOAT32}.get(dtype)
    return {"tol": tol} if tol is not None else {}


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
        (default: its defaults, 16 nodes, lengths refined 4x, a graph start
        in 2-D and 3-D, ``bend_tol=DIST_BEND_TOL``, ``basin_tol=DIST_BASIN_TOL``,
        ``tol=DIST_TOL_FLOAT32`` in float32 and
        ``DIST_TOL_FLOAT64`` in float64; on the bundled ReLU model 3.2e-4 median and
        4.9e-3 largest relative error against a dense reference).
    dist_dtype : torch.dtype, optional
        Dtype of :meth:`dist`'s solves. Default ``DIST_DTYPE`` (float32) where the metric
        computes in float64, else the metric's dtype. Pairs closer than float32 resolves
        are solved in the metric's dtype.
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
        dist_dtype: torch.dtype | None = None,
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
        # What the decoder computes in (its modules' dtype, which a closure over modules
        # keeps whatever was asked): points are cast to it and results back.
        self.dtype = pullback.dtype if pullback.dtype is not None else dtype
        self.device = pullback.device
        if dist_dtype is None:
            # self.dtype is None for a decoder without parameters outside a detached
            # copy: dist then computes in the points' dtype.
            dist_dtype = DIST_DTYPE if self.dtype == torch.float64 else self.dtype
        elif not (isinstance(dist_dtype, torch.dtype) and dist_dtype.is_floating_point):
            raise TypeError(f"dist_dtype must be a floating torch.dtype; got {dist_dtype!r}")
        self.dist_dtype = dist_dtype
        dist_options = dict(dist_options or {})
        solver = geodesics.registry.resolve(
            dist_options.get("method", "auto"), "curve", pullback, options=dist_options
        )
        # bend_tol and basin_tol where the method takes them (the energy methods); options
        # are checked now.
        defaults = (
            {"bend_tol": DIST_BEND_TOL, "basin_tol": DIST_BASIN_TOL}
            if "bend_tol" in solver.options
            else {}
        )
        self.dist_options = {**defaults, **dist_options}
        solver.with_defaults(
            {k: v for k, v in self.dist_options.items() if k not in ("method", "warn")},
            "dist_options",
        )
        self.transport_steps = transport_steps
        self.exp_solver = exp_solver if exp_solver is not None else PullbackExpSolver(space)
        self.log_solver = log_solver if log_solver is not None else PullbackLogSolver(space)

    def _base(self, base_point, what: str) -> Batch:
        if base_point is None:
            raise ValueError(f"the pullback metric depends on the point: {what} needs base_point")
        return Batch(self, base_point)

    def _pointwise(self, base_point, what: str, fn, rank: int) -> Tensor:
        """``fn`` of the core at the flattened base points, reshaped to the batch with
        ``rank`` trailing axes of size ``d``."""
        z = self._base(base_point, what)
        with grad_only_if_needed(*z.flat):
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
        with grad_only_if_needed(x):
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
        state = as_tensor(state)
        pair = Batch(self, state[..., 0, :], state[..., 1, :])
        with grad_only_if_needed(*pair.flat):
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
        batch = Batch(self, base_point, tangent_vec_a, tangent_vec_b)
        with grad_only_if_needed(*batch.flat):
            out = self.pullback.inner(*batch.flat)
        return batch.out(out, ())

    def squared_norm(self, vector, base_point=None) -> Tensor:
        """``v^T G(z) v``, shape (...,); see :meth:`inner_product`."""
        return self.inner_product(vector, vector, base_point)

    # Distances are lengths of energy-minimising curves, not geomstats' |log_a b|_G(a):
    # on a decoder whose metric jumps (ReLU), G at the start point says nothing about
    # the length (|log|_G was -45 % to +103 % off on the bundled ReLU model).
    def dist(self, point_a, point_b, **overrides) -> Tensor:
        """Geodesic distance: the observation-space length of the shortest curve.

        :func:`~pullback_geom.geodesics.connecting_geodesic` with ``dist_options``,
        every pair in one batch; no gradient.

        Parameters
        ----------
        point_a, point_b : array-like, shape (..., d)
            Broadcast against each other.
        **overrides
            Options replacing ``dist_options`` for this call (k-means passes
            ``bend_tol=None``).

        Returns
        -------
        Tensor, shape (...,)
        """
        pair = Batch(self, point_a, point_b)
        p, q = pair.flat
        # Coincident points: the solver cannot meet a relative tolerance on a curve
        # shorter than ~sqrt(eps); there the distance is |q - p|_G(p) to first order.
        same = below_resolution(q - p, p)
        low_dtype = self.solve_dtype(p.dtype)
        # Solved in the metric's own dtype: pairs the lower precision does not resolve,
        # and (below) those whose solve in it did not converge, as its rounding can keep
        # a pair from the tolerance (~1 in 450 float32 pairs at 1e-6 on the ReLU model).
        exact = ~same & below_resolution(q - p, p.to(low_dtype))
        low = (~same & ~exact).nonzero().squeeze(1)
        with torch.no_grad():
            out = self.pullback.norm(p, q - p) if p.shape[0] else p.new_zeros(0)
            if low.numel():
                pullback = self.pullback_in(low_dtype)
                options = {**_dist_tol(low_dtype), **self.dist_options, **overrides}
                if low_dtype != p.dtype:
                    options["warn"] = False  # its unconverged pairs are solved again
                solved = geodesics.connecting_geodesic(
                    pullback, p[low].to(low_dtype), q[low].to(low_dtype), **options
                )
                length, ok = solved.length, solved.converged
                out[low] = length.to(out.dtype)
                if low_dtype != p.dtype:
                    exact[low[~ok]] = True
            if bool(exact.any()):
                options = {**_dist_tol(p.dtype), **self.dist_options, **overrides}
                out[exact] = geodesics.geodesic_distance(
                    self.pullback, p[exact], q[exact], **options
                )
        return pair.out(out, ())

    def solve_dtype(self, points_dtype: torch.dtype) -> torch.dtype:
        """The dtype the solvers behind :meth:`dist` and the Fréchet means run in for
        points of ``points_dtype``: :attr:`dist_dtype` where the decoder can be converted
        to it (a module), else ``points_dtype`` (a decoder without parameters computes in
        the points' dtype, and a closure over modules in its modules')."""
        converts = isinstance(self.pullback.decoder, nn.Module) and self.pullback.dtype
        return (self.dist_dtype or points_dtype) if converts else points_dtype

    def pullback_in(self, dtype: torch.dtype) -> PullbackMetric:
        """The pullback metric computing in ``dtype`` (see :meth:`solve_dtype`).

        Converted at each call (a copy of the decoder's weights where the dtype differs),
        so that it is always the decoder this metric computes with.
        """
        return self.pullback.to(dtype=dtype)

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
        batch = Batch(self, tangent_vec, base_point, other)
        v, z, w = batch.flat
        with torch.no_grad():
            if end_point is None:
                nodes = geodesics.integrate_geodesic(
                    self.pullback, z, w, method="discrete", n_steps=k, path=True
                ).path
            else:
                nodes = geodesics.connecting_geodesic(
                    self.pullback, z, w, method="auto", n_points=k + 1, refine=1, warn=False
                ).points
            out = geodesics.discrete_transport(self.pullback, nodes, v)[:, -1]
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
        batch = Batch(self, base_point, tangent_vec_a, tangent_vec_b)
        with grad_only_if_needed(*batch.flat):
            out = self.pullback.sectional_curvature(*batch.flat)
        return batch.out(out, ())
