"""The paper's metrics (sensitivity, specificity, precision, accuracy, F1, MCC) plus ROC AUC.

Malignant (class 1) is the positive class. For more than two classes, class 1 is scored against all
others. :func:`predicted_malignant` is the package's one decision rule: the inference API, these
metrics, the study and the benchmarks all call it.

Division by zero, defined explicitly:
- sensitivity, specificity, precision, F1 and MCC are 0.0 when their denominator is 0 (for example
  sensitivity with no malignant case, precision with no malignant prediction, MCC when any row or
  column of the confusion matrix is empty); accuracy is 0.0 for an empty set;
- ROC AUC is NaN when the labels hold only one class, or when a score is NaN: it is undefined there.

The six metrics are the paper's equations 6-11 on the confusion counts; ``tests/test_metrics.py``
checks all seven against scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import EpochMetric
from monai.utils import evenly_divisible_all_gather

POSITIVE_CLASS = 1
METRIC_NAMES = ("sensitivity", "specificity", "precision", "accuracy", "f1", "mcc", "auc")


def predicted_malignant(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Which cases are called malignant, from class probabilities [N, C].

    With an operating point ``threshold``: ``P(malignant) >= threshold``. Without one: the argmax of
    the classes (a tie goes to the lower class index), which for two classes is ``P(malignant) > 0.5``.

    Returns:
        bool [N].
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if threshold is None:
        return probabilities.argmax(axis=1) == POSITIVE_CLASS
    return probabilities[:, POSITIVE_CLASS] >= threshold


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve of class 1 against the rest; NaN with a single class, or with a NaN score.

    The Mann-Whitney U statistic: for each positive case, the negatives it outscores, a tie counting one
    half, over all positive-negative pairs. It equals ``sklearn.metrics.roc_auc_score`` (but for its
    rounding) at under a hundredth of its cost, which matters in the study's bootstrap (thousands of
    calls per run).
    """
    positive = np.asarray(labels) == POSITIVE_CLASS
    scores = np.asarray(scores, dtype=np.float64)
    negatives, positives = np.sort(scores[~positive]), scores[positive]
    if len(positives) == 0 or len(negatives) == 0 or np.isnan(scores).any():
        return math.nan
    # twice the negatives below each positive score, plus those equal to it
    twice_wins = np.searchsorted(negatives, positives, "left") + np.searchsorted(negatives, positives, "right")
    return float(twice_wins.sum() / (2.0 * len(positives) * len(negatives)))


def metrics_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """The six confusion-matrix metrics of the paper (equations 6-11), zero division -> 0.0."""
    mcc_denominator = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "mcc": _ratio(tp * tn - fp * fn, mcc_denominator),
    }


def confusion_counts(labels: Sequence[int], predicted: Sequence[bool]) -> dict[str, int]:
    """``tp``, ``fp``, ``tn``, ``fn`` of malignant (class 1) against the rest."""
    truth = np.asarray(labels) == POSITIVE_CLASS
    predicted = np.asarray(predicted, dtype=bool)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D of equal length, got {truth.shape} and "
                         f"{predicted.shape}.")
    tn, fp, fn, tp = np.bincount(2 * truth + predicted, minlength=4).tolist()
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def classification_metrics(labels: Sequence[int], probabilities: np.ndarray,
                           threshold: float | None = None) -> dict[str, float]:
    """All seven metrics from class labels [N] and class probabilities [N, C] (C >= 2), with the
    decision rule of :func:`predicted_malignant`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities must have shape [N, C] with C >= 2 and N = {len(labels)} labels, got "
                         f"{probabilities.shape}.")
    result = metrics_from_counts(**confusion_counts(labels, predicted_malignant(probabilities, threshold)))
    result["auc"] = roc_auc(labels, probabilities[:, POSITIVE_CLASS])
    return result


def _as_batch(values: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack a decollated list of per-case tensors (MONAI's ``from_engine`` output) into a batch."""
    if isinstance(values, torch.Tensor):
        return values
    return torch.stack([torch.as_tensor(v) for v in values])


class ClassificationMetric(EpochMetric):
    """One of :data:`METRIC_NAMES` as an ignite metric, computed over a whole epoch.

    ``output_transform`` must give ``(probabilities, labels)``: probabilities [B, C] (after softmax)
    and labels [B], [B, 1] or one-hot [B, C], as tensors or as lists of per-case tensors. Under
    ``torch.distributed`` the epoch's values are gathered from all ranks before computing; the
    ranks may hold different numbers of cases (a validation set that does not divide evenly).

    Args:
        metric: the metric's name, one of :data:`METRIC_NAMES`.
        output_transform: maps the engine's output to ``(probabilities, labels)``.
    """

    def __init__(self, metric: str, output_transform=lambda output: output, device: str | torch.device = "cpu"):
        if metric not in METRIC_NAMES:
            raise ValueError(f"metric must be one of {METRIC_NAMES}, got {metric!r}.")
        self.metric = metric
        super().__init__(self._compute, output_transform=output_transform, check_compute_fn=False, device=device)

    def _compute(self, probabilities: torch.Tensor, labels: torch.Tensor) -> float:
        return classification_metrics(labels.cpu().numpy(), probabilities.float().cpu().numpy())[self.metric]

    def update(self, output) -> None:
        probabilities, labels = (_as_batch(v).detach() for v in output)
        if labels.ndim == 2 and labels.shape == probabilities.shape:
            labels = labels.argmax(dim=1)
        super().update((probabilities.float(), labels.reshape(-1).long()))

    def compute(self) -> float:
        if not self._predictions:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        probabilities = evenly_divisible_all_gather(torch.cat(self._predictions), concat=True)
        labels = evenly_divisible_all_gather(torch.cat(self._targets), concat=True)
        return self._compute(probabilities, labels)
