"""Active-learning strategy: label next the image the current model is least certain about."""

from __future__ import annotations

import logging

from monailabel.interfaces.tasks.strategy import Strategy

from lib.infer import BundleClassifierInfer
from lib.predictions import operating_point, store_prediction, stored_result
from monai_bus.inference import BundleError

logger = logging.getLogger(__name__)


class LeastCertain(Strategy):
    """Picks the unlabeled image (no ``final`` label) whose P(malignant) is closest to the decision
    threshold: the bundle's operating-point threshold (``BundleClassifier.threshold``), else 0.5.

    It reuses the predictions stored in the datastore (:mod:`lib.predictions`) when they come from
    the weights now served (the classifier's and the localiser's SHA-256) at the operating point now
    applied, and predicts and stores the others. An image that cannot be read, or that gets no class (the
    localiser finds no lesion, or it is unlike the training images: no P(malignant)), is logged and left out.
    """

    def __init__(self, infer_task: BundleClassifierInfer, model: str):
        super().__init__("Unlabeled image whose P(malignant) is closest to the decision threshold")
        self.infer_task = infer_task
        self.model = model

    def __call__(self, request, datastore):
        classifier = self.infer_task.classifier()  # BundleError when there is no usable model
        threshold = 0.5 if classifier.threshold is None else classifier.threshold
        served = {"weights_sha256": classifier.weights["sha256"],
                  "localiser_sha256": classifier.localiser.weights["sha256"],
                  "operating_point": operating_point(classifier)}
        best_id, best_probability, predicted = None, None, 0
        for image_id in datastore.get_unlabeled_images():
            result = stored_result(datastore, image_id, served)
            if result is None:
                try:
                    _, result = self.infer_task({"image": datastore.get_image_uri(image_id)})
                except BundleError:  # the model, not the image: no selection
                    raise
                except ValueError as error:
                    logger.warning(f"uncertainty: image '{image_id}' left out: {error}")
                    continue
                store_prediction(datastore, image_id, self.model, result)
                predicted += 1
            probability = result["malignancy_probability"]
            if probability is None:  # not classified: its note says why
                logger.warning(f"uncertainty: image '{image_id}' left out: {result['note']}")
                continue
            if best_id is None or abs(probability - threshold) < abs(best_probability - threshold):
                best_id, best_probability = image_id, probability
        if best_id is None:
            logger.info("uncertainty: no unlabeled image that can be classified")
            return None
        logger.info(f"uncertainty: selected '{best_id}', P(malignant) {best_probability:.4f}, threshold {threshold} "
                    f"({predicted} images predicted now, stored predictions reused for the others)")
        return {"id": best_id, "malignancy_probability": best_probability, "threshold": threshold}
