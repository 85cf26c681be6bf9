"""Per-image prediction CSVs, written and read with ``csv`` (names with a comma are quoted).

- The bundle's ``eval/predictions.csv``, written by its inference workflow
  (:class:`WritePredictionsd`): :data:`COLUMNS`, one row per image.
- Labelled predictions, kept beside every figure in the documentation so that ``monai-bus metrics``
  can recompute it: :data:`LABELLED_COLUMNS` (``image``, ``label``, ``p_benign``, ``p_malignant``,
  ``predicted``), possibly after columns of their own (the study's ``configuration`` and ``seed``, which
  ``monai-bus metrics`` refuses: it takes one run's predictions).
  :func:`labelled_row` makes a row, :func:`write_rows` writes a file, :func:`read_rows` and
  :func:`read_labelled_predictions` read one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bus.errors import InputError
from monai_bus.metrics import predicted_malignant

COLUMNS = ("image", "p_benign", "p_malignant")
RUN_COLUMNS = ("configuration", "seed", "model", "box_condition", "run")  # what tells runs apart in one file
LABELLED_COLUMNS = ("image", "label", "p_benign", "p_malignant", "predicted")


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
    with open(path, encoding="utf-8-sig", newline="") as f:
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


def labelled_row(image: str, label: int, p_malignant: float, threshold: float | None = None) -> dict[str, object]:
    """One row of :data:`LABELLED_COLUMNS`, probabilities to 6 decimals; ``predicted`` by
    :func:`monai_bus.metrics.predicted_malignant` on the rounded probabilities."""
    p_malignant = float(f"{p_malignant:.6f}")
    predicted = int(predicted_malignant(np.array([[1.0 - p_malignant, p_malignant]]), threshold)[0])
    return {"image": image, "label": int(label), "p_benign": f"{1.0 - p_malignant:.6f}",
            "p_malignant": f"{p_malignant:.6f}", "predicted": predicted}


def write_rows(path: str | os.PathLike, columns: Sequence[str], rows: list[dict]) -> None:
    """Write ``rows`` (dicts with ``columns``) under a header, atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def read_rows(path: str | os.PathLike, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header that holds at least ``columns``.

    Raises:
        InputError: naming the file (and line), when it cannot be read, is not UTF-8, lacks a column or
            repeats one, or has a row with more or fewer fields than the header.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a spreadsheet's byte-order mark is not a column
            reader = csv.DictReader(f)
            missing = set(columns) - set(reader.fieldnames or ())
            if missing:
                raise InputError(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}.")
            repeated = sorted({name for name in reader.fieldnames if name and reader.fieldnames.count(name) > 1})
            if repeated:
                raise InputError(f"{path}: column(s) {repeated} appear more than once in the header.")
            for row in reader:
                line = reader.line_num
                if None in row or None in row.values():  # DictReader's marks of too many or too few fields
                    raise InputError(f"{path}, line {line}: not as many fields as the header's "
                                     f"{len(reader.fieldnames)}.")
                yield line, row
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror}).") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason}).") from None


def read_labelled_predictions(path: str | os.PathLike) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """Labels [N], class probabilities [N, 2] and the ``predicted`` column as bool [N] (None without one)
    from a CSV with ``label`` and ``p_malignant`` columns, of one run (one value of its :data:`RUN_COLUMNS`).

    Raises:
        InputError: naming the file (and line), for a missing column, a bad value, a second run (as in the
            study's predictions), a row that repeats another's image, label and P(malignant), or no rows.
    """
    labels, p_malignant, predicted, lines, runs = [], [], [], {}, {}
    for line, row in read_rows(path, ("label", "p_malignant")):
        try:
            label, probability = int(row["label"]), float(row["p_malignant"])
        except (TypeError, ValueError):
            label, probability = None, None
        if label not in (0, 1) or probability is None or not 0.0 <= probability <= 1.0 or \
                row.get("predicted") not in (None, "0", "1"):
            raise InputError(f"{path}, line {line}: label must be 0 or 1, p_malignant in [0, 1] and predicted 0 or 1, "
                             f"got {row['label']!r}, {row['p_malignant']!r} and {row.get('predicted')!r}.")
        run = {column: row[column] for column in RUN_COLUMNS if column in row}
        if runs and tuple(run.items()) not in runs:
            raise InputError(f"{path}, line {line}: a second run ({', '.join(f'{k} {v}' for k, v in run.items())}); "
                             "the file must hold one run's predictions.")
        runs.setdefault(tuple(run.items()), line)
        repeated = (row.get("image"), row["label"], row["p_malignant"])  # two frames of one file differ in P
        if "image" in row and lines.setdefault(repeated, line) != line:
            raise InputError(f"{path}, line {line}: repeats line {lines[repeated]} ({row['image']}).")
        labels.append(label)
        p_malignant.append(probability)
        predicted.append(row.get("predicted") == "1")
    if not labels:
        raise InputError(f"{path}: no prediction rows.")
    p_malignant = np.asarray(p_malignant)
    return (labels, np.stack([1.0 - p_malignant, p_malignant], axis=1),
            np.array(predicted) if "predicted" in row else None)
