"""``build_report``: every figure of the seed and the numbers behind its claims, from a
checkpoint, written as a folder of PNGs, ``report.md`` and ``numbers.json``."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import SingularMetricWarning
from ..datasets import load_test_images, to_unit_float
from .claims import claims_section
from .document import Section, render_markdown, staged_folder, write_json
from .sections import _Builder

__all__ = ["ReportOptions", "Report", "build_report"]


@dataclass
class ReportOptions:
    """What the report computes and how.

    Attributes
    ----------
    n_pairs : int, default 128
        Random test pairs for the path statistics (geodesics vs straight lines).
    n_similarity_pairs : int, default 1000
        Random test pairs for the rank correlation with pixel distances.
    per_class : int, default 40
        Codes per class for the class distance matrices and kNN (all their pairs, by
        shortest paths on a latent grid graph).
    knn : int, default 5
        Neighbours in the kNN classifier.
    solver : str, default "lm"
        ``method`` of :func:`~pullback_geom.geodesics.connecting_geodesic`.
    n_points : int, default 32
        Nodes per geodesic.
    graph_start : bool, default True
        Start the solver from shortest paths on a latent grid graph rather than straight
        lines (``connecting_geodesic(init_curve="graph")``): on trained ReLU decoders
        about one pair in eight otherwise ends in a longer local minimum.
    ode : bool, default True
        Also solve figure 4's pairs by ODE shooting (:func:`~pullback_geom.geodesics.log_map`).
    resolution : int, default 160
        Grid points per side of the heatmaps.
    seed : int, default 0
        Seed of the random pairs.
    data_dir : path, optional
        Folder with the dataset's test images (for pixel distances and end-point
        images); for MNIST the bundled first 2,000 test images are used without it.
    dpi : int, default 110
        Resolution of the PNGs.
    """

    n_pairs: int = 128
    n_similarity_pairs: int = 1000
    per_class: int = 40
    knn: int = 5
    solver: str = "lm"
    n_points: int = 32
    ode: bool = True
    graph_start: bool = True
    resolution: int = 160
    seed: int = 0
    data_dir: str | os.PathLike | None = None
    dpi: int = 110

    def check(self) -> None:
        for name in ("n_pairs", "n_similarity_pairs", "per_class", "knn", "n_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2; got {value!r}")
        if self.knn >= self.per_class * 2:
            raise ValueError(f"knn must be smaller than 2 * per_class; got {self.knn}")
        from ..geodesics.energy import METHODS

        if self.solver not in METHODS:
            raise ValueError(f"solver must be one of {sorted(METHODS)}; got {self.solver!r}")


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    out : Path
        The report folder.
    numbers : dict
        Everything in ``numbers.json``.
    figures : list of str
        PNG file names in ``out``.
    seconds : float
    """

    out: Path
    numbers: dict
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Checkpoint:
    """A model with its codes, images and metric, and where they came from."""

    def __init__(self, checkpoint, options: ReportOptions) -> None:
        from ..vae import BUNDLED, default_checkpoint, load, load_latents

        self.name, self.label = f"`{checkpoint}`", str(checkpoint)
        if str(checkpoint) in BUNDLED and not Path(str(checkpoint)).exists():
            self.name = f"the bundled {checkpoint} model (`pullback_geom/defaults/{checkpoint}`)"
            self.label = f"pullback_geom/defaults/{checkpoint}"
            checkpoint = default_checkpoint(str(checkpoint))
        self.path = Path(checkpoint)
        self.model = load(self.path)
        if self.model.latent_dim != 2:
            raise ValueError(
                f"the report draws 2-D latent spaces; {self.path} has latent_dim = "
                f"{self.model.latent_dim}"
            )
        latents = load_latents(self.path)
        self.codes, self.labels = latents.codes.float(), latents.labels
        missing = sorted(set(range(10)) - set(self.labels.tolist()))
        if missing:
            # The seed's figures join and compare the ten digit classes.
            raise ValueError(
                f"the report compares the ten digit classes, but the test codes stored in "
                f"{self.path} have no images of class(es) {missing} (a digit-orbit model, or "
                "one trained with a small --limit); train on mnist or fashion-mnist, or use "
                "pullback-geom identifiability for digit-orbit models"
            )
        from ..checkpoint import read_config

        self.config = read_config(self.path)
        dataset = (self.config.get("dataset") or {}).get("name", "mnist")
        self.images, self.image_source = None, "none"
        try:
            imgs, self.image_source = load_test_images(dataset, options.data_dir)
            n = min(len(imgs.images), len(self.codes))
            if torch.equal(imgs.labels[:n], self.labels[:n]):
                self.images = to_unit_float(imgs.images[:n])
            else:
                self.image_source = "none (the images' labels do not match the codes')"
        except (FileNotFoundError, ValueError) as err:  # not found, unknown or corrupt
            self.image_source = f"none ({err})"
        self.metric = self.model.pullback_metric()
        self.kind = self.model.kind

    @property
    def n_images(self) -> int:
        return 0 if self.images is None else len(self.images)


def build_report(
    checkpoint: str | os.PathLike = "bernoulli",
    out: str | os.PathLike = "outputs/report",
    *,
    uncertainty_checkpoint: str | os.PathLike | None = None,
    options: ReportOptions | None = None,
    progress: bool = True,
    title: str | None = None,
) -> Report:
    """Every figure of the seed and the numbers behind its claims, for one checkpoint.

    Parameters
    ----------
    checkpoint : path or {"bernoulli", "gaussian"}
        A folder written by ``pullback-geom train`` (or its ``model.pt``), or the name of
        a bundled model. The model must have a 2-D latent space.
    out : path
        The report folder: ``report.md``, ``numbers.json`` and the PNGs. Built under a
        temporary name and moved into place when complete; an earlier report there is
        replaced.
    uncertainty_checkpoint : path, optional
        A Gaussian model for the uncertainty section (figure 7) when ``checkpoint`` is
        not one itself (the demo pairs the bundled Bernoulli and Gaussian models).
    options : ReportOptions, optional
    progress : bool, default True
        A tqdm bar over the report's steps, on stderr.
    title : str, optional

    Returns
    -------
    Report

    Raises
    ------
    FileNotFoundError
        No checkpoint at the path given.
    ValueError
        A corrupt checkpoint, a latent space that is not 2-D, bad options.
    FileExistsError
        ``out`` exists and is not a report folder.
    """
    from tqdm.auto import tqdm

    options = options or ReportOptions()
    options.check()
    t0 = time.perf_counter()
    ck = _Checkpoint(checkpoint, options)
    extra = None
    if ck.kind == "gaussian":
        extra = ck
    elif uncertainty_checkpoint is not None:
        extra = _Checkpoint(uncertainty_checkpoint, options)
        if extra.kind != "gaussian":
            raise ValueError(
                f"uncertainty_checkpoint must be a Gaussian model; {extra.path} is {extra.kind}"
            )
    steps = 7 + (extra is not None)
    with (
        staged_folder(out) as folder,
        tqdm(total=steps, desc="report", unit="step", disable=not progress, file=sys.stderr) as bar,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
        b = _Builder(ck, options, folder, bar)
        sections = [b.latent_space(), b.volume(), b.geodesic_pairs(), b.paths()]
        sections.append(b.similarity())
        if extra is not None:
            sections.append(b.uncertainty(extra))
        sections += [b.density(), b.curvature()]
        seconds = time.perf_counter() - t0
        notes = Counter(
            f"{w.category.__name__}: {w.message}"
            for w in caught
            if not issubclass(w.category, SingularMetricWarning)
        )
        singular = sum(issubclass(w.category, SingularMetricWarning) for w in caught)
        numbers = {
            "checkpoint": ck.label,
            "model": ck.kind,
            "images": ck.image_source,
            "options": {k: str(v) if k == "data_dir" else v for k, v in vars(options).items()},
            "seconds": seconds,
            **b.numbers,
        }
        intro = [
            f"Checkpoint: {ck.name} ({ck.kind} VAE, 2-D latent space); test images: "
            f"{ck.image_source}. Made by pullback_geom in {seconds:.0f} s "
            f"(solver: {options.solver}, {options.n_points} nodes per curve, started from "
            f"{'grid-graph shortest paths' if options.graph_start else 'straight lines'}).",
            "Every number below is recomputed by `pullback-geom report`; `numbers.json` "
            "holds them all.",
        ]
        if singular or notes:
            lines = [f"- {k} (×{v})" for k, v in notes.items()]
            if singular:
                lines.append(
                    f"- the metric was singular at some points on {singular} evaluations "
                    "(dead ReLU regions); a small ridge was added there"
                )
            sections.append(Section("Solver and metric warnings", ["\n".join(lines)]))
        sections.insert(0, claims_section(b.numbers))
        doc = render_markdown(
            title or "Riemannian geometry of a VAE's latent space: the seed's figures and claims",
            intro,
            sections,
        )
        (folder / "report.md").write_text(doc)
        write_json(folder / "numbers.json", numbers)
    return Report(Path(out), numbers, b.figures, seconds)
