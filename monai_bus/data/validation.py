"""Check that an image file is fully readable, in a mode the bundle loads, and return it as grey.

PNG and JPEG files are decoded in full with Pillow (so truncated or corrupt files fail here,
not during training); DICOM files (``.dcm``, ``.dicom`` or no suffix) are read with ITK's GDCM
reader, the reader MONAI's ``ITKReader`` uses.
"""

from __future__ import annotations

from pathlib import Path

import itk
import numpy as np
from PIL import Image

from monai_bus.data.records import DatasetError
from monai_bus.roi import lesion_pixels

# Pillow modes of images the bundle loads: 8-bit grey, RGB, RGBA and 16-bit grey
IMAGE_MODES = ("L", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I")
# masks may also be bilevel, palette or grey+alpha: any non-zero pixel is lesion
MASK_MODES = IMAGE_MODES + ("1", "P", "LA")
DICOM_SUFFIXES = (".dcm", ".dicom", "")


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is read as DICOM (by its suffix)."""
    return path.suffix.lower() in DICOM_SUFFIXES


def _open_pil(path: Path, modes: tuple[str, ...]) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(path, f"unreadable image ({error})") from None
    if image.mode not in modes:
        raise DatasetError(path, f"unsupported image mode {image.mode!r} (supported: {', '.join(modes)})")
    return image


def _read_dicom(path: Path) -> np.ndarray:
    try:
        image = itk.imread(str(path), imageio=itk.GDCMImageIO.New())
    except RuntimeError as error:
        raise DatasetError(path, f"unreadable DICOM ({str(error).strip().splitlines()[-1]})") from None
    array = itk.array_from_image(image)  # (frames, rows, columns[, samples]) for DICOM
    return array[0] if image.GetImageDimension() == 3 else array


def read_grey(path: Path) -> np.ndarray:
    """Read an image in full and return it as a 2-D float32 grey array.

    Colour images are averaged over their colour channels (alpha dropped); multi-frame DICOM
    returns its first frame.

    Raises
    ------
    DatasetError
        If the file is missing, unreadable, truncated or in an unsupported mode.
    """
    if not path.is_file():
        raise DatasetError(path, "file not found")
    if is_dicom(path):
        array = _read_dicom(path)
    else:
        array = np.asarray(_open_pil(path, IMAGE_MODES))
    array = array.astype(np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2 or min(array.shape) == 0:
        raise DatasetError(path, f"not a 2-D image (array shape {array.shape})")
    return array


def read_mask(path: Path) -> np.ndarray:
    """Read a PNG/JPEG lesion mask in full; its lesion pixels as bool [H, W] (see
    :func:`monai_bus.roi.lesion_pixels`). Raise :class:`DatasetError` if it is missing or unreadable."""
    if not path.is_file():
        raise DatasetError(path, "mask file not found")
    return lesion_pixels(_open_pil(path, MASK_MODES))
