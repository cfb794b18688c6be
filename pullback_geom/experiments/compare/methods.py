"""The methods :func:`~pullback_geom.experiments.compare.compare_geodesics` runs, by name:
ours (energy, ODE shooting, multiple shooting, discrete) and geomstats' and stochman's.

Each runner: ``(metric, p (B, d), q (B, d), options) -> (nodes (B, M, d), converged (B,))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...geodesics._common import _tolerance
from ...geodesics.bvp import multiple_shooting
from ...geodesics.discrete import discrete_log
from ...geodesics.energy import connecting_geodesic
from ...geodesics.ode import exp_map, log_map

__all__ = ["COMPARE_METHODS", "RUNNERS", "SLOW", "default_methods"]

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
# measured on the write-up's decoder). Run only when asked for by name.
SLOW = ("geomstats_shooting",)


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
    from ...geomstats import latent_space

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
    from ...stochman import DecoderManifold

    manifold = DecoderManifold(metric)
    curve, converged = manifold.connecting_geodesic(p, q, **opts)
    t = torch.linspace(0, 1, 65, dtype=p.dtype, device=p.device)
    with torch.no_grad():
        nodes = curve(t).reshape(len(p), 65, -1)
    return nodes, torch.full((len(p),), bool(converged), device=p.device)


RUNNERS = {
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
    return [m for m in COMPARE_METHODS if m not in SLOW]
