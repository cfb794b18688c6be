"""The same diagnostics for every method's curves: length, energy, geodesic-equation
residual on a constant-speed reparametrisation, end-point and round-trip errors."""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor

from ...geodesics import exp_map
from ...geodesics._common import extrapolated_length, spline_points
from ...metric import PullbackMetric
from .table import MethodRow

__all__ = ["diagnose", "round_trips"]


def _constant_speed(
    metric: PullbackMetric, nodes: Tensor, refine: int, n_eval: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Length, and the constant-speed spline's points, velocities, accelerations.

    ``nodes`` (B, M, d), all finite; returns ``length (B,)`` and three ``(B, n_eval, d)``.
    """
    b, m, d = nodes.shape
    fine = spline_points(nodes, refine)  # as connecting_geodesic measures lengths
    with torch.no_grad():
        x = metric.evaluator.embed(fine.reshape(-1, d)).reshape(b, fine.shape[1], -1)
    steps = torch.linalg.vector_norm(x.diff(dim=1), dim=-1)
    cum = torch.cat([steps.new_zeros(b, 1), steps.cumsum(1)], dim=1)[:, ::refine]
    length = extrapolated_length(x, refine)
    s_eval = np.linspace(0.0, 1.0, n_eval)
    out = np.full((3, b, n_eval, d), np.nan)
    for i in range(b):
        s = (cum[i] / length[i]).double().cpu().numpy() if float(length[i]) > 0 else None
        if s is None:
            continue
        keep = np.concatenate([[True], np.diff(s) > 1e-12])  # drop nodes that did not move
        s, z = s[keep], nodes[i].double().cpu().numpy()[keep]
        if len(s) < 2:
            continue
        s[-1] = 1.0
        spline = CubicSpline(s, z, axis=0, bc_type="not-a-knot" if len(s) > 3 else "natural")
        out[:, i] = [spline(s_eval, k) for k in range(3)]
    c, dc, ddc = (torch.as_tensor(a, dtype=nodes.dtype, device=nodes.device) for a in out)
    return length, c, dc, ddc


def _residual(metric: PullbackMetric, c: Tensor, dc: Tensor, ddc: Tensor) -> Tensor:
    """``max_s |c'' + Gamma(c', c')|_G / |c'|_G`` over interior points, shape (B,)."""
    b, n, d = c.shape
    zi, vi, ai = (x[:, 1:-1].reshape(-1, d) for x in (c, dc, ddc))
    ok = torch.isfinite(zi).all(-1) & torch.isfinite(vi).all(-1)
    res = torch.full((zi.shape[0],), float("nan"), dtype=c.dtype, device=c.device)
    if bool(ok.any()):
        z, v, a = zi[ok], vi[ok], ai[ok]
        with torch.no_grad():
            acc = metric.evaluator.acceleration(z, v)  # -Gamma(v, v)
            jac = metric.evaluator.jacobian(z)
        r = torch.linalg.vector_norm(jac @ (a - acc)[..., None], dim=(-2, -1))
        speed = torch.linalg.vector_norm(jac @ v[..., None], dim=(-2, -1))
        res[ok] = r / speed
    res = res.reshape(b, n - 2)
    # A point where the ODE's right-hand side is not finite is an infinite residual.
    res = torch.where(torch.isnan(res) & torch.isfinite(c[:, 1:-1]).all(-1), torch.inf, res)
    return res.amax(1) if n > 2 else res.new_zeros(b)


def diagnose(metric, name, nodes, converged, seconds, p, q, refine, n_eval):
    """Everything but the round trip, which :func:`compare_geodesics` shoots for all
    methods at once; returns the curves, the row and the initial velocities (B, d)."""
    b, d = p.shape
    nan = torch.full((b,), float("nan"), dtype=p.dtype, device=p.device)
    length, energy, residual, end_err = (nan.clone() for _ in range(4))
    curves = torch.full((b, n_eval, d), float("nan"), dtype=p.dtype, device=p.device)
    v0 = torch.full((b, d), float("nan"), dtype=p.dtype, device=p.device)
    nodes = nodes.to(p.dtype)
    finite = torch.isfinite(nodes).all(-1).all(-1)
    if bool(finite.any()):
        idx = finite.nonzero().squeeze(1)
        n = nodes[idx]
        length_f, c, dc, ddc = _constant_speed(metric, n, refine, n_eval)
        length[idx] = length_f
        with torch.no_grad():
            x = metric.evaluator.embed(n.reshape(-1, d)).reshape(len(idx), n.shape[1], -1)
        energy[idx] = (n.shape[1] - 1) * x.diff(dim=1).square().sum((1, 2))
        ends = torch.maximum(
            torch.linalg.vector_norm(n[:, 0] - p[idx], dim=-1),
            torch.linalg.vector_norm(n[:, -1] - q[idx], dim=-1),
        )
        end_err[idx] = ends / _scale(p[idx], q[idx])
        residual[idx] = _residual(metric, c, dc, ddc)
        curves[idx] = c
        v0[idx] = dc[:, 0]
    converged = converged.to(torch.bool) & finite
    row = MethodRow(name, length, energy, residual, end_err, nan.clone(), converged, seconds)
    return curves, row, v0


def _scale(p: Tensor, q: Tensor) -> Tensor:
    """``|p - q|``, the unit of the end-point and round-trip errors."""
    return torch.linalg.vector_norm(q - p, dim=-1).clamp_min(torch.finfo(p.dtype).eps)


def round_trips(metric, rows, velocities, p, q, exp_options) -> None:
    """``|exp_p(c'(0)) - q| / |p - q|`` for every method's curves, in one adaptive run."""
    names = [n for n in velocities if rows[n].error is None]
    if not names:
        return
    v = torch.cat([velocities[n] for n in names])
    start, goal = p.repeat(len(names), 1), q.repeat(len(names), 1)
    ok = torch.isfinite(v).all(-1)
    trip = torch.full((len(v),), float("nan"), dtype=p.dtype, device=p.device)
    if bool(ok.any()):
        landed = exp_map(metric, start[ok], v[ok], method="dopri5", warn=False, **exp_options)
        trip[ok] = torch.linalg.vector_norm(landed - goal[ok], dim=-1) / _scale(start[ok], goal[ok])
    for name, part in zip(names, trip.split(len(p)), strict=True):
        rows[name].roundtrip_error = part
