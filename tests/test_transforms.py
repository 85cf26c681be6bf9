"""The bundle's loader reads every image kind the datalist formats produce, in display orientation."""

import numpy as np
import pytest
from PIL import Image

from monai_bus.data.transforms import LoadUltrasoundImage, LoadUltrasoundImaged

# a non-square image whose value encodes row and column, so any transposition is caught
ROWS, COLUMNS = 24, 40
GRID = (np.arange(ROWS)[:, None] * 6 + np.arange(COLUMNS)[None, :] % 6).astype(np.uint8)


def write_dicom(path, pixels: np.ndarray) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


@pytest.mark.parametrize(
    "name, make",
    [
        ("grey.png", lambda: Image.fromarray(GRID)),
        ("rgb.png", lambda: Image.fromarray(np.stack([GRID] * 3, axis=-1))),
        ("rgba.png", lambda: Image.fromarray(np.dstack([GRID] * 3 + [np.full_like(GRID, 128)]))),
        ("sixteen.png", lambda: Image.fromarray(GRID.astype(np.uint16) * 257)),
    ],
)
def test_png_kinds(tmp_path, name, make):
    make().save(tmp_path / name)
    image = LoadUltrasoundImage()(tmp_path / name)
    scale = 257 if name == "sixteen.png" else 1
    assert image.shape == (1, ROWS, COLUMNS)
    np.testing.assert_allclose(image[0].numpy(), GRID.astype(float) * scale, atol=1e-3 * scale)
    assert str(image.meta["filename_or_obj"]).endswith(name)


def test_jpeg(tmp_path):
    smooth = np.tile(np.linspace(0, 250, COLUMNS, dtype=np.uint8), (ROWS, 1))
    Image.fromarray(smooth).save(tmp_path / "image.jpg", quality=95)
    image = LoadUltrasoundImage()(tmp_path / "image.jpg")
    assert image.shape == (1, ROWS, COLUMNS)
    assert np.abs(image[0].numpy() - smooth).mean() < 3


def test_dicom(tmp_path):
    write_dicom(tmp_path / "image.dcm", GRID)
    image = LoadUltrasoundImage()(tmp_path / "image.dcm")
    assert image.shape == (1, ROWS, COLUMNS)
    np.testing.assert_allclose(image[0].numpy(), GRID)


def test_array_input_and_dictionary_version():
    rgb = np.stack([GRID, GRID, GRID], axis=-1)
    rgb[-2:, :, 2] = 0  # a yellow annotation on the last two rows (8% of the pixels), under the colour limit
    out = LoadUltrasoundImaged("image")({"image": rgb, "label": 1})
    assert out["label"] == 1 and out["image"].shape == (1, ROWS, COLUMNS)
    expected = GRID.astype(np.float32)
    expected[-2:] *= 0.299 + 0.587
    np.testing.assert_allclose(out["image"][0].numpy(), expected, rtol=1e-5)


def test_errors_name_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.png").write_text("not an image")
    load = LoadUltrasoundImage()
    for name in ("truncated.png", "text.png"):
        with pytest.raises(ValueError, match=rf"{name}: not a readable image"):
            load(tmp_path / name)
    with pytest.raises(ValueError, match="missing.png: image file not found"):
        load(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="image array: expected a 2D image"):
        load(np.zeros((5, ROWS, COLUMNS)))
