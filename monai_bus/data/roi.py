"""Lesion regions of interest: the bundle's transforms that find the lesion box and crop around it.

Boxes (:mod:`monai_bus.data.boxes`) are in pixel coordinates of the image as displayed, half-open,
rows first: ``(row_start, row_stop, col_start, col_stop)``. The bundle (option ``roi``) crops every
image around its lesion box plus a margin, then resizes the crop to ``image_size``:

- in training, :class:`RandCropToLesiond` draws each side's margin from a range and shifts the box a
  little, so that the model tolerates the imprecise boxes users draw;
- in validation, evaluation and inference, :class:`CropToLesiond` adds one fixed margin.

Both put the region they cropped in the image's meta data under :data:`ROI_META_KEY`, in the input
image's pixel coordinates. An item without a box (no ``bbox`` and no lesion in its masks) is kept whole.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop

from monai_bus.data.boxes import box_from_masks, check_box, expand_box, shift_box
from monai_bus.errors import InputError

ROI_META_KEY = "roi"


def _image_name(image) -> str:
    name = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
    return str(name) if name else "image"


class LesionBoxd(MapTransform):
    """Put an item's lesion box under ``box_key``, computed from its masks when it has none.

    An item keeps the box it has under ``box_key`` (a datalist's ``bbox``, or a caller's box), checked
    against the image (:func:`check_box`) here, where the bundle caches its data, so that a bad box
    stops a run before it trains; else it gets the box of the union of its masks (the files under
    ``keys``); else (no masks, or no lesion pixel in them) it gets no ``box_key`` and is kept whole by
    the crop transforms.

    Args:
        keys: the mask key(s); each value is a file or a list of files (one per lesion).
        box_key: where the box goes.
        image_key: the loaded image [C, H, W], whose size the masks must have.
    """

    def __init__(self, keys: KeysCollection = "mask", box_key: str = "bbox", image_key: str = "image",
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.box_key, self.image_key = box_key, image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if self.box_key in d:
            d[self.box_key] = check_box(d[self.box_key], d[self.image_key].shape[-2:], _image_name(d[self.image_key]))
            return d
        for key in self.key_iterator(d):
            box = box_from_masks(d[key], d[self.image_key].shape[-2:])
            if box is not None:
                d[self.box_key] = box
                break
        return d


class CropToLesiond(MapTransform):
    """Crop images [C, H, W] to the item's lesion box plus a fixed margin on each side.

    The crop region, in the input's pixel coordinates, goes to ``image.meta[ROI_META_KEY]``; an item
    without a box is left whole (its region is the whole image).

    Args:
        keys: the image key(s).
        box_key: the key of the lesion box (see :class:`LesionBoxd`).
        margin: fraction of the box's height (above and below) and width (left and right) added.

    Raises:
        InputError: naming the image file, for a degenerate box (see :func:`check_box`).
    """

    def __init__(self, keys: KeysCollection = "image", box_key: str = "bbox", margin: float = 0.25,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if margin < 0:
            raise InputError(f"margin must be >= 0, got {margin}.")
        self.box_key = box_key
        self.margins, self.shift = (margin,) * 4, (0.0, 0.0)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        box = d.get(self.box_key)
        for key in self.key_iterator(d):
            image = d[key]
            shape = tuple(image.shape[-2:])
            region = (0, shape[0], 0, shape[1])
            if box is not None:
                region = expand_box(shift_box(check_box(box, shape, _image_name(image)), *self.shift), self.margins,
                                    shape)
            cropped = SpatialCrop(roi_start=region[::2], roi_end=region[1::2])(image)
            if isinstance(cropped, MetaTensor):
                cropped.meta[ROI_META_KEY] = np.array(region)
            d[key] = cropped
        return d


class RandCropToLesiond(Randomizable, CropToLesiond):
    """Training version of :class:`CropToLesiond`: random margins and a random shift of the box.

    Each of the four margins is drawn uniformly from ``margin_range``, and the box is moved by up to
    ``max_shift`` of its height and of its width (rows and columns independently, uniformly) before the
    margins are added. The region is clipped to the image: it always lies inside it.

    Args:
        keys: the image key(s).
        box_key: the key of the lesion box.
        margin_range: (low, high) fractions of the box's size.
        max_shift: largest shift, as a fraction of the box's size.
    """

    def __init__(self, keys: KeysCollection = "image", box_key: str = "bbox",
                 margin_range: Sequence[float] = (0.1, 0.4), max_shift: float = 0.1,
                 allow_missing_keys: bool = False) -> None:
        low, high = margin_range
        if not 0 <= low <= high or max_shift < 0:
            raise InputError(f"need 0 <= margin_range[0] <= margin_range[1] and max_shift >= 0, got {margin_range} "
                             f"and {max_shift}.")
        super().__init__(keys, box_key, margin=low, allow_missing_keys=allow_missing_keys)
        self.margin_range, self.max_shift = (low, high), max_shift

    def randomize(self, data=None) -> None:
        self.margins = tuple(float(m) for m in self.R.uniform(*self.margin_range, size=4))
        self.shift = tuple(float(s) for s in self.R.uniform(-self.max_shift, self.max_shift, size=2))

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        self.randomize()
        return super().__call__(data)
