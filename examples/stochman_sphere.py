"""stochman on a decoder's latent space: the unit sphere and a Gaussian bump.

Runs stochman's own algorithms (``connecting_geodesic``, ``logmap``, ``shooting_geodesic``,
``dist2``, ``DiscretizedManifold``) on :class:`pullback_geom.stochman.DecoderManifold` and
checks them against the sphere's closed forms (great circles), then shows how geodesics
bend around a bump. Prints the numbers and saves ``stochman_sphere.png``.

Usage::

    python examples/stochman_sphere.py [OUTPUT_DIR]   # default ./outputs
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import torch  # noqa: E402
from stochman.discretized_manifold import DiscretizedManifold  # noqa: E402

from pullback_geom import PullbackMetric  # noqa: E402
from pullback_geom.stochman import DecoderManifold  # noqa: E402
from pullback_geom.surfaces import (  # noqa: E402
    GaussianBump,
    InverseStereographic,
    great_circle_arc,
    sphere_distance,
)

F64 = torch.float64


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def graph_path(dm: DiscretizedManifold, a: torch.Tensor, b: torch.Tensor):
    """The shortest grid path of a fitted DiscretizedManifold: points ``(K, 2)``, length."""
    path = nx.shortest_path(dm.G, dm._grid_point(a), dm._grid_point(b), weight="weight")
    length = nx.path_weight(dm.G, path, weight="weight")
    mesh = torch.meshgrid(*dm.grid, indexing="ij")
    return torch.stack([m.flatten()[path] for m in mesh], dim=-1), length


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    t400 = torch.linspace(0, 1, 400, dtype=F64)

    # ------------------------------------------------------------ the sphere
    sphere = DecoderManifold(PullbackMetric(InverseStereographic(), latent_dim=2))
    p0 = torch.tensor([[0.3, -0.2]], dtype=F64)
    p1 = torch.tensor([[-0.9, 1.1]], dtype=F64)
    truth = float(sphere_distance(p0, p1))
    print("Unit sphere through inverse stereographic projection, G = 4 / (1 + |z|^2)^2 I")
    print(
        f"  G(p0)[0, 0] = {float(sphere.metric(p0)[0, 0, 0]):.6f}  (closed form "
        f"{4 / (1 + float(p0.square().sum())) ** 2:.6f})"
    )

    (curve, _), secs = timed(lambda: sphere.connecting_geodesic(p0, p1))
    with torch.no_grad():
        spline = curve(t400)
        length = float(sphere.curve_length(spline))
    print(
        f"  connecting_geodesic: length {length:.6f} vs great circle {truth:.6f} "
        f"(rel. error {abs(length - truth) / truth:.1e}, {secs:.2f} s)"
    )

    d2, secs = timed(lambda: sphere.dist2(p0, p1))
    print(
        f"  dist2: {float(d2):.6f} vs {truth**2:.6f} (rel. error "
        f"{abs(float(d2) - truth**2) / truth**2:.1e}, {secs:.2f} s)"
    )

    log = sphere.logmap(p0, p1)  # velocity of the connecting spline at p0
    (shot, _), secs = timed(lambda: sphere.shooting_geodesic(p0[0], log[0]))
    shot = shot[:, :, 0]
    miss = float(sphere_distance(shot[-1:], p1))
    print(
        f"  shooting_geodesic(p0, logmap(p0, p1)) lands {miss:.1e} rad from p1 "
        f"(|log|_G = {float(sphere.inner(p0, log, log).sqrt()):.6f}; {secs:.2f} s)"
    )

    grid = [torch.linspace(-1.2, 1.2, 15), torch.linspace(-1.2, 1.2, 15)]
    dm = DiscretizedManifold()
    _, secs = timed(lambda: dm.fit(sphere, grid, batch_size=1024))
    a, b = torch.tensor([-0.6, -0.4]), torch.tensor([0.6, 0.6])
    path, graph_len = graph_path(dm, a, b)
    ends = torch.stack([a, b]).double()
    graph_truth = float(sphere_distance(path[:1].double(), path[-1:].double()))
    print(
        f"  DiscretizedManifold.fit on a 15 x 15 grid: {secs:.2f} s; graph distance "
        f"{graph_len:.4f} vs great circle {graph_truth:.4f} "
        f"({100 * (graph_len - graph_truth) / graph_truth:+.1f} %)"
    )

    # ------------------------------------------------------------ the bump
    bump = DecoderManifold(PullbackMetric(GaussianBump(height=2.0, width=0.6), latent_dim=2))
    q0 = torch.tensor([[-1.6, 0.15]], dtype=F64)
    q1 = torch.tensor([[1.6, -0.15]], dtype=F64)
    line = q0 + t400[:, None] * (q1 - q0)
    (bcurve, _), secs = timed(lambda: bump.connecting_geodesic(q0, q1))
    with torch.no_grad():
        bspline = bcurve(t400)
        bump_len = float(bump.curve_length(bspline))
        line_len = float(bump.curve_length(line))
    print("Gaussian bump z -> (z, 2 exp(-|z|^2 / 0.72))")
    print(f"  straight latent line over the bump: length {line_len:.4f}")
    print(
        f"  connecting_geodesic around it:      length {bump_len:.4f} "
        f"({100 * (bump_len - line_len) / line_len:+.1f} %, {secs:.2f} s)"
    )
    bgrid = [torch.linspace(-2, 2, 25), torch.linspace(-2, 2, 25)]
    bdm = DiscretizedManifold()
    bdm.fit(bump, bgrid, batch_size=4096)
    bpath, bgraph_len = graph_path(bdm, q0[0].float(), q1[0].float())
    print(f"  DiscretizedManifold graph path (25 x 25 grid): length {bgraph_len:.4f}")

    # ------------------------------------------------------------ the figure
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    ax = axes[0]
    xs = torch.linspace(-1.6, 1.6, 161, dtype=F64)
    gx, gy = torch.meshgrid(xs, xs, indexing="ij")
    logvol = sphere.log_volume(torch.stack([gx, gy], -1).reshape(-1, 2)).reshape(gx.shape)
    im = ax.contourf(gx, gy, logvol, levels=30, cmap="viridis")
    fig.colorbar(im, ax=ax, label="log volume element  log sqrt(det G)")
    arc = great_circle_arc(p0[0], p1[0])
    ax.plot(arc[:, 0], arc[:, 1], "w-", lw=5, alpha=0.6, label="great circle (closed form)")
    ax.plot(spline[:, 0], spline[:, 1], "r--", lw=2, label="connecting_geodesic (spline)")
    ax.plot(shot[:, 0], shot[:, 1], "k:", lw=2, label="shooting_geodesic from logmap")
    arc_ab = great_circle_arc(path[0].double(), path[-1].double())
    ax.plot(arc_ab[:, 0], arc_ab[:, 1], "w-", lw=5, alpha=0.6)
    ax.plot(
        path[:, 0],
        path[:, 1],
        "o-",
        color="orange",
        ms=3,
        lw=1,
        label=f"DiscretizedManifold graph path ({100 * (graph_len / graph_truth - 1):+.1f} %)",
    )
    for pt, name in ((p0[0], "p0"), (p1[0], "p1"), (ends[0], "a"), (ends[1], "b")):
        ax.plot(*pt, "wo", ms=6, mec="k")
        ax.annotate(name, pt.tolist(), xytext=(5, 5), textcoords="offset points", color="w")
    ax.set_title(
        f"Unit sphere (stereographic chart)\ngeodesic length {length:.4f}, exact {truth:.4f}"
    )
    ax.set_xlabel("latent $z_1$")
    ax.set_ylabel("latent $z_2$")
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8)

    ax = axes[1]
    xs = torch.linspace(-2, 2, 161, dtype=F64)
    gx, gy = torch.meshgrid(xs, xs, indexing="ij")
    height = GaussianBump(2.0, 0.6)(torch.stack([gx, gy], -1).reshape(-1, 2))[:, 2]
    im = ax.contourf(gx, gy, height.reshape(gx.shape), levels=30, cmap="magma")
    fig.colorbar(im, ax=ax, label="bump height  f_3(z)")
    ax.plot(line[:, 0], line[:, 1], "w--", lw=2, label=f"straight line, length {line_len:.3f}")
    ax.plot(
        bspline[:, 0],
        bspline[:, 1],
        "c-",
        lw=2.5,
        label=f"connecting_geodesic, length {bump_len:.3f}",
    )
    ax.plot(
        bpath[:, 0],
        bpath[:, 1],
        "o-",
        color="lime",
        ms=2.5,
        lw=1,
        label=f"graph path, length {bgraph_len:.3f}",
    )
    ax.set_title("Gaussian bump (height 2, width 0.6)\ngeodesics go around it, not over it")
    ax.set_xlabel("latent $z_1$")
    ax.set_ylabel("latent $z_2$")
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8)

    fig.suptitle("stochman's algorithms on pullback_geom.stochman.DecoderManifold")
    fig.tight_layout()
    out = out_dir / "stochman_sphere.png"
    fig.savefig(out, dpi=120)
    print(f"saved {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs"))
