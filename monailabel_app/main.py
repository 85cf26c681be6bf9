"""MONAI Label app: serve and fine-tune the monai-bus breast-lesion classifier and lesion localiser bundles.

    monailabel start_server --app monailabel_app --studies <folder of images> \\
        [--conf bundle_path <bundle>] [--conf localiser_path <localiser>] [--conf skip_trainers true]

The bundles default to the repository's ``bundle/`` and ``localiser/`` folders; ``skip_trainers true``
leaves out the train tasks. Models: ``breast_lesion_classifier`` (classification; without a box it
classifies around the localiser's box) and ``breast_lesion_segmentation`` (the localiser's lesion mask,
a segmentation model that the stock Slicer MONAILabel module lists, with the classification in its
result). Strategies: ``random``, and ``uncertainty`` (:class:`lib.strategy.LeastCertain`).
Classifier predictions are stored in the datastore under tags of their own (:mod:`lib.predictions`);
lesion masks as MONAI Label stores segmentations (tag ``original``, the result JSON in its label info).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelException
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

import monai_bus
from lib.infer import BundleClassifierInfer, LesionSegmentationInfer, ServedModels
from lib.predictions import ATTENTION_TAG, PREDICTION_TAG, store_prediction
from lib.strategy import LeastCertain
from lib.train import BundleClassifierTrain, LesionLocaliserTrain
from monai_bus.inference import BundleError

# the studies folder's files that the datastore lists: the images monai-bus reads (MONAI Label's default leaves out
# .jpeg, .bmp and DICOM, and lists whole-slide .svs and .xml), and the label volumes the stock Slicer module submits
DATASTORE_FILES = ["*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.bmp", "*.dcm", "*.nii.gz", "*.nii", "*.nrrd"]
MODEL = "breast_lesion_classifier"
SEGMENTATION_MODEL = "breast_lesion_segmentation"
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
DEFAULT_LOCALISER = Path(__file__).resolve().parents[1] / "localiser"

logger = logging.getLogger(__name__)


class MyApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.bundle_dir = os.path.realpath(conf.get("bundle_path", DEFAULT_BUNDLE))
        self.localiser_dir = os.path.realpath(conf.get("localiser_path", DEFAULT_LOCALISER))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-bus breast lesion classifier",
            description="Benign/malignant classification of breast lesions in ultrasound images (Attention-VGG16), "
                        "and their segmentation (UNet)",
            version=monai_bus.__version__,
        )

    def init_datastore(self):
        """MONAI Label's local datastore of the studies folder, listing :data:`DATASTORE_FILES` (any case; in place
        of MONAI Label's ``MONAI_LABEL_DATASTORE_FILE_EXT``); a file whose image id (its name without the
        extension) another file also has is hidden behind it, so each such id is logged with its files."""
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        patterns = DATASTORE_FILES + [pattern.upper() for pattern in DATASTORE_FILES]
        datastore = LocalDatastore(self.studies, extensions=patterns,
                                   auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                   read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)
        by_id = {}
        for pattern in patterns:  # a set: where names ignore case (Windows), *.png and *.PNG find the same file
            for path in Path(self.studies).glob(pattern):
                by_id.setdefault(path.name[:1 - len(pattern)], set()).add(path.name)
        for image_id, names in sorted(by_id.items()):
            if len(names) > 1:
                logger.warning(f"datastore: the files {sorted(names)} share the image id '{image_id}'; only one is "
                               "served")
        return datastore

    def init_infers(self):
        models = ServedModels(self.bundle_dir, self.localiser_dir)  # one copy of each model for both tasks
        return {MODEL: BundleClassifierInfer(models), SEGMENTATION_MODEL: LesionSegmentationInfer(models)}

    def init_trainers(self):
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        return {MODEL: BundleClassifierTrain(self.bundle_dir, self.conf, self.studies),
                SEGMENTATION_MODEL: LesionLocaliserTrain(self.localiser_dir, self.conf, self.studies)}

    def init_strategies(self):
        return {"random": Random(), "uncertainty": LeastCertain(self._infers[MODEL], MODEL)}

    def infer(self, request, datastore=None):
        """MONAI Label's infer, with clear HTTP errors for unknown models or images, no model file, unreadable images.

        With ``save_label`` (batch inference sets it), a classifier result is stored in the datastore under
        the tags of :mod:`lib.predictions` (MONAI Label itself would store the attention map as ``original``);
        a lesion mask is stored by MONAI Label, as ``original``.
        """
        image = request.get("image")
        datastore = datastore or self.datastore()
        in_datastore = isinstance(image, str) and not os.path.exists(image)
        if in_datastore and not datastore.get_image_uri(image):
            raise HTTPException(status_code=404, detail=f"image '{image}' not found in the datastore")
        classifying = request.get("model") != SEGMENTATION_MODEL
        try:
            result = super().infer({**request, "save_label": False} if classifying else request, datastore)
        except MONAILabelException as error:  # e.g. an unknown model name
            raise HTTPException(status_code=400, detail=error.msg) from error
        except BundleError as error:
            raise HTTPException(status_code=503, detail=f"model not available: {error}") from error
        except ValueError as error:
            action = "classify" if classifying else "segment"
            raise HTTPException(status_code=422, detail=f"cannot {action} image '{image}': {error}") from error
        if classifying and request.get("save_label") and in_datastore:
            store_prediction(datastore, image, request["model"], result["params"], result["file"])
            result.update(label=image, tag=ATTENTION_TAG if result["file"] else PREDICTION_TAG)
        return result

    def batch_infer(self, request, datastore=None):
        """MONAI Label's batch inference; an image that is missing or cannot be read is logged and skipped.

        Without a GPU, ``multi_gpu`` is turned off: MONAI Label 0.8.5 then divides by a GPU count of 0.
        """
        request = {**request, "multi_gpu": request.get("multi_gpu", True) and torch.cuda.is_available()}
        return self._batch_infer(request, datastore or self.datastore(), self._infer_or_skip)

    def _infer_or_skip(self, request, datastore):
        try:
            return self.infer(request, datastore)
        except HTTPException as error:
            if error.status_code not in (404, 422):  # no model, unknown model: the whole batch fails
                raise
            logger.warning(f"batch inference: image '{request['image']}' skipped: {error.detail}")
            return {"error": error.detail}

    def next_sample(self, request):
        """MONAI Label's next sample; HTTP 503 when the strategy needs a model that cannot be loaded."""
        try:
            return super().next_sample(request)
        except BundleError as error:
            raise HTTPException(status_code=503, detail=f"model not available: {error}") from error
