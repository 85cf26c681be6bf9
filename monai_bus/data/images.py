"""The one image reader: a file or an array in, a checked grey float32 image [H, W] out.

``monai-bus datalist``, the bundle (training, evaluation, inference), the inference API, the
Slicer module and MONAI Label all read images through :func:`read_image`, so an image that one of
them accepts, all of them accept. It refuses, with a :class:`DatasetError` ``"<file>: <problem>"``:

- a missing file, a folder, or a file that is not an image;
- an image of more than :data:`MAX_PIXELS` pixels, checked from the header before decoding;
- an image whose sides are below :data:`MIN_SIDE` pixels, or differ more than :data:`MAX_ASPECT`-fold (a
  B-mode frame is near 4:3; such a strip would be squeezed out of shape to the network's square input),
  checked from the header for raster and DICOM files;
- a DICOM file of another modality (its Modality tag, such as CT or MR, neither US nor OT);
- several frames (multi-frame DICOM, multi-page TIFF), unless ``frame`` chooses one;
- a raster image whose EXIF orientation tag turns or mirrors it for display (a viewer, and a box drawn
  on it, would see other pixels than the network);
- CMYK and other colour spaces without a faithful grey conversion;
- a colour image with more than :data:`MAX_COLOUR_FRACTION` of its pixels in colour (a photograph, or a
  colour Doppler or elastography overlay): B-mode ultrasound is grey, or grey in a tint, and the
  training images carry colour only in annotations (at most 1.9% of the pixels of BUSI's 15 RGB images;
  BUS-BRA is grey);
- non-finite pixels (NaN, infinity), and pixels beyond the range of 32-bit floats;
- a masked array (its mask would be lost), and a ``frame`` for an array;
- an image without content: all, or all but 1%, of its pixels the same value.

Decoders: Pillow for raster formats (PNG, JPEG, TIFF, BMP, ...), ITK's GDCM for DICOM (``.dcm``,
``.dicom`` or no suffix without a raster signature, or a ``DICM`` preamble), numpy for ``.npy``. Colour
becomes grey with the ITU-R BT.601 luma weights; alpha is dropped.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from monai_bus.data.records import DatasetError

MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16
MAX_ASPECT = 10
# the share of pixels that must differ from the image's most common value
MIN_CONTENT_FRACTION = 0.01
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# a pixel is in colour when a channel departs from the image's grey-to-channel line by more than this share of the
# image's range of values (see colour_fraction)
COLOUR_DEPARTURE = 1 / 16
COLOUR_FITS = 2
MAX_COLOUR_FRACTION = 0.1
# Pillow modes read as they are; palette and YCbCr images are converted to RGB first
GREY_OR_RGB_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA", "RGBX")
CONVERTED_TO_RGB_MODES = ("P", "PA", "YCbCr")
DICOM_SUFFIXES = (".dcm", ".dicom")
ARRAY_NAME = "image array"  # an array's name in errors, where a file's path would be
DICOM_MODALITIES = ("US", "OT")  # ultrasound, and other (secondary captures); a file without the tag is read too
EXIF_ORIENTATION = 0x0112
TURNED_ORIENTATIONS = range(2, 9)  # 1 is upright; 0 (undefined) and values beyond 8 are shown upright too

# transfer syntaxes whose pixel data are stored as they are (implicit, explicit little, explicit big endian)
UNCOMPRESSED_DICOM = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
ITK_LOCK = threading.Lock()
"""Held while ITK reads a file. ITK loads its modules on first use and changes the process's working
directory meanwhile (``itk.support.base.LibraryLoader``); two threads loading at once can leave it
changed for good. Paths read in threads (datalist checks, CacheDataset) are absolute, so that other
threads' files are still found while it is changed."""

# the first bytes of the raster formats Pillow reads, to tell a suffix-less PNG or JPEG from DICOM
RASTER_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF8")


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is read as DICOM: by the ``DICM`` marker at byte 128, or, with the suffix ``.dcm``,
    ``.dicom`` or none, unless it starts like a PNG, JPEG, TIFF, BMP or GIF file."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as error:
        raise DatasetError(path, f"cannot be read ({error.strerror})") from None
    if head[128:132] == b"DICM":
        return True
    return path.suffix.lower() in DICOM_SUFFIXES + ("",) and not head.startswith(RASTER_SIGNATURES)


def _check_size(path, rows: int, columns: int, frames: int, frame: int | None) -> None:
    if rows * columns > MAX_PIXELS:
        raise DatasetError(path, f"image of {columns} x {rows} pixels is over the limit of {MAX_PIXELS:,} pixels")
    if frames > 1 and frame is None:
        raise DatasetError(path, f"has {frames} frames; choose one (frame 0 to {frames - 1})")
    if frame is not None and not 0 <= frame < frames:
        raise DatasetError(path, f"frame {frame} does not exist (the file has {frames} frame(s))")


def _read_dicom(path: Path, frame: int | None) -> np.ndarray:
    import itk  # slow to import; only DICOM needs it

    with ITK_LOCK:
        io = itk.GDCMImageIO.New()
        io.SetFileName(str(path))
        try:
            io.ReadImageInformation()
            columns, rows = io.GetDimensions(0), io.GetDimensions(1)
            frames = io.GetDimensions(2) if io.GetNumberOfDimensions() > 2 else 1
            _check_size(path, rows, columns, frames, frame)
            _check_aspect(path, rows, columns)
            _check_dicom_header(path)
            image = itk.imread(str(path), imageio=itk.GDCMImageIO.New())
        except RuntimeError as error:
            reason = re.sub(r"\(0x[0-9a-fA-F]+\)", "", str(error).strip().splitlines()[-1])  # no object address
            raise DatasetError(path, f"unreadable DICOM ({reason})") from None
        except itk.TemplateTypeError as error:  # such as 16- or 32-bit colour, which ITK's Python wrapping lacks
            raise DatasetError(path, f"DICOM pixels of a type that ITK cannot read ({str(error).splitlines()[0]})") \
                from None
        array = itk.array_from_image(image)  # (frames, rows, columns[, samples]) or (rows, columns[, samples])
    return array[frame or 0] if image.GetImageDimension() == 3 else array


def _check_dicom_header(path: Path) -> None:
    """Refuse a DICOM file of another modality than ultrasound (its Modality tag neither ``US`` nor ``OT``, other,
    which secondary captures use), and an uncompressed one smaller than its stored pixel data (GDCM would read
    past the short pixel data into memory it never filled, a different image at each read)."""
    import pydicom
    from pydicom.multival import MultiValue
    from pydicom.pixels.utils import get_expected_length

    try:  # the modality, transfer syntax and stored pixel layout, which ITK does not report
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        modality = header.get("Modality")
    except Exception:  # a header pydicom cannot read, but GDCM did: modality and length unknown
        return
    if isinstance(modality, MultiValue):  # one value by the standard; the first when a file holds more
        modality = modality[0] if modality else None
    if modality is not None and str(modality).strip().upper() not in DICOM_MODALITIES + ("",):
        raise DatasetError(path, f"its DICOM modality is {modality}, not ultrasound (US); this model reads B-mode "
                                 "breast ultrasound")
    try:
        syntax = header.file_meta.get("TransferSyntaxUID")
        needed = int(get_expected_length(header, "bytes")) if syntax in UNCOMPRESSED_DICOM else 0
    except Exception:  # a size pydicom cannot measure (not a number): length unknown
        return
    size = os.path.getsize(path)
    if size < needed:
        raise DatasetError(path, f"truncated DICOM: its pixel data need {needed:,} bytes, and the file has {size:,}")


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an open raster image; 1 (upright) without one, or with an EXIF block that
    cannot be parsed."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block: the pixels are still read, as without the check
        return 1


def _read_raster(path: Path, frame: int | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            frames = 1 if image.format == "MPO" else getattr(image, "n_frames", 1)  # MPO: a JPEG plus previews
            _check_size(path, image.height, image.width, frames, frame)
            _check_aspect(path, image.height, image.width)
            orientation = _exif_orientation(image)
            if orientation in TURNED_ORIENTATIONS:
                raise DatasetError(path, f"its EXIF orientation tag ({orientation}) turns or mirrors it for display, "
                                         "so its pixels and boxes are not what a viewer shows; save it upright "
                                         "without the tag")
            if frame:
                image.seek(frame)
            if image.mode in CONVERTED_TO_RGB_MODES:
                return np.asarray(image.convert("RGBA" if image.mode == "PA" else "RGB"))
            if image.mode not in GREY_OR_RGB_MODES:
                raise DatasetError(path, f"colour mode {image.mode} is not supported; convert the image to grey or RGB")
            image.load()
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(path, f"not a readable image ({error})") from None


def _read_numpy(path: Path, frame: int | None) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(path, f"not a readable .npy array ({error})") from None
    rows, columns = (array.shape[:2] if array.ndim >= 2 else (array.size, 1))
    _check_size(path, rows, columns, 1, frame)
    return np.asarray(array)


def to_grey(array: np.ndarray, name: str) -> np.ndarray:
    """A row-major image [H, W] or [H, W, C] (C in 1, 2, 3, 4: grey, grey+alpha, RGB, RGBA) as float32 [H, W].

    Raises:
        DatasetError: naming ``name``, for any other shape or a non-numeric array.
    """
    if np.ma.is_masked(array):
        raise DatasetError(name, "a masked array: its mask would be lost; give the pixels as a plain array")
    array = np.ma.getdata(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DatasetError(name, f"pixels of type {array.dtype} are not numbers")
    if array.ndim == 3 and array.shape[-1] in (1, 2):
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float32)
        fraction = colour_fraction(rgb)
        if fraction > MAX_COLOUR_FRACTION:
            raise DatasetError(name, f"{fraction:.1%} of its pixels are in colour, as in a photograph or a colour "
                                     "Doppler or elastography overlay; the models read grey B-mode ultrasound (colour "
                                     f"in at most {MAX_COLOUR_FRACTION:.0%} of the pixels, as in annotations)")
        array = rgb @ LUMA_WEIGHTS
    if array.ndim != 2:
        raise DatasetError(name, f"expected a 2D image (grey, RGB or RGBA), got an array of shape {list(array.shape)}")
    if array.dtype.kind == "f" and array.dtype.itemsize > 4:  # wider floats: values float32 would make infinite
        float32_max = float(np.finfo(np.float32).max)
        with np.errstate(invalid="ignore"):  # NaN is check_pixels' to name
            beyond = int(np.count_nonzero(np.isfinite(array) & (np.abs(array) > float32_max)))
        if beyond:
            raise DatasetError(name, f"{beyond:,} pixels are beyond the range of 32-bit floats (+-{float32_max:.3g})")
    return array.astype(np.float32)


def colour_fraction(rgb: np.ndarray) -> float:
    """The share of the pixels of ``rgb`` [H, W, 3] (float32) that are in colour, in [0, 1].

    Each channel is fitted with a least-squares line against the grey (the luma), rising or flat (a falling
    slope counts as 0). A pixel is in colour when one of its channels departs from its line by more than
    :data:`COLOUR_DEPARTURE` of the image's range of values. The lines are fitted :data:`COLOUR_FITS` times,
    each time over the pixels the previous fit found grey, so that colour on a minority of the pixels does
    not pull them. So a grey image in a tint (a sepia or blue B-mode map, a dim frame with a slight cast)
    is grey, and a photograph, a colour overlay or a two-colour map is not.
    """
    value_range = float(rgb.max() - rgb.min())
    if not 0 < value_range < np.inf:  # constant, or non-finite pixels, which check_pixels names
        return 0.0
    channels = np.ascontiguousarray(np.moveaxis(rgb, -1, 0)).reshape(3, -1) / value_range  # [3, N]
    grey = LUMA_WEIGHTS @ channels  # [N]
    in_colour = np.zeros(grey.shape, dtype=bool)
    for _ in range(COLOUR_FITS):
        weights = (~in_colour).astype(np.float32)  # fit over the pixels found grey so far
        count = weights.sum()
        grey_mean = weights @ grey / max(count, 1)
        centred = (grey - grey_mean) * weights
        spread = centred @ grey  # the sum of squares of the fitted pixels' grey about their mean
        if not spread > 0:  # fewer than two grey levels left to fit over
            break
        slopes = np.maximum(channels @ centred / spread, 0)  # [3]
        intercepts = channels @ weights / count - slopes * grey_mean  # [3]
        departure = np.abs(channels - intercepts[:, None] - slopes[:, None] * grey).max(axis=0)  # [N]
        in_colour = departure > COLOUR_DEPARTURE
    return float(in_colour.mean())


def _check_aspect(name, rows: int, columns: int) -> None:
    if min(rows, columns) > 0 and max(rows, columns) > MAX_ASPECT * min(rows, columns):
        raise DatasetError(name, f"image of {columns} x {rows} pixels: its sides differ more than {MAX_ASPECT}-fold, "
                                 "unlike an ultrasound frame")


def check_pixels(grey: np.ndarray, name: str) -> np.ndarray:
    """``grey`` [H, W] when it is large enough, finite and has content; see the module's rules."""
    if min(grey.shape) < MIN_SIDE:
        raise DatasetError(name, f"image of {grey.shape[1]} x {grey.shape[0]} pixels is below the minimum "
                                 f"of {MIN_SIDE} x {MIN_SIDE}")
    _check_aspect(name, *grey.shape)
    finite = np.isfinite(grey)
    if not finite.all():
        raise DatasetError(name, f"{int(grey.size - finite.sum()):,} pixels are NaN or infinite")
    # a value held by 99% of the pixels is, but for a chance below 1e-100, the most common one of a random
    # sample of 4096 (a fixed seed keeps the check deterministic)
    sample = grey.ravel()[np.random.default_rng(0).integers(0, grey.size, 4096)]
    values, counts = np.unique(sample, return_counts=True)
    most_common = values[counts.argmax()]
    same = int(np.count_nonzero(grey == most_common))
    if grey.size - same < MIN_CONTENT_FRACTION * grey.size:
        raise DatasetError(name, f"no image content: {same / grey.size:.1%} of the pixels have the value "
                                 f"{most_common:g}")
    return grey


def read_image(image: str | os.PathLike | np.ndarray, frame: int | None = None) -> tuple[np.ndarray, str]:
    """The checked grey image [H, W] float32 of a file or array, and the name errors use for it.

    Args:
        image: a file, or an array [H, W] or [H, W, C] in row-major (display) order.
        frame: the frame to read from a multi-frame file (counting from 0).

    Raises:
        DatasetError: ``"<file>: <problem>"`` (``"image array: ..."``, :data:`ARRAY_NAME`, for an array).
    """
    if isinstance(image, bytes):  # a path as bytes, as os and open take it
        image = os.fsdecode(image)
    if isinstance(image, str) and not image:
        raise DatasetError("image", "the file path is empty")
    if not isinstance(image, (str, os.PathLike)):
        name = ARRAY_NAME
        if frame not in (None, 0):
            raise DatasetError(name, f"frame {frame!r} chooses a frame of a file; an array is one image (frame 0)")
        grey = to_grey(image, name)
        if grey.size > MAX_PIXELS:
            raise DatasetError(name, f"{grey.size:,} pixels are over the limit of {MAX_PIXELS:,}")
        return check_pixels(grey, name), name
    path = Path(image)
    if path.is_dir():
        raise DatasetError(path, "is a folder, not an image file")
    if not path.is_file():
        raise DatasetError(path, "is not a regular file" if path.exists() else "image file not found")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise DatasetError(path, f"frame must be a whole number, counting from 0, got {frame!r}")
    if path.suffix.lower() == ".npy":
        array = _read_numpy(path, frame)
    elif is_dicom(path):
        array = _read_dicom(path, frame)
    else:
        array = _read_raster(path, frame)
    return check_pixels(to_grey(array, str(path)), str(path)), str(path)
