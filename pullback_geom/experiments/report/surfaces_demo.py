"""A check of the geometry on analytic surfaces against closed forms (``demo --surfaces``)."""

from __future__ import annotations

import time
from pathlib import Path

from ..._core.progress import progress_bar
from ...vae.checkpoint import atomic_write_bytes
from .document import figure_bytes

__all__ = ["run_surface_demo"]


def run_surface_demo(out: Path) -> dict[str, float]:
    """Geometry of two analytic surfaces, checked against closed forms; writes a figure.

    Returns the printed numbers: errors against the closed forms and timings.
    """
    from ..._core.extras import require

    matplotlib = require("matplotlib", "viz", "pullback-geom demo --surfaces")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ... import PullbackMetric
    from ...geodesics import connecting_geodesic, exp_map, log_map
    from ...surfaces import GaussianBump, InverseStereographic, sphere_distance

    gen = torch.Generator().manual_seed(0)
    numbers: dict[str, float] = {}
    steps = progress_bar(total=4, desc="demo", unit="step")

    # 1. The unit sphere: every quantity has a closed form.
    sphere = PullbackMetric(InverseStereographic())
    z = 2 * torch.rand(256, 2, generator=gen, dtype=torch.float64) - 1
    numbers["sphere metric max error"] = float(
        (sphere.metric_tensor(z) - InverseStereographic.metric_tensor(z)).abs().max()
    )
    numbers["sphere Christoffel max error"] = float(
        (sphere.christoffel_symbols(z) - InverseStereographic.christoffel_symbols(z)).abs().max()
    )
    steps.update()
    p, q = z[:32], z[32:64]
    t0 = time.perf_counter()
    result = connecting_geodesic(sphere, p, q)
    numbers["sphere geodesics (32 pairs) seconds"] = time.perf_counter() - t0
    exact = sphere_distance(p, q)
    numbers["sphere distance max relative error"] = float(
        ((result.length - exact) / exact).abs().max()
    )
    steps.update()
    v = log_map(sphere, p[:8], q[:8])
    numbers["sphere exp(log) round-trip max error"] = float(
        (exp_map(sphere, p[:8], v) - q[:8]).abs().max()
    )
    steps.update()

    # 2. A Gaussian bump: geodesics bend around it.
    bump = PullbackMetric(GaussianBump())
    # Straight lines past the bump at several heights (height 0, over the top, is a
    # saddle of the energy by symmetry, so it is left out).
    a = torch.tensor([-0.9, -0.5, -0.2, 0.2, 0.5, 0.9], dtype=torch.float64)
    starts = torch.stack([torch.full_like(a, -1.6), a], dim=1)
    ends = torch.stack([torch.full_like(a, 1.6), a], dim=1)
    curves = connecting_geodesic(bump, starts, ends, n_points=48)
    straight = torch.linspace(0, 1, 48, dtype=torch.float64)[None, :, None]
    straight = starts[:, None] + straight * (ends - starts)[:, None]
    numbers["bump: geodesic / straight-line length (mean)"] = float(
        (curves.length / bump.curve_length(straight)).mean()
    )
    grid = torch.linspace(-2, 2, 160, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    vol = bump.volume_element(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(gx.shape)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    mesh = axes[0].pcolormesh(gx, gy, vol, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=axes[0], label=r"volume element $\sqrt{\det G(z)}$")
    for k in range(len(a)):
        label = "geodesic (energy solver)" if k == 0 else None
        axes[0].plot(*curves.points[k].T, color="white", lw=2, label=label)
        axes[0].plot(
            *straight[k].T, color="white", lw=1, ls="--", label="straight line" if k == 0 else None
        )
    axes[0].set(title="Gaussian bump: geodesics bend around it", xlabel="$z_1$", ylabel="$z_2$")
    axes[0].set_aspect("equal")
    axes[0].legend(loc="lower left", fontsize=8, facecolor="0.3", labelcolor="white")
    axes[1].scatter(exact, result.length, s=14, label="energy solver, 32 nodes")
    lim = [0, float(exact.max()) * 1.05]
    axes[1].plot(lim, lim, "k--", lw=1, label="exact (great circle)")
    axes[1].set(
        title="Unit sphere (inverse stereographic chart)",
        xlabel="great-circle distance",
        ylabel="geodesic length from the pullback metric",
    )
    axes[1].legend()
    fig.tight_layout()
    path = out / "surface_demo.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, figure_bytes(fig))
    plt.close(fig)
    steps.update()
    steps.close()
    numbers["figure"] = str(path)
    return numbers
