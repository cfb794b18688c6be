"""The curvature methods of :class:`~pullback_geom.PullbackMetric`.

Riemann, Ricci, scalar, Gaussian and sectional curvature by the Gauss equation, from the
first and second derivatives of the decoder (see :mod:`pullback_geom._core.curvature`).
A mixin, so that ``metric.py`` keeps the metric and its first-order geometry; it needs
only the ``evaluator`` of the class it is mixed into.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ._core import curvature as C
from ._core.checks import check_finite_output, same_shape
from ._core.evaluate import Evaluator

__all__ = ["CurvatureMixin"]


class CurvatureMixin:
    """Curvature of a pullback metric; mixed into :class:`~pullback_geom.PullbackMetric`."""

    evaluator: Evaluator

    def riemann_tensor(self, z: Tensor) -> Tensor:
        """Riemann curvature tensor by the Gauss equation (geomstats' index convention).

        From the second fundamental form of the decoded surface (see
        :mod:`pullback_geom._core.curvature`): first and second derivatives of the decoder
        only, no derivative of ``G`` or of the Christoffel symbols.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d, d, d) or (d, d, d, d)
            ``out[..., i, j, k, l] = R^l_{ijk} = dx^l(R(e_j, e_k) e_i)`` with
            ``R(X, Y) Z = nabla_X nabla_Y Z - nabla_Y nabla_X Z - nabla_[X,Y] Z``, as
            geomstats' ``RiemannianMetric.riemann_tensor``.
        """
        return self._curvature(
            z, lambda g, inv, sff: C.riemann_from_sff(sff, inv), "Riemann tensor"
        )

    def ricci_tensor(self, z: Tensor) -> Tensor:
        """Ricci tensor ``Ric_ik = R^j_{ijk}`` (geomstats' convention; ``(d - 1) G`` on a
        unit sphere).

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d) or (d, d)
        """
        return self._curvature(z, lambda g, inv, sff: C.ricci_from_sff(sff, inv), "Ricci tensor")

    def scalar_curvature(self, z: Tensor) -> Tensor:
        """Scalar curvature ``S = G^{ik} Ric_ik`` (``d (d - 1)`` on a unit sphere).

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        return self._curvature(
            z, lambda g, inv, sff: C.scalar_from_sff(sff, inv), "scalar curvature"
        )

    def gaussian_curvature(self, z: Tensor) -> Tensor:
        """Gaussian curvature ``K = S / 2`` of a 2-D latent space.

        Parameters
        ----------
        z : Tensor, shape (B, 2) or (2,)

        Returns
        -------
        Tensor, shape (B,) or ()

        Raises
        ------
        ValueError
            If the latent dimension is not 2 (use :meth:`sectional_curvature` or
            :meth:`scalar_curvature`).
        """
        ev = self.evaluator
        ev.check_points(z)  # bad input is named, and d learned, before the dimension is read
        if ev.latent_dim != 2:
            raise ValueError(
                f"Gaussian curvature is defined for a 2-D latent space; this one has d = "
                f"{ev.latent_dim}. Use sectional_curvature(z, u, v) or scalar_curvature(z)"
            )
        return self._curvature(
            z, lambda g, inv, sff: C.gaussian_from_sff(sff, g), "Gaussian curvature"
        )

    def sectional_curvature(self, z: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Sectional curvature of the plane spanned by ``u`` and ``v`` at ``z``.

        ``K(u, v) = <R(u, v) v, u> / (|u|^2 |v|^2 - <u, v>^2)`` in ``G``; 1 for every
        plane of a unit sphere. ``u`` and ``v`` may have one row for all points.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)
        u, v : Tensor, shape (B, d), (1, d) or (d,)

        Returns
        -------
        Tensor, shape (B,) or ()

        Raises
        ------
        ValueError
            Where ``u`` and ``v`` are zero or parallel (they span no plane).
        """
        ev = self.evaluator
        z, single = ev.check_points(z)
        u, _ = ev.check_points(u, "u")
        v, _ = ev.check_points(v, "v")
        for name, x in (("u", u), ("v", v)):
            if x.shape[0] not in (1, z.shape[0]):
                same_shape(x, z, f"{name} and z")
        u, v = u.expand_as(z).contiguous(), v.expand_as(z).contiguous()
        C.check_plane(u, v)

        def fn(g: Tensor, inv: Tensor, sff: Tensor, a: Tensor, b: Tensor) -> Tensor:
            return C.sectional_from_sff(sff, g, a, b)

        out = check_finite_output(ev.curvature(fn, z, u, v), "sectional curvature")
        return out[0] if single else out

    def _curvature(self, z: Tensor, from_terms: Callable[..., Tensor], what: str) -> Tensor:
        """``from_terms(G, G^{-1}, <II, II>)`` at ``z``, chunked and checked."""
        z, single = self.evaluator.check_points(z)
        out = check_finite_output(self.evaluator.curvature(from_terms, z), what)
        return out[0] if single else out
