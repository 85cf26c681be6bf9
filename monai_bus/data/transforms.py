"""The classifier's preprocessing (:func:`classifier_transforms`), shared by training and inference,
and its loader of ultrasound images as single-channel tensors.

Images are read and checked by :func:`monai_bus.data.images.read_image`, the reader ``monai-bus
datalist`` uses too, and come out in the usual row-major layout [1, H, W], so that attention maps
line up with the image as displayed.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, NormalizeIntensityd, Resized, Transform

from monai_bus.data.images import read_image
from monai_bus.data.roi import CropToLesiond, LesionBoxd, RandCropToLesiond


class LoadUltrasoundImage(Transform):
    """Load an image file, or take an array, as a grey float32 ``MetaTensor`` [1, H, W].

    Its meta data hold ``filename_or_obj`` (the file, or ``"image array"``) and ``spatial_shape``
    (H, W).

    Raises:
        DatasetError: a ``ValueError`` whose message starts with the file name and says what is wrong
            (see :func:`monai_bus.data.images.read_image`).
    """

    def __call__(self, image: str | os.PathLike | np.ndarray | torch.Tensor, frame: int | None = None) -> MetaTensor:
        grey, name = read_image(image, frame)
        meta = {"filename_or_obj": name, "spatial_shape": np.array(grey.shape)}
        return MetaTensor(torch.from_numpy(grey[None].copy()), meta=meta)


class LoadUltrasoundImaged(MapTransform):
    """Dictionary version of :class:`LoadUltrasoundImage`.

    An item's ``frame`` (when present) chooses the frame of a multi-frame file. The file's name goes
    to ``<key>_file`` as well, so that a training batch can name its images after ``EnsureTyped``
    has dropped the meta data.
    """

    def __init__(self, keys, frame_key: str = "frame", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.frame_key = frame_key
        self.load = LoadUltrasoundImage()

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.load(d[key], d.get(self.frame_key))
            d[f"{key}_file"] = d[key].meta["filename_or_obj"]
        return d


def classifier_transforms(image_size: int, roi: bool, roi_margin: float, random_crop: bool = False,
                          lesion_key: str | None = None) -> list:
    """The classifier's preprocessing, from a datalist item (or an inference request) to its input.

    Load the image (:class:`LoadUltrasoundImaged`); with ``roi``, find the lesion box
    (:class:`~monai_bus.data.roi.LesionBoxd`) and crop around it with the margin ``roi_margin``
    (:class:`~monai_bus.data.roi.CropToLesiond`), or with random margins and shifts when ``random_crop``
    (:class:`~monai_bus.data.roi.RandCropToLesiond`, training); then resize to ``image_size`` and
    normalise the intensities. Training, validation, evaluation and inference all start with these, so
    the bundle's configs define the preprocessing once.

    With ``lesion_key``, the union of the item's lesion masks
    (:class:`~monai_bus.data.masks.LoadLesionMaskd`) goes there, cropped and resized with the image, for
    the training recipe whose loss supervises the attention gate with it
    (:class:`~monai_bus.handlers.AttentionMaskLoss`).

    Returns:
        dictionary transforms; ``image`` comes out as a ``MetaTensor`` [1, image_size, image_size]
        whose meta data hold the file, the input's ``spatial_shape`` and the cropped region; with
        ``lesion_key``, the mask as [1, image_size, image_size] in [0, 1].
    """
    from monai_bus.data.masks import LoadLesionMaskd  # masks.py imports this module

    keys = ["image"] if lesion_key is None else ["image", lesion_key]
    transforms = [LoadUltrasoundImaged("image")]
    if lesion_key is not None:
        transforms.append(LoadLesionMaskd(label_key=lesion_key))
    if roi:
        crop = RandCropToLesiond(keys) if random_crop else CropToLesiond(keys, margin=roi_margin)
        transforms += [LesionBoxd("mask"), crop]
    return transforms + [Resized(keys, spatial_size=(image_size, image_size), mode="bilinear", anti_aliasing=True),
                         NormalizeIntensityd("image")]
