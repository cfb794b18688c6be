"""Curvature of the bundled MNIST models: the figures and the numbers of docs/curvature.md.

Renders ``docs/img/curvature_bernoulli.png`` and ``docs/img/curvature_gaussian.png``
(:func:`pullback_geom.viz.curvature_map`, saved with a 256-colour palette to stay small)
and prints :func:`pullback_geom.experiments.curvature_stats.curvature_statistics` for both models.

Usage::

    python examples/curvature_report.py            # about 2 minutes on 2 cores
    python examples/curvature_report.py --no-figures
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from pathlib import Path

from PIL import Image

from pullback_geom import vae
from pullback_geom.experiments.curvature_stats import curvature_statistics
from pullback_geom.viz import curvature_map

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")

TITLES = {
    "bernoulli": "Gaussian curvature, Bernoulli VAE (MNIST)",
    "gaussian": "Gaussian curvature, Gaussian VAE with its uncertainty term",
}


def save_small(fig, path: Path, dpi: int = 90) -> None:
    """PNG with an adaptive 256-colour palette: a third of the RGB file's size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    Image.open(buf).convert("RGB").quantize(256).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    for kind in ("bernoulli", "gaussian"):
        model = vae.load_default(kind)
        latents = vae.load_latents(vae.default_checkpoint(kind))
        metric = model.pullback_metric()
        if not args.no_figures:
            start = time.perf_counter()
            fig = curvature_map(
                metric, latents=latents.codes, labels=latents.labels, title=TITLES[kind]
            )
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"curvature_{kind}.png"
            save_small(fig, path)
            print(
                f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, "
                f"{time.perf_counter() - start:.0f} s)"
            )
        start = time.perf_counter()
        stats = curvature_statistics(metric, latents.codes, latents.labels)
        print(f"\n== {kind} model ({time.perf_counter() - start:.0f} s)")
        print(stats.table())
        print()


if __name__ == "__main__":
    main()
