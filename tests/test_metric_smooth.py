"""``PullbackMetric.smooth``: whether the decoder is C2, read from the layers inside it."""

import functools

import pytest
import torch
from torch import nn

from pullback_geom import PullbackMetric
from pullback_geom.surfaces import InverseStereographic

F64 = torch.float64


def mlp(activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 8), activation, nn.Linear(8, 5)).double()


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.Softplus(), nn.GELU(), nn.SiLU()])
def test_smooth_activations_give_a_smooth_decoder(activation):
    assert PullbackMetric(mlp(activation)).smooth is True


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.LeakyReLU(), nn.Hardtanh(), nn.ELU()])
def test_piecewise_linear_or_c1_activations_do_not(activation):
    assert PullbackMetric(mlp(activation)).smooth is False


def test_a_conv_decoder_inside_a_closure_is_found():
    conv = nn.Sequential(
        nn.Unflatten(1, (2, 1, 1)),
        nn.ConvTranspose2d(2, 3, 4),
        nn.LeakyReLU(0.1),
        nn.ConvTranspose2d(3, 1, 3),
    ).double()
    metric = PullbackMetric(lambda z: conv(z).flatten(1))
    assert metric.smooth is False
    # ... and the same decoder with a smooth activation is smooth
    conv[2] = nn.Tanh()
    assert PullbackMetric(lambda z: conv(z).flatten(1)).smooth is True


def test_a_bound_method_and_a_partial_are_followed():
    class Model(nn.Module):
        def __init__(self, activation: nn.Module) -> None:
            super().__init__()
            self.net = mlp(activation)

        def decode(self, z, scale=1.0):
            return scale * self.net(z)

    assert PullbackMetric(Model(nn.ReLU()).decode).smooth is False
    assert PullbackMetric(Model(nn.Tanh()).decode).smooth is True
    assert PullbackMetric(functools.partial(Model(nn.ReLU()).decode, scale=2.0)).smooth is False


def test_a_gaussian_decoder_looks_at_mean_and_std():
    mean, relu_std = mlp(nn.Tanh()), mlp(nn.ReLU())
    assert PullbackMetric.gaussian(mean, lambda z: relu_std(z).exp()).smooth is False
    assert PullbackMetric.gaussian(mean, mlp(nn.Softplus())).smooth is True


def test_plain_functions_and_the_analytic_surfaces_are_smooth():
    assert PullbackMetric(InverseStereographic()).smooth is True
    assert PullbackMetric(lambda z: torch.cat([z, z.square()], dim=-1)).smooth is True


def test_an_explicit_smooth_overrides_both_ways():
    assert PullbackMetric(mlp(nn.ReLU()), smooth=True).smooth is True
    assert PullbackMetric(mlp(nn.Tanh()), smooth=False).smooth is False
    assert PullbackMetric(lambda z: torch.relu(z), smooth=False).smooth is False


@pytest.mark.parametrize("bad", [1, 0, "yes", torch.tensor(True)])
def test_smooth_must_be_a_bool_or_none(bad):
    with pytest.raises(TypeError, match="smooth must be True, False or None"):
        PullbackMetric(mlp(nn.Tanh()), smooth=bad)


def test_smooth_is_read_only():
    metric = PullbackMetric(mlp(nn.Tanh()))
    with pytest.raises(AttributeError):
        metric.smooth = False


@pytest.mark.parametrize("given", [None, True, False])
def test_to_and_detached_keep_it(given):
    metric = PullbackMetric(mlp(nn.ReLU()), smooth=given)
    expected = metric.smooth
    assert metric.to(torch.float32).smooth is expected
    assert metric.detached().smooth is expected
    assert metric.to(torch.float32).detached().smooth is expected
