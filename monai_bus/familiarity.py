"""Whether an image is like the classifier's training images: the Mahalanobis distance of its features.

A classifier gives every input a class, photographs and noise included. Following Lee et al.
(NeurIPS 2018), the network's pool5 features averaged over space [F] (F = 512 for VGG16) are modelled
as Gaussians, one mean per class with one shared covariance, fitted on the training images (the
covariance with Ledoit-Wolf shrinkage, scikit-learn's, since F is large beside the number of
images). An image's distance is its Mahalanobis distance to the nearest class mean; above a cut-off
fitted on validation images, the image is unlike the training images, and the inference API gives it
no class (:mod:`monai_bus.inference`).

``monai-bus calibrate`` fits the statistics and the cut-off, and writes them beside the weights
(:data:`STATISTICS_FILE`, whose SHA-256 the operating point records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

STATISTICS_FILE = "feature_statistics.npz"
CUTOFF_MARGIN = 1.1  # the cut-off lies 10% beyond the farthest validation image


class FeatureStatistics:
    """Class means [C, F] and the shared precision matrix [F, F] of the training images' features.

    Args:
        means: one mean feature vector per class [C, F].
        precision: the inverse of the shared covariance [F, F].
    """

    def __init__(self, means: np.ndarray, precision: np.ndarray) -> None:
        means, precision = np.asarray(means, dtype=np.float64), np.asarray(precision, dtype=np.float64)
        if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]):
            raise ValueError(f"need means [C, F] and a precision [F, F], got {means.shape} and {precision.shape}.")
        self.means, self.precision = means, precision

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> FeatureStatistics:
        """Fit on the training images' features [N, F] and labels [N] (every class must occur)."""
        from sklearn.covariance import LedoitWolf

        features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
        if features.ndim != 2 or labels.shape != (len(features),):
            raise ValueError(f"need features [N, F] and labels [N], got {features.shape} and {labels.shape}.")
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(f"fitting the feature statistics needs images of two classes, got {classes.tolist()}.")
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        return cls(means, LedoitWolf(assume_centered=True).fit(centred).precision_)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature vector [N, F] to the nearest class mean [N]."""
        differences = np.asarray(features, dtype=np.float64)[:, None, :] - self.means[None]  # [N, C, F]
        squared = ((differences @ self.precision) * differences).sum(axis=-1)  # [N, C]
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def save(self, path: str | Path) -> None:
        np.savez(path, means=self.means.astype(np.float32), precision=self.precision.astype(np.float32))

    @classmethod
    def load(cls, path: str | Path) -> FeatureStatistics:
        with np.load(path) as stored:
            return cls(stored["means"], stored["precision"])


class PooledFeatures:
    """Keeps the pool5 features averaged over space of the first image of each batch the network classifies.

    It hooks the last layer of the network's VGG16 ``features`` (pool5), which both classifiers of
    :mod:`monai_bus.networks` run on every input.

    Attributes:
        last: the features [F] of the first image of the latest batch, as float64 numpy; None before one.
    """

    def __init__(self, network: nn.Module) -> None:
        self.last = None
        network.features[-1].register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.last = output[0].float().mean(dim=(1, 2)).cpu().numpy().astype(np.float64)


def unfamiliar_cutoff(validation_distances) -> float:
    """The distance above which an image is unlike the training images: :data:`CUTOFF_MARGIN` times the
    largest distance among the validation images [N], so that none of them would be turned away, even with
    the small differences between two forward passes of one image (bf16)."""
    distances = np.asarray(validation_distances, dtype=np.float64)
    if distances.ndim != 1 or not len(distances) or not np.isfinite(distances).all():
        raise ValueError(f"validation distances must be a non-empty 1-D array of finite values, got shape "
                         f"{distances.shape}.")
    return float(CUTOFF_MARGIN * distances.max())
