"""The joint Fréchet mean: one Levenberg–Marquardt solve over the mean and the curves from
it to every point.

The weighted Fréchet function ``F(m) = sum_i w_i d(m, x_i)^2 / sum_i w_i`` is minimised
through its discretisation ``sum_i w_i S_i``, where ``S_i`` is the chord energy
(:class:`~pullback_geom.geodesics.chord.ChordEnergy`) of a discrete curve of ``N`` nodes
whose first node is the free mean ``m`` and whose last is the fixed point ``x_i``: at the
minimum over its interior nodes ``S_i ~ L_i^2 / (N - 1)``, so both have the same minimiser
up to the discretisation. The mean and every interior node are the unknowns of one sum of
squares, solved by Gauss–Newton steps with the damping, acceptance and convergence test of
:func:`~pullback_geom.geodesics.lm.levenberg_marquardt`, instead of gradient descent on
``m`` with a geodesic solve per step.

The Gauss–Newton system is block-tridiagonal per curve (``d x d`` blocks: ``2 G_k`` on the
diagonal, ``J_k^T J_k+1`` couplings, as :class:`ChordEnergy` forms them) and the curves
meet only in the mean's block ``W G(m)``, coupled to each curve's first interior node by
``w_i J_m^T J_i1``. Each curve is eliminated by its block Cholesky factor
(:func:`~pullback_geom._core.linalg.block_tridiagonal_cholesky`, all curves batched), the
``d x d`` Schur complement gives the mean's step, and the curves' steps follow by back
substitution: a step costs ``O(n N d^3)``, linear in the number of points. Several sets
of points (the ``k`` clusters of k-means) are solved at once, each with its own damping
and stopping test, as the driver treats pairs.

On smooth ``nn.Sequential`` decoders (the chain rule's) the steps are Newton's: the
decoder's second derivatives contracted with each residual's gradient
(:meth:`~pullback_geom._core.evaluate.Evaluator.curvature_tape`, about one more backward
pass) join the diagonal blocks and the mean's block. Gauss–Newton leaves that term out,
and on long curves of a curved decoder it is as large as the chain Laplacian's smoothest
modes, so Gauss–Newton converges linearly there (bundled smooth model, 50 codes of a
digit: 12 iterations to polish a warm-started 21-node solve, against 2–3 with Newton).
A factorisation the term makes fail falls back to Gauss–Newton for that step. Other
decoders keep Gauss–Newton with a secant correction of the mean's block.

The discrete mean is the exact one for the discrete calculus of a piecewise-linear
decoder; on a smooth decoder it is ``O(1 / N^2)`` off the Fréchet mean (the chords'
error), and ``extrapolate=True`` removes that term by Richardson extrapolation from a
second, finer solve warm-started by the first.

Convergence means what it means there: a step the model trusts (right after an accepted
step, or accepted itself) predicts a relative decrease of ``sum_i w_i S_i`` below
``tol``, or an accepted step leaves the sum unchanged to its last bit while the model
predicted a decrease within :data:`~pullback_geom.geodesics._joint.STALL_EPS` rounding
units of it (the sum's rounding floor: in float32 the curves' predicted decrease stalls
there). Sets whose damping grows past :data:`~pullback_geom.geodesics.lm.MAX_DAMPING`
without an accepted step, or whose system cannot be factorised, stop as not converged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from .._core.checks import as_tensor, check_finite
from ..metric import PullbackMetric
from ._common import _tolerance, check_count, refined_length
from ._frechet_extrapolate import extrapolated, fine_points
from ._frechet_polish import START_TOL
from ._frechet_polish import polish as _polish
from ._frechet_start import initial_state
from ._joint import JointChords, solve
from .discrete import first_step_velocity

__all__ = ["FrechetResult", "fine_points", "frechet_mean"]

#: Default nodes per curve: the energy solvers' ``n_points``.
N_POINTS = 16
#: Default Levenberg–Marquardt iterations: the energy solvers' ``max_iter``.
MAX_ITER = 200
#: Decoded points per segment of the lengths in :attr:`FrechetResult.value`: the energy
#: solvers' ``refine`` (:func:`~pullback_geom.geodesics._common.refined_length`).
REFINE = 4
#: Default ``tol`` in float32 (float64: 1e-10, the energy solvers'). Below float32's
#: rounding floor of the sum (~1.6e-6 of it on the bundled ReLU model), where a set stops
#: when an accepted step leaves the sum unchanged (:data:`~pullback_geom.geodesics._joint.
#: STALL_EPS`); smooth decoders reach it: at 1e-6 the gradient at the mean of 50 codes of
#: the bundled smooth model was up to 1.6e-3 of its value at the Euclidean mean, at 1e-7
#: below 4e-5.
TOL_FLOAT32 = 1e-7


@dataclass
class FrechetResult:
    """The weighted Fréchet mean of one or ``k`` sets of points (:func:`frechet_mean`).

    Shapes are written for ``x`` of shape ``(k, n, d)``; for ``(n, d)`` the leading ``k``
    axis is absent.

    Attributes
    ----------
    mean : Tensor, shape (k, d)
    curves : Tensor, shape (k, n, N, d)
        The discrete geodesics from the mean (node 0) to each point (node ``N - 1``); NaN
        for points of zero weight, which are not solved.
    lengths : Tensor, shape (k, n)
        Their observation-space lengths, measured like the energy solvers' (the decoded
        Catmull–Rom spline through the nodes, :data:`REFINE` points per segment,
        extrapolated: :func:`~pullback_geom.geodesics._common.refined_length`); NaN for
        points of zero weight.
    value : Tensor, shape (k,)
        The Fréchet function at the mean, ``sum_i w_i lengths_i^2 / sum_i w_i``.
    velocity : Tensor, shape (k, n, d)
        The discrete logarithm at the mean of each point, the initial velocity of its curve
        (:func:`~pullback_geom.geodesics.discrete.first_step_velocity`, see
        ``gradient_norm``); NaN for points of zero weight. What tangent PCA at the mean
        needs, with no second round of logarithms.
    gradient_norm : Tensor, shape (k,)
        ``|grad F(m)|_G(m)``, the Riemannian norm of the Fréchet function's gradient
        ``-2 sum_i w_i v_i / sum_i w_i``, with ``v_i`` the discrete logarithm at the mean
        (:func:`~pullback_geom.geodesics.discrete.first_step_velocity`: ``(N - 1)`` times
        the first decoded chord projected on the tangent plane, which is ``-1/2`` the
        gradient of the squared length of the discrete geodesic, ReLU decoders included).
    iterations : Tensor, shape (k,), int
    converged : Tensor, shape (k,), bool
        A trusted step predicted a relative decrease below ``tol``, or an accepted step
        left the sum unchanged to the last bit while predicting a decrease within its
        rounding (see the module docstring); never that the damping gave up.
    """

    mean: Tensor
    curves: Tensor
    lengths: Tensor
    value: Tensor
    velocity: Tensor
    gradient_norm: Tensor
    iterations: Tensor
    converged: Tensor


def frechet_mean(
    metric: PullbackMetric,
    x,
    weights=None,
    *,
    mean=None,
    n_points: int = N_POINTS,
    max_iter: int = MAX_ITER,
    tol: float | None = None,
    init_curve: str | Tensor = "auto",
    extrapolate: bool = False,
    polish: bool = False,
    measure: bool = True,
    jacobian_dtype: torch.dtype | None = None,
) -> FrechetResult:
    """Weighted Fréchet mean of points, by one joint Levenberg–Marquardt solve over the
    mean and the discrete geodesics to every point (see the module docstring).

    Parameters
    ----------
    metric : PullbackMetric
    x : Tensor, shape (n, d) or (k, n, d)
        One set of ``n`` points, or ``k`` sets solved at once (e.g. every cluster of
        k-means, each holding all points with weight 0 outside it). In the metric's dtype
        and on its device. Duplicates are fine.
    weights : Tensor, shape (n,) or (k, n), optional
        Non-negative; every set needs a positive one. Points of weight 0 are not in the
        set (their curves are not solved). Default: all 1.
    mean : Tensor, shape (d,) or (k, d), optional
        Start. Default: each set's weighted Euclidean mean or, with a graph start, the
        set's point of lowest Fréchet function on the graph where it is lower there than
        the Euclidean mean (on ReLU decoders the Fréchet function has local minima).
    n_points : int, default 16
        ``N``, nodes per curve, the mean and the point included (at least 3).
    max_iter : int, default 200
    tol : float, optional
        Relative decrease of ``sum_i w_i S_i`` predicted by a trusted step below which a
        set has converged. Default 1e-10 in float64, :data:`TOL_FLOAT32` in float32.
    init_curve : {"auto", "graph", "straight"}, default "auto"
        The curves' start: straight lines from the start mean, or shortest paths on the
        energy solvers' latent grid graph from it (2-D and 3-D only; each curve keeps
        whichever of the two has the lower chord energy). ``"auto"``: ``"graph"`` in 2-D
        and 3-D, else ``"straight"``. On ReLU decoders straight starts leave some curves
        in longer local minima (bundled model, 50 codes of a digit 7: Fréchet function
        56.3 from straight starts, 49.4 from the graph's). Or curves, a Tensor of shape
        ``(n, N, d)`` or ``(k, n, N, d)`` (e.g. an earlier result's ``curves``, with
        ``mean`` its mean: a warm start): their interior nodes are the start, their end
        nodes are replaced by the start mean and the point, and rows holding NaN are
        started as ``"auto"``.
    extrapolate : bool, default False
        Solve again on :func:`fine_points` ``(n_points)`` nodes from the first solve's
        curves and return the Richardson extrapolation of the two means. On smooth
        decoders the discrete mean is ``O(1 / N^2)`` off the Fréchet mean, and the
        extrapolation cancels that term (bundled smooth model, 50 codes of each digit:
        the Riemannian gradient at the mean, by independent ODE logarithms, 4e-3 to 0.1 of
        its value at the Euclidean mean at 16 nodes, 4e-5 to 3e-4 extrapolated from 16
        and 21), at about twice the cost. Sets whose correction is large against the
        mean's distance from their Euclidean mean go one level finer (21 and 28 nodes;
        digit 4, 0.019 from its Euclidean mean: 1.1e-2 -> 2.1e-4, at 1.6 times the
        cost; :mod:`~pullback_geom.geodesics._frechet_extrapolate`). Meaningless on
        piecewise-linear decoders, where the discrete calculus is the exact one.
    polish : bool, default False
        Then solve the curves again from fresh starts at the joint mean (keeping the
        lower of the two), and descend the Fréchet function measured by the curves'
        lengths from there, the curves solved again at every mean tried
        (:mod:`~pullback_geom.geodesics._frechet_polish`). For piecewise-linear
        decoders, where the chord energies the joint solve minimises have local minima
        ~0.01 apart while the measured function is smooth (bundled ReLU model, 50 codes
        of each digit, ``FrechetMean``: the function at the joint mean up to 3.6e-3 above
        geomstats' gradient-descent mean's, polished between 4.5e-4 below and 6.5e-5
        above it, measured by 32-node distances, 0.44-0.97 s in all: the joint solve,
        which only starts the descent, stops at a relative tolerance of
        ``_frechet_polish.START_TOL``). Not with ``extrapolate``. ``gradient_norm`` is
        then the measured function's (``L_i`` times the unit initial directions),
        ``converged`` that the joint solve and the curves at the final mean converged
        (the descent is a refinement of a few steps: ``_frechet_polish.MAX_PASSES``).
    measure : bool, default True
        Measure the result (``lengths``, ``value``, ``velocity``, ``gradient_norm``);
        ``False`` leaves them NaN, for a solve that only starts another (e.g. a float32
        solve warm-starting a float64 one) and needs its mean and curves only (an
        extrapolation or a polish still measures what it needs along the way).
    jacobian_dtype : torch.dtype, optional
        Form the Jacobians and the decoder's second derivatives of the joint solve's
        steps in this dtype, e.g. float32 for float64 points: the decoded values, the
        energies, the gradient's residuals and the convergence test stay in the points'
        dtype, so the solution is the same to the steps' rounding (bundled smooth model,
        50 codes of a digit 4, extrapolated: the same mean to 1e-8) while the chain rule's
        products run at float32's speed (0.2 s of 1.1 s); forward-mode decoders (e.g.
        convolutional ones) compute them by a float32 copy of the decoder (a trained conv
        MNIST decoder, d = 8, 50 codes: the float64 solves 73 s -> 32 s). Default: the
        points' dtype.
    Returns
    -------
    FrechetResult
        A set whose points of positive weight coincide (one point, or duplicates) has
        that point as its mean, with no iteration. With ``extrapolate``: the second
        solve's curves (of ``fine_points(n_points)`` nodes, their nodes moved by the
        extrapolation's shift of the mean, in proportion to their distance from the
        point), lengths, value, velocity and gradient norm (for sets taken one level
        finer, the third solve's, its curves regridded onto those nodes); iterations of
        all its solves; converged where all did.

    Raises
    ------
    ValueError
        ``x`` empty, holding NaN or inf, of the wrong shape; weights negative, non-finite,
        of the wrong shape, or all zero in a set.
    TypeError
        ``x`` or ``mean`` not in the metric's dtype or on its device.
    """
    if not isinstance(metric, PullbackMetric):
        raise TypeError(f"metric must be a PullbackMetric; got {type(metric).__name__}")
    check_count(n_points, "n_points", 3)
    check_count(max_iter, "max_iter", 1)
    given_curves = None
    if isinstance(init_curve, Tensor):
        given_curves, init_curve = init_curve, "auto"
    elif init_curve not in ("auto", "graph", "straight"):
        raise ValueError(
            f"init_curve must be 'auto', 'graph', 'straight' or a Tensor of curves; "
            f"got {init_curve!r}"
        )
    for name, flag in (("extrapolate", extrapolate), ("polish", polish), ("measure", measure)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    if jacobian_dtype is not None and not (
        isinstance(jacobian_dtype, torch.dtype) and jacobian_dtype.is_floating_point
    ):
        raise TypeError(f"jacobian_dtype must be a floating torch.dtype; got {jacobian_dtype!r}")
    if extrapolate and polish:
        raise ValueError("frechet_mean: extrapolate and polish exclude each other")
    x, w, start, single = _check_inputs(metric, x, weights, mean)
    if given_curves is not None:
        given_curves = _check_curves(metric, given_curves, x.shape, single, n_points)
    tol = _tolerance(x.dtype, tol, 1e-10, TOL_FLOAT32)
    start_tol = max(tol, START_TOL) if polish else tol
    options = {"max_iter": max_iter, "init_curve": init_curve, "jacobian_dtype": jacobian_dtype}
    result = _solve_sets(metric, x, w, start, given_curves, n_points, tol=start_tol, **options)
    if extrapolate:

        def solve(x, w, mean, curves, n):
            return _solve_sets(metric, x, w, mean, curves, n, tol=tol, **options)

        def measure_sets(result, x, w, sets):
            return _measured(metric, result, x, w, sets)

        result = extrapolated(solve, measure_sets, result, x, w, n_points)
    elif measure or polish:
        result = _measured(metric, result, x, w)
    if polish:
        # The curves again from fresh starts at the joint mean (graph paths in 2-D and
        # 3-D, else straight lines): warm-started from the start mean's as the mean moved,
        # some stay in longer local minima on a ReLU decoder (bundled model, 50 codes of a
        # digit 5: the polished Fréchet function 3.6e-4 above geomstats' gradient-descent
        # mean's by `reference_distances`, 7.8e-5 from the fresh curves; 0-0.2 s more).
        fresh = _solve_sets(metric, x, w, result.mean, None, n_points, tol=start_tol, **options)
        result = _lower(result, _measured(metric, fresh, x, w))
        *fields, polished = _polish(
            metric, x, w, result.mean, result.curves, result.lengths, tol, max_iter
        )
        result = FrechetResult(*fields, result.iterations, result.converged & polished)
    if not measure:
        result = _unmeasured(result)
    if single:
        result = FrechetResult(**{name: value[0] for name, value in vars(result).items()})
    return result


def _solve_sets(
    metric: PullbackMetric,
    x: Tensor,
    w: Tensor,
    start: Tensor | None,
    given_curves: Tensor | None,
    n_points: int,
    *,
    max_iter: int,
    tol: float,
    init_curve: str,
    jacobian_dtype: torch.dtype | None,
) -> FrechetResult:
    """The joint solve of the checked sets ``x`` (k, n, d) with weights ``w`` (k, n): the
    mean, curves, iterations and convergence, each with its leading ``k`` axis, the
    measured fields NaN (:func:`_measured` fills them)."""
    k, n, d = x.shape
    member = w > 0
    # Sets whose points coincide have their mean already; their energy would be a
    # zero-residual problem, where Gauss–Newton never sees a small relative decrease.
    first = x[torch.arange(k), member.to(torch.int8).argmax(1)]
    spread = torch.where(member[..., None], x - first[:, None], 0).abs().amax((1, 2))
    trivial = spread == 0
    total = w.sum(1)
    given = torch.full_like(trivial, start is not None) | trivial
    if start is None:
        start = (w[..., None] * x).sum(1) / total[:, None]
    start = torch.where(trivial[:, None], first, start)
    owner, index = member.nonzero(as_tuple=True)
    problem = JointChords(metric, x[owner, index], owner, w[owner, index], k, jacobian_dtype)
    warm = None if given_curves is None else given_curves[owner, index, 1:-1]
    have = None if warm is None else torch.isfinite(warm).all((1, 2))
    if have is not None and bool(have.all()) and bool(given.all()):
        nodes = warm  # a warm start of every curve from given means: nothing to build
    else:
        start, nodes = initial_state(
            metric, start, given, owner, x[owner, index], w[owner, index], n_points, init_curve
        )
        if warm is not None:
            nodes = torch.where(have[:, None, None], warm, nodes)
    means, nodes, iterations, converged = solve(problem, start, nodes, ~trivial, max_iter, tol)
    converged |= trivial
    curves = torch.cat([means[owner, None], nodes, x[owner, index, None]], dim=1)
    all_curves = x.new_full((k, n, n_points, d), float("nan"))
    all_curves[owner, index] = curves
    return _unmeasured(FrechetResult(means, all_curves, *[None] * 4, iterations, converged))


def _lower(a: FrechetResult, b: FrechetResult) -> FrechetResult:
    """Per set, the measured result of lower Fréchet function; iterations of both."""
    take = b.value < a.value
    fields = {}
    for name, value in vars(a).items():
        other = getattr(b, name)
        mask = take.reshape(-1, *[1] * (value.dim() - 1))
        fields[name] = torch.where(mask, other, value)
    return dataclasses.replace(FrechetResult(**fields), iterations=a.iterations + b.iterations)


def _unmeasured(result: FrechetResult) -> FrechetResult:
    """``result`` with its measured fields (lengths, value, velocity, gradient norm) NaN."""
    k, n, _, d = result.curves.shape
    nan = result.mean.new_full((k,), float("nan"))
    return dataclasses.replace(
        result,
        lengths=result.mean.new_full((k, n), float("nan")),
        value=nan,
        velocity=result.mean.new_full((k, n, d), float("nan")),
        gradient_norm=nan.clone(),
    )


def _measured(
    metric: PullbackMetric, result: FrechetResult, x: Tensor, w: Tensor, sets: Tensor | None = None
) -> FrechetResult:
    """``result`` (of the sets ``x`` (k, n, d), weights ``w`` (k, n)) with the lengths of
    its curves, the Fréchet function they give, their initial velocities and the
    gradient's norm, measured like the energy solvers measure, for the ``sets`` (bool,
    (k,); default all); the others' fields are left as they are. Only the result kept is
    measured: an extrapolation's coarser levels are not (on the bundled smooth model a
    measurement costs about a Newton iteration)."""
    k, n, n_points, d = result.curves.shape
    sets = torch.ones(k, dtype=torch.bool, device=x.device) if sets is None else sets
    member = (w > 0) & sets[:, None]
    if not bool(member.any()):
        return result
    owner, index = member.nonzero(as_tuple=True)
    curves, means = result.curves[owner, index], result.mean
    with torch.no_grad():
        length = refined_length(metric, curves, REFINE)
        total = w.sum(1)
        value = torch.zeros_like(total).index_add_(0, owner, w[owner, index] * length**2) / total
        velocity = first_step_velocity(metric, means[owner], curves[:, 1], n_points - 1)
        grad = torch.zeros_like(means).index_add_(0, owner, w[owner, index, None] * velocity)
        grad = -2 * grad / total[:, None]
        norm = metric.inner(means, grad, grad).clamp_min(0).sqrt()
    lengths, velocities = result.lengths.clone(), result.velocity.clone()
    lengths[owner, index] = length.to(x.dtype)
    velocities[owner, index] = velocity.to(x.dtype)
    return dataclasses.replace(
        result,
        lengths=lengths,
        value=torch.where(sets, value, result.value),
        velocity=velocities,
        gradient_norm=torch.where(sets, norm, result.gradient_norm),
    )


def _check_curves(
    metric: PullbackMetric, curves: Tensor, shape: torch.Size, single: bool, n_points: int
) -> Tensor:
    """``init_curve`` given as curves, as ``(k, n, N, d)``."""
    k, n, d = shape
    expected = (n, n_points, d) if single else (k, n, n_points, d)
    if tuple(curves.shape) != expected:
        raise ValueError(
            f"init_curve must have shape {expected} (one curve of n_points = {n_points} "
            f"nodes per point); got {tuple(curves.shape)}"
        )
    metric.evaluator.check_dtype_device(curves, "init_curve")
    return curves.reshape(k, n, n_points, d)


def _check_inputs(
    metric: PullbackMetric, x, weights, mean
) -> tuple[Tensor, Tensor, Tensor | None, bool]:
    """``x`` as ``(k, n, d)``, weights ``(k, n)`` in its dtype, the start ``(k, d)`` or None,
    and whether ``x`` was one set."""
    x = as_tensor(x, "x")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must have shape (n, d) or (k, n, d); got {tuple(x.shape)}")
    single = x.dim() == 2
    x = x.unsqueeze(0) if single else x
    if x.shape[1] == 0:
        raise ValueError(
            f"x holds no points (shape {tuple(x.shape)}): a Fréchet mean needs at least one"
        )
    metric.evaluator.check_points(x.reshape(-1, x.shape[-1]), "x")  # d, NaN, dtype, device
    if weights is None:
        w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    else:
        w = as_tensor(weights, "weights")
        shape = tuple(x.shape[1:2] if single else x.shape[:2])
        if tuple(w.shape) != shape:
            raise ValueError(
                f"weights must have shape {shape}, one per point; got {tuple(w.shape)}"
            )
        w = w.to(dtype=x.dtype, device=x.device).reshape(x.shape[:2])
        check_finite(w, "weights")
        if bool((w < 0).any()):
            raise ValueError("weights must be non-negative")
        empty = (w == 0).all(1)
        if bool(empty.any()):
            which = "" if single else f" (set {int(empty.nonzero()[0, 0])})"
            raise ValueError(
                f"weights are all zero{which}: a Fréchet mean needs a point of positive weight"
            )
    start = None
    if mean is not None:
        start, one = metric.evaluator.check_points(mean, "mean")
        if start.shape[0] != x.shape[0] or one != single:
            expected = (x.shape[-1],) if single else (x.shape[0], x.shape[-1])
            raise ValueError(
                f"mean must have shape {expected}; got {tuple(as_tensor(mean, 'mean').shape)}"
            )
    return x.contiguous(), w, start, single
