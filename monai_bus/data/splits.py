"""Stratified splits of whole groups: by proportions, or into K folds. Deterministic for a seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLITS = ("training", "validation", "test")
DEFAULT_PROPORTIONS = (0.75, 0.15, 0.10)  # Kalafi et al.


def assign_groups(counts: np.ndarray, proportions: Sequence[float], seed: int) -> np.ndarray:
    """Assign each group to a part so that every class is divided in the given proportions.

    Groups are taken largest first (ties in an order shuffled by ``seed``); each goes to the
    part whose shortfall against its target, weighted by the group's class counts, is largest.
    A group is never divided, so parts match their targets to within about one group.

    Parameters
    ----------
    counts : array of shape (n_groups, n_classes)
        Number of images of each class in each group.
    proportions : sequence of float
        Share of each part; non-negative, summing to 1.
    seed : int
        Seed for the order of equal-sized groups.

    Returns
    -------
    numpy.ndarray of int, shape (n_groups,)
        The part index of each group.
    """
    counts = np.asarray(counts, dtype=float)
    proportions = np.asarray(proportions, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"counts must be 2-D (groups x classes), got shape {counts.shape}")
    if proportions.min() < 0 or not np.isclose(proportions.sum(), 1.0):
        raise ValueError(f"proportions must be non-negative and sum to 1, got {proportions.tolist()}")
    order = np.random.default_rng(seed).permutation(len(counts))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    shortfall = np.outer(proportions, counts.sum(axis=0))
    parts = np.empty(len(counts), dtype=int)
    for group in order:
        score = shortfall @ counts[group]
        score[proportions == 0] = -np.inf
        part = int(np.argmax(score))
        parts[group] = part
        shortfall[part] -= counts[group]
    return parts


def fold_splits(folds: int, fold: int) -> dict[int, str]:
    """Map each 1-based fold to its split: ``fold`` is the test set, the next fold (wrapping
    from ``folds`` to 1) the validation set, and the others the training set."""
    if folds < 3:
        raise ValueError(f"--folds must be at least 3 (test, validation and training), got {folds}")
    if not 1 <= fold <= folds:
        raise ValueError(f"--fold must lie in 1..{folds}, got {fold}")
    validation = fold % folds + 1
    return {f: "test" if f == fold else "validation" if f == validation else "training"
            for f in range(1, folds + 1)}
