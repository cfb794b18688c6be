"""geomstats on a decoder's latent space: the unit sphere.

The inverse stereographic decoder maps the latent plane onto the unit sphere, so every
answer has a closed form: geodesics are great circles and distances are angles. This
script hands that latent space to geomstats (:func:`pullback_geom.geomstats.latent_space`),
checks exp/log/dist against the closed forms, compares log solvers (ours and geomstats'),
and runs geomstats' FrechetMean, RiemannianKMeans and KNearestNeighborsClassifier on it.
Prints the numbers and saves ``geomstats_sphere.png``.

Usage::

    python examples/geomstats_sphere.py [OUTPUT_DIR]   # default ./outputs
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pullback_geom import PullbackMetric  # noqa: E402

# Importing the adapter first selects geomstats' PyTorch backend for this process; any
# geomstats import must come after it (or set GEOMSTATS_BACKEND=pytorch yourself).
from pullback_geom.geomstats import PullbackLogSolver, latent_space  # noqa: E402
from pullback_geom.surfaces import (  # noqa: E402
    InverseStereographic,
    great_circle_arc,
    sphere_distance,
)

F64 = torch.float64


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(out_dir: Path) -> None:
    from geomstats.learning.frechet_mean import FrechetMean
    from geomstats.learning.kmeans import RiemannianKMeans
    from geomstats.learning.knn import KNearestNeighborsClassifier
    from geomstats.numerics.geodesic import LogODESolver

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # tiny batches: per-op overhead dominates, threads only contend
    print(f"torch default dtype after importing the adapter: {torch.get_default_dtype()}")

    # ------------------------------------------------------------ the space
    # The discrete solvers, named: on this smooth decoder method="auto" would pick the
    # geodesic ODE (Dormand-Prince exp, shooting log; that log is compared below too).
    discrete = {"method": "discrete"}
    space = latent_space(
        PullbackMetric(InverseStereographic(), latent_dim=2),
        exp_options=discrete,
        log_options=discrete,
    )
    metric = space.metric
    z = torch.tensor([0.3, -0.2], dtype=F64)
    print("Unit sphere via inverse stereographic projection: G = 4 / (1 + |z|^2)^2 I")
    print(
        f"  metric_matrix(z)[0, 0] = {float(metric.metric_matrix(z)[0, 0]):.6f}  "
        f"(closed form {4 / (1 + float(z.square().sum())) ** 2:.6f})"
    )
    gam = metric.christoffels(z[None])
    err = float((gam - InverseStereographic.christoffel_symbols(z[None])).abs().max())
    print(f"  christoffels: max deviation from the closed form {err:.1e}")

    # ------------------------------------------------------------ exp, log, dist
    p = torch.tensor([[0.3, -0.2], [-0.6, 0.9], [1.2, 0.4], [-1.1, -0.5]], dtype=F64)
    q = torch.tensor([[-0.9, 1.1], [0.8, -0.7], [-1.0, 0.6], [0.9, -0.4]], dtype=F64)
    truth = sphere_distance(p, q)
    metric.dist(p[:1], q[:1])  # warm-up (torch scripts its forward-mode rules on first use)
    rows = []
    solvers = {
        'pullback_geom method="discrete"': PullbackLogSolver(space, method="discrete"),
        'pullback_geom method="shooting"': PullbackLogSolver(space, method="shooting"),
        'pullback_geom method="lm"': PullbackLogSolver(space, method="lm"),
        "geomstats LogODESolver": LogODESolver(space),
    }
    logs = {}
    for name, solver in solvers.items():
        metric.log_solver = solver
        # |log_p q|_G(p), geomstats' distance formula, measures each log solver (the
        # adapter's dist is the shortest curve's length, whatever the log solver).
        v, secs = timed(lambda: metric.log(q, p))
        logs[name] = v if name.startswith("geomstats") else None
        rel = ((metric.norm(v, p) - truth).abs() / truth).max()
        rows.append((name, secs, float(rel)))
    metric.log_solver = solvers['pullback_geom method="discrete"']
    dist, secs = timed(lambda: metric.dist(p, q))
    rel = float(((dist - truth).abs() / truth).max())
    print(f"\ndist of {len(p)} pairs vs great-circle angles {truth.numpy().round(3)}:")
    print(f"  {'dist (shortest curve)':34s} {secs:6.2f} s   max relative error {rel:.1e}")
    print("|log_p q|_G(p) of each log solver:")
    for name, secs, rel in rows:
        print(f"  {name:34s} {secs:6.2f} s   max relative error {rel:.1e}")

    v, secs = timed(lambda: metric.log(q, p))
    back = metric.exp(v, p)
    print(
        f"  exp(p, log(p, q)) - q: {float((back - q).abs().max()):.1e}  "
        f"(log {secs:.2f} s for {len(p)} pairs)"
    )

    # ------------------------------------------------------------ learning tools
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.9, 0.6], [-0.4, -0.3]], dtype=F64)
    spread = torch.tensor([0.3, 0.12], dtype=F64).repeat_interleave(10)[:, None]
    x = centers.repeat_interleave(10, 0) + spread * torch.randn(20, 2, generator=g, dtype=F64)
    labels = torch.arange(2).repeat_interleave(10)
    # Clustering only needs distances to ~1e-3: the fast energy log is plenty.
    metric.log_solver = solvers['pullback_geom method="lm"']
    kmeans, secs_km = timed(lambda: RiemannianKMeans(space, n_clusters=2, init="kmeans++").fit(x))
    agree = (torch.as_tensor(kmeans.labels_) == labels).float().mean()
    agree = float(max(agree, 1 - agree))
    print(f"\nRiemannianKMeans: {agree:.0%} of points in their true cluster ({secs_km:.1f} s)")
    knn = KNearestNeighborsClassifier(space, n_neighbors=3).fit(x[::2], labels[::2])
    pred, secs_knn = timed(lambda: knn.predict(x[1::2]))
    acc = float((torch.as_tensor(pred) == labels[1::2]).float().mean())
    print(f"KNearestNeighborsClassifier: {acc:.0%} held-out accuracy ({secs_knn:.1f} s)")

    metric.log_solver = solvers['pullback_geom method="discrete"']
    cloud = x[:10]
    euclid = cloud.mean(0)
    estimator = FrechetMean(space).set(epsilon=1e-8, init_point=euclid)
    fm, secs_fm = timed(lambda: estimator.fit(cloud).estimate_)
    print(
        f"FrechetMean of cluster 0: {fm.numpy().round(4)} ({secs_fm:.1f} s); "
        f"latent average {euclid.numpy().round(4)}"
    )
    # Check: at the Frechet mean the logs to the points average to zero.
    spokes = metric.log(cloud, fm)
    residual = float(metric.norm(spokes.mean(0), fm))
    print(f"  |mean of log_mean(x_i)|_G = {residual:.1e}")

    # ------------------------------------------------------------ figure
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.6), constrained_layout=True)
    grid = torch.linspace(-1.6, 1.6, 200, dtype=F64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    flat = torch.stack([gx.flatten(), gy.flatten()], -1)
    logvol = torch.log(metric.metric_matrix(flat)[:, 0, 0].sqrt()).reshape(gx.shape)
    for ax in (ax0, ax1):
        mesh = ax.pcolormesh(gx, gy, logvol, cmap="Greys", shading="auto", alpha=0.55)
        ax.set_aspect("equal")
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_xlabel("latent $z_1$")
        ax.set_ylabel("latent $z_2$")
    fig.colorbar(mesh, ax=ax1, label=r"log volume element $\log\sqrt{\det G(z)}$")

    t = torch.linspace(0, 1, 60, dtype=F64)
    default_paths = metric.geodesic(p, initial_tangent_vec=v)(t)
    ode_paths = metric.geodesic(p, initial_tangent_vec=logs["geomstats LogODESolver"])(t)
    for i in range(len(p)):
        arc = great_circle_arc(p[i], q[i])
        ax0.plot(
            *arc.T, color="tab:green", lw=6, alpha=0.35, label="great circle" if i == 0 else None
        )
        ax0.plot(
            *default_paths[i].T,
            color="tab:blue",
            lw=1.8,
            label='pullback_geom log, method="discrete"' if i == 0 else None,
        )
        ax0.plot(
            *ode_paths[i].T,
            color="tab:red",
            lw=1.2,
            ls="--",
            label="geomstats LogODESolver" if i == 0 else None,
        )
        ax0.plot(*torch.stack([p[i], q[i]]).T, "k.", ms=8)
    ax0.set_title(
        "Geodesics between 4 pairs, seen in the latent plane\n"
        "blue: shortest (over the far side); red: LogODESolver's long way round",
        fontsize=10,
    )
    ax0.legend(loc="lower left", fontsize=8)

    for path in metric.geodesic(fm[None].expand_as(spokes), initial_tangent_vec=spokes)(t):
        ax1.plot(*path.T, color="tab:green", lw=0.8, alpha=0.7)
    pred_km = torch.as_tensor(kmeans.labels_)
    ax1.scatter(*x.T, c=pred_km, cmap="coolwarm", s=30, edgecolor="k", lw=0.5, label="points")
    ax1.scatter(
        *torch.as_tensor(kmeans.cluster_centers_).T,
        marker="*",
        s=260,
        c="gold",
        edgecolor="k",
        label="k-means centres (Frechet means)",
    )
    ax1.scatter(
        *fm, marker="P", s=120, c="tab:green", edgecolor="k", label="FrechetMean, cluster 0"
    )
    ax1.scatter(*euclid, marker="x", s=80, c="k", label="latent average, cluster 0")
    ax1.set_title(
        "geomstats RiemannianKMeans and FrechetMean\n"
        "thin lines: geodesics from the Frechet mean of cluster 0",
        fontsize=10,
    )
    ax1.legend(loc="lower left", fontsize=8)
    path = out_dir / "geomstats_sphere.png"
    fig.savefig(path, dpi=120)
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs"))
