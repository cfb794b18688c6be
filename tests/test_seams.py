"""Defects found at the seams between layers, each pinned by a test that failed before its fix;
and the contracts the solvers share (one result type, one meaning of ``converged``)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.linalg import block_tridiagonal_cholesky, block_tridiagonal_solve
from pullback_geom.geodesics import (
    BOUNDARY_VALUE,
    GeodesicConvergenceWarning,
    connecting_geodesic,
    exp_map,
    geodesic_distance,
    log_map,
    pairwise_distances,
)
from pullback_geom.geodesics._common import CurveSolution
from pullback_geom.geodesics.energy import ENERGY_OPTIONS
from pullback_geom.geodesics.lm import damped_tridiagonal_step
from pullback_geom.surfaces import InverseStereographic

F64 = torch.float64
#: The energy methods of the registry (those taking every energy option) and their
#: minimisers, ``(metric, curves, max_iter, tol) -> CurveSolution``.
METHODS = {
    name: solver.run.keywords["minimise"]
    for name, solver in BOUNDARY_VALUE.items()
    if set(ENERGY_OPTIONS) <= set(solver.options)
}
PACKAGE = Path(__file__).resolve().parents[1] / "pullback_geom"


def paraboloid(z: torch.Tensor) -> torch.Tensor:
    """A plain function decoder (no parameters): ``z -> (z, |z|^2)``, reshaped with -1."""
    return torch.cat([z, z.square().sum(-1, keepdim=True)], -1).reshape(-1, 1, 3)


# ---------------------------------------------------------------- metric
def test_gaussian_curvature_works_on_the_first_call_of_a_plain_function():
    metric = PullbackMetric(paraboloid)
    assert metric.latent_dim is None
    z = torch.tensor([[0.0, 0.0], [0.3, -0.2]], dtype=F64)
    # K of the paraboloid z3 = x^2 + y^2: 4 / (1 + 4 r^2)^2
    r2 = z.square().sum(-1)
    torch.testing.assert_close(metric.gaussian_curvature(z), 4 / (1 + 4 * r2) ** 2)


def test_gaussian_curvature_still_refuses_other_dimensions():
    metric = PullbackMetric(lambda z: z.repeat(1, 2))
    with pytest.raises(ValueError, match="this one has d = 3"):
        metric.gaussian_curvature(torch.zeros(2, 3))


class OutputFirst(nn.Module):
    """Registers its output layer before its input layer."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(32, 10)
        self.inp = nn.Linear(3, 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inp(z)))


def test_latent_dim_is_not_read_off_the_first_registered_layer():
    metric = PullbackMetric(OutputFirst())
    g = metric.metric_tensor(torch.zeros(4, 3))
    assert g.shape == (4, 3, 3)
    assert metric.latent_dim == 3


def test_latent_dim_of_a_sequential_is_its_input_layer():
    seq = nn.Sequential(nn.Flatten(), nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    assert PullbackMetric(seq).latent_dim == 5
    with pytest.raises(ValueError, match="the decoder takes d = 5"):
        PullbackMetric(seq).metric_tensor(torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("metric_tensor", (0, 2, 2)),
        ("volume_element", (0,)),
        ("log_volume", (0,)),
        ("christoffel_symbols", (0, 2, 2, 2)),
        ("scalar_curvature", (0,)),
        ("gaussian_curvature", (0,)),
        ("jacobian", (0, 3, 2)),
        ("evaluator.embed", (0, 3)),
    ],
)
def test_an_empty_batch_gives_an_empty_answer(name, shape):
    target = PullbackMetric(paraboloid)
    for part in name.split("."):
        target = getattr(target, part)
    out = target(torch.zeros(0, 2, dtype=F64))
    assert out.shape == shape
    assert out.dtype == F64


def test_empty_batches_through_the_solvers():
    metric = PullbackMetric(paraboloid)
    empty = torch.zeros(0, 2, dtype=F64)
    assert geodesic_distance(metric, empty, empty).shape == (0,)
    result = connecting_geodesic(metric, empty, empty, n_points=8)
    assert result.points.shape == (0, 8, 2)
    assert result.converged.dtype == torch.bool
    assert exp_map(metric, empty, empty).shape == (0, 2)
    assert log_map(metric, empty, empty).shape == (0, 2)
    assert pairwise_distances(metric, empty).shape == (0, 0)
    assert metric.curve_length(torch.zeros(0, 5, 2, dtype=F64)).shape == (0,)


def test_a_dtype_the_decoder_cannot_take_is_named():
    weight = torch.randn(2, 5)  # float32
    metric = PullbackMetric(lambda z: z @ weight)
    with pytest.raises(ValueError, match=r"shape \(1, 2\), dtype torch.float64") as info:
        metric.metric_tensor(torch.zeros(3, 2, dtype=F64))
    assert "z.float()" in str(info.value)


# ---------------------------------------------------------------- one solver interface
def curved_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.tensor([[-0.8, -0.3], [0.1, -0.9], [-0.5, 0.6]], dtype=F64)
    q = torch.tensor([[0.9, 0.4], [-0.2, 0.8], [0.7, -0.5]], dtype=F64)
    return p, q


def test_the_energy_methods_are_found_in_the_registry():
    assert {"lm", "georce", "lbfgs"} <= set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_energy_method_returns_one_result_type(method):
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    p, q = curved_pairs()
    t = torch.linspace(0, 1, 10, dtype=F64)[None, :, None]
    curve = p[:, None] + t * (q - p)[:, None]
    # the methods take checked points, as connecting_geodesic hands them
    metric.evaluator.check_points(p)
    sol = METHODS[method](metric, curve, 200, 1e-10)
    assert isinstance(sol, CurveSolution)
    assert sol.points.shape == (3, 10, 2)
    for x in (sol.length, sol.energy, sol.converged, sol.iterations):
        assert x.shape == (3,)
    assert sol.decoded is not None and sol.decoded.shape == (3, 10, 3)
    torch.testing.assert_close(sol.decoded, metric.decode_curve(sol.points))
    assert bool(sol.converged.all())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_iteration_on_curved_pairs_has_not_converged(method):
    metric = PullbackMetric(InverseStereographic(), latent_dim=2)
    p, q = curved_pairs()
    with pytest.warns(GeodesicConvergenceWarning):
        result = connecting_geodesic(metric, p, q, method=method, max_iter=1, n_points=10)
    assert not bool(result.converged.any())
    assert bool((result.iterations <= 1).all())


# ---------------------------------------------------------------- the damped step
def random_system(b: int, m: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(b, m + 2, 6 * d, d, generator=gen, dtype=F64)
    base = 2 * jac[:, 1:-1].mT @ jac[:, 1:-1]
    couple = jac[:, 1:-2].mT @ jac[:, 2:-1]
    grad = torch.randn(b, m, d, generator=gen, dtype=F64)
    return base, couple, grad


def dense(base, couple):
    b, m, d, _ = base.shape
    mat = torch.zeros(b, m * d, m * d, dtype=base.dtype)
    for k in range(m):
        mat[:, k * d : (k + 1) * d, k * d : (k + 1) * d] = base[:, k]
    for k in range(m - 1):
        mat[:, k * d : (k + 1) * d, (k + 1) * d : (k + 2) * d] = -couple[:, k]
        mat[:, (k + 1) * d : (k + 2) * d, k * d : (k + 1) * d] = -couple[:, k].mT
    return mat


@pytest.mark.parametrize(("m", "d"), [(1, 3), (6, 2), (5, 16)])
def test_block_tridiagonal_solve_matches_the_dense_solve(m, d):
    base, couple, grad = random_system(3, m, d)
    chol_d, chol_l, ok = block_tridiagonal_cholesky(base, -couple.mT)
    assert bool(ok.all())
    x = block_tridiagonal_solve(chol_d, chol_l, grad)
    ref = torch.linalg.solve(dense(base, couple), grad.reshape(3, -1, 1)).reshape(3, m, d)
    torch.testing.assert_close(x, ref, rtol=1e-9, atol=1e-10)


def test_block_cholesky_flags_an_indefinite_system():
    base, couple, _ = random_system(2, 4, 2)
    base[1, 2] = -base[1, 2]
    *_, ok = block_tridiagonal_cholesky(base, -couple.mT)
    assert ok.tolist() == [True, False]


@pytest.mark.parametrize("d", [2, 16])  # the dense and the block factorisation
def test_damped_step_solves_the_damped_system(d):
    base, couple, grad = random_system(2, 5, d)
    lam = torch.tensor([1e-3, 1.0], dtype=F64)
    step, predicted, lam_out, solved = damped_tridiagonal_step(base, couple, grad, lam)
    assert bool(solved.all())
    torch.testing.assert_close(lam_out, lam)
    scale = base.diagonal(dim1=-2, dim2=-1).mean((-1, -2)) / 2
    mat = dense(base, couple) + (lam * scale)[:, None, None] * torch.eye(5 * d, dtype=F64)
    ref = torch.linalg.solve(mat, -grad.reshape(2, -1, 1)).reshape(2, 5, d)
    torch.testing.assert_close(step, ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(predicted, -(ref * grad).sum((1, 2)))


@pytest.mark.parametrize("d", [2, 16])
def test_damped_step_gives_up_on_a_broken_system_instead_of_looping(d):
    base, couple, grad = random_system(2, 5, d)
    base[0, 1, 0, 0] = float("nan")
    step, predicted, _, solved = damped_tridiagonal_step(
        base, couple, grad, torch.ones(2, dtype=F64)
    )
    assert solved.tolist() == [False, True]
    assert float(step[0].abs().sum()) == 0.0 and float(predicted[0]) == 0.0
    assert math.isfinite(float(predicted[1]))


def test_connecting_geodesic_reports_a_broken_pair_as_not_converged():
    def decoder(z):  # NaN derivatives on the half plane z0 > 5
        return torch.cat([z, torch.where(z[:, :1] > 5, z[:, :1].sqrt() * math.nan, z[:, :1])], 1)

    metric = PullbackMetric(decoder)
    p = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=F64)
    q = torch.tensor([[1.0, 1.0], [9.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match="NaN"):  # NaNs are named where they appear
        connecting_geodesic(metric, p, q, n_points=6)


# ---------------------------------------------------------------- device-clean code
def test_no_numpy_conversion_without_cpu():
    """``.numpy()`` on a CUDA tensor raises: every conversion goes through ``.cpu()``."""
    bad = []
    for path in PACKAGE.rglob("*.py"):
        for k, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            for hit in re.finditer(r"\.numpy\(\)", code):
                before = code[: hit.start()]
                if (
                    "``" in code
                    or before.endswith(".cpu()")
                    or re.search(r"\.cpu\(\)\.\w+\(\)$", before)
                ):
                    continue
                bad.append(f"{path.relative_to(PACKAGE)}:{k}: {line.strip()}")
    assert bad == []


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_the_last_step_decoded_without_jacobians_changes_nothing(max_iter):
    """The LM driver decodes its last trial step by values only: the result is the one a
    driver that decodes every step in full gives."""
    from pullback_geom.geodesics import lm
    from pullback_geom.geodesics.chord import ChordEnergy

    class FullDecodes(ChordEnergy):
        def decode_values(self, free, idx):
            return self.decode(free, idx)[0]

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 10), nn.Sigmoid()).double()
    metric = PullbackMetric(net).detached()
    p, q = torch.randn(2, 6, 3, dtype=F64)
    metric.evaluator.check_points(torch.cat([p, q]), "z")
    t = torch.linspace(0, 1, 7, dtype=F64)[None, :, None]
    curve = p[:, None] + t * (q - p)[:, None]
    lean = lm.levenberg_marquardt(ChordEnergy(metric, curve), curve[:, 1:-1], max_iter, 1e-12)
    full = lm.levenberg_marquardt(FullDecodes(metric, curve), curve[:, 1:-1], max_iter, 1e-12)
    for a, b in zip(
        (lean.free, lean.values, lean.objective, lean.iterations),
        (full.free, full.values, full.objective, full.iterations),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.equal(lean.converged, full.converged)
    start = ChordEnergy(metric, curve)
    initial = start.objective((start.decode_values(curve[:, 1:-1], None),), torch.arange(6))
    assert bool((lean.objective < initial).all())  # the steps were taken
