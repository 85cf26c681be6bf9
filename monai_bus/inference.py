"""Inference API: classify one image with a trained bundle.

This is the one inference code path of the project: the ``monai-bus infer`` command, the 3D Slicer
module and the MONAI Label app all call :class:`BundleClassifier`, which takes ``network_def``,
``preprocessing`` and ``inferer`` from the bundle's own ``configs/inference.json`` (the same
definitions the bundle's ``evaluating`` workflow runs), and the class names, version and operating
point from ``configs/metadata.json``.

The operating point is ``metadata.json``'s optional ``operating_point``:
``{"threshold": t, "description": "..."}``. An image is classified malignant when
``P(malignant) >= t``; without the entry ``t`` is 0.5, the argmax of the two classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser


class BundleError(ValueError):
    """The bundle folder, its configs or its checkpoint cannot be used."""


@dataclass(frozen=True)
class Prediction:
    """Result for one image.

    Attributes:
        class_index: predicted class (0 benign, 1 malignant).
        class_name: its name from the bundle's metadata.
        probabilities: one probability per class, summing to 1.
        model_version: the bundle's ``version``.
        attention: attention coefficients [H, W] in [0, 1] at the input image's size and
            orientation (rows first), or None for a network without an attention gate.
    """

    class_index: int
    class_name: str
    probabilities: tuple[float, ...]
    model_version: str
    attention: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def malignancy_probability(self) -> float:
        """P(malignant), the probability of class 1."""
        return self.probabilities[1]

    def to_dict(self) -> dict:
        """JSON-ready summary (without the attention map)."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probabilities": list(self.probabilities),
            "malignancy_probability": self.malignancy_probability,
            "model_version": self.model_version,
        }


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise BundleError(f"{path}: model file not found; train the bundle first (configs/train.json).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BundleError(f"{path}: not a readable PyTorch checkpoint ({error}).") from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]  # a {"model": state_dict} checkpoint
    return checkpoint


class BundleClassifier:
    """A trained monai-bus bundle, ready to classify images.

    Args:
        bundle_dir: bundle folder holding ``configs/inference.json``, ``configs/metadata.json`` and
            the checkpoint.
        checkpoint: checkpoint file; default ``<bundle_dir>/models/model.pt``.
        device: torch device name; default as in the bundle's config (CUDA when available).

    Raises:
        BundleError: a missing file, or a bundle whose configs or checkpoint do not fit together.
    """

    def __init__(self, bundle_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                 device: str | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        config_file = self.bundle_dir / "configs" / "inference.json"
        meta_file = self.bundle_dir / "configs" / "metadata.json"
        for path in (config_file, meta_file):
            if not path.is_file():
                raise BundleError(f"{path}: not found; is {self.bundle_dir} a monai-bus bundle folder?")
        parser = ConfigParser()
        parser.read_config(str(config_file))
        parser.read_meta(str(meta_file))
        parser["bundle_root"] = str(self.bundle_dir)
        if device is not None:
            parser["device"] = f"$torch.device('{device}')"
        try:
            self.class_names = tuple(
                name for _, name in sorted(
                    parser["_meta_"]["network_data_format"]["outputs"]["pred"]["channel_def"].items(),
                    key=lambda item: int(item[0]))
            )
            self.version = str(parser["_meta_"]["version"])
            self.threshold = float(parser["_meta_"].get("operating_point", {}).get("threshold", 0.5))
            self.device = parser.get_parsed_content("device")
            self.network = parser.get_parsed_content("network")
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
        except Exception as error:
            raise BundleError(f"{config_file}: incompatible bundle ({type(error).__name__}: {error}).") from error
        if len(self.class_names) != 2 or not 0.0 <= self.threshold <= 1.0:
            raise BundleError(f"{meta_file}: needs two classes and an operating_point threshold in [0, 1], got "
                              f"{self.class_names} and {self.threshold}.")
        checkpoint_path = Path(checkpoint) if checkpoint else self.bundle_dir / "models" / "model.pt"
        try:
            self.network.load_state_dict(_read_checkpoint(checkpoint_path))
        except RuntimeError as error:
            raise BundleError(f"{checkpoint_path}: does not match the bundle's network_def ({error}).") from error
        self.network.eval()

    @property
    def has_attention(self) -> bool:
        return hasattr(self.network, "attention_map")

    @torch.no_grad()
    def predict(self, image: str | os.PathLike | np.ndarray) -> Prediction:
        """Classify one image.

        Args:
            image: a file (PNG, JPEG, DICOM, ...) or an array [H, W] or [H, W, C] in display order.

        Raises:
            ValueError: naming the file, when it cannot be read as a 2D image.
        """
        try:
            data = self.preprocessing({"image": image})
        except RuntimeError as error:  # MONAI's Compose wraps the loader's error: report the original
            cause = error
            while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
                cause = cause.__cause__
            raise ValueError(str(cause)) from error
        batch = data["image"].unsqueeze(0).to(self.device)
        logits = self.inferer(batch, self.network)
        probabilities = torch.softmax(logits.float(), dim=1)[0].cpu()
        attention = None
        if self.has_attention:
            alpha = self.inferer(batch, self.network.attention_map).float()
            original_size = [int(s) for s in data["image"].meta["spatial_shape"]]
            attention = F.interpolate(alpha, size=original_size, mode="bilinear", align_corners=False)
            attention = attention.clamp(0.0, 1.0)[0, 0].cpu().numpy()
        index = int(probabilities[1] >= self.threshold)
        return Prediction(
            class_index=index,
            class_name=self.class_names[index],
            probabilities=tuple(float(p) for p in probabilities),
            model_version=self.version,
            attention=attention,
        )
