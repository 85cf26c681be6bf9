"""Find byte-identical and near-duplicate images, and merge linked images into groups.

Near-duplicates are found by small-image correlation: each image is reduced to a 16 x 16 grey
thumbnail (area averaging), and two images whose thumbnails have a Pearson correlation of at
least :data:`CORRELATION_THRESHOLD` are linked. The threshold was set on BUSI by inspecting
image pairs: every pair at 0.95 or above is a frame of one lesion (same view, shifted or
re-annotated), while pairs between 0.93 and 0.95 are mostly different lesions; below 0.93 links
chain into one cluster of over a hundred images. Linked images are merged transitively.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

THUMBNAIL_SIZE = 16
CORRELATION_THRESHOLD = 0.95


def file_hash(path: Path) -> str:
    """SHA-1 of the file's bytes."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


def fingerprint(grey: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm vector of the image's 16 x 16 thumbnail (all zero for a flat image)."""
    thumbnail = Image.fromarray(np.asarray(grey, dtype=np.float32), mode="F")
    vector = np.asarray(thumbnail.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.BOX)).ravel()
    vector = vector - vector.mean()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def near_duplicate_pairs(fingerprints: np.ndarray, threshold: float = CORRELATION_THRESHOLD,
                         chunk: int = 1024) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose fingerprints correlate at ``threshold`` or above."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [-1, 1], got {threshold}")
    pairs = []
    for start in range(0, len(fingerprints), chunk):
        rows, cols = np.nonzero(fingerprints[start:start + chunk] @ fingerprints.T >= threshold)
        rows += start
        pairs += [(int(i), int(j)) for i, j in zip(rows, cols) if i < j]
    return pairs


def equal_pairs(keys: list) -> list[tuple[int, int]]:
    """Pairs linking every item to the first item with the same key (``None`` keys are skipped)."""
    first: dict = {}
    pairs = []
    for index, key in enumerate(keys):
        if key is not None:
            pairs.append((first.setdefault(key, index), index))
    return [(i, j) for i, j in pairs if i != j]


def components(count: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Connected components of ``count`` items linked by ``pairs`` (scipy's ``connected_components``).

    Returns, for each item, the smallest index in its component, so the labelling depends only
    on the item order.
    """
    pairs = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    labels = connected_components(graph, directed=False)[1]
    smallest = np.full(labels.max(initial=-1) + 1, count)
    np.minimum.at(smallest, labels, np.arange(count))
    return smallest[labels].tolist()
