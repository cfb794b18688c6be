"""The images that ship with the package: the first MNIST test images (offline demo and
the digit orbit's source digits)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["BUNDLED_TEST_IMAGES", "ImageSet", "bundled_test_images"]


class ImageSet(NamedTuple):
    """Images and labels of one split.

    Attributes
    ----------
    images : Tensor, shape (N, 28, 28), uint8
    labels : Tensor, shape (N,), int64
    """

    images: Tensor
    labels: Tensor


#: How many MNIST test images ship with the package (``defaults/mnist_test_head.npz``).
BUNDLED_TEST_IMAGES = 2000


def bundled_test_images() -> ImageSet:
    """The first 2,000 MNIST test images and labels, shipped with the package.

    They let ``pullback-geom demo`` measure pixel distances and show end-point images
    offline; their order is the test set's, so they match the first 2,000 codes of a
    checkpoint's ``latents.pt``.

    Returns
    -------
    ImageSet
        ``images`` of shape (2000, 28, 28), uint8; ``labels`` of shape (2000,), int64.
    """
    from importlib import resources

    import numpy as np

    path = Path(str(resources.files("pullback_geom") / "defaults" / "mnist_test_head.npz"))
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled MNIST test images are missing: {path}. Reinstall the package, or "
            "pass --data-dir with the MNIST files."
        )
    with np.load(path, allow_pickle=False) as data:
        images, labels = torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
    return ImageSet(images, labels.to(torch.int64))
