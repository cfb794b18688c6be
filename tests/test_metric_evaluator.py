"""``metric.evaluator``: built once per metric, the one place the decoder is evaluated."""

import torch
from torch import nn

from pullback_geom import PullbackMetric

F64 = torch.float64


def tanh_metric(**kwargs) -> PullbackMetric:
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 5)).double()
    return PullbackMetric(net, **kwargs)


def test_the_evaluator_is_built_once():
    metric = tanh_metric()
    assert metric.evaluator is metric.evaluator


def test_the_first_check_learns_d_and_d_big():
    metric = PullbackMetric(lambda z: torch.cat([z, z.sin()], dim=-1))
    assert (metric.latent_dim, metric.obs_dim) == (None, None)
    z, single = metric.evaluator.check_points(torch.zeros(3, dtype=F64))
    assert z.shape == (1, 3) and single
    assert (metric.latent_dim, metric.obs_dim) == (3, 6)
    assert metric.evaluator.rows("jacobian") >= 1


def test_to_and_detached_give_new_evaluators_with_what_was_learned():
    metric = tanh_metric(ridge=0.5, chunk_size=4)
    metric.evaluator.check_points(torch.zeros(2, 3, dtype=F64))
    for new in (metric.to(torch.float32), metric.detached(), metric.to(F64)):
        assert new.evaluator is not metric.evaluator
        assert new.evaluator is new.evaluator
        assert (new.latent_dim, new.obs_dim) == (3, 8)
        assert (new.ridge, new.chunk_size, new.jacobian_method) == (0.5, 4, "chain")
    assert metric.to(torch.float32).decoder is not metric.decoder
    assert metric.detached().decoder is metric.decoder
    assert metric.detached().evaluator.kernels.detach
    assert not metric.evaluator.kernels.detach
    assert not metric.detached().evaluator.params_require_grad()
    assert metric.evaluator.params_require_grad()


def test_the_evaluator_agrees_with_the_metric():
    metric = tanh_metric()
    z = torch.randn(5, 3, dtype=F64)
    value, jac = metric.evaluator.value_and_jacobian(z)
    torch.testing.assert_close(value, metric.evaluator.embed(z))
    torch.testing.assert_close(jac, metric.jacobian(z))
    torch.testing.assert_close(metric.evaluator.metric_tensor(z), metric.metric_tensor(z))
