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

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor
from tqdm.auto import tqdm

from .._core.linalg import SingularMetricWarning
from ..geodesics._common import (
    GeodesicConvergenceWarning,
    _pair,
    _tolerance,
    extrapolated_length,
    spline_points,
)
from ..geodesics.bvp import multiple_shooting
from ..geodesics.discrete import discrete_log
from ..geodesics.energy import connecting_geodesic
from ..geodesics.ode import exp_map, log_map
from ..metric import PullbackMetric

__all__ = [
    "COMPARE_METHODS",
    "GeodesicComparison",
    "MethodRow",
    "compare_geodesics",
    "default_methods",
]

#: The methods :func:`compare_geodesics` knows, in table order, with one line each.
COMPARE_METHODS = {
    "lm": "built-in energy solver, Levenberg-Marquardt (the default method)",
    "georce": "built-in energy solver, GEORCE",
    "lbfgs": "built-in energy solver, L-BFGS",
    "ode": "ODE shooting: log_map (Newton on the initial velocity), exp_map RK4",
    "ode_multiple": "ODE multiple shooting (16 RK4 segments, Gauss-Newton, forward-mode "
    "sensitivities)",
    "discrete": "discrete geodesic calculus: discrete_log, retraced by discrete_exp",
    "geomstats_logode": "geomstats LogODESolver (scipy solve_bvp)",
    "geomstats_shooting": "geomstats LogShootingSolver with ExpODESolver (RK4, 50 steps)",
    "geomstats_path": "geomstats PathStraightening (20 nodes)",
    "stochman": "stochman connecting_geodesic (CubicSpline), all pairs in one call",
}

# geomstats' LogShootingSolver differentiates through every RK4 step of every trial shot:
# ~55 s per pair on the sphere at 30 iterations, minutes on a neural decoder (327 s
# measured on the seed decoder). Run only when asked for by name.
_SLOW = ("geomstats_shooting",)

# Residual below which a converged curve counts as a geodesic in the diagnosis (its
# geodesic curvature turns it by less than 0.05 rad over its whole length).
_GEODESIC_RESIDUAL = 0.05


@dataclass
class MethodRow:
    """One method's results on ``B`` pairs (NaN where the method produced no curve).

    Attributes
    ----------
    method : str
    length, energy, residual, endpoint_error, roundtrip_error : Tensor, shape (B,)
        See the module docstring.
    converged : Tensor, shape (B,), bool
    seconds : float
        Wall time of the method on all pairs.
    error : str or None
        Why the method failed as a whole (an exception's message), else None.
    """

    method: str
    length: Tensor
    energy: Tensor
    residual: Tensor
    endpoint_error: Tensor
    roundtrip_error: Tensor
    converged: Tensor
    seconds: float
    error: str | None = None


@dataclass
class GeodesicComparison:
    """What :func:`compare_geodesics` found.

    Attributes
    ----------
    p, q : Tensor, shape (B, d)
    curves : dict of str to Tensor, shape (B, n_eval, d)
        Each method's curve reparametrised to constant speed (NaN where it has none).
    rows : dict of str to MethodRow
    reference : str
        The method the others' lengths are compared with.
    agree_rtol : float
        Relative length difference counted as agreement.
    skipped : dict of str to str
        Default methods left out, with the reason.
    exact : Tensor, shape (B,), optional
        Closed-form distances, when known (e.g. great circles on the sphere).
    """

    p: Tensor
    q: Tensor
    curves: dict[str, Tensor]
    rows: dict[str, MethodRow]
    reference: str
    agree_rtol: float = 1e-3
    skipped: dict[str, str] = field(default_factory=dict)
    exact: Tensor | None = None

    def relative_length_difference(self, method: str) -> Tensor:
        """``(L_method - L_reference) / L_reference`` per pair, shape (B,)."""
        ref = self.rows[self.reference].length
        return (self.rows[method].length - ref) / ref.clamp_min(1e-300)

    def agreement(self, method: str) -> tuple[int, int]:
        """``(agree, both)``: pairs where ``method`` and the reference both converged, and
        how many of them agree in length to ``agree_rtol``."""
        row, ref = self.rows[method], self.rows[self.reference]
        both = row.converged & ref.converged
        close = self.relative_length_difference(method).abs() <= self.agree_rtol
        return int((both & close).sum()), int(both.sum())

    def diagnosis(self, method: str) -> list[str]:
        """Per pair, how ``method``'s curve relates to the reference's, and if they differ
        the likely reason.

        Returns
        -------
        list of str, length B
            ``"agrees"`` when the curve reaches ``q`` and the lengths agree to
            ``agree_rtol``; otherwise the difference and its likely cause: no curve, does
            not reach ``q``, stopped early, another (longer) geodesic when the residual is
            below 0.05, not a geodesic at this resolution, or a shorter curve than the
            reference's.
        """
        row = self.rows[method]
        if row.error is not None:
            return [f"failed: {row.error}"] * len(self.p)
        rel = self.relative_length_difference(method)
        out = []
        for i in range(len(self.p)):
            r, res = float(rel[i]), float(row.residual[i])
            conv = bool(row.converged[i])
            if not math.isfinite(float(row.length[i])):
                out.append("no curve (diverged)")
            elif float(row.endpoint_error[i]) > self.agree_rtol:
                # A curve that does not end at q: its length is not a distance p -> q.
                out.append(
                    f"does not reach q (misses it by {float(row.endpoint_error[i]):.1e} |p-q|)"
                )
            elif abs(r) <= self.agree_rtol:
                out.append("agrees")
            elif r > 0 and not conv:
                out.append(f"longer by {r:.1e}: stopped early (residual {res:.2g})")
            elif r > 0 and res < _GEODESIC_RESIDUAL:
                out.append(
                    f"longer by {r:.1e}: another geodesic, not minimising (residual {res:.2g})"
                )
            elif r > 0:
                out.append(
                    f"longer by {r:.1e}: converged by its own test, but not a geodesic at "
                    f"this resolution (residual {res:.2g})"
                )
            else:
                out.append(
                    f"shorter by {-r:.1e}: {self.reference}'s curve is not minimal (a local "
                    "minimum, or under-resolved)" + ("" if conv else "; stopped early")
                )
        return out

    def to_markdown(self) -> str:
        """The summary table (one row per method) and the per-pair length table."""
        b = len(self.p)
        exact = self.exact is not None
        lines = [
            f"{b} pairs; lengths compared with `{self.reference}` (agreement: relative "
            f"length difference <= {self.agree_rtol:g} where both converged).",
            "",
            "| method | converged | agrees (of both converged) | median length | "
            "median rel. length diff. | max residual (median over pairs) | "
            "max end-point error | median round-trip error | s/pair |"
            + (" median rel. error vs exact |" if exact else ""),
            "|---" * (9 + exact) + "|",
        ]
        for name, row in self.rows.items():
            if row.error is not None:
                lines.append(f"| {name} | failed: {_cell(row.error)} | | | | | | | "
                             f"{row.seconds / b:.3g} |")  # fmt: skip
                continue
            agree, both = self.agreement(name)
            rel = self.relative_length_difference(name).abs()
            lines.append(
                f"| {name} | {int(row.converged.sum())}/{b} | {agree}/{both} | "
                f"{_num(row.length.nanmedian())} | {_num(rel.nanmedian())} | "
                f"{_num(row.residual.nanmedian())} | {_num(_nanmax(row.endpoint_error))} | "
                f"{_num(row.roundtrip_error.nanmedian())} | {row.seconds / b:.3g} |"
                + (f" {_num(((row.length - self.exact) / self.exact).abs().nanmedian())} |"
                   if exact else "")
            )  # fmt: skip
        for name, why in self.skipped.items():
            lines.append(f"| {name} | skipped: {_cell(why)} | | | | | | | |")
        names = list(self.rows)
        lines += [
            "",
            "Per pair: length (✗ = not converged, ↯ = no curve); last column: why methods "
            f"disagree with `{self.reference}`.",
            "",
            "| pair | ‖p − q‖ | "
            + ("exact | " if exact else "")
            + " | ".join(names)
            + " | disagreements |",
            "|---" * (len(names) + 3 + exact) + "|",
        ]
        diag = {n: self.diagnosis(n) for n in names}
        for i in range(b):
            cells = []
            for n in names:
                row = self.rows[n]
                val = float(row.length[i])
                if row.error is not None or not math.isfinite(val):
                    cells.append("↯")
                else:
                    cells.append(f"{val:.5g}" + ("" if bool(row.converged[i]) else " ✗"))
            # Failed methods are explained once, in the summary table.
            notes = "; ".join(
                f"{n}: {diag[n][i]}"
                for n in names
                if diag[n][i] != "agrees" and self.rows[n].error is None
            )
            dist = float(torch.linalg.vector_norm(self.q[i] - self.p[i]))
            if exact:
                cells.insert(0, f"{float(self.exact[i]):.5g}")
            cells = " | ".join(cells)
            lines.append(f"| {i} | {dist:.3g} | {cells} | {_cell(notes, 600) or '-'} |")
        return "\n".join(lines) + "\n"


def _cell(text: str, width: int = 200) -> str:
    return text.replace("|", "/").replace("\n", " ")[:width]


def _num(x) -> str:
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if abs(x) >= 1e-2 or x == 0 else f"{x:.1e}"


def _nanmax(x: Tensor) -> Tensor:
    finite = x[~torch.isnan(x)]
    return finite.max() if finite.numel() else x.new_tensor(float("nan"))


# ------------------------------------------------------------------------------ methods
# Each method: (metric, p (B, d), q (B, d), options) -> (nodes (B, M, d), converged (B,)).


def _energy_method(name: str) -> Callable:
    def run(metric, p, q, opts):
        kwargs = {"n_points": 32, **opts, "method": name, "warn": False}
        res = connecting_geodesic(metric, p, q, **kwargs)
        return res.points, res.converged

    return run


def _ode_shooting(metric, p, q, opts):
    n_steps = opts.get("n_steps", 50)
    v = log_map(metric, p, q, warn=False, **opts)
    # The same RK4 shot log_map judged, so "converged" is exactly its verdict.
    path = exp_map(metric, p, v, n_steps=n_steps, return_path=True)
    tol = _tolerance(p.dtype, opts.get("tol"), 1e-9)
    miss = torch.linalg.vector_norm(path[:, -1] - q, dim=-1)
    return path, miss <= tol * (1 + torch.linalg.vector_norm(q - p, dim=-1)) * (1 + 1e-6)


def _ode_multiple(metric, p, q, opts):
    res = multiple_shooting(metric, p, q, warn=False, **opts)
    return res.points, res.reached


def _discrete(metric, p, q, opts):
    # The nodes are the discrete exp of the returned log (they end at q where it
    # converged): "converged" is the round trip's verdict.
    _, nodes, info = discrete_log(metric, p, q, return_path=True, return_info=True, **opts)
    return nodes, info.converged


def _geomstats_space(metric):
    from ..geomstats import latent_space

    return latent_space(metric)


def _per_pair(solve, p, q):
    nodes, conv = [], []
    for i in range(len(p)):
        curve, ok = solve(p[i].double(), q[i].double())
        nodes.append(torch.as_tensor(curve).reshape(-1, p.shape[1]).to(p))
        conv.append(bool(ok))
    return torch.stack(nodes), torch.tensor(conv, device=p.device)


def _geomstats_logode(metric, p, q, opts):
    space = _geomstats_space(metric)
    from geomstats.numerics.bvp import ScipySolveBVP
    from geomstats.numerics.geodesic import LogODESolver

    solver = LogODESolver(space, integrator=ScipySolveBVP(save_result=True), **opts)
    t = torch.linspace(0, 1, 65, dtype=torch.float64)

    def solve(a, b):
        path = solver.geodesic_bvp(b, a)(t)
        return path, solver.integrator.result_.status == 0

    return _per_pair(solve, p, q)


def _geomstats_shooting(metric, p, q, opts):
    space = _geomstats_space(metric)
    from geomstats.numerics.geodesic import ExpODESolver, LogShootingSolver
    from geomstats.numerics.ivp import GSIVPIntegrator
    from geomstats.numerics.optimization import ScipyMinimize

    space.metric.exp_solver = ExpODESolver(space, integrator=GSIVPIntegrator(50, "rk4"))
    opt = ScipyMinimize(
        autodiff_jac=True, save_result=True, options={"maxiter": opts.get("maxiter", 30)}
    )
    solver = LogShootingSolver(space, optimizer=opt)

    def solve(a, b):
        v = solver.log(b, a).detach()
        # ExpODESolver with a fixed-step integrator cannot sample its path at several
        # times; the path is our RK4 with the same 50 steps from the same velocity.
        path = exp_map(metric, a.to(p.dtype), v.to(p.dtype), n_steps=50, return_path=True)
        return path, bool(opt.result_.success)

    return _per_pair(solve, p, q)


def _geomstats_path(metric, p, q, opts):
    space = _geomstats_space(metric)
    from geomstats.numerics.geodesic import PathStraightening
    from geomstats.numerics.optimization import ScipyMinimize

    n_nodes = opts.get("n_nodes", 20)
    opt = ScipyMinimize(
        method="L-BFGS-B", autodiff_jac=True, options={"disp": False}, save_result=True
    )
    solver = PathStraightening(space, n_nodes=n_nodes, optimizer=opt)
    t = torch.linspace(0, 1, n_nodes, dtype=torch.float64)

    def solve(a, b):
        path = solver.geodesic_bvp(b, a)(t)
        return path.detach(), bool(opt.result_.success)

    return _per_pair(solve, p, q)


def _stochman(metric, p, q, opts):
    from ..stochman import DecoderManifold

    manifold = DecoderManifold(metric)
    curve, converged = manifold.connecting_geodesic(p, q, **opts)
    t = torch.linspace(0, 1, 65, dtype=p.dtype, device=p.device)
    with torch.no_grad():
        nodes = curve(t).reshape(len(p), 65, -1)
    return nodes, torch.full((len(p),), bool(converged), device=p.device)


_RUNNERS = {
    "lm": _energy_method("lm"),
    "georce": _energy_method("georce"),
    "lbfgs": _energy_method("lbfgs"),
    "ode": _ode_shooting,
    "ode_multiple": _ode_multiple,
    "discrete": _discrete,
    "geomstats_logode": _geomstats_logode,
    "geomstats_shooting": _geomstats_shooting,
    "geomstats_path": _geomstats_path,
    "stochman": _stochman,
}


def default_methods() -> list[str]:
    """All methods but geomstats' LogShootingSolver, which takes ~55 s per pair on the
    sphere and minutes on a neural decoder (ask for ``"geomstats_shooting"`` by name).

    Returns
    -------
    list of str
    """
    return [m for m in COMPARE_METHODS if m not in _SLOW]


# --------------------------------------------------------------------------- diagnostics
def _constant_speed(
    metric: PullbackMetric, nodes: Tensor, refine: int, n_eval: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Length, and the constant-speed spline's points, velocities, accelerations.

    ``nodes`` (B, M, d), all finite; returns ``length (B,)`` and three ``(B, n_eval, d)``.
    """
    b, m, d = nodes.shape
    fine = spline_points(nodes, refine)  # as connecting_geodesic measures lengths
    with torch.no_grad():
        x = metric.evaluator.embed(fine.reshape(-1, d)).reshape(b, fine.shape[1], -1)
    steps = torch.linalg.vector_norm(x.diff(dim=1), dim=-1)
    cum = torch.cat([steps.new_zeros(b, 1), steps.cumsum(1)], dim=1)[:, ::refine]
    length = extrapolated_length(x, refine)
    s_eval = np.linspace(0.0, 1.0, n_eval)
    out = np.full((3, b, n_eval, d), np.nan)
    for i in range(b):
        s = (cum[i] / length[i]).double().cpu().numpy() if float(length[i]) > 0 else None
        if s is None:
            continue
        keep = np.concatenate([[True], np.diff(s) > 1e-12])  # drop nodes that did not move
        s, z = s[keep], nodes[i].double().cpu().numpy()[keep]
        if len(s) < 2:
            continue
        s[-1] = 1.0
        spline = CubicSpline(s, z, axis=0, bc_type="not-a-knot" if len(s) > 3 else "natural")
        out[:, i] = [spline(s_eval, k) for k in range(3)]
    c, dc, ddc = (torch.as_tensor(a, dtype=nodes.dtype, device=nodes.device) for a in out)
    return length, c, dc, ddc


def _residual(metric: PullbackMetric, c: Tensor, dc: Tensor, ddc: Tensor) -> Tensor:
    """``max_s |c'' + Gamma(c', c')|_G / |c'|_G`` over interior points, shape (B,)."""
    b, n, d = c.shape
    zi, vi, ai = (x[:, 1:-1].reshape(-1, d) for x in (c, dc, ddc))
    ok = torch.isfinite(zi).all(-1) & torch.isfinite(vi).all(-1)
    res = torch.full((zi.shape[0],), float("nan"), dtype=c.dtype, device=c.device)
    if bool(ok.any()):
        z, v, a = zi[ok], vi[ok], ai[ok]
        with torch.no_grad():
            acc = metric.evaluator.acceleration(z, v)  # -Gamma(v, v)
            jac = metric.evaluator.jacobian(z)
        r = torch.linalg.vector_norm(jac @ (a - acc)[..., None], dim=(-2, -1))
        speed = torch.linalg.vector_norm(jac @ v[..., None], dim=(-2, -1))
        res[ok] = r / speed
    res = res.reshape(b, n - 2)
    # A point where the ODE's right-hand side is not finite is an infinite residual.
    res = torch.where(torch.isnan(res) & torch.isfinite(c[:, 1:-1]).all(-1), torch.inf, res)
    return res.amax(1) if n > 2 else res.new_zeros(b)


def _diagnose(metric, name, nodes, converged, seconds, p, q, refine, n_eval):
    """Everything but the round trip, which :func:`compare_geodesics` shoots for all
    methods at once; returns the curves, the row and the initial velocities (B, d)."""
    b, d = p.shape
    nan = torch.full((b,), float("nan"), dtype=p.dtype)
    length, energy, residual, end_err = (nan.clone() for _ in range(4))
    curves = torch.full((b, n_eval, d), float("nan"), dtype=p.dtype, device=p.device)
    v0 = torch.full((b, d), float("nan"), dtype=p.dtype, device=p.device)
    nodes = nodes.to(p.dtype)
    finite = torch.isfinite(nodes).all(-1).all(-1)
    if bool(finite.any()):
        idx = finite.nonzero().squeeze(1)
        n = nodes[idx]
        length_f, c, dc, ddc = _constant_speed(metric, n, refine, n_eval)
        length[idx] = length_f
        with torch.no_grad():
            x = metric.evaluator.embed(n.reshape(-1, d)).reshape(len(idx), n.shape[1], -1)
        energy[idx] = (n.shape[1] - 1) * x.diff(dim=1).square().sum((1, 2))
        ends = torch.maximum(
            torch.linalg.vector_norm(n[:, 0] - p[idx], dim=-1),
            torch.linalg.vector_norm(n[:, -1] - q[idx], dim=-1),
        )
        end_err[idx] = ends / _scale(p[idx], q[idx])
        residual[idx] = _residual(metric, c, dc, ddc)
        curves[idx] = c
        v0[idx] = dc[:, 0]
    converged = converged.to(torch.bool) & finite
    row = MethodRow(name, length, energy, residual, end_err, nan.clone(), converged, seconds)
    return curves, row, v0


def _scale(p: Tensor, q: Tensor) -> Tensor:
    """``|p - q|``, the unit of the end-point and round-trip errors."""
    return torch.linalg.vector_norm(q - p, dim=-1).clamp_min(torch.finfo(p.dtype).eps)


def _round_trips(metric, rows, velocities, p, q, exp_options) -> None:
    """``|exp_p(c'(0)) - q| / |p - q|`` for every method's curves, in one adaptive run."""
    names = [n for n in velocities if rows[n].error is None]
    if not names:
        return
    v = torch.cat([velocities[n] for n in names])
    start, goal = p.repeat(len(names), 1), q.repeat(len(names), 1)
    ok = torch.isfinite(v).all(-1)
    trip = torch.full((len(v),), float("nan"), dtype=p.dtype, device=p.device)
    if bool(ok.any()):
        landed = exp_map(metric, start[ok], v[ok], method="dopri5", warn=False, **exp_options)
        trip[ok] = torch.linalg.vector_norm(landed - goal[ok], dim=-1) / _scale(start[ok], goal[ok])
    for name, part in zip(names, trip.split(len(p)), strict=True):
        rows[name].roundtrip_error = part


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
        Options per method: ``lm``/``georce``/``lbfgs`` take those of
        :func:`connecting_geodesic` (default ``n_points=32``), ``ode`` those of
        :func:`log_map`, ``geomstats_logode`` those of ``LogODESolver`` (e.g.
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
    skipped = {}
    if methods is None:
        skipped = {m: "slow (minutes per pair): ask for it by name" for m in _SLOW}
    curves, rows, velocities = {}, {}, {}
    for name in tqdm(names, desc="compare", unit="method", disable=not progress):
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Failures are what the table reports; the warnings would only repeat them.
                warnings.simplefilter("ignore", GeodesicConvergenceWarning)
                warnings.simplefilter("ignore", SingularMetricWarning)
                nodes, conv = _RUNNERS[name](metric, p, q, method_options.get(name, {}))
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
            curves[name], rows[name], velocities[name] = _diagnose(
                metric, name, nodes.detach(), conv, seconds, p, q, refine, n_eval
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularMetricWarning)
        low = p.dtype != torch.float64
        tolerances = {
            "rtol": 1e-5 if low else 1e-6, "atol": 1e-7 if low else 1e-8, "max_steps": 1000
        }  # fmt: skip
        _round_trips(metric, rows, velocities, p, q, {**tolerances, **(exp_options or {})})
    return GeodesicComparison(p, q, curves, rows, reference, agree_rtol, skipped, exact)
