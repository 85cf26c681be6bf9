"""Train tasks: MONAI Label's bundle train task, fed with the labels kept in the datastore.

An image's label is stored in the datastore as its label file with tag ``final``, one per image:

- a class label, for the classifier: a JSON file ``{"label": "malignant"}`` (a class name from the
  bundle's metadata, or its index ``0``/``1``), saved with ``PUT /datastore/label?image=<id>&tag=final``;
- a lesion mask, for the localiser: an image of the image's size whose non-zero pixels are lesion (PNG,
  or NIfTI/NRRD as the stock Slicer MONAILabel module submits a segmentation).

Each task uses the labels of its kind and logs the others as skipped, by image.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from monailabel.tasks.train.bundle import BundleTrainTask

from monai_bus.data.boxes import mask_union
from monai_bus.data.images import read_image
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
    if isinstance(label, int) and not isinstance(label, bool) and label in range(len(class_names)):  # true is no class
        return label
    raise ValueError(f"{label_file}: unknown class {label!r}; expected one of {class_names} or its index")


class FineTuning(BundleTrainTask):
    """Fine-tunes a bundle with its own ``configs/train.json`` on the datastore's labels of one kind.

    A ``final`` label of the other kind, or one that cannot be read, is skipped: the log names its image
    and the reason, and counts the skipped labels. Each run starts from ``models/model.pt`` (MONAI
    Label's ``pretrained`` option) and trains ``max_epochs`` epochs; the bundle's own resume from
    ``checkpoint_last.pt`` is turned off, so that a finished run does not make the next one a no-op. The
    new weights' record (``models/model.json``) says they come from MONAI Label fine-tuning on this
    datastore. Shipped weights are kept as ``models/model_shipped.pt`` before the first run replaces them.

    Subclasses name the kind (:attr:`LABELS`) and read one label (:meth:`datalist_item`).
    """

    LABELS = ""  # what the task's labels are, in words
    HINT = ""  # how to save one

    def __init__(self, bundle_dir: str, conf: dict, studies: str):
        super().__init__(bundle_dir, conf)
        self.studies = studies
        with open(self.bundle_metadata_path, encoding="utf8") as f:
            self.metadata = json.load(f)

    def datalist_item(self, image: str, label_file: str) -> dict:
        """The bundle's datalist item for an image and its label file; ValueError naming the file when the
        label is not of the task's kind."""
        raise NotImplementedError

    def _fetch_datalist(self, request, datastore):
        datalist, skipped = [], []
        for item in datastore.datalist():
            image_id = Path(item["image"]).stem
            try:
                datalist.append(self.datalist_item(item["image"], item["label"]))
            except ValueError as error:
                logger.warning(f"final label of image '{image_id}' skipped: {error}")
                skipped.append(image_id)
        logger.info(f"{len(datalist)} final {self.LABELS} used, {len(skipped)} skipped: {skipped}")
        if not datalist:
            raise ValueError(f"no final label in the datastore holds {self.LABELS} ({len(skipped)} skipped); "
                             f"{self.HINT}")
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
        return (f"MONAI Label {f'fine-tuning of {start}' if start else 'training from scratch'} on the final "
                f"{self.LABELS} of datastore {self.studies}: {self.describe_training(training)}, "
                + ("the bundle's validation images" if validation is None else f"{len(validation)} validation images"))

    def describe_training(self, training: list[dict]) -> str:
        return f"{len(training)} training images"


class BundleClassifierTrain(FineTuning):
    """Fine-tunes the classifier bundle on the datastore's class labels (``{"label": "malignant"}``)."""

    LABELS = "class labels"
    HINT = 'save labels like {"label": "malignant"}'

    def __init__(self, bundle_dir: str, conf: dict, studies: str):
        super().__init__(bundle_dir, conf, studies)
        channel_def = self.metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        self.class_names = [name for _, name in sorted(channel_def.items(), key=lambda item: int(item[0]))]

    def datalist_item(self, image: str, label_file: str) -> dict:
        return {"image": image, "label": read_class_label(label_file, self.class_names)}

    def _update_overrides(self, overrides):
        super()._update_overrides(overrides)
        overrides["mask_loss_weight"] = 0  # class labels only: the datastore holds no lesion masks for this task

    def describe_training(self, training: list[dict]) -> str:
        positives = sum(item["label"] == 1 for item in training)
        return f"{len(training)} training images ({positives} {self.class_names[1]})"


class LesionLocaliserTrain(FineTuning):
    """Fine-tunes the localiser bundle on the datastore's lesion masks, for example corrected in Slicer."""

    LABELS = "lesion masks"
    HINT = "submit a lesion segmentation of the image's size (PNG, NIfTI or NRRD)"

    def datalist_item(self, image: str, label_file: str) -> dict:
        # ValueError naming the file: not a mask of this image, not binary, inverted (monai_bus.data.boxes.read_mask)
        if not mask_union([label_file], read_image(image)[0].shape).any():
            raise ValueError(f"{label_file}: no lesion pixel; the localiser learns from images with a lesion")
        return {"image": image, "mask": label_file}
