"""``monai-bus metrics``: the paper's metrics and ROC AUC, recomputed from a per-image predictions CSV.

The CSV needs a header with ``label`` (0 benign, 1 malignant) and ``p_malignant`` columns, as written
by ``monai-bus demo`` and kept with every figure in the documentation
(:func:`monai_bus.prediction_files.read_labelled_predictions`). A case counts as predicted malignant
by the argmax of the two classes (:func:`monai_bus.metrics.predicted_malignant`).
"""

from __future__ import annotations

import argparse

from monai_bus.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="CSV with 'label' and 'p_malignant' columns")


def format_table(metrics: dict[str, float]) -> str:
    """A two-column Markdown table of metric name and value."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in metrics.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from monai_bus.metrics import classification_metrics
    from monai_bus.prediction_files import read_labelled_predictions

    labels, probabilities = read_labelled_predictions(args.predictions)
    if len(set(labels)) < 2:
        raise CommandError(f"{args.predictions}: all {len(labels)} images are {('benign', 'malignant')[labels[0]]}; "
                           "the AUC needs both classes.")
    print(f"{len(labels)} images ({sum(labels)} malignant), from {args.predictions}:\n")
    print(format_table(classification_metrics(labels, probabilities)))
    return 0
