"""Image checks (every image kind the bundle loads, and broken files) and the DICOM reader."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_bus.data import BadFiles, DatasetError, build_datalist
from monai_bus.data.formats import read_dicom
from monai_bus.data.validation import read_grey, read_mask

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid  # noqa: E402

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def write_dicom(path: Path, frames: np.ndarray, patient: str | None = "P1") -> str:
    """Write an uncompressed ultrasound DICOM of shape (frames, rows, columns[, 3]); return its UID."""
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundMultiFrameImageStorage, uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta, UltrasoundMultiFrameImageStorage, uid, "US"
    if patient:
        ds.PatientID = patient
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape[:3]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    ds.PhotometricInterpretation = "RGB" if frames.ndim == 4 else "MONOCHROME2"
    if frames.ndim == 4:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return uid


@pytest.mark.parametrize("name, image", [
    ("grey.png", Image.fromarray(GREY)),
    ("rgb.png", Image.fromarray(np.stack([GREY] * 3, axis=-1))),
    ("rgba.png", Image.fromarray(np.stack([GREY] * 3 + [np.full_like(GREY, 255)], axis=-1))),
    ("grey16.png", Image.fromarray(GREY.astype(np.uint16) * 257)),
    ("photo.jpg", Image.fromarray(np.stack([GREY] * 3, axis=-1))),
])
def test_read_grey_supported_images(tmp_path, name, image):
    image.save(tmp_path / name)
    grey = read_grey(tmp_path / name)
    assert grey.shape == (20, 30) and grey.dtype == np.float32
    scale = 257 if "16" in name else 1
    tolerance = 20 if name.endswith(".jpg") else 0.5
    assert np.abs(grey / scale - GREY).mean() <= tolerance


@pytest.mark.parametrize("frames", [GREY[None], np.stack([GREY, 255 - GREY, GREY]),
                                    np.stack([np.stack([GREY] * 3, axis=-1)] * 2)])
def test_read_grey_dicom_single_multi_frame_and_rgb(tmp_path, frames):
    write_dicom(tmp_path / "a.dcm", frames)
    assert np.array_equal(read_grey(tmp_path / "a.dcm"), GREY.astype(np.float32))


@pytest.mark.parametrize("name, content, problem", [
    ("cut.png", "truncated", "unreadable image"),
    ("junk.png", b"\x89PNG but not really", "unreadable image"),
    ("palette.png", Image.fromarray(GREY).convert("P"), "unsupported image mode 'P'"),
    ("cmyk.jpg", Image.fromarray(GREY).convert("CMYK"), "unsupported image mode 'CMYK'"),
    ("grey-alpha.png", Image.fromarray(GREY).convert("LA"), "unsupported image mode 'LA'"),
    ("cut.dcm", "truncated", "unreadable DICOM"),
    ("junk.dcm", b"DICM? no", "unreadable DICOM"),
    ("missing.png", None, "file not found"),
])
def test_read_grey_rejects_bad_files(tmp_path, name, content, problem):
    path = tmp_path / name
    if content == "truncated":
        if name.endswith(".dcm"):
            write_dicom(path, GREY[None])
        else:
            Image.fromarray(GREY).save(path)
        path.write_bytes(path.read_bytes()[:-150])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content.save(path)
    with pytest.raises(DatasetError) as error:
        read_grey(path)
    assert error.value.path == str(path) and error.value.problem.startswith(problem)
    assert str(error.value).startswith(f"{path}: ")


def test_read_mask_modes(tmp_path):
    """Any non-zero pixel outside the alpha channel is lesion, whatever the mask's mode."""
    lesion = GREY > 128
    Image.fromarray(lesion).save(tmp_path / "bilevel.png")
    Image.fromarray(lesion.astype(np.uint8) * 255).convert("RGBA").save(tmp_path / "rgba.png")  # alpha 255 everywhere
    Image.fromarray(lesion.astype(np.uint8)).convert("LA").save(tmp_path / "grey_alpha.png")
    for name in ("bilevel.png", "rgba.png", "grey_alpha.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), lesion)
    (tmp_path / "bad.png").write_bytes(b"no")
    with pytest.raises(DatasetError, match="bad.png: unreadable image"):
        read_mask(tmp_path / "bad.png")


def dicom_dataset(root: Path) -> Path:
    """Four DICOM files of two patients; labels by SOPInstanceUID and by file name."""
    uids = [write_dicom(root / "p1" / f"{i}.dcm", np.roll(GREY, 7 * i, axis=1)[None].repeat(1 + i, 0), patient="P1")
            for i in range(2)]
    write_dicom(root / "p2" / "IMG0001", RNG.integers(0, 256, (2, 20, 30)), patient="P2")
    write_dicom(root / "p2" / "IMG0002", RNG.integers(0, 256, (1, 20, 30)), patient="P2")
    with open(root / "labels.csv", "w", newline="") as stream:
        csv.writer(stream).writerows([["SOPInstanceUID", "file", "label"], [uids[0], "", "benign"],
                                      [uids[1], "", "1"], ["", "p2/IMG0001", "malignant"],
                                      ["", "p2/IMG0002", "malignant"]])
    return root


def test_dicom_reader_labels_and_patients(tmp_path):
    root = dicom_dataset(tmp_path / "dicom")
    records = read_dicom(root, BadFiles(skip=False))
    assert [(r.image.relative_to(root).as_posix(), r.label, r.patient) for r in records] == [
        ("p1/0.dcm", 0, "dicom:P1"), ("p1/1.dcm", 1, "dicom:P1"),
        ("p2/IMG0001", 1, "dicom:P2"), ("p2/IMG0002", 1, "dicom:P2")]
    datalist, report = build_datalist("dicom", root, tmp_path / "dl.json", proportions=(0.5, 0.5, 0.0))
    assert report["grouping"] == "patient"
    assert sorted(len(datalist[part]) for part in ("training", "validation")) == [2, 2] and datalist["test"] == []


def test_dicom_reader_bad_files(tmp_path):
    root = dicom_dataset(tmp_path / "dicom")
    write_dicom(root / "p3" / "unlabelled.dcm", GREY[None])
    (root / "p3" / "notes.txt").write_text("not DICOM")
    with open(root / "labels.csv", "a") as stream:
        stream.write(",p9/gone.dcm,benign\n")
    with pytest.raises(DatasetError, match="notes.txt: not a readable DICOM file"):
        read_dicom(root, BadFiles(skip=False))
    bad = BadFiles(skip=True)
    assert len(read_dicom(root, bad)) == 4
    assert [(Path(e["file"]).name, e["reason"].split(":")[0]) for e in bad.skipped] == [
        ("notes.txt", "not a readable DICOM file"), ("unlabelled.dcm", "no label"), ("labels.csv", "line 6")]
    assert bad.skipped[2]["reason"] == "line 6: 'p9/gone.dcm' matches no DICOM file"
