"""Image checks (every image kind the bundle loads, and broken files) and the DICOM reader."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_bus.data.boxes import read_mask
from monai_bus.data.datalist import build_datalist
from monai_bus.data.formats import read_dicom
from monai_bus.data.images import read_image
from monai_bus.data.records import BadFiles, DatasetError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid  # noqa: E402

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def read_grey(path: Path) -> np.ndarray:
    return read_image(path)[0]


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


def test_read_grey_supported_modes(tmp_path):
    """Palette and grey+alpha images are read through their grey or RGB values."""
    Image.fromarray(GREY).convert("LA").save(tmp_path / "grey-alpha.png")
    assert np.array_equal(read_grey(tmp_path / "grey-alpha.png"), GREY.astype(np.float32))
    palette = Image.fromarray(np.stack([GREY] * 3, axis=-1)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "palette.png")
    expected = np.asarray(palette.convert("RGB")).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(read_grey(tmp_path / "palette.png"), expected, atol=1e-3)


def test_an_image_mostly_in_colour_is_refused_and_colour_annotations_are_not(tmp_path):
    """A grey image with 3 red rows of 20 (15%) is refused, at that share; with 1 (a caliper, text: 5%) it is read."""
    annotated = np.stack([GREY] * 3, axis=-1)
    annotated[:3] = (255, 0, 0)  # 15% of the pixels in colour
    with pytest.raises(DatasetError, match=r"^image array: 15.0% of its pixels are in colour, as in a photograph"):
        read_image(annotated)
    annotated[:3] = np.stack([GREY[:3]] * 3, axis=-1)
    annotated[:1] = (255, 0, 0)  # 5%
    np.testing.assert_allclose(read_image(annotated)[0], annotated.astype(np.float32) @ [0.299, 0.587, 0.114],
                               rtol=1e-6)
    Image.fromarray(np.dstack([GREY, 255 - GREY, GREY])).save(tmp_path / "photo.png")  # a two-colour map
    with pytest.raises(DatasetError, match=f"^{tmp_path}/photo.png: " + r"[\d.]+% of its pixels are in colour"):
        read_grey(tmp_path / "photo.png")


@pytest.mark.parametrize("tint", [(1.0, 0.9, 0.75), (0.8, 0.9, 1.0)], ids=["sepia", "blue"])
def test_a_grey_image_in_a_tint_is_read_as_grey(tint):
    """A B-mode map in a tint puts every pixel's channels apart, in proportion to its grey: not colour."""
    tinted = np.round(GREY[..., None] * np.array(tint)).astype(np.uint8)
    np.testing.assert_allclose(read_image(tinted)[0], tinted.astype(np.float32) @ [0.299, 0.587, 0.114], rtol=1e-6)
    dim = (tinted // 4).astype(np.uint8)  # a dim frame: the tint now a few grey levels
    dim[..., 2] += 2  # and a slight cast
    np.testing.assert_allclose(read_image(dim)[0], dim.astype(np.float32) @ [0.299, 0.587, 0.114], rtol=1e-6)


@pytest.mark.parametrize("frames, frame, expected", [
    (GREY[None], None, GREY),
    (np.stack([GREY, 255 - GREY, GREY]), 1, 255 - GREY),
    (np.stack([np.stack([GREY] * 3, axis=-1)] * 2), 0, GREY),
])
def test_read_dicom_single_frame_chosen_frame_and_rgb(tmp_path, frames, frame, expected):
    write_dicom(tmp_path / "a.dcm", frames)
    np.testing.assert_allclose(read_image(tmp_path / "a.dcm", frame)[0], expected, atol=1e-3)


@pytest.mark.parametrize("frames", [3, 4, 5])
def test_multi_frame_dicom_needs_a_frame(tmp_path, frames):
    """3 or 4 frames are never mistaken for RGB or RGBA samples."""
    write_dicom(tmp_path / "a.dcm", np.stack([GREY] * frames))
    with pytest.raises(DatasetError, match=f"a.dcm: has {frames} frames; choose one"):
        read_grey(tmp_path / "a.dcm")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_an_image_turned_for_display_by_its_exif_orientation_is_refused(tmp_path, suffix):
    exif = Image.Exif()
    for upright in (1, 0, 9):  # 0 is undefined, 9 and above no orientation: viewers show them upright
        exif[0x0112] = upright
        Image.fromarray(GREY).save(tmp_path / f"upright{suffix}", exif=exif)
        assert read_grey(tmp_path / f"upright{suffix}").shape == GREY.shape
    Image.fromarray(GREY).save(tmp_path / f"corrupt_exif{suffix}", exif=b"Exif\x00\x00not a TIFF block")
    assert read_grey(tmp_path / f"corrupt_exif{suffix}").shape == GREY.shape  # read, as before the check
    exif[0x0112] = 6  # shown turned by 90 degrees
    path = tmp_path / f"turned{suffix}"
    Image.fromarray(GREY).save(path, exif=exif)
    with pytest.raises(DatasetError, match=r"^.*turned\.(jpg|png): its EXIF orientation tag \(6\) turns or mirrors "
                                           r"it for display.*save it upright without the tag$"):
        read_grey(path)


@pytest.mark.parametrize("name, content, problem", [
    ("cut.png", "truncated", "not a readable image"),
    ("junk.png", b"\x89PNG but not really", "not a readable image"),
    ("cmyk.jpg", Image.fromarray(GREY).convert("CMYK"), "colour mode CMYK is not supported"),
    ("cut.dcm", "truncated", "unreadable DICOM"),
    ("junk.dcm", b"DICM? no", "unreadable DICOM"),
    ("missing.png", None, "image file not found"),
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
    with pytest.raises(DatasetError, match="bad.png: unreadable mask"):
        read_mask(tmp_path / "bad.png")


def test_masks_whose_non_zero_pixels_are_not_the_lesion_are_refused(tmp_path):
    """Each would have made a wrong box or training target (found by a hostile test of MONAI Label's training)."""
    lesion = np.zeros((60, 80), bool)
    lesion[20:40, 30:60] = True
    screenshot = np.stack([np.tile(np.arange(80, dtype=np.uint8), (60, 1))] * 3, axis=-1)
    screenshot[lesion] = (255, 0, 0)  # an image with the lesion painted red
    stray = lesion.astype(np.uint8) * 255
    stray[:3] = 3  # a few stray non-zero pixels beside the lesion
    alpha_only = np.zeros((60, 80, 4), np.uint8)
    alpha_only[..., 3] = lesion * 255
    palette = Image.fromarray((~lesion).astype(np.uint8), mode="P")  # index 0 is the lesion, and red
    palette.putpalette([255, 0, 0, 0, 0, 0])
    cases = {"screenshot.png": (Image.fromarray(screenshot), "not a lesion mask: 80 non-zero levels, where a mask "
                                                             "holds 0 and one lesion value"),
             "stray.png": (Image.fromarray(stray), "not a lesion mask: 2 non-zero levels"),
             "alpha.png": (Image.fromarray(alpha_only, mode="RGBA"), "not a lesion mask: its colour channels are all "
                                                                      "0 and only its alpha channel varies"),
             "inverted.png": (Image.fromarray(~lesion), "the lesion fills all four corners (88% of the image): an "
                                                        "inverted mask?")}
    for name, (mask, problem) in cases.items():
        mask.save(tmp_path / name)
        with pytest.raises(DatasetError) as error:
            read_mask(tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name}: {problem}"), str(error.value)
    Image.fromarray(lesion.astype(np.uint8) * 7).save(tmp_path / "seven.png")  # any one lesion value
    np.testing.assert_array_equal(read_mask(tmp_path / "seven.png"), lesion)
    palette.save(tmp_path / "palette.png")  # red on black, the lesion at index 0: read by colour, not index
    np.testing.assert_array_equal(read_mask(tmp_path / "palette.png"), lesion)
    # a palette mask by its colours, whatever their indices: white on black, white at index 0
    Image.fromarray(lesion.astype(np.uint8) * 255).convert("RGB").quantize(2).save(tmp_path / "quantized.png")
    assert Image.open(tmp_path / "quantized.png").getpixel((0, 0)) != 0  # black is not index 0 here
    np.testing.assert_array_equal(read_mask(tmp_path / "quantized.png"), lesion)
    # a JPEG blurs the lesion's edge over many values: above half the largest is lesion
    Image.fromarray(lesion.astype(np.uint8) * 255).save(tmp_path / "mask.jpg", quality=90)
    assert len(np.unique(np.asarray(Image.open(tmp_path / "mask.jpg")))) > 2
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.jpg"), lesion)


def test_read_mask_from_a_one_slice_volume(tmp_path):
    """A segmentation as 3D Slicer saves it for a 2D image (NIfTI or NRRD, one slice): rows first, as drawn."""
    import itk

    lesion = GREY > 128
    for name in ("mask.nii.gz", "mask.nrrd"):
        itk.imwrite(itk.image_from_array(lesion[np.newaxis].astype(np.uint8)), str(tmp_path / name))
        np.testing.assert_array_equal(read_mask(tmp_path / name), lesion)
    two_segments = lesion.astype(np.uint8)
    two_segments[: len(lesion) // 2] *= 2  # a label map's segments may have values of their own
    itk.imwrite(itk.image_from_array(two_segments[np.newaxis]), str(tmp_path / "segments.nrrd"))
    np.testing.assert_array_equal(read_mask(tmp_path / "segments.nrrd"), lesion)
    background = np.ones_like(lesion)
    background[5:15, 10:20] = False  # all but a lesion in the middle
    itk.imwrite(itk.image_from_array(background[np.newaxis].astype(np.uint8)), str(tmp_path / "inverted.nrrd"))
    with pytest.raises(DatasetError, match="inverted.nrrd: the lesion fills all four corners"):
        read_mask(tmp_path / "inverted.nrrd")
    itk.imwrite(itk.image_from_array(np.zeros((2, 8, 8), np.uint8)), str(tmp_path / "two_slices.nii.gz"))
    with pytest.raises(DatasetError, match=r"two_slices.nii.gz: a mask of \[2, 8, 8\] voxels is not a one-slice, "
                                           "single-component label map"):
        read_mask(tmp_path / "two_slices.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"no")
    with pytest.raises(DatasetError, match="bad.nii.gz: unreadable mask"):
        read_mask(tmp_path / "bad.nii.gz")


def dicom_dataset(root: Path) -> Path:
    """Four single-frame DICOM files of two patients; labels by SOPInstanceUID and by file name."""
    uids = [write_dicom(root / "p1" / f"{i}.dcm", np.roll(GREY, 7 * i, axis=1)[None], patient="P1")
            for i in range(2)]
    write_dicom(root / "p2" / "IMG0001", RNG.integers(0, 256, (1, 20, 30)), patient="P2")
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
    (root / "p3" / "broken.dcm").write_text("not DICOM either")
    with open(root / "labels.csv", "a") as stream:
        stream.write(",p9/gone.dcm,benign\n,p3/broken.dcm,benign\n")  # broken.dcm: named once, as unreadable
    with pytest.raises(DatasetError, match="broken.dcm: not a readable DICOM file"):
        read_dicom(root, BadFiles(skip=False))
    bad = BadFiles(skip=True)
    assert len(read_dicom(root, bad)) == 4
    assert [(Path(e["file"]).name, e["reason"].split(":")[0]) for e in bad.skipped] == [
        ("broken.dcm", "not a readable DICOM file"), ("notes.txt", "not a readable DICOM file"),
        ("unlabelled.dcm", "no label"), ("labels.csv", "line 6")]
    assert bad.skipped[3]["reason"] == "line 6: 'p9/gone.dcm' matches no DICOM file"


def test_datalist_refuses_a_multi_frame_dicom(tmp_path):
    """The bundle's loader needs a chosen frame, so the datalist does not take the file either."""
    root = dicom_dataset(tmp_path / "dicom")
    write_dicom(root / "p3" / "cine.dcm", np.stack([GREY] * 5), patient="P3")
    with open(root / "labels.csv", "a") as stream:
        stream.write(",p3/cine.dcm,benign\n")
    with pytest.raises(DatasetError, match="cine.dcm: has 5 frames; choose one"):
        build_datalist("dicom", root, tmp_path / "dl.json", proportions=(0.5, 0.5, 0.0))


def test_datalist_takes_a_chosen_frame(tmp_path):
    root = dicom_dataset(tmp_path / "dicom")
    write_dicom(root / "p3" / "cine.dcm", np.stack([GREY, 255 - GREY, GREY]), patient="P3")
    with open(root / "labels.csv") as stream:
        rows = list(csv.reader(stream))
    rows = [rows[0] + ["frame"]] + [row + [""] for row in rows[1:]] + [["", "p3/cine.dcm", "malignant", "1"]]
    with open(root / "labels.csv", "w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    datalist, _ = build_datalist("dicom", root, tmp_path / "dl.json", proportions=(0.5, 0.5, 0.0))
    items = [item for part in ("training", "validation") for item in datalist[part]]
    cine = next(item for item in items if item["image"].endswith("cine.dcm"))
    assert cine["frame"] == 1 and all("frame" not in item for item in items if item is not cine)



def test_truncated_dicom_is_refused(tmp_path):
    """Pixel data shorter than the image: GDCM would return memory it never filled, a new image each time."""
    write_dicom(tmp_path / "a.dcm", RNG.integers(0, 256, (1, 200, 300)))
    dataset = pydicom.dcmread(tmp_path / "a.dcm")
    dataset.PixelData = dataset.PixelData[:1000]
    dataset.save_as(tmp_path / "a.dcm")
    with pytest.raises(DatasetError, match=r"a.dcm: truncated DICOM: its pixel data need 60,000 bytes"):
        read_grey(tmp_path / "a.dcm")


@pytest.mark.parametrize("modality", ["MR", "CT", "OT", None, " us", ["US", "OT"]])
def test_a_dicom_of_another_modality_is_refused(tmp_path, modality):
    """Ultrasound (US), other (OT: secondary captures) and files without the tag are read; CT, MR and the rest
    are not (pydicom's MR and CT test images got a class before)."""
    write_dicom(tmp_path / "a.dcm", GREY[None])
    dataset = pydicom.dcmread(tmp_path / "a.dcm")
    if modality is None:
        del dataset.Modality
    else:
        dataset.Modality = modality
    dataset.save_as(tmp_path / "a.dcm")
    if modality not in ("MR", "CT"):  # leading spaces and case do not count; the first of several values does
        assert read_grey(tmp_path / "a.dcm").shape == GREY.shape
    else:
        with pytest.raises(DatasetError, match=rf"a.dcm: its DICOM modality is {modality}, not ultrasound \(US\)"):
            read_grey(tmp_path / "a.dcm")


@pytest.mark.parametrize("name, problem", [
    ("badVR.dcm", "its DICOM modality is RTDOSE"),  # an invalid size tag: was a TypeError
    ("SC_rgb_rle_16bit.dcm", "DICOM pixels of a type that ITK cannot read (itk.Image is not wrapped"),  # was ITK's
    ("SC_rgb_rle_32bit.dcm", "DICOM pixels of a type that ITK cannot read (itk.RGBPixel is not wrapped"),
    ("ExplVR_BigEndNoMeta.dcm", "unreadable DICOM (ITK ERROR: GDCMImageIO: Cannot read requested file)"),  # no 0x..
])
def test_pydicoms_odd_files_get_a_one_line_error_naming_them(name, problem):
    """Two of pydicom's own test files, found by benchmarks/unfamiliar.py, stopped the reader with another error;
    ITK's message for a third held an object's address, which changed from run to run."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    with pytest.raises(DatasetError) as raised:
        read_image(path)
    assert str(raised.value).startswith(f"{path}: {problem}") and "\n" not in str(raised.value)


@pytest.mark.parametrize("tags", [{"RescaleSlope": "0.5", "RescaleIntercept": "-1024"},  # GDCM widens the pixels
                                  {"RescaleSlope": "2", "RescaleIntercept": "0"}])
def test_a_rescaled_dicom_is_not_mistaken_for_a_truncated_one(tmp_path, tags):
    write_dicom(tmp_path / "a.dcm", GREY[None])
    dataset = pydicom.dcmread(tmp_path / "a.dcm")
    for name, value in tags.items():
        setattr(dataset, name, value)
    dataset.save_as(tmp_path / "a.dcm")
    slope, intercept = float(tags["RescaleSlope"]), float(tags["RescaleIntercept"])
    np.testing.assert_allclose(read_grey(tmp_path / "a.dcm"), GREY * slope + intercept)


def test_dicom_datalist_from_a_relative_root_in_a_new_process(tmp_path):
    """ITK's first use changes the working directory while the datalist's threads read: no file may be lost."""
    dicom_dataset(tmp_path / "dicom")
    code = ("from monai_bus.data.datalist import build_datalist; "
            "datalist, _ = build_datalist('dicom', 'dicom', 'dl.json', proportions=(0.5, 0.5, 0.0)); "
            "print(sum(len(datalist[part]) for part in ('training', 'validation', 'test')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4"]


@pytest.mark.parametrize("frame", [1.5, "1", True])
def test_a_frame_that_is_not_a_whole_number_is_refused(tmp_path, frame):
    write_dicom(tmp_path / "a.dcm", np.stack([GREY] * 3))
    with pytest.raises(DatasetError, match=f"a.dcm: frame must be a whole number, counting from 0, got {frame!r}"):
        read_image(tmp_path / "a.dcm", frame)


def test_a_file_that_is_not_regular_is_named_so(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(DatasetError, match="pipe.png: is not a regular file"):
        read_grey(tmp_path / "pipe.png")


def test_a_strip_is_refused_before_decoding_and_a_png_named_dcm_is_read(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (16, 170), dtype=np.uint8)).save(tmp_path / "strip.png")
    with pytest.raises(DatasetError, match="strip.png: image of 170 x 16 pixels: its sides differ more than 10-fold"):
        read_grey(tmp_path / "strip.png")
    with pytest.raises(DatasetError, match="image array: image of 16 x 170 pixels: its sides differ more than"):
        read_image(RNG.integers(0, 256, (170, 16)).astype(np.uint8))
    Image.fromarray(GREY).save(tmp_path / "photo.dcm", format="PNG")
    np.testing.assert_array_equal(read_grey(tmp_path / "photo.dcm"), GREY)


def test_a_dicom_listed_twice_in_labels_csv_is_left_out_and_named(tmp_path):
    root = dicom_dataset(tmp_path / "dicom")
    with open(root / "labels.csv", "a", newline="") as stream:
        csv.writer(stream).writerow(["", "p2/IMG0001", "benign"])  # line 6, relabelling line 4's file
    problem = "line 6: 'p2/IMG0001' is listed again (first on line 4); the file is left out"
    with pytest.raises(DatasetError, match=f"^{root / 'labels.csv'}: {re.escape(problem)}$"):
        read_dicom(root, BadFiles(skip=False))
    bad = BadFiles(skip=True)
    assert [r.image.relative_to(root).as_posix() for r in read_dicom(root, bad)] == ["p1/0.dcm", "p1/1.dcm",
                                                                                     "p2/IMG0002"]
    assert bad.skipped == [{"file": str(root / "labels.csv"), "reason": problem}]
