"""Chunked evaluation with autograd: checkpointed chunks give the same gradients."""

from __future__ import annotations

import torch
from oracles import F64, tanh_mlp

from pullback_geom import PullbackMetric


def _grads(metric: PullbackMetric, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    metric.decoder.zero_grad()
    loss = metric.metric_tensor(z).square().sum() + metric.geodesic_acceleration(z, 0.5 * z).sum()
    loss.backward()
    return z.grad, metric.decoder[0].weight.grad.clone()


def test_chunked_gradients_match_unchunked():
    decoder = tanh_mlp(d=2, out=6, width=12, dtype=F64)
    z = torch.randn(23, 2, dtype=F64)
    whole = _grads(PullbackMetric(decoder), z)
    chunked = _grads(PullbackMetric(decoder, chunk_size=5), z)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b)


def test_detached_chunks_record_no_graph():
    decoder = tanh_mlp(d=2, out=6, width=12, dtype=F64)
    metric = PullbackMetric(decoder, chunk_size=5)
    z = torch.randn(23, 2, dtype=F64)
    assert metric.metric_tensor(z).requires_grad
    assert not metric.detached().metric_tensor(z).requires_grad
