"""Build a leakage-safe MONAI datalist, and its report, from a dataset in one of :data:`FORMATS`.

Every image is decoded in full (and its masks too); byte-identical images are always grouped;
with ``group="patient"`` images of one patient are grouped, with ``"duplicates"`` near-duplicate
images are (:mod:`monai_bus.data.duplicates`). A duplicate group whose labels conflict is left
out. Whole groups are then split, stratified by label (:mod:`monai_bus.data.splits`). Every item
gets its lesion box: the dataset's own (BUS-BRA's ``BBOX``), else the box of its masks; an image
without one is kept whole and flagged ``whole_image``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from monai_bus.data.boxes import box_from_masks, check_box, read_mask
from monai_bus.data.duplicates import (CORRELATION_THRESHOLD, components, equal_pairs, file_hash, fingerprint,
                                       near_duplicate_pairs)
from monai_bus.data.formats import FORMATS
from monai_bus.data.images import read_image
from monai_bus.data.records import CLASSES, BadFiles, DatasetError, Record
from monai_bus.data.splits import DEFAULT_PROPORTIONS, SPLITS, assign_groups, fold_splits

GROUP_MODES = ("auto", "patient", "duplicates", "none")


def _masks(record: Record) -> list[Path]:
    return [] if record.mask is None else record.mask if isinstance(record.mask, list) else [record.mask]


def _lesion_box(record: Record, image_shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The record's lesion box: the dataset's own, checked against the image; else the box of the union
    of its masks; None without a lesion pixel. The masks are decoded in full and checked against the image
    either way (the bundle's mask loss reads them)."""
    masks = [read_mask(mask) for mask in _masks(record)]
    for mask, array in zip(_masks(record), masks):
        if array.shape != image_shape:
            raise DatasetError(mask, f"mask of size {list(array.shape)} does not match its image {list(image_shape)}")
    if record.bbox is not None and (min(record.bbox) < 0 or record.bbox[1] > image_shape[0]
                                    or record.bbox[3] > image_shape[1]):  # check_box would clip it
        raise DatasetError(record.image, f"the dataset's lesion box {list(record.bbox)} reaches outside the image of "
                                         f"{image_shape[0]} rows and {image_shape[1]} columns")
    box = record.bbox if record.bbox is not None else box_from_masks(masks) if masks else None
    try:  # the bundle refuses what check_box refuses: the datalist must not hold it
        return None if box is None else check_box(box, image_shape, str(record.image))
    except ValueError as error:
        raise DatasetError(record.image, str(error).removeprefix(f"{record.image}: ")) from None


def _inspect(record: Record) -> tuple[str, np.ndarray, tuple[int, int, int, int] | None] | DatasetError:
    """Byte hash, thumbnail fingerprint and lesion box of a record's image, after decoding it and its masks."""
    try:
        grey = read_image(record.image, record.frame)[0]
        return file_hash(record.image), fingerprint(grey), _lesion_box(record, grey.shape)
    except DatasetError as error:
        return error


def _group_mode(group: str, records: list[Record], fmt: str) -> str:
    without = [record for record in records if record.patient is None]
    if group == "auto":
        return "duplicates" if without else "patient"
    if group == "patient" and without:
        raise DatasetError(without[0].image, f"no patient id ({fmt} gives none for this image); "
                                             "use --group duplicates or --group none")
    return group


def _read(fmt: str, root: Path, include_normal: bool, bad: BadFiles):
    """Records of usable images (sorted), their byte hashes, fingerprints and lesion boxes, and left-out
    normals."""
    records = sorted(FORMATS[fmt](root, bad), key=lambda record: str(record.image))
    listings = Counter(record.image for record in records)  # a table's rows may repeat an image, even relabelled
    for image in sorted(image for image, count in listings.items() if count > 1):
        bad(image, f"listed {listings[image]} times in the table; every listing is left out")
    records = [record for record in records if listings[record.image] == 1]
    normal = [record for record in records if record.label == 2 and not include_normal]
    records = [record for record in records if record.label != 2 or include_normal]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_inspect, records))
    for result in results:
        if isinstance(result, DatasetError):
            bad(result.path, result.problem)
    usable = [(record, *result) for record, result in zip(records, results) if not isinstance(result, DatasetError)]
    if not usable:
        raise DatasetError(root, "no usable labelled images")
    records, hashes, prints, boxes = zip(*usable)
    return list(records), list(hashes), np.stack(prints), list(boxes), normal


def _members(groups: list) -> dict:
    """Indices of the items with each key, in order of first appearance."""
    members = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    return members


def _parts_by_authors_folds(root, records, groups, names, folds, fold) -> list[str]:
    """Split of each record from the dataset authors' folds (checked to keep groups whole)."""
    by_group = defaultdict(set)
    for record, group in zip(records, groups):
        by_group[group].add(record.fold)
    for group, record in zip(groups, records):
        if len(by_group[group]) > 1:
            raise DatasetError(record.image, f"group {names[group]} spans the authors' folds {sorted(by_group[group])}")
        if not 1 <= record.fold <= folds:
            raise DatasetError(record.image, f"authors' fold {record.fold} lies outside 1..{folds} (--folds {folds})")
    mapping = fold_splits(folds, fold)
    present = sorted({record.fold for record in records})
    for number, part in mapping.items():
        if part != "training" and number not in present:
            raise DatasetError(root, f"the authors' fold {number} (the {part} fold) holds no images; "
                                     f"folds present: {present}")
    return [mapping[record.fold] for record in records]


def build_datalist(fmt: str, root: Path | str, out: Path | str, *,
                   proportions: Sequence[float] = DEFAULT_PROPORTIONS, folds: int | None = None,
                   fold: int | None = None, seed: int = 0, include_normal: bool = False,
                   group: str = "auto", skip_bad: bool = False) -> tuple[dict, dict]:
    """Read, check, group and split a dataset.

    Parameters
    ----------
    fmt : str
        A key of :data:`FORMATS`.
    root : Path or str
        The dataset folder (for ``csv``, the table or its folder).
    out : Path or str
        Where the datalist will be written: its paths are made relative to this file's folder.
    proportions : sequence of float
        Training, validation and test shares (used unless ``folds`` is given).
    folds, fold : int, optional
        K-fold mode: fold ``fold`` (1-based) is the test set, the next one the validation set.
        The authors' folds are used where the format has them (BUS-BRA's ``5-fold-cv.csv``).
    seed : int
        Seed of the split; a seed always gives the same split.
    include_normal : bool
        Keep ``normal`` images as class 2 instead of leaving them out.
    group : str
        One of :data:`GROUP_MODES`; ``auto`` means ``patient`` where every image has a patient id,
        else ``duplicates``.
    skip_bad : bool
        Skip, and report, unusable files instead of raising :class:`DatasetError`.

    Returns
    -------
    datalist, report : dict, dict
        The MONAI datalist (``training``, ``validation``, ``test`` and ``classes``) and the report.
        Items carry ``image``, ``label``, ``group``, ``source``, where there is one ``mask`` (a list
        of paths for a multi-lesion image), and either ``bbox``, the lesion box
        ``[row_start, row_stop, col_start, col_stop]`` in pixels (half-open, rows first; from the
        dataset's own table, else from the union of the masks), or ``"whole_image": true`` for an
        image without a lesion box (no mask, or an empty one). Report paths are relative to ``root``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if group not in GROUP_MODES:
        raise ValueError(f"unknown group mode {group!r}; choose from {', '.join(GROUP_MODES)}")
    if (folds is None) != (fold is None):
        raise ValueError("folds and fold must be given together")
    given_root = Path(root)  # as the report names it
    # absolute, as the reading threads need (monai_bus.data.images.ITK_LOCK)
    root, out, bad = Path(os.path.abspath(root)), Path(out), BadFiles(skip_bad)
    base = root if root.is_dir() else root.parent
    records, hashes, prints, boxes, normal = _read(fmt, root, include_normal, bad)
    mode = _group_mode(group, records, fmt)

    def rel(path: Path) -> str:
        return os.path.relpath(path, base)

    # duplicates: always byte-identical images, and near-duplicates in "duplicates" mode
    duplicate_pairs = equal_pairs(hashes)
    if mode == "duplicates":
        duplicate_pairs += near_duplicate_pairs(prints)
    duplicates = [m for m in _members(components(len(records), duplicate_pairs)).values() if len(m) > 1]
    conflicts = [m for m in duplicates if len({records[i].label for i in m}) > 1]
    excluded = {i for members in conflicts for i in members}

    # split groups: duplicates, joined by patient in "patient" mode
    patient_pairs = equal_pairs([record.patient for record in records]) if mode == "patient" else []
    groups = components(len(records), duplicate_pairs + patient_pairs)
    names = {group_id: "+".join(sorted({records[i].patient for i in members})) if mode == "patient"
             else f"{fmt}:{rel(records[members[0]].image)}" for group_id, members in _members(groups).items()}
    keep = [i for i in range(len(records)) if i not in excluded]
    if not keep:
        raise DatasetError(root, f"no image left: all {len(records)} usable images are duplicates whose labels "
                                 "conflict")
    if folds is not None and any(record.fold is not None for record in records):
        for i in keep:
            if records[i].fold is None:
                bad(records[i].image, "no fold: missing from the authors' fold table")
        keep = [i for i in keep if records[i].fold is not None]
        parts = _parts_by_authors_folds(root, [records[i] for i in keep], [groups[i] for i in keep], names, folds, fold)
    else:
        group_ids = sorted({groups[i] for i in keep})
        row = {group_id: index for index, group_id in enumerate(group_ids)}
        counts = np.zeros((len(group_ids), len(CLASSES)))
        for i in keep:
            counts[row[groups[i]], records[i].label] += 1
        if folds is None:
            part_of = dict(enumerate(SPLITS))
            assigned = assign_groups(counts, proportions, seed)
        else:
            part_of = fold_splits(folds, fold)
            assigned = assign_groups(counts, [1 / folds] * folds, seed) + 1
        parts = [part_of[assigned[row[groups[i]]]] for i in keep]

    classes = list(CLASSES if include_normal else CLASSES[:2])
    datalist = {part: [] for part in SPLITS}
    for i, part in zip(keep, parts):
        record = records[i]
        item = {"image": os.path.relpath(record.image, out.parent), "label": record.label,
                "group": names[groups[i]], "source": fmt}
        masks = [os.path.relpath(mask, out.parent) for mask in _masks(record)]
        if masks:
            item["mask"] = masks[0] if len(masks) == 1 else masks
        if record.frame is not None:
            item["frame"] = record.frame
        if boxes[i] is None:
            item["whole_image"] = True
        else:
            item["bbox"] = list(boxes[i])
        datalist[part].append(item)
    datalist["classes"] = classes

    def describe(members: list[int]) -> dict:
        same = _members([hashes[i] for i in members]).values()
        return {"images": [rel(records[i].image) for i in members],
                "labels": [CLASSES[records[i].label] for i in members],
                "byte_identical": [[rel(records[members[j]].image) for j in js] for js in same if len(js) > 1]}

    if folds is None:
        split = {"proportions": list(proportions)}
    else:
        split = {"folds": folds, "test_fold": fold, "validation_fold": fold % folds + 1,
                 "fold_source": "authors" if any(record.fold is not None for record in records) else "computed"}
    report = {
        "format": fmt, "root": str(given_root), "datalist": str(out), "seed": seed, "split": split, "grouping": mode,
        "near_duplicate_threshold": CORRELATION_THRESHOLD if mode == "duplicates" else None,
        "counts": {part: {name: sum(item["label"] == label for item in datalist[part])
                          for label, name in enumerate(classes)} for part in SPLITS},
        "groups": {part: len({item["group"] for item in datalist[part]}) for part in SPLITS},
        "duplicate_groups": [describe(members) for members in duplicates],
        "conflicting_groups_excluded": [describe(members) for members in conflicts],
        "normal_excluded": [rel(record.image) for record in normal],
        "lesion_boxes": {"from_table": sum(records[i].bbox is not None for i in keep),
                         "from_masks": sum(records[i].bbox is None and boxes[i] is not None for i in keep),
                         "whole_image": [rel(records[i].image) for i in keep if boxes[i] is None]},
        "skipped": sorted(({**entry, "file": entry["file"] if given_root.is_absolute() else
                            os.path.relpath(entry["file"])} for entry in bad.skipped), key=lambda entry: entry["file"]),
    }
    return datalist, report
