"""Infer tasks: classify one image with the bundle, and segment its lesion with the localiser, through
monai-bus's inference API (``BundleClassifier`` with a ``LesionLocaliser``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.utils.others.generic import strtobool
from PIL import Image

from lib.predictions import operating_point
from monai_bus.errors import InputError
from monai_bus.inference import BundleClassifier, BundleError
from monai_bus.localiser import LesionLocaliser
from monai_bus.weights import record_path


class ServedModels:
    """The classifier bundle and the localiser bundle that the server's tasks share, loaded once.

    They are reloaded when training replaces a bundle's ``models/model.pt`` or its record
    ``models/model.json`` (:mod:`monai_bus.weights`), and when its ``configs/metadata.json`` changes
    (``monai-bus calibrate`` writes the operating point there).
    """

    def __init__(self, bundle_dir: str, localiser_dir: str):
        self.bundle_dir, self.localiser_dir = Path(bundle_dir), Path(localiser_dir)
        self.watched_files = [path for bundle in (self.bundle_dir, self.localiser_dir)
                              for path in (bundle / "models" / "model.pt", record_path(bundle / "models" / "model.pt"),
                                           bundle / "configs" / "metadata.json")]
        self._classifier: BundleClassifier | None = None
        self._loaded_files: tuple | None = None

    def classifier(self) -> BundleClassifier:
        """The classifier, with its localiser, of the current model files; BundleError when they cannot be loaded."""
        files = tuple(path.stat().st_mtime_ns if path.is_file() else None for path in self.watched_files)
        if self._classifier is None or files != self._loaded_files:
            try:
                self._classifier = BundleClassifier(self.bundle_dir, localiser=LesionLocaliser(self.localiser_dir))
            except InputError as error:  # also an unreadable weights record, models/model.json
                raise BundleError(str(error)) from None
            self._loaded_files = files
        return self._classifier


class BundleClassifierInfer(InferTask):
    """Runs :class:`monai_bus.inference.BundleClassifier` on the bundle's ``models/model.pt``.

    The result JSON holds MONAI Label's classification format (``prediction``: one
    ``{idx, label, score}`` per class, the score being its probability) and the fields of
    ``Prediction.to_dict()`` (``class_name``, ``malignancy_probability``, ``model_version``,
    ``weights_sha256``, ...), and the ``operating_point`` applied (:func:`lib.predictions.operating_point`).
    With the request parameter ``"attention": true`` the attention map is also returned as a result
    image: an 8-bit grey PNG (255 = attention 1) of the input image's size. The request parameter
    ``"box": [row_start, row_stop, col_start, col_stop]`` gives the lesion box in the image's pixels
    for a bundle trained on lesion regions (``roi`` true, the default); without it the localiser bundle
    finds the box (``box_source`` ``"localiser"``). An image in which it finds no lesion, or one unlike the
    training images (:mod:`monai_bus.familiarity`), gets no class: an empty ``prediction``, ``class_name``
    null and a ``note`` that says why.

    The models are those of ``models`` (:class:`ServedModels`, reloaded when their files change), and
    ``/info/`` reports the version, SHA-256 and training data of the weights served. The task is valid, and
    listed in ``/info/``, only while the models can be loaded.
    """

    def __init__(self, models: ServedModels, **task):
        self.models = models
        meta = json.loads((models.bundle_dir / "configs" / "metadata.json").read_text(encoding="utf8"))
        channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        super().__init__(**{
            "type": InferType.CLASSIFICATION,
            "labels": {name: int(index) for index, name in channel_def.items()},
            "dimension": 2,
            "description": meta["task"],
            "config": {"attention": False, "box": None},
            **task,
        })

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
        """The served classifier, with its localiser (:meth:`ServedModels.classifier`)."""
        return self.models.classifier()

    def predict(self, request: dict):
        """The classifier's :class:`~monai_bus.inference.Prediction` for the request's image and box, and the
        result JSON: MONAI Label's ``prediction`` (empty when not classified) and ``Prediction.to_dict()``."""
        classifier = self.classifier()
        prediction = classifier.predict(request["image"], box=request.get("box"))
        result = {
            "prediction": [
                {"idx": index, "label": name, "score": probability}
                for index, (name, probability) in enumerate(zip(classifier.class_names, prediction.probabilities or ()))
            ],
            **prediction.to_dict(),
            "operating_point": operating_point(classifier),
        }
        return prediction, result

    def __call__(self, request: dict) -> tuple[str | None, dict]:
        prediction, result = self.predict(request)
        attention = request.get("attention") or False  # null, as absent: no map
        if not isinstance(attention, bool):  # a form's "false" is a string, and a true one
            try:
                attention = strtobool(str(attention))
            except ValueError:
                raise ValueError(f"the parameter attention must be true or false, got {attention!r}") from None
        if not attention or prediction.attention is None:
            return None, result
        attention_file = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
        Image.fromarray(np.round(prediction.attention * 255).astype(np.uint8)).save(attention_file)
        return attention_file, result


class LesionSegmentationInfer(BundleClassifierInfer):
    """The localiser as a segmentation model, which the stock Slicer MONAILabel module lists and shows.

    The result image is the localiser's lesion mask at the image's size: an 8-bit PNG, 1 on the lesion
    (label ``lesion``), 0 elsewhere. It is empty when no lesion was found, and when the image is not
    classified (unlike the training images): the stock client shows the segment alone, which would then
    look like a finding. The result JSON is the classification of the region around the mask's box, as
    :class:`BundleClassifierInfer` returns it without a box, so the class and P(malignant), or the note
    that says why there is none, travel with the mask.
    """

    def __init__(self, models: ServedModels):
        meta = json.loads((models.localiser_dir / "configs" / "metadata.json").read_text(encoding="utf8"))
        super().__init__(models, type=InferType.SEGMENTATION, labels={"lesion": 1}, description=meta["task"],
                         config={})

    def info(self) -> dict:
        weights = self.classifier().localiser.weights
        return {**super().info(), "localiser_version": weights["version"], "localiser_sha256": weights["sha256"],
                "localiser_trained_on": weights["trained_on"]}

    def classifier(self) -> BundleClassifier:
        """As :meth:`BundleClassifierInfer.classifier`; BundleError also for a bundle trained on whole images,
        which never asks the localiser."""
        classifier = super().classifier()
        if not classifier.roi:
            raise BundleError(f"{self.models.bundle_dir}: classifies whole images (roi false), so it never asks the "
                              "localiser; the lesion segmentation needs a bundle trained on lesion regions")
        return classifier

    def __call__(self, request: dict) -> tuple[str, dict]:
        if request.get("box") is not None:  # it would be ignored: the mask is the localiser's, and so is the box
            raise ValueError("the segmentation model finds the lesion itself; send a box to the classifier "
                             "(breast_lesion_classifier)")
        prediction, result = self.predict({"image": request["image"]})  # always the localiser's box
        mask_file = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
        shown = prediction.lesion_mask & (prediction.class_name is not None)
        Image.fromarray(shown.astype(np.uint8)).save(mask_file)
        return mask_file, result
