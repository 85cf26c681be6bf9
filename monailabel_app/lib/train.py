"""Train task: MONAI Label's bundle train task, fed with the class labels kept in the datastore.

A class label is stored in the datastore as the image's label file with tag ``final``: a JSON file
``{"label": "malignant"}`` (a class name from the bundle's metadata, or its index ``0``/``1``),
saved with ``PUT /datastore/label?image=<id>&tag=final``.
"""

from __future__ import annotations

import json

from monailabel.tasks.train.bundle import BundleTrainTask


def read_class_label(label_file: str, class_names: list[str]) -> int:
    """Class index held by a datastore label file.

    Raises:
        ValueError: naming the file, when it holds no known class.
    """
    try:
        with open(label_file, encoding="utf8") as f:
            label = json.load(f)["label"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{label_file}: not a JSON class label like {{\"label\": \"malignant\"}} ({error!r}).") from error
    if isinstance(label, str) and label in class_names:
        return class_names.index(label)
    if isinstance(label, int) and label in range(len(class_names)):
        return label
    raise ValueError(f"{label_file}: unknown class {label!r}; expected one of {class_names} or its index.")


class BundleClassifierTrain(BundleTrainTask):
    """Fine-tunes the bundle with its own ``configs/train.json`` on the datastore's labelled images.

    Each run starts from ``models/model.pt`` (MONAI Label's ``pretrained`` option) and trains
    ``max_epochs`` epochs; the bundle's own resume from ``checkpoint_last.pt`` is turned off, so
    that a finished run does not make the next one a no-op.
    """

    def __init__(self, bundle_dir: str, conf: dict):
        super().__init__(bundle_dir, conf)
        with open(self.bundle_metadata_path, encoding="utf8") as f:
            channel_def = json.load(f)["network_data_format"]["outputs"]["pred"]["channel_def"]
        self.class_names = [name for _, name in sorted(channel_def.items(), key=lambda item: int(item[0]))]

    def _fetch_datalist(self, request, datastore):
        return [
            {"image": item["image"], "label": read_class_label(item["label"], self.class_names)}
            for item in datastore.datalist()
        ]

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if pretrained:  # MONAI Label 0.8.5's version fails on pretrained=false (os.path.exists(None))
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _update_overrides(self, overrides):
        overrides["resume"] = False
        overrides["max_epochs"] = overrides["train#trainer#max_epochs"]  # the LR schedule's length too
