"""Lesion boxes: from masks, checked against their image, shifted and grown by margins.

A box is in pixel coordinates of the image as displayed (row-major, rows first), half-open:
``(row_start, row_stop, col_start, col_stop)``; it selects ``image[row_start:row_stop, col_start:col_stop]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monai_bus.data.images import ITK_LOCK
from monai_bus.data.records import DatasetError
from monai_bus.errors import InputError

Box = tuple[int, int, int, int]
MIN_BOX_SIDE = 4  # pixels; the smallest lesion boxes of BUSI and BUS-BRA are 18 pixels
# Pillow modes of masks: any non-zero pixel outside the alpha channel is lesion
MASK_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I")
# Volume formats of masks: a 2D image's segmentation as 3D Slicer saves it (one slice)
VOLUME_MASK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def lesion_pixels(mask: Image.Image) -> np.ndarray:
    """Lesion pixels of a mask image as bool [H, W]: any non-zero value outside the alpha channel, in a
    palette mask's colours (not its indices); in a JPEG, whose compression blurs the lesion's edge over many
    values, the values above half the largest.

    Raises:
        ValueError: for a lossless mask of more than one non-zero level (the largest of its colour channels):
            an image or a screenshot, whose non-zero pixels are not the lesion; or one whose colour channels
            are all 0 while its alpha channel varies (a lesion drawn in alpha is not read).
    """
    if mask.mode in ("P", "PA"):
        mask = mask.convert("RGBA" if mask.mode == "PA" or "transparency" in mask.info else "RGB")
    array = np.asarray(mask)
    if array.ndim == 3:
        colour = array[..., :-1] if mask.mode in ("LA", "RGBA") else array
        if colour is not array and not colour.any() and np.ptp(array[..., -1]):
            raise ValueError("its colour channels are all 0 and only its alpha channel varies; draw the lesion in "
                             "colour (non-zero) on 0")
        array = colour.max(axis=-1)
    if mask.format == "JPEG":
        return array > array.max() / 2
    levels = np.unique(array)
    if np.count_nonzero(levels) > 1:
        raise ValueError(f"{np.count_nonzero(levels)} non-zero levels, where a mask holds 0 and one lesion value (an "
                         "image or a screenshot?)")
    return array != 0


def check_not_inverted(path: str | os.PathLike, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (bool [H, W]), unless all four corners are lesion: no lesion of BUSI or BUS-BRA reaches a corner,
    an inverted mask (lesion 0 on non-zero) reaches all four.

    Raises:
        DatasetError: naming the file, for such a mask.
    """
    if pixels[0, 0] and pixels[0, -1] and pixels[-1, 0] and pixels[-1, -1]:
        raise DatasetError(path, f"the lesion fills all four corners ({pixels.mean():.0%} of the image): an inverted "
                                 "mask? The lesion must be non-zero on 0")
    return pixels


def _read_volume_mask(path: Path) -> np.ndarray:
    """A one-slice mask volume (:data:`VOLUME_MASK_SUFFIXES`) as bool [H, W]: ITK's voxel order, rows first,
    row 0 at the top, as ITK reads the 2D image the mask was drawn on."""
    import itk  # slow to import; only volume masks need it

    try:
        with ITK_LOCK:
            array = itk.array_from_image(itk.imread(str(path)))
    except RuntimeError as error:
        raise DatasetError(path, f"unreadable mask ({str(error).strip().splitlines()[-1]})") from None
    if np.squeeze(array).ndim != 2:
        raise DatasetError(path, f"a mask of {list(array.shape)} voxels is not a one-slice, single-component label "
                                 "map")
    return np.squeeze(array) != 0


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A lesion mask file (PNG or JPEG, or a one-slice volume of :data:`VOLUME_MASK_SUFFIXES`), decoded in full,
    as bool [H, W] (:func:`lesion_pixels`).

    Raises:
        DatasetError: naming the file, when it is missing, cannot be decoded, is in another mode than
            :data:`MASK_MODES`, is not binary (:func:`lesion_pixels`) or looks inverted
            (:func:`check_not_inverted`).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "mask file not found")
    if path.name.lower().endswith(VOLUME_MASK_SUFFIXES):
        return check_not_inverted(path, _read_volume_mask(path))
    try:
        with Image.open(path) as mask:
            mask.load()
            if mask.mode not in MASK_MODES:
                raise DatasetError(path, f"unsupported mask mode {mask.mode!r} (supported: {', '.join(MASK_MODES)})")
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(path, f"unreadable mask ({error})") from None
    try:
        return check_not_inverted(path, lesion_pixels(mask))
    except DatasetError:
        raise
    except ValueError as error:
        raise DatasetError(path, f"not a lesion mask: {error}") from None


def mask_union(masks, image_shape: Sequence[int] | None = None) -> np.ndarray:
    """The union of one or more lesion masks, as bool [H, W].

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
        raise InputError("no lesion mask given.")
    union = None
    for mask in masks:
        name = os.fspath(mask) if isinstance(mask, (str, os.PathLike)) else "mask array"
        pixels = read_mask(mask) if isinstance(mask, (str, os.PathLike)) else np.asarray(mask) != 0
        expected = tuple(image_shape) if image_shape is not None else union.shape if union is not None else None
        if pixels.ndim != 2 or (expected is not None and pixels.shape != expected):
            raise InputError(f"{name}: mask of size {list(pixels.shape)} does not match its image "
                             f"{list(expected) if expected else '(expected a 2D mask)'}.")
        union = pixels if union is None else union | pixels
    return union


def box_from_masks(masks, image_shape: Sequence[int] | None = None) -> Box | None:
    """Bounding box of :func:`mask_union` (arguments and errors as there); None when no mask holds a
    lesion pixel."""
    union = mask_union(masks, image_shape)
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
    if values is None or len(values) != 4 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
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


def box_iou(box: Box | None, other: Box) -> float:
    """Intersection over union of two boxes (MONAI's ``box_iou``); 0 when ``box`` is None."""
    if box is None:
        return 0.0
    from monai.data.box_utils import box_iou as monai_box_iou  # MONAI's corner order: (x0, y0, x1, y1)

    corners = lambda b: np.array([[b[0], b[2], b[1], b[3]]], dtype=np.float64)  # noqa: E731
    return float(monai_box_iou(corners(box), corners(other))[0, 0])


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
