"""The study's ``predictions.csv``: one row per test image, per configuration and per seed.

Columns (:data:`COLUMNS`): ``configuration`` (an id of :data:`~monai_bus.study.configurations.BY_ID`),
``seed``, ``image`` (the path as the datalist writes it), ``group`` (the datalist's ``group`` of the
image, empty when it has none), ``label`` (0 benign, 1 malignant), ``p_benign`` and ``p_malignant``
(6 decimals; ``p_benign = 1 - p_malignant``) and ``predicted``, the argmax of the two. Every table and
figure of the study, but the attention gallery, is computed from this file alone, so the committed
file lets anyone recompute them. Its columns include those of ``monai-bus metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_bus.metrics import predicted_malignant
from monai_bus.prediction_files import labelled_row, read_rows, write_rows
from monai_bus.study import StudyError
from monai_bus.study.configurations import BY_ID, CONFIGURATIONS

COLUMNS = ("configuration", "seed", "image", "group", "label", "p_benign", "p_malignant", "predicted")
RunKey = tuple[str, int]  # (configuration id, seed)


def probabilities_of(p_malignant: np.ndarray) -> np.ndarray:
    """Class probabilities [N, 2] from P(malignant) [N], as the metrics take them."""
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    return np.stack([1.0 - p_malignant, p_malignant], axis=1)


@dataclass(frozen=True)
class RunPredictions:
    """The test-set predictions of one run, in the datalist's order.

    Attributes:
        images: image paths as in the datalist [N].
        groups: group of each image [N] ("" for none).
        labels: class indices [N].
        p_malignant: P(malignant) [N], rounded to 6 decimals as in the file.
    """

    images: tuple[str, ...]
    groups: tuple[str, ...]
    labels: np.ndarray
    p_malignant: np.ndarray

    @classmethod
    def rounded(cls, images, groups, labels, p_malignant) -> RunPredictions:
        """A run's predictions with P(malignant) rounded exactly as :func:`write_predictions` writes it."""
        p_malignant = np.asarray([float(f"{p:.6f}") for p in p_malignant])
        return cls(tuple(images), tuple(groups), np.asarray(labels, dtype=np.int64), p_malignant)

    @property
    def probabilities(self) -> np.ndarray:
        """[N, 2] class probabilities."""
        return probabilities_of(self.p_malignant)

    @property
    def predicted(self) -> np.ndarray:
        """[N] predicted class by :func:`monai_bus.metrics.predicted_malignant` (the argmax; ties go to benign)."""
        return predicted_malignant(self.probabilities).astype(int)


def _order(key: RunKey) -> tuple[int, int]:
    return [c.id for c in CONFIGURATIONS].index(key[0]), key[1]


def write_predictions(path: Path, runs: dict[RunKey, RunPredictions]) -> None:
    """Write all runs to ``path`` atomically, in Table 1's order of configurations, then by seed."""
    rows = []
    for key in sorted(runs, key=_order):
        run = runs[key]
        for image, group, label, p in zip(run.images, run.groups, run.labels, run.p_malignant):
            rows.append({"configuration": key[0], "seed": key[1], "group": group, **labelled_row(image, label, p)})
    write_rows(path, COLUMNS, rows)


def _parse_row(path: Path, line: int, row: dict) -> tuple[RunKey, str, str, int, float]:
    try:
        seed, label, predicted = int(row["seed"]), int(row["label"]), int(row["predicted"])
        p = float(row["p_malignant"])
    except (TypeError, ValueError) as error:
        raise StudyError(f"{path}, line {line}: {error}.") from error
    if row["configuration"] not in BY_ID:
        raise StudyError(f"{path}, line {line}: unknown configuration {row['configuration']!r}; "
                         f"expected one of {sorted(BY_ID)}.")
    if label not in (0, 1) or not 0.0 <= p <= 1.0:
        raise StudyError(f"{path}, line {line}: label must be 0 or 1 and p_malignant in [0, 1], "
                         f"got {row['label']!r} and {row['p_malignant']!r}.")
    if predicted != int(predicted_malignant(probabilities_of([p]))[0]):
        raise StudyError(f"{path}, line {line}: predicted {predicted} is not the argmax of p_malignant {p}.")
    return (row["configuration"], seed), row["image"], row["group"] or "", label, p


def read_predictions(path: Path) -> dict[RunKey, RunPredictions]:
    """The runs of a ``predictions.csv``; every run must predict the same images in the same order.

    Raises:
        InputError: naming the file (and line), for a missing column or a bad value (a
            :class:`~monai_bus.study.StudyError` for a bad value, a repeated image within a run, or runs
            that do not share their test images).
    """
    columns: dict[RunKey, dict[str, list]] = {}
    for line, row in read_rows(path, COLUMNS):
        key, image, group, label, p = _parse_row(path, line, row)
        run = columns.setdefault(key, {"images": [], "groups": [], "labels": [], "p_malignant": []})
        for name, value in zip(run, (image, group, label, p)):
            run[name].append(value)
    runs = {key: RunPredictions(tuple(c["images"]), tuple(c["groups"]), np.asarray(c["labels"], dtype=np.int64),
                                np.asarray(c["p_malignant"], dtype=np.float64)) for key, c in columns.items()}
    first = None
    for key, run in sorted(runs.items(), key=lambda item: _order(item[0])):
        if len(set(run.images)) != len(run.images):
            raise StudyError(f"{path}: run {key[0]} seed {key[1]} lists an image twice.")
        if first is None:
            first = (key, run)
        elif (run.images, run.groups, list(run.labels)) != (first[1].images, first[1].groups, list(first[1].labels)):
            raise StudyError(f"{path}: runs {first[0][0]} seed {first[0][1]} and {key[0]} seed {key[1]} differ in "
                             "their test images, groups or labels; a study's runs share one test split.")
    return runs
