"""Any decoder users train: a convolutional decoder with BatchNorm (in eval mode), GELU and a
mapping output goes through every public entry in float32 and float64; memory is bounded
by the decoder's activations under a budget; training-mode layers and unselected mapping
outputs are named before any work.

Oracles: autograd Jacobians of the same decoder, the same results under a budget small
enough to split every batch, and the energy geodesics of the core.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom._core.memory import ENV_VAR, activation_bytes, parse_bytes
from pullback_geom.geodesics import (
    PAIRWISE_ROUTES,
    GeodesicConvergenceWarning,
    connecting_geodesic,
    exp_map,
    geodesic_distance,
    log_map,
    pairwise_distances,
)

DTYPES = [torch.float32, torch.float64]


class TinyConvDecoder(nn.Module):
    """Linear -> ConvTranspose2d + BatchNorm2d + GELU -> ConvTranspose2d -> sigmoid,
    returning a dict, as generative-model libraries do: ``(B, d) -> (B, 1, 8, 8)``."""

    def __init__(self, latent_dim: int = 2, width: int = 4) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim, width * 2 * 2)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.fc(z).view(-1, self.width, 2, 2)
        return {"reconstruction": self.net(x), "latent": z}


def decoder(latent_dim: int = 2, dtype=torch.float64) -> TinyConvDecoder:
    torch.manual_seed(0)
    dec = TinyConvDecoder(latent_dim).to(dtype)
    with torch.no_grad():  # running statistics that are not the identity
        dec.net[1].running_mean.uniform_(-0.2, 0.2)
        dec.net[1].running_var.uniform_(0.5, 2.0)
    return dec.eval()


def autograd_jacobian(dec: nn.Module, z: torch.Tensor) -> torch.Tensor:
    def flat(x: torch.Tensor) -> torch.Tensor:
        return dec(x[None])["reconstruction"].reshape(-1)

    return torch.stack([torch.autograd.functional.jacobian(flat, x) for x in z])


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeodesicConvergenceWarning)
        yield


# ------------------------------------------------------------------ the metric
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_metric_of_a_conv_decoder_with_a_mapping_output(dtype):
    dec = decoder(3, dtype)
    metric = PullbackMetric(dec, output="reconstruction")
    z = torch.randn(5, 3, dtype=dtype)
    jac = metric.jacobian(z)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(jac, autograd_jacobian(dec, z), rtol=tol, atol=tol)
    g = metric.metric_tensor(z)
    torch.testing.assert_close(g, jac.mT @ jac, rtol=tol, atol=tol)
    assert metric.volume_element(z).shape == (5,) and metric.christoffel_symbols(z).shape == (
        5,
        3,
        3,
        3,
    )
    assert bool(torch.isfinite(metric.scalar_curvature(z)).all())
    assert metric.dtype == dtype and metric.smooth


def test_the_same_decoder_in_a_closure_and_by_attribute():
    dec = decoder(2)
    z = torch.randn(4, 2, dtype=torch.float64)
    want = PullbackMetric(dec, output="reconstruction").metric_tensor(z)
    closure = PullbackMetric(lambda x: dec(x)["reconstruction"])
    assert closure.dtype == torch.float64  # read off the module the closure holds
    torch.testing.assert_close(closure.metric_tensor(z), want)

    class Output:
        def __init__(self, sample):
            self.sample = sample

    by_attribute = PullbackMetric(lambda x: Output(dec(x)["reconstruction"]), output="sample")
    torch.testing.assert_close(by_attribute.metric_tensor(z), want)


def test_unselected_and_missing_outputs_are_named():
    dec = decoder(2)
    z = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(
        TypeError,
        match=r"mapping with keys \['reconstruction', 'latent'\].*output='reconstruction'",
    ):
        PullbackMetric(dec).metric_tensor(z)
    with pytest.raises(ValueError, match="no key 'recon'.*'reconstruction', 'latent'"):
        PullbackMetric(dec, output="recon").metric_tensor(z)
    with pytest.raises(TypeError, match="output must be a key or attribute name"):
        PullbackMetric(dec, output=3)


@pytest.mark.parametrize("layer", [nn.BatchNorm2d(4), nn.Dropout(0.1)])
def test_training_mode_layers_are_refused_before_any_work(layer):
    calls = []
    dec = decoder(2)
    dec.net.insert(1, layer.to(torch.float64))
    dec.train()
    dec.register_forward_hook(lambda *args: calls.append(1))
    metric = PullbackMetric(dec, output="reconstruction")
    with pytest.raises(
        ValueError, match=rf"{type(layer).__name__} is in training mode.*decoder\.eval\(\)"
    ):
        metric.metric_tensor(torch.randn(4, 2, dtype=torch.float64))
    assert not calls
    dec.eval()
    assert metric.metric_tensor(torch.randn(4, 2, dtype=torch.float64)).shape == (4, 2, 2)


# ------------------------------------------------------------------ memory
class WideIntermediates(nn.Module):
    """A decoder whose hidden activations (8,192 values a point) dwarf its output (4)."""

    def __init__(self, latent_dim: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.up = nn.Linear(latent_dim, 8192)
        self.down = nn.Linear(8192, 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.down(torch.tanh(self.up(z)))


def test_the_budget_splits_batches_by_activations_and_keeps_results():
    dec = WideIntermediates().double()
    z = torch.randn(64, 2, dtype=torch.float64)
    whole = PullbackMetric(dec)
    act = activation_bytes(lambda x: dec(x), z[:1])
    assert act >= 8192 * 8  # the hidden layer, not the 4 outputs, is what a point costs
    small = PullbackMetric(dec, memory_budget=10 * act * 3)  # ~10 points of Jacobians
    small.evaluator.check_points(z)
    rows = small.evaluator.rows("jacobian")
    assert 1 <= rows < 16
    torch.testing.assert_close(small.metric_tensor(z), whole.metric_tensor(z))
    torch.testing.assert_close(small.christoffel_symbols(z), whole.christoffel_symbols(z))
    p, q = z[:4], z[4:8]
    torch.testing.assert_close(
        geodesic_distance(small, p, q, method="lm"),
        geodesic_distance(whole, p, q, method="lm"),
    )


def test_second_derivatives_too_large_for_a_point_go_a_group_of_directions_at_a_time():
    """All ``1 + d + d^2`` streams of a point's Christoffel symbols do not fit the budget:
    forward mode takes the outer directions in groups, with the same results."""
    dec = WideIntermediates(latent_dim=4).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    whole = PullbackMetric(dec)
    whole.evaluator.check_points(z)
    act = whole.evaluator.activation_bytes()
    small = PullbackMetric(dec, memory_budget=10 * act)  # 1 + 4 + 4 x 1 = 9 streams fit
    small.evaluator.check_points(z)
    assert whole.evaluator.groups("christoffel") == 1
    assert small.evaluator.groups("christoffel") == small.evaluator.groups("curvature") == 4
    assert small.evaluator.rows("christoffel", groups=4) == 1
    torch.testing.assert_close(small.christoffel_symbols(z), whole.christoffel_symbols(z))
    torch.testing.assert_close(small.scalar_curvature(z), whole.scalar_curvature(z))
    with pytest.raises(MemoryError, match="memory budget"):  # not even d streams fit
        PullbackMetric(dec, memory_budget=8 * act).christoffel_symbols(z)


def test_a_point_over_the_budget_is_a_memory_error_naming_the_knobs(monkeypatch):
    dec = WideIntermediates().double()
    z = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(MemoryError, match=rf"memory budget of 1000 B.*memory_budget=.*{ENV_VAR}"):
        PullbackMetric(dec, memory_budget=1000).metric_tensor(z)
    monkeypatch.setenv(ENV_VAR, "1KB")
    with pytest.raises(MemoryError, match="memory budget of 1000 B"):
        PullbackMetric(dec).metric_tensor(z)
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(ValueError, match=ENV_VAR):
        PullbackMetric(dec).metric_tensor(z)


def test_memory_sizes_parse():
    assert parse_bytes("2GB") == 2 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes(4096) == 4096 and parse_bytes(" 1.5 kib ") == 1536
    for bad in ("-1", "many", 0, True):
        with pytest.raises(ValueError, match="memory size"):
            parse_bytes(bad)


# ------------------------------------------------------------------ every entry
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_geodesic_entry_runs_on_a_conv_decoder(dtype):
    dec = decoder(2, dtype)
    metric = PullbackMetric(dec, output="reconstruction")
    torch.manual_seed(2)
    p, q = torch.randn(3, 2, dtype=dtype), torch.randn(3, 2, dtype=dtype)
    res = connecting_geodesic(metric, p, q)
    assert res.points.dtype == dtype and bool(torch.isfinite(res.length).all())
    # Between the chord in observation space and the decoded straight latent line.
    t = torch.linspace(0, 1, 257, dtype=dtype)[None, :, None]
    straight = metric.curve_length(p[:, None] + t * (q - p)[:, None])
    chord = metric.curve_length(torch.stack([p, q], 1))
    assert bool((res.length <= straight * (1 + 1e-3)).all())
    assert bool((res.length >= chord * (1 - 1e-4)).all())
    torch.testing.assert_close(geodesic_distance(metric, p, q), res.length)
    v = log_map(metric, p, q)
    assert v.shape == (3, 2) and v.dtype == dtype
    end = exp_map(metric, p, v)
    assert end.shape == (3, 2) and bool(torch.isfinite(end).all())
    z = torch.randn(6, 2, dtype=dtype)
    for route, grid in PAIRWISE_ROUTES.items():
        coarse = {"graph_options": {"resolution": 12}} if grid.grid else {}  # a fast grid
        dist = pairwise_distances(metric, z, route=route, **coarse)
        assert dist.shape == (6, 6) and dist.dtype == dtype
        torch.testing.assert_close(dist, dist.T)
        assert bool((dist[~torch.eye(6, dtype=torch.bool)] > 0).all())


def test_geomstats_and_stochman_on_a_conv_decoder():
    # isort: off
    import pullback_geom.geomstats as pg_geomstats  # before geomstats: its backend
    from geomstats.learning.frechet_mean import FrechetMean
    from pullback_geom.stochman import DecoderManifold
    # isort: on

    dec = decoder(2, torch.float32)
    # d cannot be read off a module that is not a Sequential: geomstats needs it up front.
    metric = PullbackMetric(dec, output="reconstruction", latent_dim=2)
    space = pg_geomstats.latent_space(metric)  # computes in float64, on a float64 copy
    torch.manual_seed(3)
    p, q = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    dist = space.metric.dist(p, q)
    assert dist.dtype == torch.float64
    reference = geodesic_distance(metric.to(dtype=torch.float64), p, q, method="lm")
    torch.testing.assert_close(dist, reference, rtol=2e-3, atol=0)
    v = space.metric.log(q, p)
    assert v.shape == (2, 2)
    torch.testing.assert_close(space.metric.exp(v, p), q, rtol=0, atol=1e-4)
    mean = FrechetMean(space).fit(torch.randn(3, 2, dtype=torch.float64)).estimate_
    assert mean.shape == (2,) and bool(torch.isfinite(mean).all())
    for dtype in DTYPES:  # stochman's points in either dtype, cast to the decoder's
        manifold = DecoderManifold(metric)
        d2 = manifold.dist2(p.to(dtype), q.to(dtype))
        assert d2.dtype == dtype
        torch.testing.assert_close(d2.double().sqrt(), reference, rtol=2e-3, atol=0)


def test_geomstats_casts_points_to_a_float32_closure_and_back():
    import pullback_geom.geomstats as pg_geomstats

    dec = decoder(2, torch.float32)
    metric = PullbackMetric(lambda x: dec(x)["reconstruction"], latent_dim=2)
    space = pg_geomstats.latent_space(metric)
    assert space.metric.dtype == torch.float32
    p, q = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    dist = space.metric.dist(p, q)
    v = space.metric.log(q, p)
    assert dist.dtype == v.dtype == torch.float64 and bool(torch.isfinite(dist).all())
