"""geomstats' ``RiemannianKMeans`` on a latent space: Elkan-style assignments by batched
``dist`` and all ``k`` centres moved by one batched joint Fréchet solve
(:class:`~pullback_geom.geomstats.learning.JointFrechetMean`), geomstats' loop otherwise
unchanged (:func:`kmeans_fit`, installed by :mod:`~pullback_geom.geomstats._compat`).
"""

from __future__ import annotations

import logging
from random import randint

import torch
from torch import Tensor

from ._batch import as_tensor

__all__ = ["KMEANS_TOL", "kmeans_fit"]


#: The joint solves' ``tol`` in k-means while its clusters still change (the last
#: assignment moved a point): their means are moved again at the next step. Once no point
#: moves, the optimizer's own ``tol`` (its default: the solver's) gives the final centres.
KMEANS_TOL = 1e-4


def _dist(metric, a: Tensor, b: Tensor) -> Tensor:
    """k-means' ``dist``: the metric's, without the re-solves of bent pairs and of pairs
    whose two starts disagree (``bend_tol``, ``basin_tol``).

    A point's distance to its own centre is the joint solve's curve length, measured on
    its nodes without such re-solves: the other centres are measured alike, so that the
    re-solves, which only ever shorten a curve, do not favour them.
    """
    names = ("bend_tol", "basin_tol")
    overrides = {name: None for name in names if name in metric.dist_options}
    return metric.dist(a, b, **overrides)


def _first_assignment(metric, centers: Tensor, X: Tensor) -> Tensor:
    """Distances (n, k) of the points to the centres, or lower bounds where a centre
    cannot be the nearest (Elkan's first pass).

    The centres are visited in turn, each in one batched ``dist`` over the points it may
    win: a centre ``j`` with ``d(c_a, c_j) >= 2 d(x, c_a)`` for the point's nearest centre
    so far ``a`` is at least as far as ``c_a`` (triangle inequality), and is given that
    lower bound, ``d(c_a, c_j) - d(x, c_a)``, instead. The pairs skipped are the long
    ones, which cost the most (they bend, and ``dist`` solves them again on more nodes).
    """
    n, k = X.shape[0], centers.shape[0]
    between = X.new_zeros(k, k)
    i, j = torch.triu_indices(k, k, 1, device=X.device)
    if i.numel():
        between[i, j] = _dist(metric, centers[i], centers[j]).to(X.dtype)
        between = between + between.mT
    out = X.new_zeros(n, k)
    out[:, 0] = _dist(metric, centers[:1], X).to(X.dtype)
    nearest = torch.zeros(n, dtype=torch.long, device=X.device)
    best = out[:, 0].clone()
    for c in range(1, k):
        apart = between[nearest, c]
        need = apart < 2 * best
        out[:, c] = apart - best
        if bool(need.any()):
            out[need, c] = _dist(metric, centers[c : c + 1], X[need]).to(X.dtype)
        closer = need & (out[:, c] < best)
        nearest[closer], best[closer] = c, out[closer, c]
    return out


def _assign(metric, centers: Tensor, X: Tensor, bound: Tensor, own: Tensor, labels: Tensor):
    """Distances (n, k) of the points to the centres where they can decide the assignment,
    and lower bounds elsewhere (Elkan's k-means with geodesic distances).

    ``bound`` (n, k) are lower bounds of the distances to the (moved) centres and ``own``
    (n,) each point's distance to its own centre ``labels``. A centre whose bound is not
    below ``own`` cannot be nearer than the point's own: only the other pairs are solved,
    in one batched ``dist``.
    """
    n, k = bound.shape
    out = bound.clone()
    rows = torch.arange(n, device=X.device)
    out[rows, labels] = own
    need = bound < own[:, None]
    need[rows, labels] = False
    i, j = need.nonzero(as_tuple=True)
    if i.numel():
        out[i, j] = _dist(metric, centers[j], X[i]).to(out.dtype)
    return out


def kmeans_fit(kmeans, X):
    """``RiemannianKMeans.fit`` with batched steps: what ``fit`` runs on a latent space.

    geomstats' loop, step for step (its initial centres, its empty-cluster rule, its
    stopping test on the centres' mean move, its attributes ``cluster_centers_``,
    ``labels_``, ``inertia_`` and ``init_cluster_centers_``), with each update the Fréchet
    means of all clusters in one joint solve (weights: the memberships; after the first
    update each cluster starts from its previous centre and curves; to
    :data:`KMEANS_TOL` while points still change clusters), where geomstats runs ``k``
    gradient descents, and each assignment Elkan's: only the pairs the triangle
    inequality leaves open are solved, in one batched ``dist`` (:func:`_dist`). A
    point's distance to its own new centre is the joint solve's length; its distance to
    another centre ``j`` is at least its last one minus how far ``j`` moved (the first
    assignment bounds it by the distances between the centres,
    :func:`_first_assignment`). Where a pair is not solved, the centre is not nearer, so
    ``labels_`` are geomstats'; ``inertia_`` sums the squared lengths the joint solve and
    ``dist`` measured.

    On the bundled ReLU model, 150 codes of digits 0, 1, 7, two threads: 4.0–12.0 s from
    five random starts (geomstats' loop: 82.5 s from one of them, ~500 s from another;
    ``benchmarks/bench_learned_manifold.py``).

    Parameters
    ----------
    kmeans : geomstats RiemannianKMeans
    X : array-like, shape (n, d)

    Returns
    -------
    kmeans
    """
    metric, k = kmeans.space.metric, kmeans.n_clusters
    X = as_tensor(X)
    n = X.shape[0]
    centers = as_tensor(kmeans._pick_init_cluster_centers(X)).to(X.dtype).clone()
    kmeans.init_cluster_centers_ = centers.clone()
    dists = _first_assignment(metric, centers, X)
    kmeans.labels_ = dists.argmin(1)
    optimizer = kmeans.mean_estimator.optimizer
    rows = torch.arange(n, device=X.device)
    curves = None  # each cluster's curves from its centre to its members (NaN elsewhere)
    changed = True
    for index in range(kmeans.max_iter):
        old = centers.clone()
        member = kmeans.labels_[None] == torch.arange(k, device=X.device)[:, None]
        full = member.any(1)  # the own cluster of every point is full
        weights = member[full].to(X.dtype)
        # After the first update each cluster starts from its centre and its curves to
        # the points it keeps: their nodes, not the mean, take most of a cold solve's
        # iterations (20 of 22 on a k-means cluster of the bundled ReLU model).
        result = optimizer.solve(
            kmeans.space,
            X.expand(int(full.sum()), n, -1),
            weights,
            None if curves is None else old[full],
            None if curves is None else curves[full],
            KMEANS_TOL if changed else None,
            extrapolate=False,  # the next update starts from these N-node curves
            polish=False,
        )
        if curves is None:
            curves = result.curves.new_full((k, *result.curves.shape[1:]), float("nan"))
        curves[full] = result.curves
        centers[full] = result.mean.to(X.dtype)
        lengths = torch.nan_to_num(result.lengths.to(X.dtype), nan=0.0)
        own = (lengths * weights).sum(0)
        for i in (~full).nonzero().flatten().tolist():  # geomstats' rule for empty clusters
            centers[i] = X[randint(0, n - 1)]
            curves[i] = float("nan")
        moved = _dist(metric, old, centers).to(X.dtype)
        dists = _assign(metric, centers, X, dists - moved, own, kmeans.labels_)
        labels = dists.argmin(1)
        changed = bool((labels != kmeans.labels_).any())
        kmeans.labels_ = labels
        kmeans.inertia_ = dists[rows, kmeans.labels_].square().sum()
        if kmeans.verbose > 0:
            logging.info(
                f"Convergence criterion at the end of iteration {index} is {moved.mean()}."
            )
        if moved.mean() < kmeans.tol:
            break
    else:
        logging.warning(
            f"K-means maximum number of iterations {kmeans.max_iter} reached. "
            "The mean may be inaccurate."
        )
    kmeans.cluster_centers_ = centers
    return kmeans
