"""Every geodesic method on the same pairs, side by side: :func:`compare_geodesics`.

Each method produces a curve from ``p`` to ``q``; every curve then goes through the same
diagnostics, so the numbers are comparable whatever the method's own representation
(discrete nodes, a spline, an ODE solution):

* **length**: observation-space length of the centripetal Catmull–Rom spline through the
  method's nodes, decoded ``refine`` times per segment and extrapolated (as
  :func:`connecting_geodesic` measures it);
* **energy**: the discrete energy ``(M - 1) sum ||f(x_{i+1}) - f(x_i)||^2`` of the ``M``
  nodes as the method returns them (its own parametrisation; ``E >= L^2``, with equality
  for constant speed);
* **residual**: the curve is reparametrised to constant observation-space speed on
  ``s in [0, 1]`` (a cubic spline through the nodes against their normalised arc length)
  and, at ``n_eval - 2`` interior points,
  ``r(s) = |c''(s) + Gamma(c'(s), c'(s))|_G / |c'(s)|_G``. ``r`` is the geodesic curvature
  times the curve's length: scale-free (unchanged when the decoder's output is scaled or
  the curve re-timed), zero for a geodesic, and about ``theta`` for a curve that turns by
  ``theta`` radians at a uniform rate. The table gives its largest value. Spline
  derivatives put a floor of ``O(h^2)`` on it (``h`` the node spacing), and on ReLU
  decoders ``Gamma`` jumps at the kinks, so there even a converged curve has ``r = O(1)``
  at a few points;
* **end-point error**: ``max(|c(0) - p|, |c(1) - q|) / |p - q|``;
* **round trip** (exp after log): the constant-speed curve's initial velocity ``c'(0)`` is
  shot with the adaptive ODE integrator (:func:`exp_map`, ``"dopri5"``); the error is
  ``|exp_p(c'(0)) - q| / |p - q|``. Small only when the curve is a geodesic *and* the
  geodesic ODE is well posed along it (it is not on dead ReLU regions, where ``G`` is
  nearly singular);
* **seconds**: wall time of the method itself, all pairs;
* **converged**: the method's own verdict (for ODE shooting: its end point within
  :func:`log_map`'s tolerance).

A method that raises becomes a row that says so; it never stops the comparison.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ..._core.linalg import SingularMetricWarning
from ..._core.progress import progress_bar
from ...geodesics._common import GeodesicConvergenceWarning, _pair
from ...metric import PullbackMetric
from .diagnostics import diagnose, round_trips
from .methods import COMPARE_METHODS, default_methods
from .table import GeodesicComparison, MethodRow

__all__ = [
    "COMPARE_METHODS",
    "GeodesicComparison",
    "MethodRow",
    "compare_geodesics",
    "default_methods",
]


def compare_geodesics(
    metric: PullbackMetric,
    p: Tensor,
    q: Tensor,
    methods: Sequence[str] | None = None,
    *,
    reference: str | None = None,
    refine: int = 8,
    n_eval: int = 65,
    agree_rtol: float = 1e-3,
    method_options: dict[str, dict] | None = None,
    exp_options: dict | None = None,
    exact: Tensor | None = None,
    progress: bool = False,
) -> GeodesicComparison:
    """Run every geodesic method on the same pairs and diagnose each curve the same way.

    Parameters
    ----------
    metric : PullbackMetric
    p, q : Tensor, shape (B, d) or (d,)
        End points.
    methods : sequence of str, optional
        Keys of :data:`COMPARE_METHODS`. Default :func:`default_methods`: all of them
        except geomstats' ``LogShootingSolver`` (``"geomstats_shooting"``), which takes
        ~55 s per pair on the sphere and minutes on a neural decoder; ask for it by name
        (its budget: ``method_options={"geomstats_shooting": {"maxiter": 30}}``, the
        default).
    reference : str, optional
        The method whose lengths the others are compared with; default ``"lm"`` if it
        runs, else the first method.
    refine : int, default 8
        Segment refinement of the length (see :func:`connecting_geodesic`).
    n_eval : int, default 65
        Points of the constant-speed curves (``curves``) and of the residual.
    agree_rtol : float, default 1e-3
        Relative length difference still counted as agreement.
    method_options : dict of str to dict, optional
        Options per method, checked before any runs: the core's methods take their
        registry options (energy methods default to ``n_points=32``),
        ``geomstats_logode`` those of ``LogODESolver`` (e.g.
        ``n_nodes``), ``geomstats_shooting`` ``maxiter`` (default 30),
        ``geomstats_path`` ``n_nodes`` (default 20), ``stochman`` those of
        ``DecoderManifold.connecting_geodesic``.
    exp_options : dict, optional
        Options of the round trip's :func:`exp_map` (``rtol``, ``atol``, ``max_steps``);
        default ``rtol=1e-6, atol=1e-8`` (float32: ``1e-5, 1e-7``), enough for an error
        reported to two digits down to ~1e-5, and ``max_steps=1000``: a shot that needs
        more (stiff or stuck where ``G`` is nearly singular) counts as diverged (NaN).
    exact : Tensor, shape (B,), optional
        Known distances (e.g. :func:`~pullback_geom.surfaces.sphere_distance`): the table
        then gives each method's error against them.
    progress : bool, default False
        A tqdm bar over methods.

    Returns
    -------
    GeodesicComparison
        ``curves[name]`` of shape (B, n_eval, d), ``rows[name]`` (:class:`MethodRow`),
        ``to_markdown()``.

    Raises
    ------
    ValueError
        Unknown methods or options, ``p``/``q`` of different shapes or not finite.
    """
    p, q, _ = _pair(metric, p, q)  # shapes, dtype and finiteness checked here
    names = default_methods() if methods is None else list(methods)
    unknown = [m for m in names if m not in COMPARE_METHODS]
    if unknown or not names:
        raise ValueError(f"unknown methods {unknown}; choose from {list(COMPARE_METHODS)}")
    # Each method's options checked before any method runs (a TypeError naming the option).
    if len(set(names)) != len(names):
        raise ValueError(f"methods must not repeat; got {names}")
    if reference is None:
        reference = "lm" if "lm" in names else names[0]
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not among the methods {names}")
    if exact is not None:
        exact = torch.as_tensor(exact, dtype=p.dtype)
        if exact.shape != (p.shape[0],):
            raise ValueError(f"exact must have shape ({p.shape[0]},); got {tuple(exact.shape)}")
    if isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 5:
        raise ValueError(f"n_eval must be an integer >= 5; got {n_eval!r}")
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 1:
        raise ValueError(f"refine must be a positive integer; got {refine!r}")
    method_options = dict(method_options or {})
    stray = sorted(set(method_options) - set(names))
    if stray:
        raise ValueError(f"method_options for methods that do not run: {stray}")
    for name, options in method_options.items():
        COMPARE_METHODS[name].with_defaults(options, "compare_geodesics")
    skipped = {}
    if methods is None:
        skipped = {
            name: "slow (minutes per pair): ask for it by name"
            for name, method in COMPARE_METHODS.items()
            if method.slow
        }
    curves, rows, velocities = {}, {}, {}
    for name in progress_bar(names, show=progress, desc="compare", unit="method"):
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Failures are what the table reports; the warnings would only repeat them.
                warnings.simplefilter("ignore", GeodesicConvergenceWarning)
                warnings.simplefilter("ignore", SingularMetricWarning)
                run = COMPARE_METHODS[name].run
                nodes, conv = run(metric, p, q, method_options.get(name, {}))
        # A failing method (geomstats' scipy solvers raise anything) is a row, not a
        # crash; the diagnosis below is ours, and its errors are bugs that must surface.
        except Exception as err:  # noqa: BLE001
            seconds = time.perf_counter() - t0
            b, d = p.shape
            nan = torch.full((b,), float("nan"), dtype=p.dtype, device=p.device)
            failed = torch.zeros(b, dtype=torch.bool, device=p.device)
            rows[name] = MethodRow(
                name, nan, nan, nan, nan, nan, failed, seconds,
                error=f"{type(err).__name__}: {err}",
            )  # fmt: skip
            curves[name] = torch.full((b, n_eval, d), float("nan"), dtype=p.dtype, device=p.device)
            continue
        seconds = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularMetricWarning)
            curves[name], rows[name], velocities[name] = diagnose(
                metric, name, nodes.detach(), conv, seconds, p, q, refine, n_eval
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularMetricWarning)
        low = p.dtype != torch.float64
        tolerances = {
            "rtol": 1e-5 if low else 1e-6, "atol": 1e-7 if low else 1e-8, "max_steps": 1000
        }  # fmt: skip
        round_trips(metric, rows, velocities, p, q, {**tolerances, **(exp_options or {})})
    return GeodesicComparison(p, q, curves, rows, reference, agree_rtol, skipped, exact)
