"""Uncertainty of test-set metrics: a bootstrap over test images (by group), and DeLong's test for AUCs.

Every run of a study predicts the same N test images, so one set of resamples serves all runs: a
metric's interval, and the difference of two configurations, are computed on the same resampled test
sets (a *paired* bootstrap). With several seeds per configuration, the statistic of a resample is the
mean over seeds of the metric of each seed's predictions on that resample; the intervals are therefore
those of the seed-mean, and cover the test-set sampling, not the training variability between seeds
(which the per-seed values in the tables show).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from monai_bus.metrics import METRIC_NAMES, classification_metrics

CONFIDENCE = 0.95


def resampling_units(groups: Sequence[str]) -> list[str]:
    """The unit each image is resampled with: its group, or the image itself when its group is empty."""
    return [group or f"\0image {index}" for index, group in enumerate(groups)]


def group_resamples(groups: Sequence[str], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Bootstrap resamples of N test images, drawn by group.

    Each resample draws G groups with replacement from the G distinct groups and takes every image of
    each drawn group, so images of one patient (or one lesion) stay together. An empty group name
    makes the image a group of its own.

    Args:
        groups: the group of each image [N].
        n_resamples: number of resamples B, at least 1.
        seed: seed of the random generator, so that the resamples are reproducible.

    Returns:
        B index arrays into the N images (their lengths vary with the group sizes drawn).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}.")
    members: dict[str, list[int]] = {}
    for index, unit in enumerate(resampling_units(groups)):
        members.setdefault(unit, []).append(index)
    if not members:
        raise ValueError("no test images to resample.")
    member_arrays = [np.asarray(indices) for indices in members.values()]
    rng = np.random.default_rng(seed)
    return [np.concatenate([member_arrays[g] for g in rng.integers(0, len(member_arrays), len(member_arrays))])
            for _ in range(n_resamples)]


def bootstrap_metrics(labels: np.ndarray, probabilities: np.ndarray, resamples: list[np.ndarray]) -> np.ndarray:
    """The metrics of :data:`~monai_bus.metrics.METRIC_NAMES` on every resample: [B, M].

    Args:
        labels: [N] class indices (1 malignant).
        probabilities: [N, 2] class probabilities.
        resamples: B index arrays, from :func:`group_resamples`.
    """
    rows = []
    for indices in resamples:
        metrics = classification_metrics(labels[indices], probabilities[indices])
        rows.append([metrics[name] for name in METRIC_NAMES])
    return np.asarray(rows, dtype=np.float64)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each column of resampled values [B, M], ignoring NaN (e.g. AUC of a
    resample with one class); NaN where a column has no finite value."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = [], []
    for column in np.asarray(values, dtype=np.float64).T:
        column = column[~np.isnan(column)]
        low.append(np.percentile(column, tail) if column.size else math.nan)
        high.append(np.percentile(column, 100.0 - tail) if column.size else math.nan)
    return np.asarray(low), np.asarray(high)


def bootstrap_p_value(differences: np.ndarray) -> np.ndarray:
    """Two-sided p-value of "no difference" for each column of resampled differences [B, M].

    Twice the smaller share of resamples on either side of zero, ``2 min(#(d <= 0) + 1, #(d >= 0) + 1) /
    (B + 1)``, at most 1 (the percentile-interval inversion, with the usual +1 so that p is never 0;
    Davison and Hinkley, *Bootstrap Methods and their Application*, 1997, ch. 4). NaN resamples are
    left out; a column without any finite value gives NaN.
    """
    differences = np.asarray(differences, dtype=np.float64)
    valid = ~np.isnan(differences)
    count = valid.sum(axis=0)
    below = (valid & (differences <= 0)).sum(axis=0)
    above = (valid & (differences >= 0)).sum(axis=0)
    p = np.minimum(1.0, 2.0 * (np.minimum(below, above) + 1) / (count + 1))
    return np.where(count > 0, p, math.nan)


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of K score vectors on the same cases.

    DeLong ER, DeLong DM, Clarke-Pearson DL. "Comparing the areas under two or more correlated receiver
    operating characteristic curves: a nonparametric approach." Biometrics 44:837-845 (1988), computed
    with the mid-rank algorithm of Sun X, Xu W, "Fast implementation of DeLong's algorithm for comparing
    the areas under correlated receiver operating characteristic curves", IEEE Signal Processing Letters
    21:1389-1393 (2014). Ties count one half, as in :func:`monai_bus.metrics.roc_auc`. The AUCs are
    ``v10.mean(axis=1)``, and their covariance is ``cov(v10) / m + cov(v01) / n``.

    Args:
        labels: [N] class indices, 1 positive (malignant); at least two cases of each class.
        scores: [K, N] scores, higher meaning more likely positive.

    Returns:
        ``v10`` [K, m]: for each of the m positives, the share of negatives it outscores; ``v01`` [K, n]:
        for each of the n negatives, the share of positives that outscore it.
    """
    labels = np.asarray(labels)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if scores.shape[1] != labels.shape[0]:
        raise ValueError(f"scores [K, N] and labels [N] disagree: {scores.shape} and {labels.shape}.")
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 cases of each class, got {m} positive and {n} negative.")
    x, y = scores[:, positive], scores[:, ~positive]
    rank_all = rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (rank_all[:, :m] - rankdata(x, axis=1)) / n
    v01 = 1.0 - (rank_all[:, m:] - rankdata(y, axis=1)) / m
    return v10, v01


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float]:
    """DeLong's test of equal mean AUC for two sets of score vectors on the same cases.

    With several seeds, ``scores_a`` [Sa, N] and ``scores_b`` [Sb, N] hold one row per seed, and the
    test is of the contrast ``mean(AUC_a) - mean(AUC_b)`` (DeLong et al. 1988, section 3), whose
    variance is that of the contrast's structural components (:func:`delong_components`). It treats
    the N cases as independent: with several images per patient it understates the variance, where the
    group bootstrap does not.

    Returns:
        ``difference`` (mean AUC of a minus that of b), ``z`` and the two-sided ``p``; ``z`` and ``p``
        are NaN when the contrast's variance is 0 (for example identical scores).
    """
    scores_a, scores_b = np.atleast_2d(scores_a), np.atleast_2d(scores_b)
    v10, v01 = delong_components(labels, np.concatenate([scores_a, scores_b]))
    split = len(scores_a)
    d10 = v10[:split].mean(axis=0) - v10[split:].mean(axis=0)  # [m]: the contrast's components
    d01 = v01[:split].mean(axis=0) - v01[split:].mean(axis=0)  # [n]
    difference = float(d10.mean())
    variance = float(np.var(d10, ddof=1) / len(d10) + np.var(d01, ddof=1) / len(d01))
    if variance <= 0.0:
        return {"difference": difference, "z": math.nan, "p": math.nan}
    z = difference / math.sqrt(variance)
    return {"difference": difference, "z": z, "p": math.erfc(abs(z) / math.sqrt(2.0))}
