"""Loading of ultrasound images as single-channel tensors, shared by training and inference.

Every reader MONAI offers (PNG, JPEG, DICOM, ...) returns arrays indexed (x, y[, channel]); this
module turns them into the usual row-major image layout [1, H, W] so that attention maps line up
with the image as displayed. Colour images (RGB, RGBA, and DICOM colour frames) are converted to
grey with ITU-R BT.601 luma weights; alpha is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_grey(array: np.ndarray, name: str) -> np.ndarray:
    """Convert a row-major image [H, W] or [H, W, C] (C in 1, 3, 4) to float32 [H, W].

    Raises:
        ValueError: naming ``name``, for any other shape (e.g. a multi-frame volume).
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.float32) @ LUMA_WEIGHTS
    if array.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2D image (grey, RGB or RGBA), got an array of shape {list(array.shape)}; "
            f"for a multi-frame file, extract one frame first."
        )
    if min(array.shape) < 2:
        raise ValueError(f"{name}: image of size {list(array.shape)} is too small.")
    return array.astype(np.float32)


class LoadUltrasoundImage(Transform):
    """Load an image file, or take an array, as a grey float32 ``MetaTensor`` [1, H, W].

    Args:
        image: a file path readable by ``monai.transforms.LoadImage``, or an array [H, W] or
            [H, W, C] in row-major (display) order.

    Raises:
        ValueError: the message starts with the file name and says what is wrong.
    """

    def __init__(self) -> None:
        self.loader = LoadImage(image_only=True)

    def __call__(self, image: str | os.PathLike | np.ndarray | torch.Tensor) -> MetaTensor:
        if isinstance(image, (str, os.PathLike)):
            name = os.fspath(image)
            if not os.path.isfile(name):
                raise ValueError(f"{name}: image file not found.")
            try:
                loaded = self.loader(name)
            except Exception as error:
                raise ValueError(f"{name}: cannot read the image ({type(error).__name__}: {error}).") from error
            array = np.swapaxes(np.asarray(loaded), 0, 1) if loaded.ndim >= 2 else np.asarray(loaded)
            meta = dict(loaded.meta)
        else:
            name, array, meta = "image array", np.asarray(image), {}
        grey = to_grey(array, name)
        meta["spatial_shape"] = np.array(grey.shape)
        return MetaTensor(torch.from_numpy(grey[None].copy()), meta=meta)


class LoadUltrasoundImaged(MapTransform):
    """Dictionary version of :class:`LoadUltrasoundImage`."""

    def __init__(self, keys, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.load = LoadUltrasoundImage()

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.load(d[key])
        return d
