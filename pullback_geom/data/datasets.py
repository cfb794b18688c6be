"""MNIST and FashionMNIST as in-memory tensors, through torchvision's readers; and the
synthetic ``digit-orbit`` set (:mod:`pullback_geom.data.digit_orbit`), rendered on the fly.

Training batches the whole set with tensor indexing, so the images are read once into
one ``uint8`` tensor (60,000 x 28 x 28 is 47 MB) rather than served by a ``DataLoader``.
``mnist-64-rgb`` is MNIST resized bilinearly to 64 x 64 and repeated over three channels
(:data:`RESIZED`): a stand-in for colour images at the size of GEORCE's CelebA models,
without their colour.

Files are looked up in torchvision's layout, ``<data_dir>/MNIST/raw/train-images-idx3-ubyte``
and so on (``FashionMNIST/raw/`` for FashionMNIST). ``data_dir`` defaults to the
``PULLBACK_GEOM_DATA`` environment variable, else ``./data``. Nothing is downloaded
unless asked (``download=True``, the command's ``--download``). Reading the files needs
torchvision, the ``data`` extra (``pip install 'pullback-geom[data]'``); this module
imports without it, for the digit orbit, the bundled images and :func:`to_unit_float`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from .._core.extras import require
from .bundled import ImageSet, bundled_test_images

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DIGIT_ORBIT",
    "ENV_VAR",
    "RESIZED",
    "ImageSet",
    "bundled_test_images",
    "default_data_dir",
    "image_shape",
    "load_dataset",
    "load_splits",
    "load_test_images",
    "resize_images",
    "to_unit_float",
]

ENV_VAR = "PULLBACK_GEOM_DATA"

#: dataset name -> torchvision class name (also the folder under ``data_dir``)
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
#: the rendered dataset of :mod:`pullback_geom.data.digit_orbit`
DIGIT_ORBIT = "digit-orbit"
#: datasets made from another: name -> (source, side, channels). ``"mnist-64-rgb"`` is
#: MNIST resized bilinearly to 64 x 64 and repeated over three channels, a stand-in for
#: colour images of the size of GEORCE's CelebA experiments (it has no colour)
RESIZED = {"mnist-64-rgb": ("mnist", 64, 3)}
#: every name :func:`load_dataset` takes: the files above, the rendered digit orbit and
#: the resized sets
DATASET_NAMES = (*DATASETS, DIGIT_ORBIT, *RESIZED)

_RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_data_dir() -> Path:
    """``$PULLBACK_GEOM_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(ENV_VAR) or "data")


def image_shape(name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of a dataset's images: ``(1, 28, 28)``, or ``(3, 64, 64)`` for
    ``"mnist-64-rgb"``."""
    if name in RESIZED:
        _, side, channels = RESIZED[name]
        return (channels, side, side)
    return (1, 28, 28)


def resize_images(images: Tensor, side: int, channels: int = 1) -> Tensor:
    """``uint8`` images resized bilinearly and repeated over ``channels``.

    Parameters
    ----------
    images : Tensor, shape (N, H, W), uint8
    side : int
    channels : int, default 1

    Returns
    -------
    Tensor, shape (N, channels, side, side), uint8
        The channels are one expanded view of the same memory (60,000 MNIST images at
        64 x 64 take 0.25 GB, not 0.74).
    """
    from torch.nn import functional as F

    out = torch.empty(len(images), 1, side, side, dtype=torch.uint8)
    for i in range(0, len(images), 4096):  # bounds the float copy
        x = images[i : i + 4096, None].float()
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        out[i : i + 4096] = x.round().clamp(0, 255).to(torch.uint8)
    return out.expand(-1, channels, -1, -1)


def _fix_hint(name: str) -> str:
    return (
        f"Pass the folder that contains {DATASETS[name]}/raw/ with --data-dir (Python: "
        f"data_dir=...) or set {ENV_VAR}. With internet access, --download (download=True) "
        "lets torchvision fetch them."
    )


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    train: bool = True,
    download: bool = False,
) -> ImageSet:
    """Read one split of MNIST or FashionMNIST into memory (or render the digit orbit).

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "digit-orbit", "mnist-64-rgb"}
        ``"digit-orbit"``: one bundled MNIST digit rotated and scaled
        (:func:`pullback_geom.data.digit_orbit.digit_orbit`); needs no files.
        ``"mnist-64-rgb"``: MNIST resized to 64 x 64, three equal channels
        (:data:`RESIZED`, :func:`resize_images`).
    data_dir : path, optional
        The folder holding ``MNIST/raw/`` (torchvision's layout). Default:
        :func:`default_data_dir`. Ignored by ``"digit-orbit"``.
    train : bool, default True
        The 60,000 training images, else the 10,000 test images.
    download : bool, default False
        Let torchvision download missing files (needs internet access).

    Returns
    -------
    ImageSet
        ``images`` of shape (N, 28, 28), uint8 ((N, 3, 64, 64) for ``"mnist-64-rgb"``);
        ``labels`` of shape (N,), int64.

    Raises
    ------
    FileNotFoundError
        A raw file is missing; the message names the folder looked in and how to fix it.
    ImportError
        torchvision (the ``data`` extra) is not installed and the files must be read.
    ValueError
        Unknown ``name``, or files that cannot be read as the dataset (truncated, wrong
        format, images and labels of different lengths).
    """
    if name == DIGIT_ORBIT:
        return _orbit_split(train)
    if name in RESIZED:
        source, side, channels = RESIZED[name]
        base = load_dataset(source, data_dir, train=train, download=download)
        return ImageSet(resize_images(base.images, side, channels), base.labels)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_NAMES)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    raw = root / DATASETS[name] / "raw"
    missing = [f for f in _RAW_FILES[train] if not (raw / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"{DATASETS[name]} not found: {', '.join(missing)} missing in {raw} "
            f"(absolute: {raw.absolute()}). {_fix_hint(name)}"
        )

    # Only here: the digit orbit, the bundled images and to_unit_float need no torchvision.
    datasets = require("torchvision.datasets", "data", f"reading {DATASETS[name]}")
    cls = getattr(datasets, DATASETS[name])
    try:
        ds = cls(root=str(root), train=train, download=download)
        images, labels = ds.data, ds.targets
    except Exception as err:  # torchvision raises AssertionError, RuntimeError, ...
        raise ValueError(
            f"cannot read {DATASETS[name]} from {raw}: {type(err).__name__}: {err}. The "
            "files there are corrupt or not in the IDX format; replace them with the "
            f"original files. {_fix_hint(name)}"
        ) from err
    _check_split(images, labels, raw)
    return ImageSet(images, labels.to(torch.int64))


def load_splits(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    download: bool = False,
    orbit_digit: int = 1,
) -> tuple[ImageSet, ImageSet, dict]:
    """Both splits, optionally cut to their first ``limit`` images, and their description.

    Parameters
    ----------
    name, data_dir, download
        As in :func:`load_dataset`.
    limit : int, optional
        Keep the first ``limit`` images of each split.
    orbit_digit : int, default 1
        ``"digit-orbit"`` only: which bundled test image is rotated and scaled
        (:func:`pullback_geom.data.digit_orbit.digit_orbit`'s ``index``).

    Returns
    -------
    train, test : ImageSet
    description : dict
        ``name``, ``train_size``, ``test_size`` and ``limit`` (and ``orbit_digit`` for the
        digit orbit), what a checkpoint's ``config.json`` records as its dataset.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit (--limit) must be a positive integer; got {limit!r}")
    if name == DIGIT_ORBIT:  # rendered: only the images kept
        train, test = (_orbit_split(split, limit, orbit_digit) for split in (True, False))
    else:
        train = load_dataset(name, data_dir, train=True, download=download)
        test = load_dataset(name, data_dir, train=False, download=download)
    if limit is not None:
        train = ImageSet(*(t[:limit] for t in train))
        test = ImageSet(*(t[:limit] for t in test))
    description = {
        "name": name,
        "train_size": len(train.images),
        "test_size": len(test.images),
        "limit": limit,
    }
    if name == DIGIT_ORBIT:
        description["orbit_digit"] = orbit_digit
    if name in RESIZED:
        description["image_shape"] = list(image_shape(name))
        description["resized_from"] = RESIZED[name][0]
    return train, test, description


def _orbit_split(train: bool, limit: int | None = None, orbit_digit: int = 1) -> ImageSet:
    """One split of the digit orbit, rendered (only its first ``limit`` images)."""
    from .digit_orbit import digit_orbit

    _, images, labels = digit_orbit(orbit_digit).split(train, limit)
    return ImageSet(images, labels)


def _check_split(images: Tensor, labels: Tensor, raw: Path) -> None:
    problem = None
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        problem = f"images of dtype {images.dtype} and shape {tuple(images.shape)}"
    elif labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        problem = f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}"
    elif labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) <= 9):
        problem = f"labels outside 0..9 (min {int(labels.min())}, max {int(labels.max())})"
    elif images.shape[0] == 0:
        problem = "no images"
    if problem:
        raise ValueError(
            f"the files in {raw} do not hold 28 x 28 uint8 images with labels 0..9: "
            f"{problem}. Replace them with the original files."
        )


def to_unit_float(
    x: Tensor, dtype: torch.dtype = torch.float32, shape: tuple[int, ...] = (1, 28, 28)
) -> Tensor:
    """Images as flat floats in ``[0, 1]``.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W), (B, H, W) (one channel) or (B, C H W)
        ``uint8`` (scaled by 1/255) or floating point (taken as already in ``[0, 1]``).
    dtype : torch.dtype, default float32
        Result dtype for ``uint8`` input; floating input keeps its dtype.
    shape : (C, H, W), default (1, 28, 28)
        The images' shape.

    Returns
    -------
    Tensor, shape (B, C H W)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"images must be a torch.Tensor; got {type(x).__name__}")
    c, h, w = shape
    pixels = c * h * w
    if x.dim() < 2 or x[0].numel() != pixels:
        flat = f", (B, {h}, {w})" if c == 1 else ""
        raise ValueError(
            f"images must have shape (B, {c}, {h}, {w}){flat} or (B, {pixels}); "
            f"got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return x.reshape(x.shape[0], pixels).to(dtype) / 255
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point; got {x.dtype}")
    return x.reshape(x.shape[0], pixels)


def load_test_images(
    name: str = "mnist", data_dir: str | os.PathLike | None = None
) -> tuple[ImageSet, str]:
    """The test split of a dataset, from ``data_dir`` or else the bundled MNIST subset.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "digit-orbit", "mnist-64-rgb"}
    data_dir : path, optional
        As in :func:`load_dataset`.

    Returns
    -------
    images : ImageSet
        All 10,000 test images, or for MNIST (and ``"mnist-64-rgb"``) without its files
        the first 2,000.
    source : str
        Where they came from, for reports.

    Raises
    ------
    FileNotFoundError
        Not MNIST (or made from it) and its files are not found.
    """
    if name == DIGIT_ORBIT:
        images = _orbit_split(train=False)
        return images, f"the digit-orbit test set ({len(images.images):,} rendered images)"
    try:
        images = load_dataset(name, data_dir, train=False)
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        label = DATASETS.get(name, name)
        return images, f"{label} test set ({len(images.images):,} images) from {root}"
    except FileNotFoundError:
        if name != "mnist" and RESIZED.get(name, ("",))[0] != "mnist":
            raise
    images = bundled_test_images()
    source = f"the first {len(images.images):,} MNIST test images bundled with the package"
    if name in RESIZED:
        _, side, channels = RESIZED[name]
        images = ImageSet(resize_images(images.images, side, channels), images.labels)
        source += f", resized to {side} x {side} x {channels}"
    return images, source
