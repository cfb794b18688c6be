"""The methods :func:`~pullback_geom.experiments.compare.compare_geodesics` runs, by name:
every boundary-value method of the core's registry
(:data:`pullback_geom.geodesics.BOUNDARY_VALUE`), and geomstats' and stochman's.

Each entry is a :class:`~pullback_geom.geodesics.Solver` whose ``run`` is
``(metric, p (B, d), q (B, d), options) -> (nodes (B, M, d), converged (B,))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...geodesics import BOUNDARY_VALUE, Registry, Solver, connecting_geodesic, integrate_geodesic

__all__ = ["COMPARE_METHODS", "default_methods"]


def _ours(name: str) -> Callable:
    def run(metric, p, q, opts):
        # The energy methods on 32 nodes: their curves are compared by their lengths.
        options = BOUNDARY_VALUE[name].options
        energy = "n_points" in options and "init_curve" in options  # not multiple, discrete
        defaults = {"n_points": 32} if energy else {}
        res = connecting_geodesic(metric, p, q, method=name, warn=False, **{**defaults, **opts})
        # Shooting methods: the curve is the shot the method judged, so "converged" is its
        # verdict; discrete: the discrete exp of the returned log (it ends at q where it
        # converged).
        return res.points, res.converged

    return run


def _rk4_path(metric, z, v, n_steps: int = 50):
    return integrate_geodesic(metric, z, v, method="rk4", n_steps=n_steps, path=True).path


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

    opts = {k: v for k, v in opts.items() if v is not None}
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
        path = _rk4_path(metric, a.to(p.dtype), v.to(p.dtype))
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


#: The methods :func:`compare_geodesics` knows, in table order: ours (the registry's, with
#: their options), then the libraries'. geomstats' LogShootingSolver differentiates through
#: every RK4 step of every trial shot: ~55 s per pair on the sphere at 30 iterations,
#: minutes on a neural decoder (327 s measured on the write-up's decoder), so it is
#: ``slow``: run only when asked for by name.
COMPARE_METHODS = Registry(
    "compare",
    [
        *(
            Solver(name, _ours(name), solver.options, solver.smooth_only, solver.summary)
            for name, solver in BOUNDARY_VALUE.items()
        ),
        Solver(
            "geomstats_logode",
            _geomstats_logode,
            {"n_nodes": 10, "initialization": None, "use_jac": True},
            summary="geomstats LogODESolver (scipy solve_bvp)",
        ),
        Solver(
            "geomstats_shooting",
            _geomstats_shooting,
            {"maxiter": 30},
            summary="geomstats LogShootingSolver with ExpODESolver (RK4, 50 steps)",
            slow=True,
        ),
        Solver(
            "geomstats_path",
            _geomstats_path,
            {"n_nodes": 20},
            summary="geomstats PathStraightening (20 nodes)",
        ),
        Solver(
            "stochman",
            _stochman,
            {"init_curve": None},
            summary="stochman connecting_geodesic (CubicSpline), all pairs in one call",
        ),
    ],
)


def default_methods() -> list[str]:
    """All methods but geomstats' LogShootingSolver, which takes ~55 s per pair on the
    sphere and minutes on a neural decoder (ask for ``"geomstats_shooting"`` by name).

    Returns
    -------
    list of str
    """
    return [name for name, method in COMPARE_METHODS.items() if not method.slow]
