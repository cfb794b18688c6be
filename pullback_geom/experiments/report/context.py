"""What the report's sections share: the checkpoint they describe, the options, and a
context that saves figures and collects numbers; small formatting helpers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...data.datasets import load_test_images, to_unit_float
from ...metric import PullbackMetric
from . import analysis as A
from .document import save_arrays, save_figure

__all__ = [
    "Checkpoint",
    "ReportContext",
    "ReportOptions",
    "class_pairs",
    "extent",
    "fmt",
    "quartiles",
    "shoot",
]

#: Class pairs joined in the geodesics figure (4) and the interpolation figure (5); the
#: write-up's examples (a 0 and a 1) and the pairs it expects to be close (4–9, 3–8).
GEODESIC_CLASS_PAIRS = ((0, 1), (4, 9), (3, 8), (2, 7), (5, 6))
INTERPOLATION_CLASS_PAIRS = ((0, 1), (1, 7), (6, 9))


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def quartiles(x: Tensor) -> dict[str, float]:
    """The quartiles and the mean of ``x``, shape (n,)."""
    x = x.double()
    q = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64, device=x.device))
    return {"q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]), "mean": float(x.mean())}


def class_pairs(ck: Checkpoint, wanted, limit: int | None) -> tuple[Tensor, list[str]]:
    reps = A.class_representatives(ck.codes, ck.labels, limit)
    pairs = [(a, b) for a, b in wanted if a in reps and b in reps]
    if not pairs:  # not digits 0-9: the first classes, in order
        keys = sorted(reps)
        pairs = list(zip(keys[::2], keys[1::2], strict=False))[: len(wanted)]
    idx = torch.tensor([[reps[a], reps[b]] for a, b in pairs])
    return idx, [f"{a}→{b}" for a, b in pairs]


def shoot(metric: PullbackMetric, p: Tensor, v: Tensor) -> Tensor:
    """ODE paths from ``p`` with velocities ``v``, shape (B, 51, d); NaN where one diverged.

    A shot that runs off to infinity makes the metric non-finite and the integrator
    raise; the pairs are then shot one by one, so that only the diverging ones are lost.
    """
    from ...geodesics import integrate_geodesic

    def rk4(p: Tensor, v: Tensor) -> Tensor:
        return integrate_geodesic(metric, p, v, method="rk4", n_steps=50, path=True).path

    try:
        return rk4(p, v).detach()
    except ValueError:
        paths = []
        for i in range(len(p)):
            try:
                paths.append(rk4(p[i : i + 1], v[i : i + 1]))
            except ValueError:
                paths.append(torch.full((1, 51, p.shape[-1]), float("nan"), dtype=p.dtype))
        return torch.cat(paths).detach()


def extent(codes: Tensor, pad: float) -> tuple[float, float, float, float]:
    """The box of the central 99 % of the codes, widened by ``pad`` of its size."""
    q = torch.tensor([0.005, 0.995], dtype=codes.dtype)
    lo, hi = torch.quantile(codes, q, dim=0)
    w = pad * (hi - lo)
    return (float(lo[0] - w[0]), float(hi[0] + w[0]), float(lo[1] - w[1]), float(hi[1] + w[1]))


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
    formats : tuple of str, default ("png",)
        Formats each figure is written in: ``"png"``, ``"pdf"``, ``"svg"``.
    device : str, default "cpu"
        Where the models and codes live and the geometry is computed (``"cuda"``, ...).
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
    formats: tuple[str, ...] = ("png",)
    device: str = "cpu"

    def check(self) -> None:
        for name in ("n_pairs", "n_similarity_pairs", "per_class", "knn", "n_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2; got {value!r}")
        if self.knn >= self.per_class * 2:
            raise ValueError(f"knn must be smaller than 2 * per_class; got {self.knn}")
        bad = [f for f in self.formats if f not in ("png", "pdf", "svg")]
        if not self.formats or bad:
            raise ValueError(f"formats must be some of png, pdf, svg; got {self.formats!r}")
        from ...geodesics import BOUNDARY_VALUE

        # The energy methods: the report passes them n_points and init_curve.
        energy = [
            name
            for name, method in BOUNDARY_VALUE.items()
            if "n_points" in method.options and "init_curve" in method.options
        ]
        if self.solver not in energy:
            raise ValueError(
                f"solver must be an energy method of BOUNDARY_VALUE, one of {energy}; "
                f"got {self.solver!r}"
            )


class Checkpoint:
    """A model with its codes, images and metric, and where they came from."""

    def __init__(self, checkpoint, options: ReportOptions) -> None:
        from ...vae import BUNDLED, default_checkpoint, load, load_latents

        self.name, self.label = f"`{checkpoint}`", str(checkpoint)
        if str(checkpoint) in BUNDLED and not Path(str(checkpoint)).exists():
            self.name = f"the bundled {checkpoint} model (`pullback_geom/defaults/{checkpoint}`)"
            self.label = f"pullback_geom/defaults/{checkpoint}"
            checkpoint = default_checkpoint(str(checkpoint))
        self.path = Path(checkpoint)
        self.model = load(self.path).to(options.device)
        if self.model.latent_dim != 2:
            raise ValueError(
                f"the report draws 2-D latent spaces; {self.path} has latent_dim = "
                f"{self.model.latent_dim}"
            )
        latents = load_latents(self.path)
        self.codes = latents.codes.float().to(options.device)
        self.labels = latents.labels.to(options.device)
        missing = sorted(set(range(10)) - set(self.labels.tolist()))
        if missing:
            # The write-up's figures join and compare the ten digit classes.
            raise ValueError(
                f"the report compares the ten digit classes, but the test codes stored in "
                f"{self.path} have no images of class(es) {missing} (a digit-orbit model, or "
                "one trained with a small --limit); train on mnist or fashion-mnist, or use "
                "pullback-geom identifiability for digit-orbit models"
            )
        from ...vae.checkpoint import read_config

        self.config = read_config(self.path)
        dataset = (self.config.get("dataset") or {}).get("name", "mnist")
        self.images, self.image_source = None, "none"
        try:
            imgs, self.image_source = load_test_images(dataset, options.data_dir)
            n = min(len(imgs.images), len(self.codes))
            if torch.equal(imgs.labels[:n], self.labels[:n].cpu()):
                images = to_unit_float(imgs.images[:n], shape=self.model.image_shape)
                self.images = images.to(options.device)
            else:
                self.image_source = "none (the images' labels do not match the codes')"
        except (FileNotFoundError, ValueError) as err:  # not found, unknown or corrupt
            self.image_source = f"none ({err})"
        self.metric = self.model.pullback_metric()
        self.kind = self.model.kind

    @property
    def n_images(self) -> int:
        return 0 if self.images is None else len(self.images)


class ReportContext:
    """What every section reads and writes: the checkpoint, the options, the report folder,
    the progress bar, the numbers recorded so far and the figures saved.

    Parameters
    ----------
    ck : Checkpoint
    options : ReportOptions
    folder : Path
        Where figures are saved.
    bar : tqdm
        Advanced once per section.
    """

    def __init__(self, ck: Checkpoint, options: ReportOptions, folder: Path, bar) -> None:
        self.ck, self.options, self.folder, self.bar = ck, options, folder, bar
        self.numbers: dict = {}
        self.figures: list[str] = []
        self.extent = extent(ck.codes, 0.15)
        self.limit = ck.n_images or None

    def figure(self, fig, name: str, data: dict | None = None) -> str:
        """Save ``fig`` as ``name`` in every format of the options, and ``data`` (the
        numbers it draws) beside it as ``<stem>.npz``; the name of the file the markdown
        shows (the PNG when there is one)."""
        opt = self.options
        paths = save_figure(fig, self.folder / name, dpi=opt.dpi, formats=opt.formats)
        self.figures += [p.name for p in paths]
        if data is not None:
            self.arrays(f"{Path(name).stem}.npz", data)
        return paths[0].name

    def arrays(self, name: str, data: dict) -> None:
        """Save ``data`` (name -> array or tensor) as ``name``, an ``.npz``, in the folder."""
        save_arrays(self.folder / name, data)
        self.figures.append(name)

    def step(self, what: str) -> None:
        """Show which section runs."""
        self.bar.set_postfix_str(what)

    def done(self) -> None:
        """One section done."""
        self.bar.update()

    def geodesics(self, metric: PullbackMetric, idx: Tensor):
        """Connecting geodesics of the code pairs ``idx`` (P, 2), as the options say."""
        from ...geodesics import connecting_geodesic

        codes = self.ck.codes
        return connecting_geodesic(
            metric,
            codes[idx[:, 0]],
            codes[idx[:, 1]],
            method=self.options.solver,
            n_points=self.options.n_points,
            # From straight lines, ~1 pair in 8 settles in a longer local minimum on the
            # bundled ReLU model (up to 20 %); graph paths start near the shortest curve.
            init_curve="graph" if self.options.graph_start else None,
        )
