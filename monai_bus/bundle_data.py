"""How the bundle finds its data: a datalist JSON, a dataset folder, or the synthetic demo set."""

from __future__ import annotations

import json
import os
from pathlib import Path

SPLITS = ("training", "validation", "test")


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
        from monai_bus.demo_data import write_demo_dataset

        return str(write_demo_dataset(demo_dir))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: datalist not found (build one with `monai-bus datalist`).")
    return str(path)


def _resolve(value, base_dir: Path):
    if isinstance(value, list):
        return [_resolve(v, base_dir) for v in value]
    return value if os.path.isabs(value) else str(base_dir / value)


def load_split(datalist_file: str, split: str, dataset_dir: str | None = None) -> list[dict]:
    """Items of one split of a MONAI datalist, with ``image`` and ``mask`` paths made absolute.

    Relative paths are taken from ``dataset_dir`` when given, else from the datalist's folder.

    Raises:
        ValueError: naming the datalist file, when the split is missing or empty, or an item has no
            ``image`` or no integer ``label``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    with open(datalist_file, encoding="utf8") as f:
        content = json.load(f)
    items = content.get(split)
    if not items:
        raise ValueError(f"{datalist_file}: the '{split}' list is missing or empty.")
    base_dir = Path(dataset_dir) if dataset_dir else Path(datalist_file).resolve().parent
    resolved = []
    for index, item in enumerate(items):
        if "image" not in item or not isinstance(item.get("label"), int):
            raise ValueError(f"{datalist_file}: item {index} of '{split}' needs 'image' and an integer 'label': {item}")
        item = dict(item)
        for key in ("image", "mask"):
            if key in item:
                item[key] = _resolve(item[key], base_dir)
        resolved.append(item)
    return resolved
