"""``build_report``: every figure of the source write-up and the numbers behind its claims, from a
checkpoint, written as a folder of PNGs, ``report.md`` and ``numbers.json``."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ... import SingularMetricWarning
from ..._core.progress import progress_bar
from .claims import claims_section
from .context import Checkpoint, ReportContext, ReportOptions
from .document import Section, render_markdown, staged_folder, write_json
from .sections_distances import similarity_section
from .sections_maps import curvature_section, density_section, latent_space_section, volume_section
from .sections_paths import geodesic_pairs_section, paths_section, uncertainty_section

__all__ = ["ReportOptions", "Report", "build_report"]


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
        The files of the figures in ``out`` (every format) and of the numbers they
        draw (``.npz``).
    seconds : float
    """

    out: Path
    numbers: dict
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_report(
    checkpoint: str | os.PathLike = "bernoulli",
    out: str | os.PathLike = "outputs/report",
    *,
    uncertainty_checkpoint: str | os.PathLike | None = None,
    options: ReportOptions | None = None,
    progress: bool = True,
    title: str | None = None,
) -> Report:
    """Every figure of *Riemannian Geometry in Variational Autoencoders* and the numbers
    behind its claims, for one checkpoint.

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

    options = options or ReportOptions()
    options.check()
    t0 = time.perf_counter()
    ck = Checkpoint(checkpoint, options)
    extra = None
    if ck.kind == "gaussian":
        extra = ck
    elif uncertainty_checkpoint is not None:
        extra = Checkpoint(uncertainty_checkpoint, options)
        if extra.kind != "gaussian":
            raise ValueError(
                f"uncertainty_checkpoint must be a Gaussian model; {extra.path} is {extra.kind}"
            )
    steps = 7 + (extra is not None)
    with (
        staged_folder(out) as folder,
        progress_bar(total=steps, show=progress, desc="report", unit="step") as bar,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
        b = ReportContext(ck, options, folder, bar)
        # In this order: the path sections reuse the geodesics of the pair sections.
        sections = [latent_space_section(b), volume_section(b), geodesic_pairs_section(b)]
        sections += [paths_section(b), similarity_section(b)]
        if extra is not None:
            sections.append(uncertainty_section(b, extra))
        sections += [density_section(b), curvature_section(b)]
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
            "options": {
                k: str(v) if k == "data_dir" and v is not None else v
                for k, v in vars(options).items()
            },
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
            title
            or "Riemannian geometry of a VAE's latent space: the figures and claims of "
            "*Riemannian Geometry in Variational Autoencoders*",
            intro,
            sections,
        )
        (folder / "report.md").write_text(doc)
        write_json(folder / "numbers.json", numbers)
    return Report(Path(out), numbers, b.figures, seconds)
