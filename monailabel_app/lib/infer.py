"""Infer task: classify one image with the bundle through monai-bus's inference API."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from PIL import Image

from monai_bus.errors import InputError
from monai_bus.inference import BundleClassifier, BundleError
from monai_bus.weights import record_path


class BundleClassifierInfer(InferTask):
    """Runs :class:`monai_bus.inference.BundleClassifier` on the bundle's ``models/model.pt``.

    The result JSON holds MONAI Label's classification format (``prediction``: one
    ``{idx, label, score}`` per class, the score being its probability) and the fields of
    ``Prediction.to_dict()`` (``class_name``, ``malignancy_probability``, ``model_version``,
    ``weights_sha256``, ...).
    With the request parameter ``"attention": true`` the attention map is also returned as a result
    image: an 8-bit grey PNG (255 = attention 1) of the input image's size. The request parameter
    ``"box": [row_start, row_stop, col_start, col_stop]`` gives the lesion box in the image's pixels,
    which a bundle trained on lesion regions (``roi`` true, the default) needs; without it the whole
    image is classified and the result's ``note`` says so.

    The model is reloaded when training replaces ``models/model.pt`` or its record ``models/model.json``
    (:mod:`monai_bus.weights`), and ``/info/`` reports the version, SHA-256 and training data of the
    weights served. The task is valid, and listed in ``/info/``, only while the model can be loaded.
    """

    def __init__(self, bundle_dir: str):
        self.bundle_dir = Path(bundle_dir)
        self.model_file = self.bundle_dir / "models" / "model.pt"
        self.record_file = record_path(self.model_file)
        meta = json.loads((self.bundle_dir / "configs" / "metadata.json").read_text(encoding="utf8"))
        channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={name: int(index) for index, name in channel_def.items()},
            dimension=2,
            description=meta["task"],
            config={"attention": False, "box": None},
        )
        self._classifier: BundleClassifier | None = None
        self._loaded_files: tuple | None = None

    def is_valid(self) -> bool:
        try:
            self.classifier()
        except BundleError:  # no model file yet, or one that cannot be used (/infer/ says why)
            return False
        return True

    def info(self) -> dict:
        weights = self.classifier().weights
        return {**super().info(), "version": weights["version"], "weights_sha256": weights["sha256"],
                "trained_on": weights["trained_on"]}

    def classifier(self) -> BundleClassifier:
        """The classifier of the current model files; BundleError when it cannot be loaded."""
        files = tuple(path.stat().st_mtime_ns if path.is_file() else None
                      for path in (self.model_file, self.record_file))
        if self._classifier is None or files != self._loaded_files:
            try:
                self._classifier = BundleClassifier(self.bundle_dir)
            except InputError as error:  # also an unreadable weights record, models/model.json
                raise BundleError(str(error)) from None
            self._loaded_files = files
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
