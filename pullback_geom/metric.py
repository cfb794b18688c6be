"""``PullbackMetric``: the Riemannian metric a decoder induces on its latent space."""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._core import curvature as C
from ._core.chain import supports_chain
from ._core.checks import (
    batch_curves,
    batch_points,
    check_finite_output,
    reference_tensor,
    same_shape,
)
from ._core.evaluate import Evaluator
from ._core.kernels import Decoder, DecoderKernels, GaussianDecoder, infer_latent_dim

__all__ = ["PullbackMetric"]


class PullbackMetric:
    r"""The pullback of observation space's Euclidean metric through a decoder.

    For a decoder :math:`f: \mathbb{R}^d \to \mathbb{R}^D`, :math:`G(z) = J(z)^T J(z)`
    with :math:`J` the Jacobian of :math:`f`. Curve lengths and energies are those of the
    decoded curve, so they do not depend on the (arbitrary) latent coordinates.

    Parameters
    ----------
    decoder : callable
        Maps latent points ``(B, d)`` to observations ``(B, *obs)`` (e.g. ``(B, 1, 28, 28)``;
        flattened internally), or to a tuple of such tensors, e.g. ``(mean, std)`` of a
        Gaussian decoder: the tuple is concatenated, which gives
        ``G = J_mean^T J_mean + J_std^T J_std`` (see :meth:`gaussian`). Any torch callable
        works; ``nn.Module`` parameters fix the dtype and device that points must have.
    latent_dim : int, optional
        ``d``. When omitted, read from the input layer of an ``nn.Sequential`` decoder, or
        learned from the points of the first call for any other decoder.
    ridge : float, default 0
        Adds ``ridge * I`` to ``G`` everywhere, consistently: it is the pullback through
        ``z -> (f(z), sqrt(ridge) z)``, so Christoffel symbols, geodesics, energies and
        lengths all see the same regularised metric. Use it for decoders whose metric is
        singular somewhere (dead ReLUs, saturated sigmoids). Without it, points where ``G``
        is singular get a tiny local ridge in linear solves and a
        :class:`~pullback_geom.SingularMetricWarning`.
    jacobian : {"auto", "forward", "chain"}, default "auto"
        ``"forward"``: ``torch.func`` forward mode, for any decoder. ``"chain"``: the
        explicit layer-by-layer chain rule for an ``nn.Sequential`` of Linear layers and
        element-wise activations (the write-up's method, without diagonal matrices; about
        1.5x faster than generic forward mode for metrics, 3-4x for Christoffels and
        geodesic accelerations, whose second derivatives it propagates layer by layer
        too). ``"auto"``: ``"chain"`` where the decoder allows it, else ``"forward"``.
    chunk_size : int, optional
        Points evaluated at once. Default: as many as keep the largest intermediate near
        128 MiB, so a million points fit in well under 2 GB.

    Examples
    --------
    >>> import torch
    >>> from pullback_geom import PullbackMetric
    >>> decoder = torch.nn.Sequential(
    ...     torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)
    ... )
    >>> metric = PullbackMetric(decoder)
    >>> metric.metric_tensor(torch.zeros(3, 2)).shape
    torch.Size([3, 2, 2])
    """

    def __init__(
        self,
        decoder: Decoder,
        *,
        latent_dim: int | None = None,
        ridge: float = 0.0,
        jacobian: str = "auto",
        chunk_size: int | None = None,
    ) -> None:
        if not callable(decoder):
            raise TypeError(f"decoder must be callable; got {type(decoder).__name__}")
        if jacobian not in ("auto", "forward", "chain"):
            raise ValueError(f"jacobian must be 'auto', 'forward' or 'chain'; got {jacobian!r}")
        chainable = isinstance(decoder, nn.Module) and supports_chain(decoder)
        self._auto = jacobian == "auto"
        if jacobian == "auto":
            jacobian = "chain" if chainable else "forward"
        if jacobian == "chain" and not chainable:
            raise TypeError(
                "jacobian='chain' needs an nn.Sequential of Linear layers, element-wise "
                "activations and reshapes; use jacobian='forward' for this decoder"
            )
        if isinstance(ridge, Tensor) and ridge.dim() == 0:
            ridge = ridge.item()
        if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real):
            raise TypeError(f"ridge must be a number; got {type(ridge).__name__}")
        if not (ridge >= 0 and math.isfinite(ridge)):
            raise ValueError(f"ridge must be a finite number >= 0; got {ridge}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, numbers.Integral)
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        self.decoder = decoder
        self.ridge = float(ridge)
        self.jacobian_method = jacobian
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self._latent_dim = latent_dim if latent_dim is not None else infer_latent_dim(decoder)
        self._obs_dim: int | None = None
        self._detach = False

    # ------------------------------------------------------------------ constructors
    @classmethod
    def gaussian(cls, mean: Decoder, std: Decoder, **kwargs) -> PullbackMetric:
        r"""The metric of a Gaussian decoder with mean ``mean(z)`` and std ``std(z)``.

        :math:`G = J_\mu^T J_\mu + J_\sigma^T J_\sigma`: the pullback through
        ``z -> (mean(z), std(z))``, the expected metric of the stochastic decoder
        (Arvanitidis et al., "Latent Space Oddity", 2018). ``kwargs`` go to the constructor.
        """
        return cls(GaussianDecoder(mean, std), **kwargs)

    def detached(self) -> PullbackMetric:
        """The same metric with the decoder's parameters and buffers detached.

        Gradients still flow to the points but no autograd graph leads to the decoder's
        weights: what libraries that call ``.numpy()`` on results (geomstats' scipy
        optimisers) need.
        """
        new = PullbackMetric.__new__(PullbackMetric)
        new.__dict__.update(self.__dict__)
        new._detach = True
        return new

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> PullbackMetric:
        """The same metric computing in ``dtype`` on ``device``; this one is unchanged.

        An ``nn.Module`` decoder whose parameters differ in dtype or device is deep-copied
        and converted (``module.to``); otherwise the decoder is shared. The adapters use
        it to compute in float64 whatever the dtype the model was trained in.

        Parameters
        ----------
        dtype : torch.dtype, optional
            A floating-point dtype.
        device : torch.device or str, optional

        Returns
        -------
        PullbackMetric
        """
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
        ref = reference_tensor(self.decoder)
        new = PullbackMetric.__new__(PullbackMetric)
        new.__dict__.update(self.__dict__)
        if ref is None:
            return new
        want_dtype = ref.dtype if dtype is None else dtype
        want_device = ref.device if device is None else torch.device(device)
        if ref.dtype != want_dtype or ref.device != want_device:
            new.decoder = copy.deepcopy(self.decoder).to(dtype=want_dtype, device=want_device)
        return new

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int | None:
        """``d``, the latent dimension (``None`` until known)."""
        return self._latent_dim

    @property
    def obs_dim(self) -> int | None:
        """``D``, the flattened output size, ridge columns included (``None`` until first call)."""
        return self._obs_dim

    def __repr__(self) -> str:
        return (
            f"PullbackMetric(decoder={type(self.decoder).__name__}, d={self._latent_dim}, "
            f"D={self._obs_dim}, ridge={self.ridge}, jacobian={self.jacobian_method!r})"
        )

    # ------------------------------------------------------------------ the flat map
    def kernels(self) -> DecoderKernels:
        """The decoder's kernels with this metric's options (see ``_core/kernels.py``)."""
        return DecoderKernels(
            self.decoder,
            ridge=self.ridge,
            method=self.jacobian_method,
            auto=self._auto,
            detach=self._detach,
        )

    def embed(self, z: Tensor) -> Tensor:
        """The flattened decoder output (concatenated for tuples, with the ridge block).

        Parameters
        ----------
        z : Tensor, shape (B, d)

        Returns
        -------
        Tensor, shape (B, D)
        """
        return self.kernels().embed(z)

    def _curvature(self, z: Tensor, from_terms: Callable[..., Tensor], what: str) -> Tensor:
        """``from_terms(G, G^{-1}, second fundamental form)`` at ``z``, chunked and checked."""
        z, single = self.check_points(z)
        kernels = self.kernels()

        def fn(x: Tensor) -> Tensor:
            return from_terms(*kernels.curvature_terms(x))

        out = check_finite_output(self.evaluator.map(fn, "curvature", z), what)
        return out[0] if single else out

    # ------------------------------------------------------------------ plumbing
    def check_points(self, z, name: str = "z") -> tuple[Tensor, bool]:
        """Points checked for this metric, as a batch, and whether a batch axis was added.

        Shape ``(d,)`` or ``(B, d)``, finite, in the decoder's dtype and on its device; on
        first use the decoder is called once to learn ``d`` and ``D``.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)
        name : str
            Names ``z`` in errors.

        Returns
        -------
        z : Tensor, shape (B, d)
        single : bool

        Raises
        ------
        TypeError, ValueError
            Naming the argument, the shape, dtype or device received and the fix.
        """
        z, single = batch_points(z, self._latent_dim, name)
        self.check_dtype_device(z, name)
        self._probe(z)
        return z, single

    def check_dtype_device(self, x: Tensor, name: str) -> None:
        """Raise a TypeError naming ``name`` if ``x`` differs from the decoder's parameters
        in dtype or device (decoders without parameters accept any)."""
        ref = reference_tensor(self.decoder)
        if ref is None:
            return
        if x.dtype != ref.dtype or x.device != ref.device:
            raise TypeError(
                f"{name} is {x.dtype} on {x.device}, but the decoder's parameters are "
                f"{ref.dtype} on {ref.device}; convert with {name}.to(dtype={ref.dtype}, "
                f"device='{ref.device}') or move the decoder"
            )

    def _probe(self, z: Tensor) -> None:
        """On first use, learn ``D`` (and ``d``) from one decoder call with a clear error."""
        if self._obs_dim is not None:
            return
        with torch.no_grad():
            out = self.embed(z[:1] if len(z) else z.new_zeros(1, z.shape[1]))
        self._obs_dim = out.shape[1]
        self._latent_dim = z.shape[1]

    def params_require_grad(self) -> bool:
        """Whether autograd reaches the decoder's parameters through this metric."""
        if self._detach or not isinstance(self.decoder, nn.Module):
            return False
        return any(p.requires_grad for p in self.decoder.parameters())

    @property
    def evaluator(self) -> Evaluator:
        """This metric's kernels, evaluated in memory-bounded chunks and unchecked.

        What the solvers' inner loops call, on points that :meth:`check_points` has
        checked (see :mod:`pullback_geom._core.evaluate`).
        """
        return Evaluator(self.kernels().kernels(), self)

    # ------------------------------------------------------------------ the geometry
    def jacobian(self, z: Tensor) -> Tensor:
        """Jacobian of the (flattened) decoder.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, D, d) or (D, d)
        """
        z, single = self.check_points(z)
        jac = self.evaluator.jacobian(z)
        jac = check_finite_output(jac, "Jacobian")
        return jac[0] if single else jac

    def value_and_jacobian(
        self, z: Tensor, *, tangent_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """The flattened decoder output and its Jacobian in one pass.

        Parameters
        ----------
        z : Tensor, shape (B, d)
        tangent_dtype : torch.dtype, optional
            The Jacobian's dtype, e.g. ``torch.bfloat16`` for an approximate Jacobian whose
            chain-rule products run ~3x faster on CPUs with AVX-512 BF16 or AMX (slower on
            CPUs without). Only ``nn.Sequential`` decoders on the chain rule compute in it;
            other decoders compute in ``z``'s dtype and cast. Default: ``z``'s dtype.

        Returns
        -------
        value : Tensor, shape (B, D)
            In ``z``'s dtype.
        jac : Tensor, shape (B, D, d)
        """
        if tangent_dtype is not None and not (
            isinstance(tangent_dtype, torch.dtype) and tangent_dtype.is_floating_point
        ):
            raise TypeError(
                f"tangent_dtype must be a floating-point torch.dtype; got {tangent_dtype!r}"
            )
        z, _ = self.check_points(z)
        size = self.evaluator.rows("jacobian")
        kernels = self.kernels()
        if z.shape[0] <= size:  # no copy through torch.cat
            value, jac = kernels.value_and_jacobian(z, tangent_dtype)
        else:
            parts = [
                kernels.value_and_jacobian(z[i : i + size], tangent_dtype)
                for i in range(0, len(z), size)
            ]
            value, jac = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return value, check_finite_output(jac, "Jacobian")

    def metric_tensor(self, z: Tensor) -> Tensor:
        """``G(z) = J(z)^T J(z)``.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d) or (d, d)
        """
        z, single = self.check_points(z)
        g = self.evaluator.metric_tensor(z)
        g = check_finite_output(g, "metric tensor")
        return g[0] if single else g

    def log_volume(self, z: Tensor) -> Tensor:
        """``log sqrt(det G(z))``; ``-inf`` where ``G`` is singular.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        sign, logdet = torch.linalg.slogdet(self.metric_tensor(z))
        return torch.where(sign > 0, 0.5 * logdet, torch.full_like(logdet, -math.inf))

    def volume_element(self, z: Tensor) -> Tensor:
        """``sqrt(det G(z))``: how much the decoder stretches a unit latent volume.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        return self.log_volume(z).exp()

    def inner(self, z: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """``u^T G(z) v``.

        Parameters
        ----------
        z, u, v : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        z, single = self.check_points(z)
        u, _ = self.check_points(u, "u")
        v, _ = self.check_points(v, "v")
        for name, x in (("u", u), ("v", v)):
            if x.shape[0] not in (1, z.shape[0]):
                same_shape(x, z, f"{name} and z")
        g = self.metric_tensor(z)
        out = torch.einsum("bi,bij,bj->b", u.expand_as(z), g, v.expand_as(z))
        return out[0] if single else out

    def norm(self, z: Tensor, v: Tensor) -> Tensor:
        """``sqrt(v^T G(z) v)``, shape (B,) or (); see :meth:`inner`."""
        return self.inner(z, v, v).clamp_min(0).sqrt()

    def christoffel_symbols(self, z: Tensor) -> Tensor:
        """Christoffel symbols of the second kind, from the pullback structure.

        ``Gamma^k_ij = (G^{-1})^{kl} <d_l f, d_i d_j f>``: one Jacobian and one Hessian of
        the decoder, by second-order chain propagation or nested forward mode; ``G`` is
        never differentiated.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d, d) or (d, d, d)
            ``out[..., k, i, j] = Gamma^k_ij`` (geomstats' order).
        """
        z, single = self.check_points(z)
        gam = self.evaluator.christoffels(z)
        gam = check_finite_output(gam, "Christoffel symbols")
        return gam[0] if single else gam

    def geodesic_acceleration(self, z: Tensor, v: Tensor) -> Tensor:
        """Right-hand side of the geodesic ODE: ``-Gamma^k_ij(z) v^i v^j``.

        Computed as ``-G^{-1} J^T (D^2 f)[v, v]`` (second-order chain propagation or nested
        forward-mode JVPs), without forming the Christoffel symbols.

        Parameters
        ----------
        z, v : Tensor, shape (B, d) or (d,)
            Positions and velocities.

        Returns
        -------
        Tensor, shape (B, d) or (d,)
        """
        z, single = self.check_points(z)
        v, _ = self.check_points(v, "v")
        same_shape(z, v, "z and v")
        acc = self.evaluator.acceleration(z, v)
        acc = check_finite_output(acc, "geodesic acceleration")
        return acc[0] if single else acc

    # ------------------------------------------------------------------ curvature
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
        self.check_points(z)  # bad input is named, and d learned, before the dimension is read
        if self._latent_dim != 2:
            raise ValueError(
                f"Gaussian curvature is defined for a 2-D latent space; this one has d = "
                f"{self._latent_dim}. Use sectional_curvature(z, u, v) or scalar_curvature(z)"
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
        z, single = self.check_points(z)
        u, _ = self.check_points(u, "u")
        v, _ = self.check_points(v, "v")
        for name, x in (("u", u), ("v", v)):
            if x.shape[0] not in (1, z.shape[0]):
                same_shape(x, z, f"{name} and z")
        u, v = u.expand_as(z).contiguous(), v.expand_as(z).contiguous()
        C.check_plane(u, v)
        kernels = self.kernels()

        def fn(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
            metric, _, sff = kernels.curvature_terms(x)
            return C.sectional_from_sff(sff, metric, a, b)

        out = self.evaluator.map(fn, "curvature", z, u, v)
        out = check_finite_output(out, "sectional curvature")
        return out[0] if single else out

    def decode_curve(self, curve: Tensor) -> Tensor:
        """The flattened decoded points of curves.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d)

        Returns
        -------
        Tensor, shape (B, N, D) or (N, D)
        """
        c, single = batch_curves(curve, self._latent_dim)
        self.check_dtype_device(c, "curve")
        b, n, d = c.shape
        self._probe(c.reshape(b * n, d))
        x = self.evaluator.embed(c.reshape(b * n, d)).reshape(b, n, self._obs_dim)
        x = check_finite_output(x, "decoded curve")
        return x[0] if single else x

    def curve_energy(self, curve: Tensor) -> Tensor:
        """Discrete energy measured in observation space.

        ``E = (N - 1) * sum_i ||f(c_{i+1}) - f(c_i)||^2``, the energy of the decoded
        polygon parametrised on ``[0, 1]`` with equal steps.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        x = self.decode_curve(curve)
        steps = x.diff(dim=-2)
        return (x.shape[-2] - 1) * steps.square().sum((-1, -2))

    def curve_length(self, curve: Tensor) -> Tensor:
        """Length of the decoded polygon, ``sum_i ||f(c_{i+1}) - f(c_i)||``.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d)

        Returns
        -------
        Tensor, shape (B,) or ()
        """
        x = self.decode_curve(curve)
        return torch.linalg.vector_norm(x.diff(dim=-2), dim=-1).sum(-1)
