"""The adaptive exponential map (Dormand–Prince 5(4)) against great circles and lines."""

from __future__ import annotations

import pytest
import torch
from oracles import sphere_geodesic

from pullback_geom import PullbackMetric
from pullback_geom.geodesics import (
    GeodesicConvergenceWarning,
    InitialValueResult,
    exp_map,
    integrate_geodesic,
)
from pullback_geom.surfaces import InverseStereographic, LinearDecoder

F64 = torch.float64


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic())


def _starts(n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = 3 * torch.rand(n, 2, generator=gen, dtype=F64) - 1.5
    v = torch.randn(n, 2, generator=gen, dtype=F64)
    return z, v


def test_dopri5_follows_great_circles_to_its_tolerance(sphere):
    z, v = _starts(4)
    v = 0.6 * v
    exact = sphere_geodesic(z, v, torch.ones(1, dtype=F64))[:, 0]
    errors, steps = [], []
    for rtol in (1e-4, 1e-8):
        result = integrate_geodesic(sphere, z, v, method="dopri5", rtol=rtol, atol=rtol / 100)
        assert isinstance(result, InitialValueResult) and bool(result.converged.all())
        errors.append(float((result.point - exact).abs().max()))
        steps.append(result.info["steps"])
    assert errors[0] < 1e-3
    assert errors[1] < 1e-6
    assert errors[1] < errors[0] / 100  # the step control follows the tolerance
    # Fast, far-out curves need more steps than slow ones: the steps are per curve.
    assert int(steps[1].max()) > 2 * int(steps[1].min())
    # Fixed-step RK4 with as many derivative evaluations as the slowest adaptive curve
    # is less accurate: it spends them where they are not needed.
    rk4 = exp_map(sphere, z, v, method="rk4", n_steps=int(6 * steps[1].max()) // 4)
    assert (rk4 - exact).abs().max() > errors[1]


def test_dopri5_path_lands_on_the_output_times(sphere):
    z, v = _starts(4, seed=5)
    v = 0.5 * v  # curves that stay in the chart (away from the north pole)
    path = integrate_geodesic(sphere, z, v, method="dopri5", path=True, n_steps=10, t=1.5).path
    exact = sphere_geodesic(z, v, torch.linspace(0, 1.5, 11, dtype=F64))
    assert path.shape == (4, 11, 2)
    torch.testing.assert_close(path, exact, rtol=1e-6, atol=1e-6)
    single = exp_map(sphere, z[0], v[0], method="dopri5", t=1.5)
    torch.testing.assert_close(single, exact[0, -1], rtol=1e-6, atol=1e-6)


def test_dopri5_straight_lines_of_a_linear_decoder():
    a = torch.tensor([[1.0, 0.5], [0.0, 2.0], [0.3, -1.0]], dtype=F64)
    metric = PullbackMetric(LinearDecoder(a))
    z, v = _starts(5)
    result = integrate_geodesic(metric, z, v, method="dopri5", t=2.0)
    torch.testing.assert_close(result.point, z + 2 * v, rtol=1e-12, atol=1e-12)
    # Zero acceleration, zero error estimate: the steps only grow (5x a step) to t.
    assert int(result.info["steps"].max()) <= 6 and int(result.info["rejected"].max()) == 0


def test_dopri5_reports_curves_that_run_out_of_steps(sphere):
    z, v = _starts(4)
    v = v.clone()
    v[0] = 1e-3 * v[0]  # a slow curve: a few steps
    with pytest.warns(
        GeodesicConvergenceWarning,
        match=r"integrate_geodesic: \d of 4 curves did not reach t = 1 with ",
    ):
        info = integrate_geodesic(sphere, z, 8 * v, method="dopri5", max_steps=12)
    end = info.point
    assert bool(info.converged[0]) and not bool(info.converged.all())
    assert torch.isfinite(end[0]).all()
    assert torch.isnan(end[~info.converged]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "euler"}, "unknown initial-value method 'euler'"),
        ({"method": "dopri5", "rtol": 0.0}, "rtol and atol"),
        ({"method": "dopri5", "max_steps": 0}, "max_steps"),
        ({"t": -1.0}, "t must be"),
        ({"method": "rk4", "n_steps": 0}, "n_steps"),
    ],
)
def test_exp_map_bad_options(sphere, kwargs, match):
    z, v = _starts(2)
    with pytest.raises(ValueError, match=match):
        exp_map(sphere, z, v, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # return_info is gone (integrate_geodesic's result has it); rk4 has no rtol.
        ({"method": "rk4", "return_info": True}, "method 'rk4' got unknown option 'return_info'"),
        ({"method": "rk4", "rtol": 1e-6}, "method 'rk4' got unknown option 'rtol'"),
    ],
)
def test_exp_map_unknown_options(sphere, kwargs, match):
    z, v = _starts(2)
    with pytest.raises(TypeError, match=match):
        exp_map(sphere, z, v, **kwargs)
