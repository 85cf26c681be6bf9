"""Infer task: classify one image with the bundle through monai-bus's inference API."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from PIL import Image

from monai_bus.inference import BundleClassifier


class BundleClassifierInfer(InferTask):
    """Runs :class:`monai_bus.inference.BundleClassifier` on the bundle's ``models/model.pt``.

    The result JSON holds MONAI Label's classification format (``prediction``: one
    ``{idx, label, score}`` per class, the score being its probability) and the fields of
    ``Prediction.to_dict()`` (``class_name``, ``malignancy_probability``, ``model_version``, ...).
    With the request parameter ``"attention": true`` the attention map is also returned as a result
    image: an 8-bit grey PNG (255 = attention 1) of the input image's size. The request parameter
    ``"box": [row_start, row_stop, col_start, col_stop]`` gives the lesion box in the image's pixels,
    which a bundle trained on lesion regions (``roi`` true, the default) needs; without it the whole
    image is classified and the result's ``note`` says so.

    The model file is reloaded when training replaces it.
    """

    def __init__(self, bundle_dir: str):
        self.bundle_dir = Path(bundle_dir)
        self.model_file = self.bundle_dir / "models" / "model.pt"
        meta = json.loads((self.bundle_dir / "configs" / "metadata.json").read_text(encoding="utf8"))
        channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={name: int(index) for index, name in channel_def.items()},
            dimension=2,
            description=meta["task"],
            config={"attention": False, "box": None},
        )
        self.version = meta["version"]
        self._classifier: BundleClassifier | None = None
        self._model_mtime: int | None = None

    def is_valid(self) -> bool:
        return self.model_file.is_file()

    def info(self) -> dict:
        return {**super().info(), "version": self.version}

    def classifier(self) -> BundleClassifier:
        mtime = self.model_file.stat().st_mtime_ns if self.model_file.is_file() else None
        if self._classifier is None or mtime != self._model_mtime:
            self._classifier = BundleClassifier(self.bundle_dir)  # BundleError when there is no model yet
            self._model_mtime = mtime
        return self._classifier

    def __call__(self, request: dict) -> tuple[str | None, dict]:
        classifier = self.classifier()
        prediction = classifier.predict(request["image"], box=request.get("box"))
        result = {
            "prediction": [
                {"idx": index, "label": name, "score": probability}
                for index, (name, probability) in enumerate(zip(classifier.class_names, prediction.probabilities))
            ],
            **prediction.to_dict(),
        }
        if not request.get("attention") or prediction.attention is None:
            return None, result
        attention_file = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
        Image.fromarray(np.round(prediction.attention * 255).astype(np.uint8)).save(attention_file)
        return attention_file, result
