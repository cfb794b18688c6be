"""The geomstats adapter on the unit sphere (closed forms) and on a random MLP decoder.

Oracles: the inverse stereographic decoder has a closed-form metric, Christoffel symbols,
exponential map (great circles) and distance (great-circle angles); geomstats' learning
tools are checked in tests/test_geomstats_learning_tools.py.
Interpreter-wide behaviour (backend choice, torch's default dtype) is checked in fresh
interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import Tensor, nn

# isort: off
# The adapter must be imported before geomstats: it selects geomstats' pytorch backend.
import pullback_geom.geomstats as pg_geomstats
from geomstats.numerics.geodesic import ExpODESolver, LogODESolver
from geomstats.numerics.ivp import GSIVPIntegrator
# isort: on

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic, sphere_distance

F64 = torch.float64
latent_space = pg_geomstats.latent_space
PullbackLogSolver = pg_geomstats.PullbackLogSolver
DIST_TOL_FLOAT64 = pg_geomstats.riemannian.DIST_TOL_FLOAT64
DIST_TOL_FLOAT32 = pg_geomstats.riemannian.DIST_TOL_FLOAT32
DIST_BEND_TOL = pg_geomstats.riemannian.DIST_BEND_TOL
DIST_BASIN_TOL = pg_geomstats.riemannian.DIST_BASIN_TOL


# ---------------------------------------------------------------------------- fixtures
class Float32Sphere(InverseStereographic):
    """The sphere decoder with a float32 buffer, so its dtype (for the core) is float32."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros((), dtype=torch.float32))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The batches here are tiny, so time goes to per-op overhead; extra intra-op threads
    only add contention (3x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sphere():
    """The sphere with the default solvers: ``"auto"`` picks the geodesic ODE on this smooth
    decoder (exp by Dormand–Prince, log by shooting), accurate to their tolerances."""
    return latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))


@pytest.fixture(scope="module")
def discrete_sphere():
    """The sphere with the discrete solvers (the defaults on ReLU decoders)."""
    return latent_space(
        PullbackMetric(InverseStereographic(), latent_dim=2),
        exp_options={"method": "discrete"},
        log_options={"method": "discrete"},
    )


def pairs(n: int, seed: int, radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """``n`` pairs of latent points with ``|z| < radius``."""
    g = torch.Generator().manual_seed(seed)

    def points() -> Tensor:
        angle = 2 * torch.pi * torch.rand(n, generator=g, dtype=F64)
        r = radius * torch.rand(n, generator=g, dtype=F64).sqrt()
        return torch.stack([r * angle.cos(), r * angle.sin()], dim=-1)

    return points(), points()


def sphere_exp(z: Tensor, v: Tensor) -> Tensor:
    """Closed-form exp: the great circle through ``f(z)`` with velocity ``J(z) v``."""
    f = InverseStereographic()
    x = f(z)
    sq = z.square().sum(-1, keepdim=True)
    zv = (z * v).sum(-1, keepdim=True)
    # J v for f(z) = (2 z, |z|^2 - 1) / (1 + |z|^2)
    u = torch.cat([2 * v, 2 * zv], -1) / (1 + sq) - x * (2 * zv) / (1 + sq)
    n = u.norm(dim=-1, keepdim=True)
    y = x * n.cos() + u / n * n.sin()
    return y[:, :-1] / (1 - y[:, -1:])


def run_fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (without an inherited GEOMSTATS_BACKEND)."""
    base = {k: v for k, v in os.environ.items() if k != "GEOMSTATS_BACKEND"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **env},
    )


# ---------------------------------------------------------------------------- interpreter state
def test_import_keeps_torch_default_dtype_and_uses_pytorch_backend():
    proc = run_fresh(
        """
        import json, torch
        before = str(torch.get_default_dtype())
        import pullback_geom.geomstats
        import geomstats.backend as gs
        from geomstats.learning.frechet_mean import FrechetMean
        print(json.dumps({
            "before": before,
            "after": str(torch.get_default_dtype()),
            "backend": gs.__name__,
            "gs_default": str(gs.get_default_dtype()),
            "gs_array": str(gs.array([0.1, 0.2]).dtype),
            "gs_ones": str(gs.ones(2).dtype),
            "torch_ones": str(torch.ones(2).dtype),
        }))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == out["after"] == out["torch_ones"] == "torch.float32"
    assert out["backend"] == "geomstats.pytorch"
    # geomstats keeps creating tensors in its own default dtype.
    assert out["gs_default"] == out["gs_array"] == out["gs_ones"] == "torch.float64"


def test_geomstats_imported_with_numpy_backend_is_a_clear_error():
    proc = run_fresh(
        """
        import geomstats.backend
        try:
            import pullback_geom.geomstats
        except ImportError as err:
            print("ERROR:", err)
        """,
        GEOMSTATS_BACKEND="numpy",
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR:" in proc.stdout
    assert "GEOMSTATS_BACKEND=pytorch" in proc.stdout
    assert "'numpy'" in proc.stdout


def test_default_dtype_is_still_the_users_here():
    # The test process imported the adapter at collection time.
    assert torch.get_default_dtype() == torch.float32
    assert torch.ones(1).dtype == torch.float32


# ---------------------------------------------------------------------------- local geometry
def test_metric_matrix_and_christoffels_equal_closed_forms(sphere):
    z, _ = pairs(6, seed=0)
    g = sphere.metric.metric_matrix(z)
    gam = sphere.metric.christoffels(z)
    assert g.shape == (6, 2, 2) and gam.shape == (6, 2, 2, 2)
    torch.testing.assert_close(g, InverseStereographic.metric_tensor(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        gam, InverseStereographic.christoffel_symbols(z), rtol=1e-12, atol=1e-12
    )
    # one point in, one point out
    assert sphere.metric.metric_matrix(z[0]).shape == (2, 2)
    assert sphere.metric.christoffels(z[0]).shape == (2, 2, 2)


def test_jacobian_christoffels_equals_derivative_of_closed_form(sphere):
    z, _ = pairs(4, seed=1)
    got = sphere.metric.jacobian_christoffels(z)
    closed = torch.func.jacfwd(lambda x: InverseStereographic.christoffel_symbols(x[None])[0])
    want = torch.stack([closed(x) for x in z])  # [b, k, i, j, l] = d Gamma^k_ij / d z_l
    assert got.shape == (4, 2, 2, 2, 2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_inner_product_and_geodesic_equation(sphere):
    z, v = pairs(5, seed=2)
    scale = 4 / (1 + z.square().sum(-1)) ** 2
    torch.testing.assert_close(sphere.metric.squared_norm(v, z), scale * v.square().sum(-1))
    # one base point for many vectors broadcasts
    torch.testing.assert_close(
        sphere.metric.inner_product(v, v, z[0]), scale[0] * v.square().sum(-1)
    )
    rhs = sphere.metric.geodesic_equation(torch.stack([z, v], dim=-2))
    want = -torch.einsum("bkij,bi,bj->bk", InverseStereographic.christoffel_symbols(z), v, v)
    torch.testing.assert_close(rhs[:, 0], v)
    torch.testing.assert_close(rhs[:, 1], want)


# ---------------------------------------------------------------------------- exp, log, dist
def test_exp_is_great_circle_motion(sphere):
    z, u = pairs(6, seed=3)
    # velocities of sphere speeds 0.3 .. 2.5 (below pi)
    speeds = torch.linspace(0.3, 2.5, 6, dtype=F64)
    v = u / sphere.metric.norm(u, z)[:, None] * speeds[:, None]
    end = sphere.metric.exp(v, z)
    assert end.shape == (6, 2) and end.dtype == F64
    torch.testing.assert_close(end, sphere_exp(z, v), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        sphere_distance(z, end), speeds, rtol=1e-6, atol=1e-6
    )  # dist(p, exp(p, v)) == |v|_G


def test_log_dist_and_geodesic_match_great_circles(sphere):
    p, q = pairs(4, seed=4)
    v = sphere.metric.log(q, p)
    dist = sphere.metric.dist(p, q)
    truth = sphere_distance(p, q)
    assert v.shape == (4, 2) and dist.shape == (4,)
    torch.testing.assert_close(dist, truth, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sphere.metric.norm(v, p), truth, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sphere.metric.exp(v, p), q, rtol=1e-5, atol=1e-5)
    # The geodesic passes through the end points and has constant speed.
    path = sphere.metric.geodesic(p, initial_tangent_vec=v)(torch.linspace(0, 1, 5, dtype=F64))
    assert path.shape == (4, 5, 2)
    torch.testing.assert_close(path[:, 0], p)
    torch.testing.assert_close(path[:, -1], q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sphere_distance(p, path[:, 2]), truth / 2, rtol=1e-4, atol=1e-4)


def test_auto_solvers_follow_the_decoder():
    """method="auto": the geodesic ODE on a smooth decoder, the discrete calculus on a
    ReLU one."""
    smooth = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2)).metric
    assert smooth.exp_solver.method == "dopri5" and smooth.log_solver.method == "shooting"
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
    kinked = latent_space(PullbackMetric(relu)).metric
    assert kinked.exp_solver.method == "discrete" and kinked.log_solver.method == "discrete"


def test_discrete_solvers_on_the_sphere(discrete_sphere):
    """Discrete solvers: exp(log q) == q to the solver's tolerance, dist is the length, and
    exp and |log| approach the closed forms at second order in the steps."""
    metric = discrete_sphere.metric
    assert metric.exp_solver.method == "discrete" and metric.log_solver.method == "discrete"
    p, q = pairs(4, seed=4)
    truth = sphere_distance(p, q)
    v = metric.log(q, p)
    scale = 1 + (q - p).norm(dim=-1)
    assert bool(((metric.exp(v, p) - q).norm(dim=-1) <= 1e-6 * scale).all())  # default tol
    torch.testing.assert_close(metric.dist(p, q), truth, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(metric.squared_dist(p, q), truth**2, rtol=2e-4, atol=1e-4)
    errors = []
    for k in (8, 32):
        space = latent_space(
            PullbackMetric(InverseStereographic(), latent_dim=2),
            n_steps=k,
            exp_options={"method": "discrete"},
            log_options={"method": "discrete"},
        )
        vk = space.metric.log(q, p)
        errors.append(float(((space.metric.norm(vk, p) - truth) / truth).abs().max()))
    assert errors[1] < errors[0] / 8
    # geodesic(p, q) is the discrete curve: its ends are p and q.
    path = metric.geodesic(p, end_point=q)(torch.linspace(0, 1, 5, dtype=F64))
    assert path.shape == (4, 5, 2)
    torch.testing.assert_close(path[:, 0], p)
    assert bool(((path[:, -1] - q).norm(dim=-1) <= 1e-6 * scale).all())


def test_parallel_transport_on_the_sphere(discrete_sphere):
    """Both forms of geomstats' parallel_transport, against the closed form along great
    circles: ambient w -> w - <w, y> / (1 + <x, y>) (x + y)."""
    metric = discrete_sphere.metric
    p, q = pairs(3, seed=12, radius=1.0)
    v = torch.tensor([[1.0, 0.0], [0.3, -0.4], [0.0, 0.7]], dtype=F64)
    f = InverseStereographic()
    core = PullbackMetric(f, latent_dim=2)
    x, y = f(p), f(q)
    w = (core.jacobian(p) @ v.unsqueeze(-1)).squeeze(-1)
    moved = w - (w * y).sum(-1, keepdim=True) / (1 + (x * y).sum(-1, keepdim=True)) * (x + y)
    jq = core.jacobian(q)
    truth = torch.linalg.solve(jq.mT @ jq, jq.mT @ moved.unsqueeze(-1)).squeeze(-1)
    to_q = metric.parallel_transport(v, p, end_point=q)
    rel = metric.norm(to_q - truth, q) / metric.norm(v, p)
    assert float(rel.max()) < 0.05  # first order in 1 / transport_steps (64)
    direction = metric.log(q, p)
    along = metric.parallel_transport(v, p, direction=direction)
    assert float((metric.norm(along - truth, q) / metric.norm(v, p)).max()) < 0.05
    with pytest.raises(ValueError, match="exactly one"):
        metric.parallel_transport(v, p)


def test_points_of_one_dtype_come_back_in_that_dtype(sphere):
    z, v = pairs(3, seed=5)
    end = sphere.metric.exp(v.float(), z.float())
    assert end.dtype == torch.float32
    torch.testing.assert_close(end, sphere.metric.exp(v, z).float(), rtol=1e-4, atol=1e-4)
    assert sphere.metric.metric_matrix(z.numpy()).dtype == F64  # NumPy input works too


def test_float32_decoder_with_float64_points():
    space = latent_space(
        PullbackMetric(Float32Sphere(), latent_dim=2),
        dtype=torch.float32,
        exp_options={"method": "dopri5"},
    )
    assert space.metric.dtype == torch.float32
    p, q = pairs(3, seed=6)
    g = space.metric.metric_matrix(p)
    assert g.dtype == F64  # back in the input dtype ...
    torch.testing.assert_close(g, InverseStereographic.metric_tensor(p), rtol=1e-5, atol=1e-5)
    v = p.flip(-1) * 0.5
    end = space.metric.exp(v, p)
    torch.testing.assert_close(end, sphere_exp(p, v), rtol=1e-4, atol=1e-4)
    dist = space.metric.dist(p, q)
    assert dist.dtype == F64
    # The first pair is nearly antipodal (2.84 of pi): 16 nodes leave it 1.6e-3 long.
    torch.testing.assert_close(dist, sphere_distance(p, q), rtol=3e-3, atol=0)
    # float32 solves at DIST_TOL_FLOAT32 give the float64 solves' lengths.
    exact = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2), dist_dtype=F64)
    torch.testing.assert_close(dist, exact.metric.dist(p, q), rtol=1e-5, atol=0)


def test_dist_solves_again_in_float64_where_float32_did_not_converge():
    """Pairs the float32 solve leaves unconverged (here: 2 iterations allowed) are solved
    again in the metric's float64, whose own outcome is reported."""
    from pullback_geom.geodesics import (
        GeodesicConvergenceWarning,
        connecting_geodesic,
        geodesic_distance,
    )

    torch.manual_seed(4)
    decoder = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 12), nn.Sigmoid())
    space = latent_space(PullbackMetric(decoder), dist_options={"max_iter": 2})
    g = torch.Generator().manual_seed(5)
    p, q = 1.5 * torch.randn(2, 6, 2, generator=g, dtype=F64)
    low = space.metric.pullback.to(dtype=torch.float32)
    ok = connecting_geodesic(
        low,
        p.float(),
        q.float(),
        max_iter=2,
        tol=DIST_TOL_FLOAT32,
        bend_tol=DIST_BEND_TOL,
        warn=False,
    ).converged
    assert not bool(ok.all())
    with pytest.warns(GeodesicConvergenceWarning, match="did not converge"):
        dist = space.metric.dist(p, q)
    with pytest.warns(GeodesicConvergenceWarning):
        again = geodesic_distance(
            space.metric.pullback,
            p[~ok],
            q[~ok],
            max_iter=2,
            tol=DIST_TOL_FLOAT64,
            bend_tol=DIST_BEND_TOL,
        )
    torch.testing.assert_close(dist[~ok], again, rtol=1e-12, atol=0)


def test_dist_dtype_of_a_decoder_without_parameters_and_bad_values():
    """Without a detached float64 copy a parameterless decoder has no dtype of its own:
    dist computes in the points' dtype. A dist_dtype that is not a torch dtype is named."""
    space = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2), detach=False)
    assert space.metric.dist_dtype is None
    p, q = pairs(3, seed=6)
    torch.testing.assert_close(
        space.metric.dist(p[1:], q[1:]), sphere_distance(p[1:], q[1:]), rtol=1e-4, atol=0
    )
    with pytest.raises(TypeError, match="dist_dtype must be a floating torch.dtype"):
        latent_space(PullbackMetric(InverseStereographic(), latent_dim=2), dist_dtype="float32")


def test_geomstats_exp_ode_solver_can_be_swapped_in():
    space = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))
    rk4 = GSIVPIntegrator(n_steps=50, step_type="rk4")
    space.metric.exp_solver = ExpODESolver(space, integrator=rk4)  # uses geodesic_equation
    z, u = pairs(3, seed=9)
    v = u / space.metric.norm(u, z)[:, None]  # unit speed
    torch.testing.assert_close(space.metric.exp(v, z), sphere_exp(z, v), rtol=1e-5, atol=1e-5)


def test_geomstats_log_ode_solver_can_be_swapped_in():
    space = latent_space(PullbackMetric(InverseStereographic(), latent_dim=2))
    space.metric.log_solver = LogODESolver(space)  # needs jacobian_christoffels
    # Pairs at moderate distance: from its straight-line start, LogODESolver can converge
    # to the long way round the great circle for far-apart points (see docs/geomstats.md).
    p = torch.tensor([[0.2, 0.1], [-0.6, 0.3]], dtype=F64)
    q = torch.tensor([[-0.5, 0.4], [0.1, -0.9]], dtype=F64)
    torch.testing.assert_close(space.metric.dist(p, q), sphere_distance(p, q), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- input errors
def test_latent_space_input_errors():
    with pytest.raises(TypeError, match="PullbackMetric"):
        latent_space(InverseStereographic())
    with pytest.raises(ValueError, match="latent dimension"):
        latent_space(PullbackMetric(InverseStereographic()))
    space = latent_space(PullbackMetric(InverseStereographic()), dim=2)
    with pytest.raises(ValueError, match="base_point"):
        space.metric.metric_matrix()
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        space.metric.metric_matrix(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="unknown boundary-value method 'magic'; choose from"):
        PullbackLogSolver(space, method="magic")
    with pytest.raises(ValueError, match="unknown initial-value method 'magic'; choose from"):
        pg_geomstats.PullbackExpSolver(space, method="magic")
    # The old name of the energy log is gone: it is "lm" (or another energy method).
    with pytest.raises(ValueError, match="unknown boundary-value method 'energy'"):
        PullbackLogSolver(space, method="energy")
    # Mistyped options are refused when the solver is built, not at its first use.
    with pytest.raises(TypeError, match="method 'lm' got unknown option 'n_point'"):
        PullbackLogSolver(space, method="lm", n_point=8)
    with pytest.raises(TypeError, match="method 'rk4' got unknown option 'rtol'"):
        pg_geomstats.PullbackExpSolver(space, method="rk4", rtol=1e-6)
    with pytest.raises(TypeError, match="method 'discrete' got unknown option 'n_point'"):
        latent_space(
            PullbackMetric(InverseStereographic(), latent_dim=2),
            log_options={"method": "discrete", "n_point": 8},
        )
    assert not hasattr(pg_geomstats, "EXP_METHODS") and not hasattr(pg_geomstats, "LOG_METHODS")


def test_float32_decoder_computes_in_float64_by_default():
    space = latent_space(PullbackMetric(Float32Sphere(), latent_dim=2))
    assert space.metric.dtype == F64
    assert space.metric.pullback.decoder.anchor.dtype == F64


def test_a_model_is_accepted_by_its_pullback_metric():
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 4))

        def pullback_metric(self) -> PullbackMetric:
            return PullbackMetric(self.decoder)

    space = latent_space(Model())
    assert space.dim == 2
    with pytest.raises(TypeError, match="pullback_metric"):
        latent_space(nn.Linear(2, 3))


def test_dist_is_the_length_of_the_shortest_curve_on_a_relu_decoder():
    """On a ReLU decoder G jumps, so |log_p q|_G(p) (geomstats' dist) is not the length;
    the adapter's dist is the core's geodesic distance."""
    from pullback_geom.geodesics import geodesic_distance

    torch.manual_seed(4)
    decoder = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 12), nn.Sigmoid())
    core = PullbackMetric(decoder)
    space = latent_space(core)
    g = torch.Generator().manual_seed(5)
    p, q = 1.5 * torch.randn(2, 6, 2, generator=g, dtype=F64)
    dist = space.metric.dist(p, q)
    assert space.metric.dist_dtype == torch.float32
    defaults = {"bend_tol": DIST_BEND_TOL, "basin_tol": DIST_BASIN_TOL}
    assert space.metric.dist_options == defaults
    low = space.metric.pullback.to(dtype=torch.float32)
    want = geodesic_distance(
        low, p.float(), q.float(), tol=DIST_TOL_FLOAT32, warn=False, **defaults
    )
    torch.testing.assert_close(dist, want.double(), rtol=1e-10, atol=0)
    # float32 solves at that tolerance against float64 ones at the solver's own default.
    tight = geodesic_distance(space.metric.pullback, p, q, warn=False, **defaults)
    torch.testing.assert_close(dist, tight, rtol=1e-4, atol=0)
    # Pairs float32 does not resolve are solved in float64, not read off a float32 curve.
    step = 1e-5 * (q - p) / (q - p).norm(dim=-1, keepdim=True)
    near = space.metric.dist(p, p + step)
    near64 = geodesic_distance(
        space.metric.pullback, p, p + step, tol=DIST_TOL_FLOAT64, bend_tol=DIST_BEND_TOL
    )
    torch.testing.assert_close(near, near64, rtol=1e-10, atol=0)
    torch.testing.assert_close(near, space.metric.norm(step, p), rtol=1e-3, atol=0)
    torch.testing.assert_close(space.metric.squared_dist(p, q), dist**2, rtol=1e-10, atol=0)
    # The length is never above the straight line's, whatever |log|_G says.
    t = torch.linspace(0, 1, 257, dtype=F64)[None, :, None]
    straight = space.metric.pullback.curve_length(p[:, None] + t * (q - p)[:, None])
    assert bool((dist <= straight * 1.01).all())
