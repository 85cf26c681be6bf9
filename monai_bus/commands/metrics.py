"""``monai-bus metrics``: the paper's metrics and ROC AUC, recomputed from a per-image predictions CSV.

The CSV needs a header with ``label`` (0 benign, 1 malignant) and ``p_malignant`` columns, as written
by ``monai-bus demo`` and kept with every figure in the documentation, of one run
(:func:`monai_bus.prediction_files.read_labelled_predictions`). A case counts as predicted malignant as
the file's ``predicted`` column says, which must follow one threshold on P(malignant) (such as a bundle's
operating point); without that column, by the argmax of the two classes
(:func:`monai_bus.metrics.predicted_malignant`).
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


def decision_threshold(path: str, p_malignant, predicted) -> float:
    """The threshold on P(malignant) [N] that the ``predicted`` column [N] follows (``P >= threshold``): the
    least P called malignant, or, when none is, a value above every P.

    Raises:
        CommandError: when no one threshold gives that column.
    """
    import numpy as np

    threshold = p_malignant[predicted].min() if predicted.any() else np.nextafter(p_malignant.max(), np.inf)
    below = p_malignant[~predicted]
    if (below >= threshold).any():
        raise CommandError(f"{path}: its predicted column follows no one threshold on p_malignant: an image at "
                           f"{below.max():.6f} is predicted benign, one at {threshold:.6f} malignant.")
    return float(threshold)


def run(args: argparse.Namespace) -> int:
    from monai_bus.metrics import classification_metrics
    from monai_bus.prediction_files import read_labelled_predictions

    labels, probabilities, predicted = read_labelled_predictions(args.predictions)
    if len(set(labels)) < 2:
        raise CommandError(f"{args.predictions}: all {len(labels)} images are {('benign', 'malignant')[labels[0]]}; "
                           "the AUC needs both classes.")
    threshold = None if predicted is None else decision_threshold(args.predictions, probabilities[:, 1], predicted)
    rule = ("the argmax (P(malignant) > 0.5)" if threshold is None else
            "its predicted column: none malignant" if not predicted.any() else
            f"its predicted column: P(malignant) >= {threshold:.6f}, the least it calls malignant")
    print(f"{len(labels)} images ({sum(labels)} malignant), from {args.predictions}; malignant by {rule}:\n")
    print(format_table(classification_metrics(labels, probabilities, threshold)))
    return 0
