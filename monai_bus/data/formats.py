"""One reader per dataset format, ``read_<format>(root, bad) -> list[Record]``, listed in :data:`FORMATS`.

A reader finds the images and their labels (and masks, patient ids and the authors' folds where
the format has them) and checks that every listed file exists. Each unusable file is passed to
``bad`` (a :class:`~monai_bus.data.records.BadFiles`), which raises or records it; missing
folders or tables raise :class:`~monai_bus.data.records.DatasetError` at once. Whether images
decode is checked later (:mod:`monai_bus.data.validation`). Hidden files (names starting with
".") are ignored. A multi-lesion image has a list of masks, any other a single mask path.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections import defaultdict
from pathlib import Path

from monai_bus.data.images import ITK_LOCK
from monai_bus.data.records import CLASSES, BadFiles, DatasetError, Record

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
MASK_STEM = re.compile(r"^(?P<image>.+)_mask(_\d+)?$")  # NAME_mask, NAME_mask_1, ... (BUSI)


def _require(path: Path, folder: bool = False) -> Path:
    if not (path.is_dir() if folder else path.is_file()):
        found = "a folder" if path.is_dir() else "a file" if path.exists() else None
        raise DatasetError(path, f"{'folder' if folder else 'file'} expected, found {found}" if found else
                           f"{'folder' if folder else 'file'} not found")
    return path


def _files(folder: Path, bad: BadFiles) -> list[Path]:
    """Non-hidden files below ``folder``, sorted. A linked folder, which is not followed, and an entry that
    is neither a file nor a folder (a broken link, a pipe) are bad files."""
    files = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.is_dir() and path.is_symlink():
            bad(path, "a linked folder, which is not followed: copy its files in")
        elif path.is_file():
            files.append(path)
        elif not path.is_dir():
            bad(path, "neither a file nor a folder (a broken link?)")
    return files


def _label(value) -> int | None:
    """Label index of ``benign``/``malignant``/``normal`` (any case) or ``0``/``1``/``2``; else None."""
    text = str(value).strip().lower()
    if text in CLASSES:
        return CLASSES.index(text)
    return int(text) if text in ("0", "1", "2") else None


def _csv_rows(path: Path, columns: tuple[str, ...]):
    """Yield ``(line number, row)`` of a CSV table with stripped values; check its columns."""
    with open(_require(path), newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        try:
            missing = [column for column in columns if column not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(path, f"missing column(s) {', '.join(missing)} (found: {reader.fieldnames})")
            repeated = sorted({name for name in reader.fieldnames if name and reader.fieldnames.count(name) > 1})
            if repeated:
                raise DatasetError(path, f"column(s) {', '.join(repeated)} appear more than once in the header")
            for row in reader:
                if None in row or None in row.values():  # DictReader's marks of more or fewer fields than the header's
                    raise DatasetError(path, f"line {reader.line_num}: {'more' if None in row else 'fewer'} fields "
                                             f"than the header's {len(reader.fieldnames)}")
                yield reader.line_num, {key: value.strip() for key, value in row.items()}
        except UnicodeDecodeError as error:
            raise DatasetError(path, f"not UTF-8 text ({error.reason})") from None


def _single(masks: list[Path]) -> Path | list[Path] | None:
    return None if not masks else masks[0] if len(masks) == 1 else masks


def _read_class_folders(root: Path, suffixes: tuple[str, ...], bad: BadFiles) -> list[Record]:
    """Images in ``root/{benign,malignant,normal}/`` (any case), labelled by folder, with masks
    named ``NAME_mask*.ext`` beside ``NAME.ext``. Any other entry of ``root`` is a bad file."""
    records = []
    for entry in sorted(_require(root, folder=True).iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            bad(entry, "no label: the file is not inside a class folder (benign, malignant, normal)")
            continue
        if entry.name.lower() not in CLASSES:
            bad(entry, "unknown class folder (expected benign, malignant or normal)")
            continue
        files = _files(entry, bad)
        if not files:
            bad(entry, "empty folder: no images")
        images, masks = [], defaultdict(list)
        for path in files:
            match = MASK_STEM.match(path.stem)
            if path.suffix.lower() not in suffixes:
                bad(path, f"not an image file (expected {', '.join(suffixes)})")
            elif match:
                masks[path.with_name(match["image"] + path.suffix)].append(path)
            else:
                images.append(path)
        for image in sorted(set(masks) - set(images)):
            for mask in masks[image]:
                bad(mask, f"mask without its image {image.name}")
        label = CLASSES.index(entry.name.lower())
        records += [Record(image, label, _single(masks.get(image, []))) for image in images]
    return records


def read_busi(root: Path, bad: BadFiles) -> list[Record]:
    """BUSI (Al-Dhabyani et al. 2020): ``Dataset_BUSI_with_GT/{benign,malignant,normal}/NAME.png``
    with ``NAME_mask.png`` (``NAME_mask_1.png``, ... for further lesions). Label = folder; no
    patient ids. ``root`` is ``Dataset_BUSI_with_GT`` or the folder holding it."""
    if (root / "Dataset_BUSI_with_GT").is_dir():
        root = root / "Dataset_BUSI_with_GT"
    for name in ("benign", "malignant"):
        _require(root / name, folder=True)
    return _read_class_folders(root, (".png",), bad)


def _busbra_box(text: str) -> tuple[int, int, int, int] | None:
    """BUS-BRA's ``BBOX`` ``"[x, y, w, h]"`` as a pixel box; None unless four integers with w, h >= 0.

    ``x`` and ``y`` are the 1-based column and row of the top-left lesion pixel, and the box ends at
    1-based column ``x + w`` and row ``y + h``, inclusive; so the half-open 0-based box is
    ``(y - 1, y + h, x - 1, x + w)``. On the copy in ``../shared/datasets`` this reproduces the bounding
    box of the lesion mask for 1491 of 1492 images.
    """
    values = text.strip().removeprefix("[").removesuffix("]").split(",")
    if len(values) != 4 or not all(value.strip().isdigit() for value in values):
        return None
    x, y, width, height = (int(value) for value in values)
    return (y - 1, y + height, x - 1, x + width) if x >= 1 and y >= 1 else None


def read_busbra(root: Path, bad: BadFiles) -> list[Record]:
    """BUS-BRA (Gomez-Flores et al. 2023): ``Images/bus_XXXX-{l,r,s}.png``, ``Masks/mask_XXXX-*.png``
    and ``bus_data.csv`` (``ID``, ``Case`` = patient id, ``Pathology``, and the lesion box ``BBOX``
    where the column exists); the authors' patient-grouped folds come from ``5-fold-cv.csv``
    (``ID``, ``kFold``) when present."""
    table = root / "bus_data.csv"
    fold_table, folds, fold_lines, fold_pathologies = root / "5-fold-cv.csv", {}, {}, {}
    if fold_table.is_file():
        for line, row in _csv_rows(fold_table, ("ID", "kFold")):
            if not row["kFold"].isdigit():
                raise DatasetError(fold_table, f"line {line}: kFold {row['kFold']!r} is not a fold number")
            if row["ID"] in folds:
                raise DatasetError(fold_table, f"line {line}: {row['ID']!r} is listed again (first on line "
                                               f"{fold_lines[row['ID']]}), so its fold is ambiguous")
            folds[row["ID"]], fold_lines[row["ID"]] = int(row["kFold"]), line
            fold_pathologies[row["ID"]] = row.get("Pathology")
    records, listed = [], set()
    for line, row in _csv_rows(table, ("ID", "Case", "Pathology")):
        image = root / "Images" / f"{row['ID']}.png"
        listed.add(image)
        label = _label(row["Pathology"])
        box = _busbra_box(row["BBOX"]) if "BBOX" in row else None
        if label not in (0, 1) or not row["Case"]:
            bad(image, f"{table.name} line {line}: needs a Case and a Pathology benign or malignant, "
                       f"got {row['Case']!r} and {row['Pathology']!r}")
        elif "BBOX" in row and box is None:
            bad(image, f"{table.name} line {line}: BBOX {row['BBOX']!r} is not [x, y, width, height] "
                       "(integers, x and y from 1)")
        elif not image.is_file():
            bad(image, f"listed in {table.name} (line {line}) but not found")
        elif fold_pathologies.get(row["ID"]) and _label(fold_pathologies[row["ID"]]) != label:
            bad(image, f"{table.name} line {line} says {row['Pathology']!r} but {fold_table.name} line "
                       f"{fold_lines[row['ID']]} says {fold_pathologies[row['ID']]!r}")
        else:
            mask = root / "Masks" / f"mask_{row['ID'].removeprefix('bus_')}.png"
            records.append(Record(image, label, mask if mask.is_file() else None,
                                  f"busbra:{row['Case']}", folds.get(row["ID"]), box))
    for image in _files(_require(root / "Images", folder=True), bad):
        if image not in listed:
            bad(image, f"no label: not listed in {table.name}")
    return records


def read_udiat(root: Path, bad: BadFiles) -> list[Record]:
    """UDIAT Dataset B (Yap et al. 2018): ``original/NNNNNN.png``, lesion masks ``GT/NNNNNN.png``
    and ``DatasetB.xlsx`` with an integer column ``Image`` and ``Type`` Benign or Malignant."""
    import openpyxl

    sheet = _require(root / "DatasetB.xlsx")
    try:
        rows = list(openpyxl.load_workbook(sheet, read_only=True, data_only=True).active.iter_rows(values_only=True))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(sheet, f"unreadable spreadsheet ({error})") from None
    names = [[str(value).strip() if value is not None else "" for value in row] for row in rows]
    header = next((index for index, row in enumerate(names) if {"Image", "Type"} <= set(row)), None)
    if header is None:
        raise DatasetError(sheet, "no header row with columns Image and Type")
    image_column, type_column = names[header].index("Image"), names[header].index("Type")
    records, listed = [], set()
    for number, row in enumerate(rows[header + 1:], start=header + 2):
        if all(value is None for value in row):
            continue
        value, label = row[image_column], _label(row[type_column])
        if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())) or label not in (0, 1):
            bad(sheet, f"row {number}: needs an integer Image and a Type Benign or Malignant, "
                       f"got {value!r} and {row[type_column]!r}")
            continue
        image = root / "original" / f"{int(value):06d}.png"
        listed.add(image)
        if not image.is_file():
            bad(image, f"listed in {sheet.name} (row {number}) but not found")
            continue
        mask = root / "GT" / image.name
        records.append(Record(image, label, mask if mask.is_file() else None))
    for image in _files(_require(root / "original", folder=True), bad):
        if image not in listed:
            bad(image, f"no label: not listed in {sheet.name}")
    return records


def read_folder(root: Path, bad: BadFiles) -> list[Record]:
    """One sub-folder per class, ``benign``, ``malignant`` and optionally ``normal`` (any case),
    holding PNG, JPEG or DICOM images (any depth), with optional ``NAME_mask*.ext`` masks."""
    records = _read_class_folders(root, IMAGE_SUFFIXES, bad)
    if not any((root / name).is_dir() for name in CLASSES) and not records:
        raise DatasetError(root, "no class folders (benign, malignant, normal)")
    return records


def read_csv(root: Path, bad: BadFiles) -> list[Record]:
    """A CSV table with columns ``image,label[,group]`` (``root`` is the table or a folder holding
    exactly one). Image paths are relative to the table's folder; labels are benign, malignant,
    normal or 0, 1, 2; ``group`` is a patient id."""
    tables = [root] if root.is_file() else sorted(_require(root, folder=True).glob("*.csv"))
    if len(tables) != 1:
        raise DatasetError(root, f"expected one CSV table, found {len(tables)}")
    table, records = tables[0], []
    for line, row in _csv_rows(table, ("image", "label")):
        # "a/../b.png" is b.png: the same image may not be listed twice under two spellings
        image, label = Path(os.path.normpath(table.parent / row["image"])), _label(row["label"])
        if not row["image"]:
            bad(table, f"line {line}: no image path")
        elif label is None:
            bad(image, f"no label: {table.name} line {line} has label {row['label']!r} "
                       "(expected benign, malignant, normal or 0, 1, 2)")
        elif not image.is_file():
            bad(image, f"listed in {table.name} (line {line}) but not found")
        else:
            group = row.get("group")
            records.append(Record(image, label, patient=f"csv:{group}" if group else None))
    return records


def _dicom_header(path: Path) -> tuple[str, str] | None:
    """``(SOPInstanceUID, PatientID)`` of a DICOM file, or None if it is not readable DICOM."""
    import itk  # slow to import; only the dicom format needs it

    with ITK_LOCK:
        reader = itk.GDCMImageIO.New()
        if not reader.CanReadFile(str(path)):
            return None
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None
        tags = reader.GetMetaDataDictionary()
        return tuple(str(tags[tag]).strip(" \x00") if tags.HasKey(tag) else "" for tag in ("0008|0018", "0010|0020"))


def read_dicom(root: Path, bad: BadFiles) -> list[Record]:
    """Ultrasound DICOM files (any depth below ``root``) labelled by ``root/labels.csv``: column
    ``label`` and, per row, ``SOPInstanceUID`` or ``file`` (path relative to ``root``). An optional
    column ``frame`` chooses the frame of a multi-frame file (counting from 0); a multi-frame file
    without one is refused, as the bundle refuses it. ``PatientID``, where present, is the patient
    id. One item per file."""
    table = root / "labels.csv"
    labels, frames, lines, repeated = {}, {}, {}, set()
    for line, row in _csv_rows(table, ("label",)):
        key = row.get("SOPInstanceUID") or row.get("file")
        label = _label(row["label"])
        frame = (row.get("frame") or "").strip()
        if not key or label is None or not (frame == "" or frame.isdigit()):
            bad(table, f"line {line}: needs a SOPInstanceUID or file and a label "
                       f"(benign, malignant, normal or 0, 1, 2), and a frame number or none, got {key!r}, "
                       f"{row['label']!r} and {frame!r}")
            continue
        if key in lines:  # whatever its label: no row wins over another
            bad(table, f"line {line}: {key!r} is listed again (first on line {lines[key]}); the file is left out")
            repeated.add(key)
            continue
        labels[key], frames[key], lines[key] = label, int(frame) if frame else None, line
    records, used = [], set()
    for path in _files(root, bad):
        if path == table or path.name == "DICOMDIR":
            continue
        header = _dicom_header(path)
        name = path.relative_to(root).as_posix()
        key = name if name in labels else header[0] if header and header[0] in labels else None
        if header is None:
            bad(path, "not a readable DICOM file")
            used.add(name)  # reported once: its labels.csv row does match it
        elif key is None:
            bad(path, f"no label: neither the file nor its SOPInstanceUID {header[0]!r} is in {table.name}")
        else:
            used.add(key)
            if key not in repeated:
                records.append(Record(path, labels[key], patient=f"dicom:{header[1]}" if header[1] else None,
                                      frame=frames[key]))
    for key in sorted(set(labels) - used, key=lines.get):
        bad(table, f"line {lines[key]}: {key!r} matches no DICOM file")
    return records


FORMATS = {
    "busi": read_busi,
    "busbra": read_busbra,
    "udiat": read_udiat,
    "folder": read_folder,
    "csv": read_csv,
    "dicom": read_dicom,
}
