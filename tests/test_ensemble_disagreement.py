"""The disagreement metric of a decoder ensemble: the members' mean image and per-pixel
std as one Gaussian decoder, against a direct computation and the bounds it must obey."""

import pytest
import torch

from pullback_geom import PullbackMetric, vae

F64 = torch.float64


def ensemble(decoders: int, seed: int = 0) -> vae.EnsembleVAE:
    torch.manual_seed(seed)
    return vae.EnsembleVAE(hidden=16, decoders=decoders).to(F64)


def psd_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest eigenvalue of ``b - a`` per point, relative to ``b``'s largest."""
    return torch.linalg.eigvalsh(b - a)[:, 0] / torch.linalg.eigvalsh(b)[:, -1]


def test_metric_is_mean_pullback_plus_std_pullback():
    model = ensemble(3)
    z = torch.randn(5, 2, dtype=F64)
    members = model.decoder.members

    def stacked(x):  # mean image and std, flattened, straight from torch
        images = torch.stack([m(x[None]).reshape(-1) for m in members])
        return torch.cat([images.mean(0), (images.var(0, correction=0) + 0.1**2).sqrt()])

    jac = torch.func.vmap(torch.func.jacrev(stacked))(z)
    got = model.pullback_metric("disagreement", floor=0.1).metric_tensor(z)
    torch.testing.assert_close(got, jac.mT @ jac)
    std = torch.stack([m(z) for m in members]).std(0, correction=0)
    torch.testing.assert_close(model.decode_std(z), std)
    torch.testing.assert_close(model.decode_std(z[0], floor=0.1), (std[0] ** 2 + 0.01).sqrt())


def test_metric_lies_between_the_mean_and_the_expected_metric():
    model = ensemble(4)
    z = 2 * torch.randn(20, 2, dtype=F64)
    g_mean = model.pullback_metric("mean").metric_tensor(z)
    g_dis = model.pullback_metric("disagreement").metric_tensor(z)
    g_ens = model.pullback_metric("ensemble").metric_tensor(z)
    assert (psd_gap(g_mean, g_dis) > -1e-12).all() and (psd_gap(g_dis, g_ens) > -1e-12).all()
    # strictly inside: the members disagree, and four of them not along one direction
    assert not torch.allclose(g_dis, g_mean) and not torch.allclose(g_dis, g_ens)
    # the std term scales with scale^2
    g3 = model.pullback_metric("disagreement", scale=3.0).metric_tensor(z)
    torch.testing.assert_close(g3 - g_mean, 9 * (g_dis - g_mean))


def test_two_members_without_floor_give_the_expected_metric():
    # K = 2: std = |f_1 - f_2| / 2, so J_s^T J_s = (J_1 - J_2)^T (J_1 - J_2) / 4 and
    # J_fbar^T J_fbar + J_s^T J_s = (J_1^T J_1 + J_2^T J_2) / 2 exactly
    model = ensemble(2)
    z = torch.randn(8, 2, dtype=F64)
    got = model.pullback_metric("disagreement", floor=0.0).metric_tensor(z)
    torch.testing.assert_close(got, model.pullback_metric("ensemble").metric_tensor(z))
    with_floor = model.pullback_metric("disagreement", floor=0.5).metric_tensor(z)
    assert (psd_gap(with_floor, got) > -1e-12).all() and not torch.allclose(with_floor, got)


def test_identical_members_give_the_mean_metric_and_finite_derivatives():
    model = ensemble(3)
    for member in model.decoder.members[1:]:
        member.load_state_dict(model.decoder.members[0].state_dict())
    z = torch.randn(6, 2, dtype=F64)
    with torch.no_grad():
        assert float(model.decode_std(z).abs().max()) < 1e-15  # the mean image's rounding
    metric = model.pullback_metric("disagreement")
    single = PullbackMetric(model.decoder.members[0])
    torch.testing.assert_close(metric.metric_tensor(z), single.metric_tensor(z))
    torch.testing.assert_close(metric.christoffel_symbols(z), single.christoffel_symbols(z))
    curve = torch.randn(2, 5, 2, dtype=F64)
    torch.testing.assert_close(metric.curve_energy(curve), single.curve_energy(curve))
    # sqrt(Var + floor^2) is smooth at zero disagreement: gradients through it are finite
    x = z.clone().requires_grad_(True)
    metric.metric_tensor(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_options_are_checked():
    model = ensemble(2)
    with pytest.raises(ValueError, match="kind='disagreement' only"):
        model.pullback_metric("ensemble", floor=0.1)
    with pytest.raises(ValueError, match="kind='disagreement' only"):
        model.pullback_metric(scale=2.0)
    with pytest.raises(ValueError, match="floor must be a finite number >= 0"):
        model.pullback_metric("disagreement", floor=-1.0)
    with pytest.raises(TypeError, match="scale must be a number"):
        model.pullback_metric("disagreement", scale="2")
    assert "disagreement" in model.metric_kinds
    bern = vae.BernoulliVAE(hidden=8)
    with pytest.raises(ValueError, match="no 'disagreement' metric"):
        bern.pullback_metric("disagreement")
