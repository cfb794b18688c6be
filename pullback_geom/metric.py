"""``PullbackMetric``: the Riemannian metric a decoder induces on its latent space."""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import Tensor, nn

from ._core.chain import supports_chain
from ._core.checks import check_finite_output, same_shape
from ._core.evaluate import Evaluator
from ._core.kernels import Decoder, DecoderKernels, GaussianDecoder, infer_latent_dim
from ._core.memory import parse_bytes
from ._core.modules import reference_tensor
from ._core.smoothness import is_smooth
from ._metric_curvature import CurvatureMixin

__all__ = ["PullbackMetric"]


class PullbackMetric(CurvatureMixin):
    r"""The pullback of observation space's Euclidean metric through a decoder.

    For a decoder :math:`f: \mathbb{R}^d \to \mathbb{R}^D`, :math:`G(z) = J(z)^T J(z)`
    with :math:`J` the Jacobian of :math:`f`. Curve lengths and energies are those of the
    decoded curve, so they do not depend on the (arbitrary) latent coordinates.

    Parameters
    ----------
    decoder : callable
        Maps latent points ``(B, d)`` to observations ``(B, *obs)`` (e.g. ``(B, 1, 28, 28)``
        or ``(B, 3, 64, 64)``; flattened internally), or to a tuple of such tensors, e.g.
        ``(mean, std)`` of a Gaussian decoder: the tuple is concatenated, which gives
        ``G = J_mean^T J_mean + J_std^T J_std`` (see :meth:`gaussian`), or to a mapping or
        an object that holds the observation (see ``output``). Any torch callable works:
        the parameters of the ``nn.Module`` layers inside it (the decoder itself, or those
        a bound method, ``functools.partial`` or closure holds) fix the dtype and device
        that points must have. Layers whose output depends on the batch (BatchNorm) or on
        chance (dropout) must be in eval mode: ``decoder.eval()``, else a ValueError says so.
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
    output : str, optional
        The key of a mapping output (a dict, pythae's ``ModelOutput``:
        ``"reconstruction"``) or the attribute of an object output (diffusers'
        ``DecoderOutput``: ``"sample"``; a torch ``Distribution``: ``"mean"``) that holds
        the observation.
    memory_budget : int or str, optional
        Bytes a chunk of evaluation may take, e.g. ``"2GB"``: batches are cut so that the
        decoder's activations (measured once) times the tangents each kernel carries fit.
        Default: the ``PULLBACK_GEOM_MEMORY_BUDGET`` environment variable, else 512 MiB
        (at most 1/16 of the machine's memory) on the CPU and a quarter of the free memory
        on a GPU. A point that does not fit is a ``MemoryError`` naming the budget.
    dtype, device : optional
        What a decoder without modules inside (a plain function of tensors) computes in,
        so that the adapters cast points to it; read from the modules otherwise.
    smooth : bool, optional
        Whether the decoder is twice continuously differentiable, so that the geodesic
        ODE (:func:`~pullback_geom.geodesics.exp_map`) applies; piecewise-linear
        decoders (ReLU) need the discrete geodesic calculus instead. Default: read from
        the ``nn.Module`` layers inside the decoder (the decoder itself, or those a bound
        method, ``functools.partial`` or closure holds): smooth unless one of them is
        piecewise linear or only once differentiable (ReLU, LeakyReLU, Hardtanh, max
        pooling, ELU, ...; see :mod:`pullback_geom._core.smoothness`). A plain function
        with no module inside, such as the analytic decoders of
        :mod:`pullback_geom.surfaces`, is taken to be smooth: pass ``smooth=False`` for a
        piecewise-linear one, or for a module that calls ``torch.relu`` functionally.

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
        output: str | None = None,
        memory_budget: int | str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        smooth: bool | None = None,
    ) -> None:
        if not callable(decoder):
            raise TypeError(f"decoder must be callable; got {type(decoder).__name__}")
        if jacobian not in ("auto", "forward", "chain"):
            raise ValueError(f"jacobian must be 'auto', 'forward' or 'chain'; got {jacobian!r}")
        if output is not None and not isinstance(output, str):
            raise TypeError(f"output must be a key or attribute name; got {output!r}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
        budget = None if memory_budget is None else parse_bytes(memory_budget)
        # The chain rule reads an nn.Sequential's tensors; a selected output needs the
        # decoder called as a whole.
        chainable = output is None and isinstance(decoder, nn.Module) and supports_chain(decoder)
        auto = jacobian == "auto"
        if auto:
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
        if smooth is not None and not isinstance(smooth, bool):
            raise TypeError(f"smooth must be True, False or None; got {type(smooth).__name__}")
        kernels = DecoderKernels(
            decoder, ridge=float(ridge), method=jacobian, auto=auto, detach=False, output=output
        )
        self._evaluator = Evaluator(
            kernels,
            latent_dim=latent_dim if latent_dim is not None else infer_latent_dim(decoder),
            chunk_size=None if chunk_size is None else int(chunk_size),
            memory_budget=budget,
            dtype=dtype,
            device=None if device is None else torch.device(device),
        )
        self._smooth = is_smooth(decoder) if smooth is None else smooth

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
        return self._derived(detach=True)

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> PullbackMetric:
        """The same metric computing in ``dtype`` on ``device``; this one is unchanged.

        An ``nn.Module`` decoder whose parameters differ in dtype or device is deep-copied
        and converted (``module.to``); otherwise the decoder is shared (a function or
        closure keeps computing in its own dtype: see :attr:`dtype`). The adapters use
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
        if ref is None or not isinstance(self.decoder, nn.Module):
            # A closure over modules cannot be converted from outside: it computes in its
            # modules' dtype, and the adapters cast points to it (metric.dtype).
            return self._derived()
        want_dtype = ref.dtype if dtype is None else dtype
        want_device = ref.device if device is None else torch.device(device)
        if ref.dtype != want_dtype or ref.device != want_device:
            decoder = copy.deepcopy(self.decoder).to(dtype=want_dtype, device=want_device)
            return self._derived(decoder=decoder)
        return self._derived()

    def _derived(self, *, decoder: Decoder | None = None, detach: bool = False) -> PullbackMetric:
        """A copy with its own evaluator: another decoder, or parameters detached."""
        old = self._evaluator
        k = old.kernels
        kernels = DecoderKernels(
            k.decoder if decoder is None else decoder,
            ridge=k.ridge,
            method=k.method,
            auto=k.auto,
            detach=k.detach or detach,
            output=k.output,
        )
        new = copy.copy(self)
        # A converted decoder says its own dtype and device; the same one keeps them.
        same = decoder is None
        new._evaluator = Evaluator(
            kernels,
            latent_dim=old.latent_dim,
            obs_dim=old.obs_dim,
            chunk_size=old.chunk_size,
            memory_budget=old.memory_budget,
            dtype=old.dtype if same else None,
            device=old.device if same else None,
        )
        return new

    # ------------------------------------------------------------------ properties
    @property
    def decoder(self) -> Decoder:
        """The decoder, as given (or converted by :meth:`to`)."""
        return self._evaluator.kernels.decoder

    @property
    def ridge(self) -> float:
        """The ridge added to ``G`` (see the class docstring)."""
        return self._evaluator.kernels.ridge

    @property
    def jacobian_method(self) -> str:
        """``"chain"`` or ``"forward"``: how derivatives are computed."""
        return self._evaluator.kernels.method

    @property
    def chunk_size(self) -> int | None:
        """Points evaluated at once, if the user chose it."""
        return self._evaluator.chunk_size

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the decoder computes in (its modules', or ``dtype=``); None if any."""
        return self._evaluator.dtype

    @property
    def device(self) -> torch.device | None:
        """The device the decoder computes on (its modules', or ``device=``); None if any."""
        return self._evaluator.device

    @property
    def memory_budget(self) -> int | None:
        """Bytes a chunk may take, if set on this metric (else the default's)."""
        return self._evaluator.memory_budget

    @property
    def latent_dim(self) -> int | None:
        """``d``, the latent dimension (``None`` until known)."""
        return self._evaluator.latent_dim

    @property
    def obs_dim(self) -> int | None:
        """``D``, the flattened output size, ridge columns included (``None`` until first call)."""
        return self._evaluator.obs_dim

    @property
    def smooth(self) -> bool:
        """Whether the decoder is smooth (C2) enough for the geodesic ODE (see ``smooth=``)."""
        return self._smooth

    @property
    def evaluator(self) -> Evaluator:
        """The solvers' interface to this metric, not the users': built once per metric.

        Checks points (``evaluator.check_points``, which learns ``d`` and ``D``) and
        evaluates the decoder's kernels in memory-bounded chunks, unchecked (see
        :mod:`pullback_geom._core.evaluate`). :meth:`to` and :meth:`detached` give new
        metrics with their own.
        """
        return self._evaluator

    def __repr__(self) -> str:
        return (
            f"PullbackMetric(decoder={type(self.decoder).__name__}, d={self.latent_dim}, "
            f"D={self.obs_dim}, ridge={self.ridge}, jacobian={self.jacobian_method!r})"
        )

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
        z, single = self.evaluator.check_points(z)
        jac = self.evaluator.jacobian(z)
        jac = check_finite_output(jac, "Jacobian")
        return jac[0] if single else jac

    def metric_tensor(self, z: Tensor) -> Tensor:
        """``G(z) = J(z)^T J(z)``.

        Parameters
        ----------
        z : Tensor, shape (B, d) or (d,)

        Returns
        -------
        Tensor, shape (B, d, d) or (d, d)
        """
        z, single = self.evaluator.check_points(z)
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
        z, single = self.evaluator.check_points(z)
        u, _ = self.evaluator.check_points(u, "u")
        v, _ = self.evaluator.check_points(v, "v")
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
        z, single = self.evaluator.check_points(z)
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
        z, single = self.evaluator.check_points(z)
        v, _ = self.evaluator.check_points(v, "v")
        same_shape(z, v, "z and v")
        acc = self.evaluator.acceleration(z, v)
        acc = check_finite_output(acc, "geodesic acceleration")
        return acc[0] if single else acc

    def decode_curve(self, curve: Tensor) -> Tensor:
        """The flattened decoded points of curves.

        Parameters
        ----------
        curve : Tensor, shape (B, N, d) or (N, d)

        Returns
        -------
        Tensor, shape (B, N, D) or (N, D)
        """
        c, single = self.evaluator.check_curves(curve)
        b, n, d = c.shape
        x = self.evaluator.embed(c.reshape(b * n, d)).reshape(b, n, self.obs_dim)
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
