"""Predictions kept in the datastore, each under a tag of its own.

Batch inference (``/batch/infer/``), ``/infer/`` with ``save_label`` and the ``uncertainty`` strategy
store an image's prediction as labels of that image, never under MONAI Label's ``original`` or
``final`` tags (``final`` holds the radiologist's class, which training reads):

- tag ``monai_bus_prediction``: a JSON file, the infer task's result (``prediction``, ``class_name``,
  ``malignancy_probability``, ``model_version``, ``weights_sha256``, the ``operating_point`` applied,
  ...). Its label info holds the same fields, without ``prediction``, and the model name.
- tag ``monai_bus_attention``: the attention map PNG, when the request asked for it. Its label info
  names the weights that made it (``model_version``, ``weights_sha256``).
"""

from __future__ import annotations

import json
import os
import tempfile

PREDICTION_TAG = "monai_bus_prediction"
ATTENTION_TAG = "monai_bus_attention"


def operating_point(classifier) -> dict:
    """The operating point that a :class:`monai_bus.inference.BundleClassifier` applies: its ``threshold``
    (None: the argmax), ``temperature``, ``refer_above`` (None: no referral by uncertainty),
    ``unfamiliar_above`` (a cut-off by layer, ``{"pool3": d3, "pool5": d5}``; None: no image is turned away as
    unlike the training images) and its localiser's
    ``check_below`` as ``localiser_check_below`` (None: no localiser, or no cut-off for its weights, so no
    box is to be checked)."""
    localiser = classifier.localiser
    return {"threshold": classifier.threshold, "temperature": classifier.temperature,
            "refer_above": classifier.refer_above, "unfamiliar_above": classifier.unfamiliar_above,
            "localiser_check_below": None if localiser is None else localiser.check_below}


def store_prediction(datastore, image_id: str, model: str, result: dict, attention_file: str | None = None) -> None:
    """Save an infer result as the image's ``monai_bus_prediction`` label, and the attention map PNG
    (when given) as its ``monai_bus_attention`` label."""
    info = {"model": model, **{key: value for key, value in result.items() if key != "prediction"}}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prediction.json")
        with open(path, "w", encoding="utf8") as f:
            json.dump(result, f, indent=1)
        datastore.save_label(image_id, path, PREDICTION_TAG, info)
    if attention_file:
        weights = {key: result[key] for key in ("model_version", "weights_sha256")}
        datastore.save_label(image_id, attention_file, ATTENTION_TAG, {"model": model, **weights})


def stored_result(datastore, image_id: str, served: dict) -> dict | None:
    """The result stored for the image by the weights and operating point now served, or None.

    Args:
        served: the served weights' ``weights_sha256`` and ``localiser_sha256`` (the localiser's box
            decides what was classified) and the :func:`operating_point` applied (a recalibration changes
            the probabilities and the classes, the localiser's the box checks); a stored result matches when all three are equal.
    """
    info = datastore.get_label_info(image_id, PREDICTION_TAG) or {}
    return info if all(info.get(key) == value for key, value in served.items()) else None
