"""Dataset readers, leakage-safe splits and ``monai-bus datalist``, on small generated fixtures."""

from __future__ import annotations

import csv
import re
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_bus.cli import main
from monai_bus.data.boxes import box_from_masks
from monai_bus.data.datalist import build_datalist
from monai_bus.data.duplicates import components, equal_pairs, fingerprint, near_duplicate_pairs
from monai_bus.data.formats import read_busbra, read_busi, read_csv, read_folder, read_udiat
from monai_bus.data.records import BadFiles, DatasetError
from monai_bus.data.splits import assign_groups, fold_splits

SPLITS = ("training", "validation", "test")


def noise(seed: int, size=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def png(path: Path, seed: int = 0, array: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(seed) if array is None else array).save(path)
    return path


def write_csv(path: Path, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    return path


def items(datalist: dict) -> list[dict]:
    return [item for part in SPLITS for item in datalist[part]]


def split_of(datalist: dict, key: str) -> dict[str, set[str]]:
    """Splits in which each value of ``key`` occurs."""
    found = {}
    for part in SPLITS:
        for item in datalist[part]:
            found.setdefault(item[key], set()).add(part)
    return found


@pytest.fixture
def busi(tmp_path: Path) -> Path:
    """A BUSI layout: 6 benign (one near-duplicate pair, one two-lesion image), 4 malignant (one
    byte-identical to a benign image), 2 normal."""
    root = tmp_path / "BUSI" / "Dataset_BUSI_with_GT"
    for i in range(1, 7):
        png(root / "benign" / f"benign ({i}).png", seed=i)
        lesion = np.pad(np.full((12, 16), 255, np.uint8), ((6, 6), (8, 8)))  # a lesion in the middle of 24 x 32
        png(root / "benign" / f"benign ({i})_mask.png", array=lesion)
    png(root / "benign" / "benign (1)_mask_1.png", array=np.zeros((24, 32), np.uint8))
    near = noise(2).astype(int) + np.random.default_rng(99).integers(-8, 9, (24, 32))
    png(root / "benign" / "benign (6).png", array=np.clip(near, 0, 255).astype(np.uint8))
    for i in range(1, 5):
        png(root / "malignant" / f"malignant ({i}).png", seed=100 + i)
    shutil.copy(root / "benign" / "benign (3).png", root / "malignant" / "malignant (4).png")
    for i in range(1, 3):
        png(root / "normal" / f"normal ({i}).png", seed=200 + i)
    return tmp_path / "BUSI"


@pytest.fixture
def grouped_csv(tmp_path: Path) -> Path:
    """A csv-format dataset: 40 patients with 1 to 4 images each, 60% benign."""
    rows = [["image", "label", "group"]]
    for patient in range(40):
        for view in range(1 + patient % 4):
            name = f"images/p{patient}_{view}.png"
            png(tmp_path / name, seed=1000 + 10 * patient + view)
            rows.append([name, "benign" if patient % 5 < 3 else "malignant", f"p{patient}"])
    return write_csv(tmp_path / "labels.csv", rows)


def test_busi_reader(busi):
    records = read_busi(busi, BadFiles(skip=False))
    assert Counter(record.label for record in records) == {0: 6, 1: 4, 2: 2}
    by_name = {record.image.name: record for record in records}
    assert [mask.name for mask in by_name["benign (1).png"].mask] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert by_name["benign (2).png"].mask.name == "benign (2)_mask.png"
    assert by_name["malignant (1).png"].mask is None
    assert all(record.patient is None for record in records)


def test_busi_duplicates_conflicts_and_normal(busi, tmp_path):
    datalist, report = build_datalist("busi", busi, tmp_path / "out" / "dl.json")
    names = {Path(item["image"]).name for item in items(datalist)}
    # the byte-identical pair under two labels is reported and left out; normal is left out
    assert "benign (3).png" not in names and "malignant (4).png" not in names
    assert len(names) == 8
    [conflict] = report["conflicting_groups_excluded"]
    assert conflict["labels"] == ["benign", "malignant"]
    assert conflict["byte_identical"] == [["Dataset_BUSI_with_GT/benign/benign (3).png",
                                           "Dataset_BUSI_with_GT/malignant/malignant (4).png"]]
    assert len(report["normal_excluded"]) == 2
    # the near-duplicate pair is one group, in one split
    assert {frozenset(group["images"]) for group in report["duplicate_groups"]} == {
        frozenset(conflict["images"]),
        frozenset({"Dataset_BUSI_with_GT/benign/benign (2).png", "Dataset_BUSI_with_GT/benign/benign (6).png"})}
    groups = {Path(item["image"]).name: item["group"] for item in items(datalist)}
    assert groups["benign (2).png"] == groups["benign (6).png"]
    assert all(len(parts) == 1 for parts in split_of(datalist, "group").values())
    # paths are relative to the datalist's folder, two masks are kept as a list
    item = next(item for item in items(datalist) if item["image"].endswith("benign (1).png"))
    assert (tmp_path / "out" / item["image"]).resolve() == (busi / "Dataset_BUSI_with_GT/benign/benign (1).png")
    assert len(item["mask"]) == 2 and item["source"] == "busi" and item["label"] == 0
    assert datalist["classes"] == ["benign", "malignant"]


def test_busi_include_normal_and_patient_mode(busi, tmp_path):
    datalist, report = build_datalist("busi", busi, tmp_path / "dl.json", include_normal=True)
    assert Counter(item["label"] for item in items(datalist)) == {0: 5, 1: 3, 2: 2}
    assert datalist["classes"] == ["benign", "malignant", "normal"] and report["normal_excluded"] == []
    with pytest.raises(DatasetError, match=r"benign \(1\).png: no patient id"):
        build_datalist("busi", busi, tmp_path / "dl.json", group="patient")
    # group none: only byte-identical images are grouped, so the near-duplicates are apart groups
    datalist, report = build_datalist("busi", busi, tmp_path / "dl.json", group="none")
    groups = {Path(item["image"]).name: item["group"] for item in items(datalist)}
    assert groups["benign (2).png"] != groups["benign (6).png"]
    assert len(report["conflicting_groups_excluded"]) == 1


def test_csv_patient_groups_stay_whole_and_split_is_deterministic(grouped_csv, tmp_path):
    datalist, report = build_datalist("csv", grouped_csv.parent, tmp_path / "dl.json", seed=3)
    assert report["grouping"] == "patient"
    assert len(items(datalist)) == sum(1 + p % 4 for p in range(40))
    assert all(len(parts) == 1 for parts in split_of(datalist, "group").values())
    assert {item["group"] for item in items(datalist)} == {f"csv:p{p}" for p in range(40)}
    again, _ = build_datalist("csv", grouped_csv, tmp_path / "dl.json", seed=3)
    assert again == datalist
    other, _ = build_datalist("csv", grouped_csv, tmp_path / "dl.json", seed=4)
    assert other != datalist


def test_folds_cover_every_group_once(grouped_csv, tmp_path):
    tests = []
    for fold in range(1, 6):
        datalist, report = build_datalist("csv", grouped_csv, tmp_path / "dl.json", folds=5, fold=fold)
        assert report["split"] == {"folds": 5, "test_fold": fold, "validation_fold": fold % 5 + 1,
                                   "fold_source": "computed"}
        assert all(len(parts) == 1 for parts in split_of(datalist, "group").values())
        tests += [item["image"] for item in datalist["test"]]
    assert sorted(tests) == sorted(item["image"] for item in items(datalist))


def test_stratified_proportions(tmp_path):
    for i in range(100):
        png(tmp_path / "data" / ("benign" if i < 60 else "malignant") / f"{i}.png", seed=i, array=noise(i, (16, 16)))
    datalist, report = build_datalist("folder", tmp_path / "data", tmp_path / "dl.json")
    assert report["grouping"] == "duplicates" and report["duplicate_groups"] == []
    counts = report["counts"]
    for part, share in zip(SPLITS, (0.75, 0.15, 0.10)):
        assert abs(counts[part]["benign"] - 60 * share) <= 1
        assert abs(counts[part]["malignant"] - 40 * share) <= 1


def test_assign_groups_keeps_targets_and_seed():
    counts = np.array([[3, 0], [0, 2], [1, 0], [0, 1]] * 10)
    parts = assign_groups(counts, (0.75, 0.15, 0.10), seed=0)
    totals = np.array([counts[parts == p].sum(axis=0) for p in range(3)])
    assert np.all(np.abs(totals - np.outer((0.75, 0.15, 0.10), counts.sum(axis=0))) <= 3)
    assert np.array_equal(parts, assign_groups(counts, (0.75, 0.15, 0.10), seed=0))
    assert not np.any(assign_groups(counts, (0.8, 0.2, 0.0), seed=0) == 2)
    with pytest.raises(ValueError, match="sum to 1"):
        assign_groups(counts, (0.5, 0.2, 0.1), seed=0)


def test_fold_splits():
    assert fold_splits(5, 5) == {1: "validation", 2: "training", 3: "training", 4: "training", 5: "test"}
    with pytest.raises(ValueError, match="--fold must lie in 1..5"):
        fold_splits(5, 0)


def test_duplicate_helpers():
    a, b = noise(1, (40, 40)).astype(np.float32), noise(2, (40, 40)).astype(np.float32)
    prints = np.stack([fingerprint(a), fingerprint(b), fingerprint(a + 5), fingerprint(np.zeros((9, 9)))])
    assert near_duplicate_pairs(prints) == [(0, 2)]
    assert equal_pairs(["x", None, "y", "x", None]) == [(0, 3)]
    assert components(5, [(3, 1), (1, 4)]) == [0, 1, 2, 1, 1]


def busbra(root: Path, folds: bool = True, bbox: bool = False) -> Path:
    """A BUS-BRA layout: 6 patients (one with a single view), folds 1-3; with ``bbox``, a ``BBOX``
    column, each image's lesion being the pixels ``[case:case + 5, 2 * case:2 * case + 9]``, as in its mask."""
    rows, fold_rows = [["ID", "Case", "Histology", "Pathology"] + ["BBOX"] * bbox], [["ID", "Pathology", "kFold"]]
    for case in range(1, 7):
        for side in ("l", "r") if case != 6 else ("s",):
            image_id = f"bus_{case:04d}-{side}"
            png(root / "Images" / f"{image_id}.png", seed=10 * case + len(side))
            lesion = np.zeros((24, 32), np.uint8)
            lesion[case:case + 5, 2 * case:2 * case + 9] = 255 if bbox else 0
            png(root / "Masks" / f"mask_{case:04d}-{side}.png", array=lesion)
            pathology = "malignant" if case % 2 else "benign"
            rows.append([image_id, case, "x", pathology] + [f"[{2 * case + 1},{case + 1},8,4]"] * bbox)
            fold_rows.append([image_id, pathology, case % 3 + 1])
    write_csv(root / "bus_data.csv", rows)
    if folds:
        write_csv(root / "5-fold-cv.csv", fold_rows)
    return root


def test_busbra_reader_and_authors_folds(tmp_path):
    root = busbra(tmp_path / "BUS-BRA")
    records = read_busbra(root, BadFiles(skip=False))
    assert len(records) == 11 and records[0].patient == "busbra:1" and records[0].fold == 2
    assert records[0].mask == root / "Masks" / "mask_0001-l.png"
    datalist, report = build_datalist("busbra", root, tmp_path / "dl.json", folds=3, fold=1)
    assert report["split"]["fold_source"] == "authors"
    assert {item["group"] for item in datalist["test"]} == {"busbra:3", "busbra:6"}
    assert {item["group"] for item in datalist["validation"]} == {"busbra:1", "busbra:4"}
    with pytest.raises(DatasetError, match="the authors' fold 4 .* holds no images"):
        build_datalist("busbra", root, tmp_path / "dl.json", folds=4, fold=3)
    with pytest.raises(DatasetError, match="authors' fold 3 lies outside 1..2"):
        build_datalist("busbra", root, tmp_path / "dl.json", folds=2, fold=1)


def test_busbra_bad_rows(tmp_path):
    root = busbra(tmp_path / "BUS-BRA", folds=False)
    png(root / "Images" / "bus_0099-l.png", seed=5)
    with pytest.raises(DatasetError, match=r"bus_0099-l.png: no label: not listed in bus_data.csv"):
        read_busbra(root, BadFiles(skip=False))
    with open(root / "bus_data.csv", "a") as stream:
        stream.write("bus_0098-l,98,x,unknown\n")
    bad = BadFiles(skip=True)
    assert len(read_busbra(root, bad)) == 11
    assert [(Path(e["file"]).name, e["reason"][:28]) for e in bad.skipped] == [
        ("bus_0098-l.png", "bus_data.csv line 13: needs "), ("bus_0099-l.png", "no label: not listed in bus_")]


def test_busbra_fold_table_must_agree(tmp_path):
    """A repeated ID in 5-fold-cv.csv made its last fold win; a Pathology that disagrees with bus_data.csv's was
    not noticed."""
    root = busbra(tmp_path / "BUS-BRA")
    text = (root / "5-fold-cv.csv").read_text()
    (root / "5-fold-cv.csv").write_text(text + "bus_0001-l,malignant,1\n")
    with pytest.raises(DatasetError, match=r"5-fold-cv.csv: line 13: 'bus_0001-l' is listed again \(first on line 2\), "
                                           "so its fold is ambiguous$"):
        read_busbra(root, BadFiles(skip=False))
    (root / "5-fold-cv.csv").write_text(text.replace("bus_0002-l,benign", "bus_0002-l,malignant"))
    bad = BadFiles(skip=True)
    assert len(read_busbra(root, bad)) == 10
    assert [(Path(entry["file"]).name, entry["reason"]) for entry in bad.skipped] == [
        ("bus_0002-l.png", "bus_data.csv line 4 says 'benign' but 5-fold-cv.csv line 4 says 'malignant'")]


def test_linked_folders_and_entries_that_are_not_files_are_reported(tmp_path):
    """Neither was used nor listed among the skipped files."""
    root = tmp_path / "data"
    for label in ("benign", "malignant"):
        png(root / label / f"{label}.png", seed=len(label))
    png(tmp_path / "elsewhere" / "more.png", seed=3)
    (root / "malignant" / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "benign" / "gone.png").symlink_to(tmp_path / "no such file.png")
    bad = BadFiles(skip=True)
    assert [record.image.name for record in read_folder(root, bad)] == ["benign.png", "malignant.png"]
    assert [(Path(entry["file"]).name, entry["reason"]) for entry in bad.skipped] == [
        ("gone.png", "neither a file nor a folder (a broken link?)"),
        ("linked", "a linked folder, which is not followed: copy its files in")]


def test_busbra_bbox_column(tmp_path):
    """BBOX [x, y, w, h] (1-based, w and h one less than the extent) gives the box of the lesion mask."""
    root = busbra(tmp_path / "BUS-BRA", bbox=True)
    records = read_busbra(root, BadFiles(skip=False))
    assert records[0].bbox == (1, 6, 2, 11)  # case 1: rows 1-5, columns 2-10
    datalist, report = build_datalist("busbra", root, tmp_path / "dl.json")
    for item in items(datalist):
        mask = np.asarray(Image.open(tmp_path / item["mask"]))
        assert tuple(item["bbox"]) == box_from_masks(mask) and "whole_image" not in item
    assert report["lesion_boxes"] == {"from_table": 11, "from_masks": 0, "whole_image": []}
    text = (root / "bus_data.csv").read_text()
    (root / "bus_data.csv").write_text(text.replace("[3,2,8,4]", "[3,2,80,4]"))
    with pytest.raises(DatasetError, match=r"bus_0001-l.png: the dataset's lesion box \[1, 6, 2, 83\] reaches outside "
                                           "the image of 24 rows and 32 columns$"):  # was clipped to the image
        build_datalist("busbra", root, tmp_path / "dl.json")
    (root / "bus_data.csv").write_text(text.replace("[3,2,8,4]", "[3,40,8,4]"))
    with pytest.raises(DatasetError, match=r"bus_0001-l.png: the dataset's lesion box \[39, 44, 2, 11\] reaches "):
        build_datalist("busbra", root, tmp_path / "dl.json")
    (root / "bus_data.csv").write_text(text)
    png(root / "Masks" / "mask_0002-l.png", array=np.zeros((20, 32), np.uint8))  # beside a box: was not checked
    with pytest.raises(DatasetError, match=r"mask_0002-l.png: mask of size \[20, 32\] does not match its image"):
        build_datalist("busbra", root, tmp_path / "dl.json")
    (root / "bus_data.csv").write_text(text.replace('"[3,2,8,4]"', '"[3,2,8]"'))
    with pytest.raises(DatasetError, match=r"bus_0001-l.png: bus_data.csv line 2: BBOX '\[3,2,8\]' is not \[x, y, "):
        read_busbra(root, BadFiles(skip=False))


def test_boxes_from_masks_and_images_without_one(busi, tmp_path):
    """BUSI: the box of the union of an image's masks; images without a lesion mask are kept whole, flagged."""
    root = busi / "Dataset_BUSI_with_GT" / "benign"
    png(root / "benign (1)_mask.png", array=np.pad(np.full((3, 4), 255, np.uint8), ((2, 19), (5, 23))))
    png(root / "benign (1)_mask_1.png", array=np.pad(np.full((2, 2), 255, np.uint8), ((15, 7), (20, 10))))
    png(root / "benign (5)_mask.png", array=np.zeros((24, 32), np.uint8))  # an empty mask
    datalist, report = build_datalist("busi", busi, tmp_path / "dl.json")
    by_name = {Path(item["image"]).name: item for item in items(datalist)}
    assert by_name["benign (1).png"]["bbox"] == [2, 17, 5, 22]
    assert by_name["benign (2).png"]["bbox"] == [6, 18, 8, 24]
    for name in ("benign (5).png", "malignant (1).png"):  # an empty mask, no mask
        assert by_name[name]["whole_image"] is True and "bbox" not in by_name[name]
    assert report["lesion_boxes"]["from_table"] == 0 and report["lesion_boxes"]["from_masks"] == 4
    assert sorted(Path(p).name for p in report["lesion_boxes"]["whole_image"]) == [
        "benign (5).png", "malignant (1).png", "malignant (2).png", "malignant (3).png"]
    png(root / "benign (2)_mask.png", array=np.zeros((20, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"benign \(2\)_mask.png: mask of size \[20, 32\] does not match its image"):
        build_datalist("busi", busi, tmp_path / "dl.json")


def test_udiat_reader(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    root = tmp_path / "DatasetB"
    for number in (1, 2, 3):
        png(root / "original" / f"{number:06d}.png", seed=number)
        png(root / "GT" / f"{number:06d}.png", array=np.zeros((24, 32), np.uint8))
    workbook = openpyxl.Workbook()
    for row in (["Dataset B"], ["Image", "Type", "Histology"], [1, "Benign", "FA"], [2.0, "Malignant ", "IDC"],
                [3, "benign", "cyst"], [None, None, None]):
        workbook.active.append(row)
    workbook.save(root / "DatasetB.xlsx")
    records = read_udiat(root, BadFiles(skip=False))
    assert [(r.image.name, r.label, r.mask.name) for r in records] == [
        ("000001.png", 0, "000001.png"), ("000002.png", 1, "000002.png"), ("000003.png", 0, "000003.png")]
    workbook.active.append([4, "Unknown", ""])
    workbook.save(root / "DatasetB.xlsx")
    with pytest.raises(DatasetError, match=r"DatasetB.xlsx: row 7: needs an integer Image and a Type"):
        read_udiat(root, BadFiles(skip=False))


def test_folder_reader_bad_entries(tmp_path):
    root = tmp_path / "data"
    png(root / "Benign" / "a.png", seed=1)
    png(root / "malignant" / "case1" / "b.png", seed=2)
    Image.fromarray(noise(3)).save(root / "malignant" / "c.jpg")
    (root / "normal").mkdir()
    (root / "benign.txt").write_text("?")
    (root / "other").mkdir()
    (root / "Benign" / "notes.txt").write_text("?")
    (root / "Benign" / ".DS_Store").write_text("?")
    bad = BadFiles(skip=True)
    records = read_folder(root, bad)
    assert [(r.image.name, r.label) for r in records] == [("a.png", 0), ("c.jpg", 1), ("b.png", 1)]
    assert [(Path(e["file"]).name, e["reason"].split(":")[0]) for e in bad.skipped] == [
        ("notes.txt", "not an image file (expected .png, .jpg, .jpeg, .dcm)"), ("benign.txt", "no label"),
        ("normal", "empty folder"), ("other", "unknown class folder (expected benign, malignant or normal)")]
    with pytest.raises(DatasetError, match=r"notes.txt: not an image file"):
        read_folder(root, BadFiles(skip=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no class folders"):
        read_folder(tmp_path / "empty", BadFiles(skip=False))


def test_csv_rows_spelling_one_image_twice_are_both_left_out(tmp_path):
    """``sub/../a.png`` is ``a.png``: it counted as a second image, so one file was in training twice."""
    for name in ("a.png", "b.png", "c.png", "d.png"):
        png(tmp_path / name, seed=len(name) + ord(name[0]))
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "t.csv", [["image", "label"], ["a.png", "0"], ["sub/../a.png", "0"], ["b.png", "1"],
                                   ["c.png", "0"], ["d.png", "1"]])
    datalist, report = build_datalist("csv", tmp_path / "t.csv", tmp_path / "dl.json", skip_bad=True)
    assert sorted(Path(item["image"]).name for item in items(datalist)) == ["b.png", "c.png", "d.png"]
    [skipped] = report["skipped"]
    assert skipped["reason"] == "listed 2 times in the table; every listing is left out"


def test_csv_reader_errors(tmp_path):
    png(tmp_path / "a.png", seed=1)
    write_csv(tmp_path / "t.csv", [["image", "label"], ["a.png", "1"], ["b.png", "0"], ["a.png", ""]])
    with pytest.raises(DatasetError, match=r"b.png: listed in t.csv \(line 3\) but not found"):
        read_csv(tmp_path, BadFiles(skip=False))
    bad = BadFiles(skip=True)
    assert [(r.image.name, r.label) for r in read_csv(tmp_path / "t.csv", bad)] == [("a.png", 1)]
    assert [e["reason"][:9] for e in bad.skipped] == ["listed in", "no label:"]
    write_csv(tmp_path / "t.csv", [["path", "label"]])
    with pytest.raises(DatasetError, match=r"t.csv: missing column\(s\) image"):
        read_csv(tmp_path, BadFiles(skip=False))


def test_unreadable_images_stop_or_are_skipped(tmp_path):
    root = tmp_path / "data"
    for i in range(8):
        png(root / ("benign" if i < 4 else "malignant") / f"{i}.png", seed=i)
    data = (root / "benign" / "0.png").read_bytes()
    (root / "benign" / "0.png").write_bytes(data[: len(data) // 2])
    (root / "benign" / "1.png").write_bytes(b"not an image at all")
    Image.fromarray(noise(9)).convert("CMYK").save(root / "malignant" / "4.jpg")
    (root / "malignant" / "4.png").unlink()
    (root / "malignant" / "5_mask.png").write_bytes(b"broken mask")
    with pytest.raises(DatasetError, match=r"0.png: not a readable image"):
        build_datalist("folder", root, tmp_path / "dl.json")
    datalist, report = build_datalist("folder", root, tmp_path / "dl.json", skip_bad=True)
    assert sorted(Path(item["image"]).name for item in items(datalist)) == ["2.png", "3.png", "6.png", "7.png"]
    assert [(Path(e["file"]).name, e["reason"].split(" (")[0]) for e in report["skipped"]] == [
        ("0.png", "not a readable image"), ("1.png", "not a readable image"),
        ("4.jpg", "colour mode CMYK is not supported; convert the image to grey or RGB"),
        ("5_mask.png", "unreadable mask")]


def test_cli_writes_datalist_and_report(busi, tmp_path, capsys):
    out = tmp_path / "lists" / "busi.json"
    assert main(["datalist", "--format", "busi", "--root", str(busi), "--out", str(out), "--seed", "1"]) == 0
    summary = capsys.readouterr().out
    assert "conflicting labels: 1 groups, 2 images excluded" in summary and "busi_report.json" in summary
    datalist = json.loads(out.read_text())
    report = json.loads((tmp_path / "lists" / "busi_report.json").read_text())
    assert set(datalist) == {"training", "validation", "test", "classes"}
    assert sum(sum(c.values()) for c in report["counts"].values()) == len(items(datalist)) == 8
    from monai.data import load_decathlon_datalist
    loaded = load_decathlon_datalist(str(out), data_list_key="training")
    assert all(Path(item["image"]).is_file() for item in loaded)


def test_cli_never_writes_over_the_dataset_or_into_a_folder(tmp_path, capsys):
    table = tmp_path / "table.csv"
    table.write_text("image,label\n")
    (tmp_path / "folder.json").mkdir()
    for out, problem in [(table, "the datalist is JSON; give a file name ending in .json"),
                         (tmp_path / "folder.json", f"{tmp_path / 'folder.json'} is a folder"),
                         (table / "dl.json", f"{table} is a file, not a folder")]:
        assert main(["datalist", "--format", "csv", "--root", str(table), "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip() == f"monai-bus datalist: error: --out {out}: {problem}"
    assert table.read_text() == "image,label\n"


def test_cli_errors_name_the_file(tmp_path, capsys):
    png(tmp_path / "data" / "benign" / "a.png", seed=1)
    (tmp_path / "data" / "malignant").mkdir()
    assert main(["datalist", "--format", "folder", "--root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "dl.json")]) == 2
    expected = f"monai-bus datalist: error: {tmp_path / 'data' / 'malignant'}: empty folder: no images"
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "dl.json").exists()
    assert main(["datalist", "--format", "folder", "--root", str(tmp_path / "data"), "--out",
                 str(tmp_path / "dl.json"), "--folds", "5"]) == 2
    assert "--folds and --fold must be given together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["datalist", "--format", "folder", "--root", ".", "--out", "x.json", "--split", "0.5,0.5"])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # nan passed every check, and failed later naming no option
        main(["datalist", "--format", "folder", "--root", ".", "--out", "x.json", "--split", "0.5,0.5,nan"])
    assert "argument --split: expected three non-negative shares" in capsys.readouterr().err
    assert main(["datalist", "--format", "folder", "--root", str(tmp_path / "data"), "--out",
                 str(tmp_path / "dl.json"), "--seed", "-1"]) == 2  # numpy's message named no option
    assert capsys.readouterr().err == "monai-bus datalist: error: --seed must be 0 or more, got -1\n"


def test_a_table_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"image,label\n\xffa.png,benign\n")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'labels.csv'}: not UTF-8 text \\(invalid start byte\\)$"):
        build_datalist("csv", tmp_path / "labels.csv", tmp_path / "dl.json")


def test_a_repeated_row_is_named_and_a_datalist_of_nothing_refused(tmp_path):
    png(tmp_path / "a.png", seed=1)
    png(tmp_path / "b.png", seed=2)
    table = write_csv(tmp_path / "labels.csv", [["image", "label"], ["a.png", "benign"], ["b.png", "malignant"],
                                                ["a.png", "malignant"]])
    problem = "listed 2 times in the table; every listing is left out"
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'a.png'}: {problem}$"):
        build_datalist("csv", table, tmp_path / "dl.json")
    datalist, report = build_datalist("csv", table, tmp_path / "dl.json", skip_bad=True, proportions=(1.0, 0.0, 0.0))
    assert [item["image"] for item in datalist["training"]] == ["b.png"]  # never a label picked for a.png
    assert report["skipped"] == [{"file": str(tmp_path / "a.png"), "reason": problem}]
    png(tmp_path / "c.png", seed=1)  # a.png's bytes, with the other label
    write_csv(table, [["image", "label"], ["a.png", "benign"], ["c.png", "malignant"]])
    with pytest.raises(DatasetError, match="no image left: all 2 usable images are duplicates whose labels conflict"):
        build_datalist("csv", table, tmp_path / "dl.json")


@pytest.mark.parametrize("rows, problem", [
    ([["image", "label", "label"], ["a.png", "benign", "malignant"]], "column(s) label appear more than once in the header"),
    ([["image", "label"], ["a.png", "benign", "extra"]], "line 2: more fields than the header's 2"),
    # its missing group (patient) was read as none, and the patient's images could be split apart
    ([["image", "label", "group"], ["a.png", "benign"]], "line 2: fewer fields than the header's 3"),
])
def test_a_table_that_is_ambiguous_is_named(tmp_path, rows, problem):
    png(tmp_path / "a.png", seed=1)
    table = write_csv(tmp_path / "labels.csv", rows)
    with pytest.raises(DatasetError, match=f"^{table}: {re.escape(problem)}$"):
        build_datalist("csv", table, tmp_path / "dl.json")


def test_a_root_of_the_wrong_kind_is_named_so(tmp_path):
    table = write_csv(tmp_path / "labels.csv", [["image", "label"]])
    with pytest.raises(DatasetError, match=f"^{table}: folder expected, found a file$"):
        build_datalist("folder", table, tmp_path / "dl.json")


def test_cli_warns_of_a_split_without_both_classes(tmp_path, capsys):
    """The datalist is written, but a split that later training, calibration or the metrics cannot use is said."""
    for index in range(16):
        png(tmp_path / "data" / ("benign" if index % 2 else "malignant") / f"{index}.png", seed=index)
    out = tmp_path / "dl.json"
    assert main(["datalist", "--format", "folder", "--root", str(tmp_path / "data"), "--out", str(out),
                 "--split", "0.9,0.05,0.05"]) == 0
    counts = json.loads(out.with_name("dl_report.json").read_text())["counts"]
    warned = capsys.readouterr().err.splitlines()
    assert warned and len(warned) == sum(not counts[part]["benign"] or not counts[part]["malignant"]
                                         for part in ("training", "validation", "test"))
    assert f"monai-bus datalist: warning: the 'test' split of {out} holds no benign and no malignant image; " \
           "training, calibration and the metrics need both classes in each split" in warned
