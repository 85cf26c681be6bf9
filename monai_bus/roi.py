"""Lesion regions of interest: boxes from masks, margins and jitter, and the bundle's crop transforms.

A box is in pixel coordinates of the image as displayed (row-major, rows first), half-open:
``(row_start, row_stop, col_start, col_stop)``; it selects ``image[row_start:row_stop, col_start:col_stop]``.
The bundle (option ``roi``) crops every image around its lesion box plus a margin, then resizes the crop
to ``image_size``:

- in training, :class:`RandCropToLesiond` draws each side's margin from a range and shifts the box a
  little, so that the model tolerates the imprecise boxes users draw;
- in validation, evaluation and inference, :class:`CropToLesiond` adds one fixed margin.

Both put the region they cropped in the image's meta data under :data:`ROI_META_KEY`, in the input
image's pixel coordinates. An item without a box (no ``bbox`` and no lesion in its masks) is kept whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop
from PIL import Image

from monai_bus.errors import InputError

Box = tuple[int, int, int, int]
ROI_META_KEY = "roi"
MIN_BOX_SIDE = 4  # pixels; the smallest lesion boxes of BUSI and BUS-BRA are 18 pixels


def lesion_pixels(mask: Image.Image) -> np.ndarray:
    """Lesion pixels of a mask image as bool [H, W]: any non-zero value outside the alpha channel."""
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array[..., :-1] if mask.mode in ("LA", "PA", "RGBA") else array
        array = array.any(axis=-1)
    return array != 0


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A lesion mask file (PNG, JPEG, any Pillow mode) as bool [H, W].

    Raises:
        InputError: naming the file, when it is missing or cannot be decoded.
    """
    if not os.path.isfile(path):
        raise InputError(f"{os.fspath(path)}: mask file not found.")
    try:
        with Image.open(path) as mask:
            return lesion_pixels(mask)
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{os.fspath(path)}: cannot read the mask ({error}).") from error


def box_from_masks(masks, image_shape: Sequence[int] | None = None) -> Box | None:
    """Bounding box of the union of one or more lesion masks; None when no mask holds a lesion pixel.

    Args:
        masks: a mask, or a list of masks (one per lesion), each a file or an array [H, W] whose
            non-zero pixels are lesion.
        image_shape: (H, W) of the image the masks belong to; every mask must have it.

    Raises:
        InputError: naming the mask, when it cannot be read or its size differs from the image's or
            from the other masks'.
    """
    masks = masks if isinstance(masks, (list, tuple)) else [masks]
    if not masks:
        raise InputError("box_from_masks: no mask given.")
    union = None
    for mask in masks:
        name = os.fspath(mask) if isinstance(mask, (str, os.PathLike)) else "mask array"
        pixels = read_mask(mask) if isinstance(mask, (str, os.PathLike)) else np.asarray(mask) != 0
        expected = tuple(image_shape) if image_shape is not None else union.shape if union is not None else None
        if pixels.ndim != 2 or (expected is not None and pixels.shape != expected):
            raise InputError(f"{name}: mask of size {list(pixels.shape)} does not match its image "
                             f"{list(expected) if expected else '(expected a 2D mask)'}.")
        union = pixels if union is None else union | pixels
    rows, columns = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def check_box(box, image_shape: Sequence[int], name: str = "image") -> Box:
    """The box as four ints, clipped to an image of ``image_shape`` (H, W).

    Raises:
        InputError: naming ``name``, for anything but four integers, a box of zero (or negative)
            height or width, a box that holds no pixel of the image, or one whose part inside the
            image is below :data:`MIN_BOX_SIDE` pixels high or wide.
    """
    values = list(box) if isinstance(box, (list, tuple, np.ndarray)) else None
    if values is None or len(values) != 4 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise InputError(f"{name}: a lesion box is 4 integers (row_start, row_stop, col_start, col_stop), got {box!r}.")
    row_start, row_stop, col_start, col_stop = (int(v) for v in values)
    if row_stop <= row_start or col_stop <= col_start:
        raise InputError(f"{name}: the lesion box {[row_start, row_stop, col_start, col_stop]} has zero height or "
                         "width (expected row_start < row_stop and col_start < col_stop).")
    rows, columns = (int(s) for s in image_shape)
    clipped = max(row_start, 0), min(row_stop, rows), max(col_start, 0), min(col_stop, columns)
    if clipped[0] >= clipped[1] or clipped[2] >= clipped[3]:
        raise InputError(f"{name}: the lesion box {[row_start, row_stop, col_start, col_stop]} lies outside the "
                         f"image of {rows} rows and {columns} columns.")
    if min(clipped[1] - clipped[0], clipped[3] - clipped[2]) < MIN_BOX_SIDE:
        raise InputError(f"{name}: the lesion box {[row_start, row_stop, col_start, col_stop]} is "
                         f"{clipped[1] - clipped[0]} x {clipped[3] - clipped[2]} pixels inside the image, below the "
                         f"minimum of {MIN_BOX_SIDE} x {MIN_BOX_SIDE}.")
    return clipped


def shift_box(box: Box, row_fraction: float, col_fraction: float) -> Box:
    """The box moved by fractions of its own height (rows) and width (columns), rounded; not clipped."""
    row_start, row_stop, col_start, col_stop = box
    rows, columns = round(row_fraction * (row_stop - row_start)), round(col_fraction * (col_stop - col_start))
    return row_start + rows, row_stop + rows, col_start + columns, col_stop + columns


def expand_box(box: Box, margins: float | Sequence[float], image_shape: Sequence[int]) -> Box:
    """The box grown by margins on each side, then clipped to an image of ``image_shape`` (H, W).

    Args:
        margins: one fraction for every side, or four (top, bottom, left, right); top and bottom are
            fractions of the box's height, left and right of its width. Growth is rounded outwards.
    """
    top, bottom, left, right = (margins,) * 4 if isinstance(margins, (int, float)) else margins
    row_start, row_stop, col_start, col_stop = box
    height, width = row_stop - row_start, col_stop - col_start
    rows, columns = (int(s) for s in image_shape)
    return (max(math.floor(row_start - top * height), 0), min(math.ceil(row_stop + bottom * height), rows),
            max(math.floor(col_start - left * width), 0), min(math.ceil(col_stop + right * width), columns))


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
