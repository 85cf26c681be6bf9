"""MONAI Label app: serve and fine-tune the monai-bus breast-lesion classifier bundle.

    monailabel start_server --app monailabel_app --studies <folder of images> [--conf bundle_path <bundle>]

The bundle defaults to the repository's ``bundle/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelException

import monai_bus
from lib.infer import BundleClassifierInfer
from lib.train import BundleClassifierTrain
from monai_bus.inference import BundleError

MODEL = "breast_lesion_classifier"
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundle"


class MyApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.bundle_dir = os.path.realpath(conf.get("bundle_path", DEFAULT_BUNDLE))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-bus breast lesion classifier",
            description="Benign/malignant classification of breast lesions in ultrasound images (Attention-VGG16)",
            version=monai_bus.__version__,
        )

    def init_infers(self):
        return {MODEL: BundleClassifierInfer(self.bundle_dir)}

    def init_trainers(self):
        return {MODEL: BundleClassifierTrain(self.bundle_dir, self.conf)}

    def infer(self, request, datastore=None):
        """MONAI Label's infer, with clear HTTP errors for unknown models or images, no model file, unreadable images."""
        image = request.get("image")
        datastore = datastore or self.datastore()
        if isinstance(image, str) and not os.path.exists(image) and not datastore.get_image_uri(image):
            raise HTTPException(status_code=404, detail=f"image '{image}' not found in the datastore")
        try:
            return super().infer(request, datastore)
        except MONAILabelException as error:  # e.g. an unknown model name
            raise HTTPException(status_code=400, detail=error.msg) from error
        except BundleError as error:
            raise HTTPException(status_code=503, detail=f"model not available: {error}") from error
        except ValueError as error:
            raise HTTPException(status_code=422, detail=f"cannot classify image '{image}': {error}") from error
