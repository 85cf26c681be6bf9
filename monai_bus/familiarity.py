"""Whether an image is like the classifier's training images: the Mahalanobis distance of its features.

A classifier gives every input a class, photographs and noise included. Following Lee et al.
(NeurIPS 2018), the network's features at a pooling output, averaged over space [F], are modelled as
Gaussians, one mean per class with one shared covariance, fitted on the training images (the
covariance with Ledoit-Wolf shrinkage, scikit-learn's, since F is large beside the number of
images). An image's distance is its Mahalanobis distance to the nearest class mean. Two layers are
modelled (:data:`LAYERS`): pool5 (F = 512 for VGG16), the features the head classifies, and pool3
(F = 256), which describe the image's texture more than its lesion and so set photographs and other
modalities apart (docs/results/familiarity/). Above its layer's cut-off, fitted on validation images,
the image is unlike the training images, and the inference API gives it no class
(:mod:`monai_bus.inference`).

``monai-bus calibrate`` fits the statistics and the cut-offs, and writes the statistics beside the
weights (:data:`STATISTICS_FILE`, whose SHA-256 the operating point records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

STATISTICS_FILE = "feature_statistics.npz"
LAYERS = ("pool3", "pool5")  # VGG16's third and fifth pooling outputs
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


def save_statistics(path: str | Path, statistics: dict[str, FeatureStatistics]) -> None:
    """Write each layer's statistics (by layer name) to one ``.npz`` file."""
    np.savez(path, **{f"{layer}_{key}": getattr(statistic, key).astype(np.float32)
                      for layer, statistic in statistics.items() for key in ("means", "precision")})


def load_statistics(path: str | Path) -> dict[str, FeatureStatistics]:
    """Each of :data:`LAYERS`' statistics from a file of :func:`save_statistics` (``KeyError`` for a missing layer)."""
    with np.load(path) as stored:
        return {layer: FeatureStatistics(stored[f"{layer}_means"], stored[f"{layer}_precision"]) for layer in LAYERS}


def pooling_outputs(network: nn.Module) -> dict[str, tuple[nn.Module, int]]:
    """The max-pooling layers of the network's VGG16 ``features``, as ``{"pool1": (layer, channels), ...}``,
    with the number of channels of the convolution before each."""
    outputs, channels = {}, None
    for module in network.features:
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            outputs[f"pool{len(outputs) + 1}"] = (module, channels)
    return outputs


class PooledFeatures:
    """Keeps the features averaged over space, at each of :data:`LAYERS`, of the first image of each batch
    the network classifies.

    It hooks the pooling layers of the network's VGG16 ``features``, which both classifiers of
    :mod:`monai_bus.networks` run on every input.

    Attributes:
        channels: the number of features [F] of each layer, by name.
        last: the features [F] of the first image of the latest batch, as float64 numpy, by layer name;
            empty before one.
    """

    def __init__(self, network: nn.Module) -> None:
        self.last = {}
        outputs = pooling_outputs(network)
        self.channels = {layer: outputs[layer][1] for layer in LAYERS}
        for layer in LAYERS:
            outputs[layer][0].register_forward_hook(self._keeper(layer))

    def _keeper(self, layer: str):
        def keep(module, inputs, output) -> None:
            self.last[layer] = output[0].float().mean(dim=(1, 2)).cpu().numpy().astype(np.float64)
        return keep


def unfamiliar_cutoff(validation_distances) -> float:
    """The distance above which an image is unlike the training images: :data:`CUTOFF_MARGIN` times the
    largest distance among the validation images [N], so that none of them would be turned away, even with
    the small differences between two forward passes of one image (bf16)."""
    distances = np.asarray(validation_distances, dtype=np.float64)
    if distances.ndim != 1 or not len(distances) or not np.isfinite(distances).all():
        raise ValueError(f"validation distances must be a non-empty 1-D array of finite values, got shape "
                         f"{distances.shape}.")
    return float(CUTOFF_MARGIN * distances.max())
