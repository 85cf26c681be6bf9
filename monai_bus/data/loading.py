"""How the bundle finds its data: a datalist JSON, a dataset folder, or the synthetic demo set."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai_bus.data.splits import SPLITS
from monai_bus.errors import InputError


def find_datalist(datalist: str | None, dataset_dir: str | None, demo_dir: str) -> str:
    """Path of the datalist the bundle uses.

    ``datalist`` when given; else ``<dataset_dir>/datalist.json``; else (neither set) the synthetic
    demo data set, generated once into ``demo_dir``.
    """
    if datalist:
        path = Path(datalist)
    elif dataset_dir:
        path = Path(dataset_dir) / "datalist.json"
    else:
        from monai_bus.data.demo import write_demo_dataset

        return str(write_demo_dataset(demo_dir))
    if not path.is_file():
        raise InputError(f"{path}: datalist not found (build one with `monai-bus datalist`).")
    return str(path)


def _resolve(value, base_dir: Path):
    if isinstance(value, list):
        return [_resolve(v, base_dir) for v in value]
    return value if os.path.isabs(value) else str(base_dir / value)


def _problem(item, num_classes: int) -> str | None:
    """What is wrong with a datalist item, or None."""
    if not isinstance(item, dict):
        return f"is not an object with 'image' and 'label' but {item!r}"
    if not isinstance(item.get("image"), str) or not item["image"]:
        return f"needs 'image', a file path, got {item.get('image')!r}"
    label = item.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        return f"needs 'label', an integer class index from 0 to {num_classes - 1}, got {label!r}"
    box = item.get("bbox")
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in box) and box[0] < box[1] and box[2] < box[3]):
        return f"has 'bbox' {box!r}; a box is [row_start, row_stop, col_start, col_stop], integers, starts below stops"
    masks = item.get("mask")
    if masks is not None and not (isinstance(masks, str) or (
            isinstance(masks, list) and masks and all(isinstance(m, str) for m in masks))):
        return f"has 'mask' {masks!r}; a mask is a file path, or a list of them"
    frame = item.get("frame")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        return f"has 'frame' {frame!r}; a frame is an integer from 0"
    return None


def _image_key(item: dict, base_dir: Path) -> tuple[str, int]:
    """The file and frame an item classifies, however its path is spelled (``./``, ``..``, a link)."""
    return os.path.realpath(_resolve(item["image"], base_dir)), item.get("frame") or 0


def _check_listed_once(content: dict, split: str, resolved: list[dict], base_dir: Path, datalist_file: str) -> None:
    """Refuse an image (and frame) that the split lists twice, or that another split of the datalist also
    lists: it would count twice, or leak between training and evaluation."""
    counts: dict[tuple[str, int], int] = {}
    for item in resolved:
        key = _image_key(item, base_dir)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] == 2:
            raise InputError(f"{datalist_file}: the '{split}' list holds {item['image']} more than once.")
    for other in SPLITS:
        listed = content.get(other) if other != split else None
        if not isinstance(listed, list):
            continue
        for item in listed:
            if isinstance(item, dict) and isinstance(item.get("image"), str) and item["image"] and isinstance(
                    item.get("frame") or 0, int) and _image_key(item, base_dir) in counts:  # else that split's fault
                raise InputError(f"{datalist_file}: {_resolve(item['image'], base_dir)} is in both the '{split}' "
                                 f"and the '{other}' lists; an image belongs to one split.")


def load_split(datalist_file: str, split: str, dataset_dir: str | None = None, num_classes: int = 2) -> list[dict]:
    """Items of one split of a MONAI datalist, checked, with ``image`` and ``mask`` paths made absolute.

    Relative paths are taken from ``dataset_dir`` when given, else from the datalist's folder. Every
    item needs an ``image`` file that exists and a ``label`` from 0 to ``num_classes - 1``; ``bbox``,
    ``mask`` and ``frame`` are checked when present (the box against its image when the image is
    loaded). No image (and frame) may be listed twice, in this split or in another of the datalist's
    :data:`~monai_bus.data.splits.SPLITS`.

    Raises:
        InputError: naming the datalist file, when it is not JSON or its split is missing or empty,
            and naming the item's index and image, when an item is malformed or a file is missing, or the
            image when it is listed twice.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    try:
        with open(datalist_file, encoding="utf8") as f:
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{datalist_file}: not a readable JSON datalist ({error}).") from None
    items = content.get(split) if isinstance(content, dict) else None
    if not items or not isinstance(items, list):
        raise InputError(f"{datalist_file}: the '{split}' list is missing or empty.")
    base_dir = Path(os.path.abspath(dataset_dir)) if dataset_dir else Path(datalist_file).resolve().parent
    resolved = []
    for index, item in enumerate(items):
        problem = _problem(item, num_classes)
        where = f"{datalist_file}: '{split}' item {index}"
        if problem:
            raise InputError(f"{where} ({item.get('image') if isinstance(item, dict) else item}) {problem}.")
        item = dict(item)
        for key in ("image", "mask"):
            if key in item:
                item[key] = _resolve(item[key], base_dir)
        for path in [item["image"], *([] if "mask" not in item else [item["mask"]] if isinstance(
                item["mask"], str) else item["mask"])]:
            if not os.path.isfile(path):
                raise InputError(f"{where} ({item['image']}): {path} not found.")
        resolved.append(item)
    _check_listed_once(content, split, resolved, base_dir, datalist_file)
    return resolved


def absent_classes(items: list[dict]) -> list[str]:
    """Which of benign and malignant no item is labelled with."""
    labels = {item["label"] for item in items}
    return [name for label, name in enumerate(("benign", "malignant")) if label not in labels]


def load_validation_split(datalist_file: str, dataset_dir: str | None = None) -> list[dict]:
    """The ``validation`` split (:func:`load_split`), which must hold benign and malignant images: training keeps
    the model of the best validation AUC, and without both classes it kept none and still ended without error.

    Raises:
        InputError: as :func:`load_split`, and naming the datalist when a class is absent.
    """
    items = load_split(datalist_file, "validation", dataset_dir)
    absent = absent_classes(items)
    if absent:
        raise InputError(f"{datalist_file}: the 'validation' list holds no {' and no '.join(absent)} image; training "
                         "keeps the model of the best validation AUC, which needs both classes.")
    return items
