"""compare_geodesics: every method on the same pairs, checked against closed forms."""

from __future__ import annotations

import pytest
import torch

from pullback_geom import PullbackMetric
from pullback_geom.experiments.compare import COMPARE_METHODS, compare_geodesics, default_methods
from pullback_geom.surfaces import InverseStereographic, LinearDecoder, sphere_distance

F64 = torch.float64


@pytest.fixture(scope="module")
def sphere() -> PullbackMetric:
    return PullbackMetric(InverseStereographic())


@pytest.fixture(scope="module")
def sphere_comparison(sphere):
    p = torch.tensor([[0.3, -0.2], [-0.9, 0.4]], dtype=F64)
    q = torch.tensor([[-0.6, 0.9], [0.7, 0.5]], dtype=F64)
    methods = ["lm", "shooting", "geomstats_logode", "stochman"]
    # Shooting to 1e-7 rather than log_map's 1e-9: as informative here, and faster.
    options = {"shooting": {"tol": 1e-7}}
    return compare_geodesics(
        sphere, p, q, methods=methods, n_eval=33, method_options=options,
        exact=sphere_distance(p, q),
    )  # fmt: skip


def test_every_method_finds_the_great_circle(sphere_comparison):
    res = sphere_comparison
    exact = sphere_distance(res.p, res.q)
    for name, row in res.rows.items():
        assert row.error is None, name
        torch.testing.assert_close(row.length, exact, rtol=1e-3, atol=0, msg=name)
        assert res.curves[name].shape == (2, 33, 2)
        # Constant-speed curves on the great circle through p and q.
        f = InverseStereographic()
        normal = torch.linalg.cross(f(res.p), f(res.q))
        pts = f(res.curves[name].reshape(-1, 2)).reshape(2, 33, 3)
        assert (pts * normal[:, None]).sum(-1).abs().max() < 1e-2, name
        assert row.endpoint_error.max() < 1e-6, name
        # Energy in the method's own parametrisation: length^2 at constant speed.
        torch.testing.assert_close(row.energy, row.length**2, rtol=2e-3, atol=0, msg=name)
    assert res.agreement("shooting") == (2, 2)
    assert res.diagnosis("shooting") == ["agrees", "agrees"]
    # The ODE solution is a geodesic to its integrator's accuracy: a small residual and
    # round trip, far below those of a coarse spline (stochman).
    ode = res.rows["shooting"]
    assert ode.residual.max() < 5e-3 and ode.roundtrip_error.max() < 1e-4
    # 32 nodes: the spline derivatives' O(h^2) floor (4e-3 and 5.1e-3 on these two pairs).
    assert res.rows["lm"].residual.max() < 6e-3
    assert res.rows["stochman"].residual.max() > 10 * ode.residual.max()


def test_markdown_table_lists_every_method(sphere_comparison):
    text = sphere_comparison.to_markdown()
    for name in sphere_comparison.rows:
        assert f"| {name} |" in text
    assert "| pair | ‖p − q‖ | exact | lm | shooting | geomstats_logode | stochman |" in text
    assert "median rel. error vs exact" in text
    # Every per-pair row has a cell per column: pair, ‖p − q‖, exact, 4 methods, notes.
    rows = [line for line in text.splitlines() if line.startswith("| 0 |")]
    assert len(rows) == 1 and rows[0].count(" | ") == 7


def test_residual_detects_a_curve_that_is_not_a_geodesic():
    # A linear decoder: geodesics are straight lines; a bent curve has a residual of about
    # its turning angle, and is longer than the straight line.
    a = torch.tensor([[1.0, 0.2], [0.0, 1.5], [0.4, -0.3]], dtype=F64)
    metric = PullbackMetric(LinearDecoder(a))
    p = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=F64)
    q = torch.tensor([[2.0, 1.0], [-1.0, 0.5]], dtype=F64)
    res = compare_geodesics(metric, p, q, methods=["lm", "lbfgs"])
    exact = torch.linalg.vector_norm((q - p) @ a.T, dim=-1)
    torch.testing.assert_close(res.rows["lm"].length, exact, rtol=1e-9, atol=0)
    assert res.rows["lm"].residual.max() < 1e-6
    assert res.rows["lm"].roundtrip_error.max() < 1e-8


def test_a_failing_method_is_a_row_not_a_crash(sphere):
    p = torch.tensor([[0.3, -0.2]], dtype=F64)
    q = torch.tensor([[-0.6, 0.9]], dtype=F64)
    res = compare_geodesics(
        sphere, p, q, methods=["lm", "georce"], method_options={"georce": {"n_points": 2}}
    )
    assert res.rows["lm"].error is None
    assert "n_points must be an integer >= 3; got 2" in res.rows["georce"].error
    assert torch.isnan(res.curves["georce"]).all()
    assert "| georce | failed: ValueError: n_points" in res.to_markdown()
    assert res.diagnosis("georce")[0].startswith("failed")


def test_every_core_method_runs_with_its_own_options(sphere):
    """Only the energy methods get compare's 32 nodes: "multiple" and "discrete" take no
    n_points, and a row of theirs must be a curve, not a TypeError."""
    p = torch.tensor([[0.3, -0.2]], dtype=F64)
    q = torch.tensor([[-0.6, 0.9]], dtype=F64)
    res = compare_geodesics(sphere, p, q, methods=["multiple", "discrete"])
    for name, row in res.rows.items():
        assert row.error is None, f"{name}: {row.error}"
        torch.testing.assert_close(row.length, sphere_distance(p, q), rtol=1e-3, atol=0)


def test_identical_end_points_have_length_zero(sphere):
    p = torch.tensor([[0.3, -0.2], [0.1, 0.1]], dtype=F64)
    q = torch.tensor([[0.3, -0.2], [0.5, 0.2]], dtype=F64)
    res = compare_geodesics(sphere, p, q, methods=["lm"])
    assert float(res.rows["lm"].length[0]) == 0.0
    assert float(res.rows["lm"].length[1]) > 0


def test_defaults_leave_out_the_slow_shooting_solver():
    assert default_methods() == [m for m in COMPARE_METHODS if m != "geomstats_shooting"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ["lm", "rk45"]}, "unknown methods"),
        ({"methods": []}, "unknown methods"),
        ({"methods": ["lm", "lm"]}, "must not repeat"),
        ({"methods": ["lm"], "reference": "shooting"}, "reference 'shooting'"),
        ({"methods": ["lm"], "n_eval": 3}, "n_eval"),
        ({"methods": ["lm"], "method_options": {"shooting": {}}}, "do not run"),
    ],
)
def test_bad_options(sphere, kwargs, match):
    p = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match=match):
        compare_geodesics(sphere, p, p + 0.5, **kwargs)


def test_unknown_method_option_is_refused_before_any_run(sphere):
    p = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(
        TypeError, match="compare_geodesics: method 'lm' got unknown option 'n_point'"
    ):
        compare_geodesics(sphere, p, p + 0.5, methods=["lm"], method_options={"lm": {"n_point": 8}})


def test_bad_points(sphere):
    p = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="NaN or inf"):
        compare_geodesics(sphere, p, torch.full((2, 2), float("nan"), dtype=F64), methods=["lm"])
    with pytest.raises(ValueError, match="p and q"):
        compare_geodesics(sphere, p, torch.zeros(3, 2, dtype=F64), methods=["lm"])


def test_cli_writes_table_and_figure(tmp_path, capsys):
    from pullback_geom.cli import main

    out = tmp_path / "cmp"
    code = main(["compare", "--surface", "sphere", "--pairs", "1", "--methods", "lm,georce",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| lm | 1/1 |" in printed and "median rel. error vs exact" in printed
    assert (out / "compare.md").read_text().startswith("# Geodesic methods compared")
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_clear(tmp_path, capsys):
    from pullback_geom.cli import main

    assert main(["compare", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["compare", "--methods", "lm,bogus", "--out", str(tmp_path)]) == 2
    assert "argument --methods: unknown 'bogus'" in capsys.readouterr().err
