"""Read a dataset's images and masks in full, in a form the bundle loads, so that bad files fail here.

Images go through :func:`monai_bus.data.images.read_image`, the reader of the bundle and the
inference API. Masks are PNG or JPEG files decoded in full with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from monai_bus.data.images import read_image
from monai_bus.data.records import DatasetError
from monai_bus.roi import lesion_pixels

# Pillow modes of masks: any non-zero pixel is lesion
MASK_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I")


def read_grey(path: Path) -> np.ndarray:
    """Read an image in full and return it as a checked 2-D float32 grey array.

    Raises
    ------
    DatasetError
        For every image :func:`monai_bus.data.images.read_image` refuses.
    """
    return read_image(path)[0]


def read_mask(path: Path) -> np.ndarray:
    """Read a PNG/JPEG lesion mask in full; its lesion pixels as bool [H, W] (see
    :func:`monai_bus.roi.lesion_pixels`). Raise :class:`DatasetError` if it is missing or unreadable."""
    if not path.is_file():
        raise DatasetError(path, "mask file not found")
    try:
        mask = Image.open(path)
        mask.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"unreadable image ({error})") from None
    if mask.mode not in MASK_MODES:
        raise DatasetError(path, f"unsupported image mode {mask.mode!r} (supported: {', '.join(MASK_MODES)})")
    return lesion_pixels(mask)
