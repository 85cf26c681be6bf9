"""Calibration and the operating point of a trained classifier, fitted on validation predictions only.

- **Temperature scaling** (Guo et al., ICML 2017): the log-odds of malignancy are divided by one
  temperature ``T``, fitted by minimising the negative log-likelihood of the validation labels.
  For two classes this is ``softmax(logits / T)``; it changes no ranking, so not the AUC.
- **Operating point**: the largest threshold on calibrated P(malignant) at which the validation
  sensitivity reaches its target (0.90 by default); an image is malignant when ``P >= threshold``
  (:func:`monai_bus.metrics.predicted_malignant`).
- **Expected calibration error** of P(malignant) over 10 equal-width bins, and the bins of a
  reliability diagram.
- **Likelihood categories** in the style of breast-ultrasound decision support: benign, probably
  benign, suspicious, malignant, with the operating point as the line between probably benign and
  suspicious (:func:`likelihood_category`).

Probabilities come in as P(malignant) [N]; the log-odds are computed from them, clipped away from 0
and 1, so that prediction CSVs (6 decimals) serve as well as logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking log-odds
TEMPERATURE_RANGE = (0.05, 20.0)
BENIGN_BELOW = 0.02  # the BI-RADS 3 bound: "probably benign" means at most 2% likelihood of malignancy
MALIGNANT_FROM = 0.95  # the BI-RADS 5 bound: 95% or more
CATEGORIES = ("benign", "probably benign", "suspicious", "malignant")


def _log_odds(p_malignant: Sequence[float]) -> np.ndarray:
    return logit(np.clip(np.asarray(p_malignant, dtype=np.float64), EPSILON, 1.0 - EPSILON))


def _check(labels: Sequence[int], p_malignant: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    labels, p_malignant = np.asarray(labels), np.asarray(p_malignant, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != p_malignant.shape or not len(labels):
        raise ValueError(f"labels and p_malignant must be 1-D, equally long and not empty, got {labels.shape} and "
                         f"{p_malignant.shape}.")
    if not np.isin(labels, (0, 1)).all() or not ((p_malignant >= 0) & (p_malignant <= 1)).all():
        raise ValueError("labels must be 0 or 1 and p_malignant in [0, 1].")
    return labels.astype(np.int64), p_malignant


def scale(p_malignant: Sequence[float], temperature: float) -> np.ndarray:
    """P(malignant) [N] after temperature scaling: ``sigmoid(log-odds / temperature)``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    return expit(_log_odds(p_malignant) / temperature)


def fit_temperature(labels: Sequence[int], p_malignant: Sequence[float]) -> float:
    """The temperature in :data:`TEMPERATURE_RANGE` that minimises the validation NLL.

    Raises:
        ValueError: for malformed input, labels of one class only (nothing to calibrate against), or a
            minimum at either end of the range: probabilities that do not follow the labels (upper), or
            validation images that the network sets apart without error (lower).
    """
    labels, p_malignant = _check(labels, p_malignant)
    if labels.min() == labels.max():
        raise ValueError("fitting a temperature needs validation labels of both classes.")
    z, y = _log_odds(p_malignant), labels

    def nll(temperature: float) -> float:
        scaled = z / temperature
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    temperature = float(minimize_scalar(nll, bounds=TEMPERATURE_RANGE, method="bounded").x)
    low, high = TEMPERATURE_RANGE
    if temperature > high * 0.999:
        raise ValueError(f"the validation likelihood is highest at the upper limit of the temperature's range "
                         f"{list(TEMPERATURE_RANGE)} (T = {temperature:.3g}): the probabilities do not follow the "
                         "labels (every image the same P(malignant)?), so no temperature calibrates them.")
    if temperature < low * 1.001:
        raise ValueError(f"the validation likelihood is highest at the lower limit of the temperature's range "
                         f"{list(TEMPERATURE_RANGE)} (T = {temperature:.3g}): the network sets the validation images "
                         "apart (nearly) without error, so they fit no temperature; calibrate on a larger validation "
                         "split.")
    return temperature


def threshold_for_sensitivity(labels: Sequence[int], p_malignant: Sequence[float], target: float = 0.9) -> float:
    """The largest threshold t such that ``P >= t`` calls at least ``target`` of the malignant cases.

    It is the malignant probability ranked ``ceil(target * positives)``-th from the top, so the
    validation sensitivity at t is the smallest achievable one at or above the target.
    """
    labels, p_malignant = _check(labels, p_malignant)
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}.")
    positives = np.sort(p_malignant[labels == 1])[::-1]
    if not len(positives):
        raise ValueError("an operating point for a sensitivity needs malignant validation cases.")
    return float(positives[int(np.ceil(target * len(positives) - 1e-9)) - 1])


def reliability_bins(labels: Sequence[int], p_malignant: Sequence[float], bins: int = 10) -> list[dict]:
    """Per equal-width bin of P(malignant): its range, count, mean P and fraction malignant (None when empty)."""
    labels, p_malignant = _check(labels, p_malignant)
    index = np.minimum((p_malignant * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "mean_p": float(p_malignant[members].mean()) if count else None,
                     "fraction_malignant": float(labels[members].mean()) if count else None})
    return rows


def expected_calibration_error(labels: Sequence[int], p_malignant: Sequence[float], bins: int = 10) -> float:
    """ECE of P(malignant): the count-weighted mean of |fraction malignant - mean P| over the bins."""
    rows = reliability_bins(labels, p_malignant, bins)
    total = sum(row["count"] for row in rows)
    return float(sum(row["count"] * abs(row["fraction_malignant"] - row["mean_p"]) for row in rows if row["count"])
                 / total)


def likelihood_category(p_malignant: float, threshold: float) -> str:
    """One of :data:`CATEGORIES` for a calibrated P(malignant).

    benign: below :data:`BENIGN_BELOW` (and below the threshold); probably benign: below the
    operating ``threshold``; suspicious: from the threshold to below :data:`MALIGNANT_FROM`;
    malignant: from :data:`MALIGNANT_FROM`. The first two are the cases the operating point calls
    benign, the last two those it calls malignant.
    """
    if p_malignant >= threshold:
        return CATEGORIES[3] if p_malignant >= MALIGNANT_FROM else CATEGORIES[2]
    return CATEGORIES[0] if p_malignant < BENIGN_BELOW else CATEGORIES[1]
