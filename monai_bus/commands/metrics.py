"""``monai-bus metrics``: the paper's metrics and ROC AUC, recomputed from a per-image predictions CSV.

The CSV needs a header with ``label`` (0 benign, 1 malignant) and ``p_malignant`` columns, as written
by ``monai-bus demo`` and kept with every figure in the documentation. A case counts as predicted
malignant when ``p_malignant > 0.5`` (the argmax of the two classes, as in :mod:`monai_bus.metrics`).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from monai_bus.errors import CommandError

PREDICTION_COLUMNS = ("image", "label", "p_benign", "p_malignant", "predicted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="CSV with 'label' and 'p_malignant' columns")


def read_predictions(path: str | Path) -> tuple[list[int], np.ndarray]:
    """Labels [N] and class probabilities [N, 2] from a predictions CSV.

    Raises:
        CommandError: naming the file and the row, for a missing column or a bad value.
    """
    labels, p_malignant = [], []
    try:
        with open(path, encoding="utf8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"label", "p_malignant"} - set(reader.fieldnames or ())
            if missing:
                raise CommandError(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}.")
            for line, row in enumerate(reader, start=2):
                try:
                    label, probability = int(row["label"]), float(row["p_malignant"])
                except ValueError as error:
                    raise CommandError(f"{path}, line {line}: {error}.") from error
                if label not in (0, 1) or not 0.0 <= probability <= 1.0:
                    raise CommandError(f"{path}, line {line}: label must be 0 or 1 and p_malignant in [0, 1], "
                                       f"got {row['label']!r} and {row['p_malignant']!r}.")
                labels.append(label)
                p_malignant.append(probability)
    except OSError as error:
        raise CommandError(f"{path}: cannot read ({error.strerror}).") from error
    if not labels:
        raise CommandError(f"{path}: no prediction rows.")
    p_malignant = np.asarray(p_malignant)
    return labels, np.stack([1.0 - p_malignant, p_malignant], axis=1)


def format_table(metrics: dict[str, float]) -> str:
    """A two-column Markdown table of metric name and value."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in metrics.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from monai_bus.metrics import classification_metrics

    labels, probabilities = read_predictions(args.predictions)
    print(f"{len(labels)} images ({sum(labels)} malignant), from {args.predictions}:\n")
    print(format_table(classification_metrics(labels, probabilities)))
    return 0
