"""stochman adapter: a decoder's latent space as a :class:`stochman.manifold.Manifold`.

>>> import torch
>>> from pullback_geom import PullbackMetric
>>> from pullback_geom.stochman import DecoderManifold
>>> from pullback_geom.surfaces import InverseStereographic
>>> manifold = DecoderManifold(PullbackMetric(InverseStereographic(), latent_dim=2))
>>> p = torch.tensor([0.0, 0.0], dtype=torch.float64)
>>> v = torch.tensor([1.0, 0.0], dtype=torch.float64)  # |v|_G = 2 at the origin
>>> c, dc = manifold.shooting_geodesic(p, v)  # stochman's RK4 on our geodesic ODE
>>> c.shape  # stochman's layout: (T, d, 1)
torch.Size([50, 2, 1])

:class:`DecoderManifold` is thin: every number comes from the core
(:class:`~pullback_geom.PullbackMetric`), and the adapter only translates stochman's shapes,
reductions and dtypes. It overrides

* ``metric``, ``inner``, ``volume``, ``log_volume``: the pullback metric ``J^T J``;
* ``curve_energy`` and ``curve_length``: measured in observation space (the decoded
  polygon), as stochman's ``EmbeddedManifold`` does, so stochman's ``connecting_geodesic``
  (and ``logmap``, ``dist2``, ``Geodesic.fit``) minimise the decoded curve's energy;
* ``geodesic_system``: stochman's base version loops over points with reverse-mode autograd
  and ends in ``torch.solve``, which torch removed (so ``shooting_geodesic`` and ``expmap``
  crash on every ``Manifold`` that does not override it). Ours is the core's batched
  ``-Gamma(v, v)`` (nested forward mode and a Cholesky solve);
* ``dist2``: stochman's version crashes on float64 points (``CubicSpline.constant_speed``
  builds float32 grids), measures the length with a left-point metric rule (about 0.5 %
  too long on the sphere) and returns gradients with the wrong sign. Ours is the squared
  length of the core's energy-minimising curve and returns ``-2 G log``;
* ``expmap`` and ``logmap``: stochman's integrate the geodesic ODE on a 5-point float32
  grid, which is ill-posed on ReLU decoders (their metric jumps): ``expmap(p,
  logmap(p, q))`` missed ``q`` by 1.2 on the bundled model. Ours are the core's discrete
  exp and log (:mod:`pullback_geom.geodesics.discrete`), inverse to each other.

Everything else (``connecting_geodesic``, ``shooting_geodesic``,
:class:`stochman.discretized_manifold.DiscretizedManifold` fitting) is stochman's own code
running on these methods.

``import stochman`` inside this module is an absolute import: it is the stochman library,
not this module. It needs the ``stochman`` extra (stochman and torchdiffeq,
``pip install 'pullback-geom[stochman]'``); without it, importing this module raises an
``ImportError`` that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import geodesics
from ._core.checks import metric_of_model
from ._core.extras import require
from .metric import PullbackMetric

# The optional libraries first, so that a missing one names the extra to install.
# stochman's shooting_geodesic imports torchdiffeq, which stochman does not declare.
require("stochman", "stochman", "pullback_geom.stochman")
require("torchdiffeq", "stochman", "pullback_geom.stochman")

from stochman.curves import BasicCurve  # noqa: E402
from stochman.manifold import Manifold  # noqa: E402
from stochman.utils import tensor_reduction  # noqa: E402

__all__ = ["DecoderManifold"]

# Points at which a stochman curve object is evaluated when one is passed as a curve.
_CURVE_POINTS = 100


class DecoderManifold(Manifold):
    r"""A decoder's latent space with its pullback metric, as a stochman ``Manifold``.

    Parameters
    ----------
    metric : PullbackMetric or callable
        The metric. A bare decoder ``(B, d) -> (B, ...)`` is wrapped as
        ``PullbackMetric(metric, **metric_kwargs)``.
    detach : bool, default True
        Use :meth:`PullbackMetric.detached`: stochman's solvers call ``backward()``
        internally (``connecting_geodesic``, ``Geodesic.fit``, curve fitting), and without
        this the gradients would also pile up in the decoder's ``.grad``. Pass ``False`` to
        differentiate e.g. :meth:`curve_energy` with respect to the decoder's weights.
    cast : bool, default True
        Cast floating-point inputs to the dtype of the decoder's parameters for the
        computation and cast the results back to the input's dtype. stochman builds float32
        tensors of its own (``DiscretizedManifold.fit``'s grid curves, default time grids),
        which would otherwise not reach a float64 decoder. With ``False`` a dtype mismatch
        raises the core's ``TypeError``. Decoders without parameters run in the input's
        dtype either way; devices are never changed.
    n_steps : int, default 16
        Steps ``K`` of the discrete geodesics of :meth:`expmap` and :meth:`logmap` (the
        discrete exp inverts the discrete log with the same ``K``).
    **metric_kwargs
        Passed to :class:`~pullback_geom.PullbackMetric` when ``metric`` is a bare decoder
        (e.g. ``latent_dim=2``, ``ridge=1e-6``). A model with a ``pullback_metric()``
        method (a VAE) is replaced by its metric.

    Attributes
    ----------
    pullback : PullbackMetric
        The core metric every method calls (detached if ``detach``).

    Notes
    -----
    Shapes follow stochman: points are ``(B, d)`` (a single point ``(d,)`` counts as
    ``B = 1``), curves ``(B, N, d)`` or ``(N, d)`` (then ``B = 1``; unlike stochman's base
    class the caller's tensor is not ``unsqueeze_``'d in place), and per-point or per-curve
    results are ``(B,)`` even for ``B = 1``.

    Examples
    --------
    >>> import torch
    >>> from pullback_geom.stochman import DecoderManifold
    >>> from pullback_geom.surfaces import InverseStereographic, sphere_distance
    >>> manifold = DecoderManifold(InverseStereographic(), latent_dim=2)
    >>> p0 = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    >>> p1 = torch.tensor([[-0.9, 1.1]], dtype=torch.float64)
    >>> curve, converged = manifold.connecting_geodesic(p0, p1)
    >>> t = torch.linspace(0, 1, 200, dtype=torch.float64)
    >>> bool(abs(manifold.curve_length(curve(t)) - sphere_distance(p0, p1)) < 1e-3)
    True
    """

    def __init__(
        self,
        metric: PullbackMetric | Callable[[Tensor], Any],
        *,
        detach: bool = True,
        cast: bool = True,
        n_steps: int = geodesics.discrete.DISCRETE_STEPS,
        **metric_kwargs: Any,
    ) -> None:
        metric = metric_of_model(metric)
        if isinstance(metric, PullbackMetric):
            if metric_kwargs:
                raise TypeError(
                    f"{sorted(metric_kwargs)} only apply when a bare decoder is passed; "
                    "set them on the PullbackMetric instead"
                )
        elif callable(metric):
            metric = PullbackMetric(metric, **metric_kwargs)
        else:
            raise TypeError(
                f"DecoderManifold needs a PullbackMetric or a decoder callable; "
                f"got {type(metric).__name__}"
            )
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}")
        super().__init__()
        self.pullback: PullbackMetric = metric.detached() if detach else metric
        self.cast = bool(cast)
        self.n_steps = n_steps
        # The discrete exp/log and distances run in float64 (their tolerances need it);
        # a float64 copy of a lower-precision decoder is made once.
        self._pullback64 = self.pullback.to(dtype=torch.float64) if detach else self.pullback

    def __repr__(self) -> str:
        return f"DecoderManifold({self.pullback!r}, cast={self.cast})"

    @property
    def latent_dim(self) -> int | None:
        """``d`` (``None`` until the core has seen a point, for decoders it cannot inspect)."""
        return self.pullback.latent_dim

    # ------------------------------------------------------------------ dtype plumbing
    def _in(self, x: Tensor) -> Tensor:
        """``x`` in the decoder's dtype (when ``cast`` and the decoder has parameters)."""
        if not self.cast or not isinstance(x, Tensor) or not x.is_floating_point():
            return x
        dtype = self.pullback.dtype
        return x if dtype is None or dtype == x.dtype else x.to(dtype)

    @staticmethod
    def _points(x: Tensor, name: str = "points") -> Tensor:
        """Points ``(d,)`` or ``(B, d)`` as ``(B, d)`` (other shapes are the core's to reject)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
        return x.unsqueeze(0) if x.dim() == 1 else x

    def _curves(self, curve: Tensor | BasicCurve) -> Tensor:
        """A stochman curve object or points ``(N, d)`` / ``(B, N, d)`` as ``(B, N, d)``."""
        if isinstance(curve, BasicCurve):
            begin = curve.begin
            t = torch.linspace(0, 1, _CURVE_POINTS, dtype=begin.dtype, device=begin.device)
            curve = curve(t)  # (N, d) for one curve, else (B, N, d)
        if not isinstance(curve, Tensor):
            raise TypeError(
                f"curve must be a torch.Tensor or a stochman curve; got {type(curve).__name__}"
            )
        return curve.unsqueeze(0) if curve.dim() == 2 else curve  # not in place

    # ------------------------------------------------------------------ the metric
    def metric(self, points: Tensor) -> Tensor:
        """The metric tensor ``G = J^T J``.

        Parameters
        ----------
        points : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d)
            Also ``(1, d, d)`` for one point, as stochman (``DiscretizedManifold.fit``,
            ``dist2``) concatenates and batch-multiplies the results.
        """
        z = self._points(points)
        return self.pullback.metric_tensor(self._in(z)).to(z.dtype)

    def inner(
        self, base: Tensor, u: Tensor, v: Tensor, return_metric: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``u^T G(base) v``.

        Parameters
        ----------
        base, u, v : Tensor, shape (B, d) or (d,)
            ``u`` and ``v`` may also have one row, broadcast over ``base``.
        return_metric : bool, default False
            Also return ``G(base)``.

        Returns
        -------
        dot : Tensor, shape (B,)
        metric : Tensor, shape (B, d, d)
            Only if ``return_metric``.
        """
        g = self.metric(base)
        u, v = self._points(u, "u"), self._points(v, "v")
        dot = torch.einsum("bi,bij,bj->b", u.to(g.dtype), g, v.to(g.dtype))
        return (dot, g) if return_metric else dot

    def log_volume(self, points: Tensor) -> Tensor:
        """``log sqrt(det G)``, ``-inf`` where ``G`` is singular.

        Parameters
        ----------
        points : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B,)
        """
        z = self._points(points)
        return self.pullback.log_volume(self._in(z)).to(z.dtype)

    def volume(self, points: Tensor) -> Tensor:
        """``sqrt(det G)``, shape (B,); see :meth:`log_volume`."""
        return self.log_volume(points).exp()

    # ------------------------------------------------------------------ curves
    def curve_energy(self, curve: Tensor | BasicCurve, reduction: str | None = "sum") -> Tensor:
        """Discrete energy of decoded curves, ``(N - 1) sum_i ||f(c_{i+1}) - f(c_i)||^2``.

        The same discretisation as stochman's ``EmbeddedManifold.curve_energy``.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d); or a stochman ``BasicCurve``
            A curve object is evaluated at 100 equally spaced times in ``[0, 1]``.
        reduction : {"sum", "mean", "none", None}, default "sum"
            How to reduce over the ``B`` curves.

        Returns
        -------
        Tensor, shape () or (B,)
            Differentiable with respect to the curve's points.
        """
        c = self._curves(curve)
        energy = self.pullback.curve_energy(self._in(c)).to(c.dtype)
        return tensor_reduction(energy, reduction)

    def curve_length(self, curve: Tensor | BasicCurve) -> Tensor:
        """Length of decoded curves, ``sum_i ||f(c_{i+1}) - f(c_i)||``.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d); or a stochman ``BasicCurve``
            A curve object is evaluated at 100 equally spaced times in ``[0, 1]``.

        Returns
        -------
        Tensor, shape (B,)
            ``(1,)`` for one curve (``DiscretizedManifold.fit`` iterates over it).
        """
        c = self._curves(curve)
        return self.pullback.curve_length(self._in(c)).to(c.dtype)

    # ------------------------------------------------------------------ geodesics
    def geodesic_system(self, c: Tensor, dc: Tensor) -> Tensor:
        """Right-hand side of the geodesic ODE, ``c'' = -Gamma(c)(c', c')``, batched.

        Replaces stochman's base version, which loops over points and calls the removed
        ``torch.solve``.

        Parameters
        ----------
        c, dc : Tensor, shape (N, d), or (N, k * d)
            Positions and velocities, one per row, as stochman's ``GeodesicODE`` passes
            them. stochman's ``shooting_geodesic`` flattens a batch of ``k`` starting points
            ``(k, d)`` into one point of dimension ``k * d``; rows are split back into
            ``k`` points, so ``shooting_geodesic(p, v)`` with ``p, v`` of shape ``(k, d)``
            integrates ``k`` independent geodesics (reshape its ``(T, k * d, 1)`` output to
            ``(T, k, d)``). This needs ``d`` known: pass ``latent_dim`` for decoders
            without an ``nn.Linear`` first layer.

        Returns
        -------
        Tensor, same shape as ``c``
        """
        d = self.latent_dim or c.shape[-1]
        if c.shape != dc.shape:
            raise ValueError(
                f"c and dc must have the same shape; got {tuple(c.shape)} and {tuple(dc.shape)}"
            )
        if c.shape[-1] % d:
            raise ValueError(
                f"geodesic_system got points of dimension {c.shape[-1]}, which is not a "
                f"multiple of the latent dimension d = {d}"
            )
        z, v = self._in(c.reshape(-1, d)), self._in(dc.reshape(-1, d))
        return self.pullback.geodesic_acceleration(z, v).to(c.dtype).reshape(c.shape)

    def _pair64(self, a: Tensor, b: Tensor, names: str) -> tuple[Tensor, Tensor, torch.dtype]:
        a, b = self._points(a, names[0]), self._points(b, names[1])
        if a.shape[0] == 1 and b.shape[0] > 1:
            a = a.expand_as(b)
        elif b.shape[0] == 1 and a.shape[0] > 1:
            b = b.expand_as(a)
        dtype = torch.promote_types(a.dtype, b.dtype)
        work = self._pullback64.dtype or torch.float64
        return a.detach().to(work).contiguous(), b.detach().to(work).contiguous(), dtype

    def expmap(self, p: Tensor, v: Tensor) -> Tensor:
        """Discrete exponential map (:func:`~pullback_geom.geodesics.exp_map`,
        ``method="discrete"``).

        Replaces stochman's ODE shooting on a 5-point float32 grid: the discrete geodesic
        needs only the decoder's values and Jacobians, so it is right on ReLU decoders
        too, and it inverts :meth:`logmap`. Curves that do not extend are NaN, with a
        warning. No gradient.

        Parameters
        ----------
        p, v : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d)
            ``(1, d)`` for one point, as stochman.
        """
        z, w, dtype = self._pair64(p, v, ("p", "v"))
        with torch.no_grad():
            out = geodesics.exp_map(self._pullback64, z, w, method="discrete", n_steps=self.n_steps)
        return out.to(dtype)

    def logmap(
        self, p0: Tensor, p1: Tensor, curve: BasicCurve | None = None, optimize: bool = True
    ) -> Tensor:
        """Discrete logarithm (:func:`~pullback_geom.geodesics.log_map`, ``method="discrete"``).

        The energy-minimising curve's first step, refined so that
        ``expmap(p0, logmap(p0, p1)) == p1``. With a ``curve``, stochman's own
        ``logmap`` (the spline's derivative at 0) is used instead.

        Parameters
        ----------
        p0, p1 : Tensor, shape (B, d) or (d,)
        curve : stochman curve, optional
        optimize : bool, default True
            Only with ``curve``: refit it first (stochman's meaning).

        Returns
        -------
        Tensor, shape (B, d)
        """
        if curve is not None:
            return super().logmap(p0, p1, curve=curve, optimize=optimize)
        a, b, dtype = self._pair64(p0, p1, ("p0", "p1"))
        with torch.no_grad():
            out = geodesics.log_map(self._pullback64, a, b, method="discrete", n_steps=self.n_steps)
        return out.to(dtype)

    def dist2(
        self,
        p0: Tensor,
        p1: Tensor,
        num_points: int = 16,
        *,
        bend_tol: float | None = geodesics.energy.BEND_TOL,
        basin_tol: float | None = geodesics.energy.BASIN_TOL,
    ) -> Tensor:
        """Squared geodesic distance: the squared length of the shortest decoded curve.

        :func:`~pullback_geom.geodesics.connecting_geodesic` (the core's energy solver with
        ``num_points`` nodes, in float64 to ``geodesics.energy.DISTANCE_TOL``; pairs whose
        decoded curve bends between them by more than ``bend_tol`` are solved again on
        twice the segments, as geomstats' ``dist`` does: on the bundled ReLU model 20 of
        75 long pairs were more than 1 % too long without, none with, at 1.4x the time
        on random pairs); and, from a graph start, pairs whose solutions from it and from
        the straight line differ by more than ``basin_tol`` are solved again the same way
        (as ``dist`` does: on 64 random pairs of the bundled model one pair was 2.1 % too
        long without it, in a local minimum; the 64 take 2.2 s against 0.63 s).
        Differentiable with respect to ``p0`` and ``p1``: the gradient at ``p0`` is
        ``-2 L J(p0)^T u``, ``u`` the unit chord from ``f(p0)`` to the decoded next node
        (the derivative of the decoded polygon's length in its end point, so right on ReLU
        decoders too; ``-2 G(p0) log_p0(p1)`` on a smooth one, to 0.6 % on the sphere at
        16 nodes), and the same at ``p1``.

        Parameters
        ----------
        p0, p1 : Tensor, shape (B, d) or (d,)
            One side may have a single point, broadcast against the other's ``B``.
        num_points : int, default 16
            Nodes of the connecting curve (its length is refined 4x between them).
        bend_tol : float or None, default ``geodesics.energy.BEND_TOL`` (0.08)
            ``None`` solves every pair on ``num_points`` nodes only.
        basin_tol : float or None, default ``geodesics.energy.BASIN_TOL`` (1e-3)
            ``None`` keeps the graph start's solution (or the straight start's where that
            is shorter) without a second look.

        Returns
        -------
        Tensor, shape (B,)
        """
        return _Dist2.apply(self, p0, p1, num_points, bend_tol, basin_tol)


class _Dist2(torch.autograd.Function):
    """Squared distance with the first-variation gradient ``d(dist^2)/dp0 = -2 L J^T u``."""

    @staticmethod
    def forward(
        ctx,
        manifold: DecoderManifold,
        p0: Tensor,
        p1: Tensor,
        num_points: int,
        bend_tol: float | None,
        basin_tol: float | None,
    ):
        a, b, dtype = manifold._pair64(p0, p1, ("p0", "p1"))
        metric = manifold._pullback64
        with torch.no_grad():
            solved = geodesics.connecting_geodesic(
                metric, a, b, method="auto", n_points=num_points, bend_tol=bend_tol,
                basin_tol=basin_tol, warn=False, tol=geodesics.energy.DISTANCE_TOL,
            )  # fmt: skip
            # The nodes next to each end on the curve each length comes from.
            length, nodes = solved.length, solved.info["next_to_ends"].unbind(1)
            grads = []
            for base, node, wanted in zip((a, b), nodes, ctx.needs_input_grad[1:3], strict=True):
                if not wanted:  # no decoder pass for a gradient nobody asked for
                    grads.append(None)
                    continue
                # The derivative of the decoded polygon's length in its end point; zero
                # where the points coincide.
                value, jac = metric.evaluator.value_and_jacobian(base)
                chord = metric.evaluator.embed(node) - value  # (B, D)
                norm = chord.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(chord.dtype).tiny)
                pull = jac.transpose(-1, -2) @ (chord / norm).unsqueeze(-1)
                grads.append(-2 * length.unsqueeze(-1) * pull.squeeze(-1))
        ctx.shapes = ((p0.shape, p0.dtype), (p1.shape, p1.dtype))
        ctx.save_for_backward(*grads)
        return length.square().to(dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grads = []
        for grad, (shape, dtype) in zip(ctx.saved_tensors, ctx.shapes, strict=True):
            if grad is None:
                grads.append(None)
                continue
            grad = (grad_output.unsqueeze(-1) * grad).to(dtype)  # (B, d)
            if len(shape) == 1:
                grad = grad.sum(0)
            elif shape[0] == 1 and grad.shape[0] > 1:
                grad = grad.sum(0, keepdim=True)
            grads.append(grad)
        return None, grads[0], grads[1], None, None, None
