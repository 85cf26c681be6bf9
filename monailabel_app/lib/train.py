"""Train task: MONAI Label's bundle train task, fed with the class labels kept in the datastore.

A class label is stored in the datastore as the image's label file with tag ``final``: a JSON file
``{"label": "malignant"}`` (a class name from the bundle's metadata, or its index ``0``/``1``),
saved with ``PUT /datastore/label?image=<id>&tag=final``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from monailabel.tasks.train.bundle import BundleTrainTask

from monai_bus.weights import provenance, sha256

logger = logging.getLogger(__name__)


def read_class_label(label_file: str, class_names: list[str]) -> int:
    """Class index held by a datastore label file.

    Raises:
        ValueError: naming the file, when it holds no known class.
    """
    try:
        with open(label_file, encoding="utf8") as f:
            label = json.load(f)["label"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{label_file}: not a JSON class label like {{\"label\": \"malignant\"}} "
                         f"({type(error).__name__}: {error})") from error
    if isinstance(label, str) and label in class_names:
        return class_names.index(label)
    if isinstance(label, int) and label in range(len(class_names)):
        return label
    raise ValueError(f"{label_file}: unknown class {label!r}; expected one of {class_names} or its index")


class BundleClassifierTrain(BundleTrainTask):
    """Fine-tunes the bundle with its own ``configs/train.json`` on the datastore's labelled images.

    A ``final`` label that holds no class (for example a segmentation that MONAI Label's Slicer
    module submitted) is skipped: the log names its image and the reason, and counts the skipped
    labels. Each run starts from ``models/model.pt`` (MONAI Label's ``pretrained`` option) and trains
    ``max_epochs`` epochs; the bundle's own resume from ``checkpoint_last.pt`` is turned off, so
    that a finished run does not make the next one a no-op. The new weights' record
    (``models/model.json``) says they come from MONAI Label fine-tuning on this datastore. Shipped weights
    are kept as ``models/model_shipped.pt`` before the first run replaces them.
    """

    def __init__(self, bundle_dir: str, conf: dict, studies: str):
        super().__init__(bundle_dir, conf)
        self.studies = studies
        with open(self.bundle_metadata_path, encoding="utf8") as f:
            self.metadata = json.load(f)
        channel_def = self.metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        self.class_names = [name for _, name in sorted(channel_def.items(), key=lambda item: int(item[0]))]

    def _fetch_datalist(self, request, datastore):
        datalist, skipped = [], []
        for item in datastore.datalist():
            image_id = Path(item["image"]).stem
            try:
                datalist.append({"image": item["image"], "label": read_class_label(item["label"], self.class_names)})
            except ValueError as error:
                logger.warning(f"final label of image '{image_id}' skipped: {error}")
                skipped.append(image_id)
        logger.info(f"{len(datalist)} final class labels used, {len(skipped)} skipped: {skipped}")
        if not datalist:
            raise ValueError(f"no final label in the datastore holds a class ({len(skipped)} skipped); "
                             f"save labels like {{\"label\": \"malignant\"}}")
        return datalist

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if pretrained:  # MONAI Label 0.8.5's version fails on pretrained=false (os.path.exists(None))
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _update_overrides(self, overrides):
        overrides["resume"] = False
        overrides["max_epochs"] = overrides["train#trainer#max_epochs"]  # the LR schedule's length too
        overrides["best_model#trained_on"] = self._describe_run(overrides)
        self._keep_shipped_weights()
        overrides["best_model#protected_sha256"] = []  # kept as model_shipped.pt

    def _keep_shipped_weights(self) -> None:
        """Fine-tuning replaces ``models/model.pt``. When that file holds the bundle's shipped weights, they are
        first copied to ``models/model_shipped.pt`` (recognised by their checksum, and offered as a start model)."""
        model = Path(self.bundle_path) / "models" / "model.pt"
        shipped = {entry["sha256"] for entry in self.metadata.get("weights", {}).values()}
        if model.is_file() and sha256(model) in shipped:
            kept = model.with_name("model_shipped.pt")
            if not kept.is_file():
                shutil.copy2(model, kept)
            logger.warning(f"fine-tuning replaces the shipped weights {model}; they are kept as {kept}")

    def _describe_run(self, overrides) -> str:
        """What the new weights are trained on, for their record: the start weights and the datastore's images."""
        loader = next((handler for handler in overrides["train#handlers"]
                       if isinstance(handler, dict) and handler.get("_target_") == "CheckpointLoader"), None)
        start = provenance(loader["load_path"], self.metadata)["version"] if loader else None
        training = overrides["train#dataset#data"]
        validation = overrides.get("validate#dataset#data")
        positives = sum(item["label"] == 1 for item in training)
        return (f"MONAI Label {f'fine-tuning of {start}' if start else 'training from scratch'} on the final labels "
                f"of datastore {self.studies}: {len(training)} training images ({positives} {self.class_names[1]}), "
                + ("the bundle's validation images" if validation is None else f"{len(validation)} validation images"))
