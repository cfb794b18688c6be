"""pullback_geom.experiments.neighbours: the one kNN classifier, against hand-counted votes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pullback_geom.experiments.neighbours import knn_accuracy, knn_predict


def brute_force_loo(d: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Leave-one-out votes counted by hand: the k others nearest, most votes, then the
    smallest label (the documented tie rule)."""
    out = []
    for i in range(len(d)):
        others = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
        votes = {}
        for j in others:
            votes[labels[j]] = votes.get(labels[j], 0) + 1
        best = max(votes.values())
        out.append(min(c for c, v in votes.items() if v == best))
    return np.array(out)


def test_a_tied_vote_goes_to_the_smallest_label_not_the_nearest_voter():
    # Query at 0; training points at 1 (label 1) and 2 (label 0): one vote each.
    assert knn_predict(torch.tensor([[1.0, 2.0]]), torch.tensor([1, 0]), 2).tolist() == [0]
    # Line 0, 1, 2.5 with labels 2, 0, 1, leave-one-out with k = 2: every vote is a tie.
    # x=0 sees labels {0, 1} -> 0; x=1 sees {2 (nearer), 1} -> 1; x=2.5 sees {0, 2} -> 0.
    x = torch.tensor([[0.0], [1.0], [2.5]], dtype=torch.float64)
    d = torch.cdist(x, x)
    assert knn_predict(d, torch.tensor([2, 0, 1]), 2, leave_one_out=True).tolist() == [0, 1, 0]


def test_leave_one_out_matches_hand_counted_votes():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 2))
    labels = rng.integers(0, 4, 60)
    d = np.linalg.norm(z[:, None] - z[None], axis=-1)
    for k in (1, 2, 3, 4, 7):
        expected = brute_force_loo(d, labels, k)
        pred = knn_predict(torch.from_numpy(d), torch.from_numpy(labels), k, leave_one_out=True)
        assert pred.tolist() == expected.tolist(), k
        assert knn_accuracy(torch.from_numpy(d), torch.from_numpy(labels), k) == pytest.approx(
            float((expected == labels).mean())
        )


def test_the_diagonal_is_ignored_and_inf_is_farthest():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [5.2]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])
    d = torch.cdist(x, x)
    d.fill_diagonal_(1e3)  # junk on the diagonal: a point is never its own neighbour
    d[0, 2] = d[2, 0] = float("inf")  # e.g. two components of a graph route
    assert knn_predict(d, labels, 1, leave_one_out=True).tolist() == [0, 0, 1, 1, 1]
    assert knn_accuracy(d, labels, k=1) == 1.0
    assert d[0, 0] == 1e3 and torch.isinf(d[0, 2])  # the caller's matrix is not touched
    # a query whose only finite distance is to class 1
    q = torch.tensor([[float("inf"), float("inf"), 3.0, float("inf"), float("inf")]])
    assert knn_predict(q, labels, 1).tolist() == [1]


def test_bad_input_is_named():
    d = torch.rand(4, 4)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(d, y, k=4)
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_predict(d, y, 5)
    with pytest.raises(ValueError, match="train_labels must have shape"):
        knn_predict(d, y[:3], 2)
    with pytest.raises(ValueError, match=r"distances must have shape \(n, n\)"):
        knn_predict(d[:3], y, 2, leave_one_out=True)
    with pytest.raises(ValueError, match="non-negative"):
        knn_predict(-d, y, 2)
