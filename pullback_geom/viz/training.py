"""The training curve of a run: loss per epoch, by stage."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from ._common import new_figure

_STAGES = {1: "VAE objective (negative ELBO)", 2: "std network (Gaussian negative ELBO)"}


def training_curve(history: Sequence[dict]) -> Figure:
    """Training and test loss per epoch, one panel per stage.

    Parameters
    ----------
    history : sequence of dict
        ``config["metrics"]["history"]`` of a checkpoint: per epoch ``"stage"`` (1, or 2
        for the Gaussian model's std network), ``"epoch"``, ``"train_loss"`` and
        optionally ``"test_neg_elbo"``, in nats per image.

    Returns
    -------
    matplotlib.figure.Figure
    """
    stages = sorted({int(h["stage"]) for h in history}) or [1]
    fig = new_figure((4.2 * len(stages), 3.4))
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, stage in zip(axes, stages, strict=True):
        rows = [h for h in history if int(h["stage"]) == stage]
        epochs = [h["epoch"] for h in rows]
        ax.plot(epochs, [h["train_loss"] for h in rows], "o-", ms=3, label="training")
        test = [
            (h["epoch"], h["test_neg_elbo"]) for h in rows if h.get("test_neg_elbo") is not None
        ]
        if test:
            ax.plot(*zip(*test, strict=True), "s--", ms=3, label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.set_title(_STAGES.get(stage, f"stage {stage}"), fontsize=10)
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no epochs", ha="center", va="center", transform=ax.transAxes)
    return fig
