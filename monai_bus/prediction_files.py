"""The bundle's ``predictions.csv``: one row per image, with a header, written and read with ``csv``.

Columns: ``image`` (the file), ``p_benign`` and ``p_malignant``. File names are quoted where they
need it, so a comma in a name cannot break a row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bus.errors import InputError

COLUMNS = ("image", "p_benign", "p_malignant")


class WritePredictionsd(MapTransform):
    """Append each item's class probabilities [2] under ``keys`` to ``<output_dir>/<filename>``.

    The first item of a run replaces the file and writes the header. The image's file comes from
    ``<meta_key>["filename_or_obj"]``.

    Args:
        keys: the probabilities' key (after softmax).
        meta_key: the image's meta data (``FromMetaTensord`` puts it under ``image_meta_dict``).
        output_dir: the CSV's folder.
        filename: the CSV's name.
    """

    def __init__(self, keys: KeysCollection = "pred", meta_key: str = "image_meta_dict",
                 output_dir: str | os.PathLike = ".", filename: str = "predictions.csv") -> None:
        super().__init__(keys)
        self.meta_key = meta_key
        self.path = Path(output_dir) / filename
        self.started = False

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        if not self.started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf8", newline="") as f:
                csv.writer(f).writerow(COLUMNS)
            self.started = True
        with open(self.path, "a", encoding="utf8", newline="") as f:
            for key in self.key_iterator(data):
                probabilities = torch.as_tensor(data[key]).float().flatten().tolist()
                csv.writer(f).writerow([str(data[self.meta_key]["filename_or_obj"]), *probabilities])
        return data


def read_predictions(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """The image file -> (P(benign), P(malignant)) rows of a bundle's ``predictions.csv``.

    Raises:
        InputError: naming the file and line, for a missing header, a malformed or repeated row.
    """
    result: dict[str, tuple[float, float]] = {}
    with open(path, encoding="utf8", newline="") as f:
        rows = csv.reader(f)
        if tuple(next(rows, ())) != COLUMNS:
            raise InputError(f"{path}: the header is not {','.join(COLUMNS)}.")
        for line, row in enumerate(rows, start=2):
            try:
                if len(row) != 3 or row[0] in result:
                    raise ValueError
                result[row[0]] = (float(row[1]), float(row[2]))
            except ValueError:
                raise InputError(f"{path}, line {line}: expected one image,p_benign,p_malignant row per image, "
                                 f"got {row}.") from None
    return result
