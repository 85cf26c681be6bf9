"""Classify one image with a monai-bus bundle: run by the BUSClassifier module in a child process.

    python classify_worker.py --bundle BUNDLE_DIR --image IMAGE.npy --output OUTPUT_DIR
        [--box R0,R1,C0,C1 | --localiser LOCALISER_DIR] [--name NAME]

It calls the project's one inference code path, ``monai_bus.inference.BundleClassifier`` (with
``monai_bus.localiser.LesionLocaliser`` when there is no box), and writes ``OUTPUT_DIR/result.json``
(see :func:`classify`, or ``{"error": message}`` for anything that failed), ``OUTPUT_DIR/attention.npy``
for a network with an attention gate and ``OUTPUT_DIR/lesion_mask.npy`` for a box that the localiser
looked for. It imports neither ``slicer`` nor Qt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULT_FILE = "result.json"
ATTENTION_FILE = "attention.npy"
LESION_MASK_FILE = "lesion_mask.npy"


def classify(image: np.ndarray, bundle_dir: str, box: tuple[int, int, int, int] | None = None,
             localiser_dir: str | None = None, name: str | None = None,
             ) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """``(result, attention map or None, lesion mask or None)`` for a display-order image [H, W] or [H, W, C].

    ``result`` is ``Prediction.to_dict()`` (with the weights' file, SHA-256 and training data, the box
    and its source) plus ``threshold`` (the bundle's operating point, None for argmax). Its
    ``class_name`` is None when the localiser found no lesion.

    Args:
        box: the lesion box ``(row_start, row_stop, col_start, col_stop)`` in the image's pixels, or None.
        localiser_dir: the localiser bundle that finds the box when there is none.
        name: the image's name (the volume's), which messages about the image give in place of "image array".

    Raises:
        ValueError: (``BundleError`` included) with the inference API's message, and for a bundle
            trained on lesion regions (``BundleClassifier.roi``) given neither a box nor a localiser.
    """
    from monai_bus.data.images import ARRAY_NAME
    from monai_bus.errors import InputError
    from monai_bus.inference import BundleClassifier
    from monai_bus.localiser import LesionLocaliser

    classifier = BundleClassifier(bundle_dir)
    if classifier.roi and box is None:
        if localiser_dir is None:
            raise ValueError(f"{bundle_dir}: this model was trained on lesion regions and needs a lesion box; "
                             "draw a markups ROI around the lesion, select it and click Apply again.")
        classifier.localiser = LesionLocaliser(localiser_dir)
    try:
        prediction = classifier.predict(image, box=box)
    except InputError as error:
        if name is None or not str(error).startswith(f"{ARRAY_NAME}: "):
            raise
        raise ValueError(f"'{name}': {str(error)[len(ARRAY_NAME) + 2:]}") from None
    result = {**prediction.to_dict(), "threshold": classifier.threshold}
    return result, prediction.attention, prediction.lesion_mask


def error_message(error: BaseException) -> str:
    """The error in plain words: the message of a ``ValueError`` or ``RuntimeError`` (those of the
    inference API and of the module say what is wrong), else the exception's type and message."""
    if isinstance(error, (ValueError, RuntimeError)) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="monai-bus bundle folder")
    parser.add_argument("--image", required=True, help=".npy image in display order")
    parser.add_argument("--output", required=True, help="folder for result.json and attention.npy")
    parser.add_argument("--box", type=lambda text: tuple(int(value) for value in text.split(",")),
                        help="lesion box ROW_START,ROW_STOP,COL_START,COL_STOP in the image's pixels")
    parser.add_argument("--localiser", help="localiser bundle folder, which finds the box when there is none")
    parser.add_argument("--name", help="the image's name in messages (the volume's)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    print(f"Classifying with {args.bundle}", flush=True)
    try:
        result, attention, lesion_mask = classify(np.load(args.image), args.bundle, args.box, args.localiser,
                                                  args.name)
    except Exception as error:  # every failure reaches the panel as one message
        (output / RESULT_FILE).write_text(json.dumps({"error": error_message(error)}))
        raise
    if attention is not None:
        np.save(output / ATTENTION_FILE, attention)
    if lesion_mask is not None:
        np.save(output / LESION_MASK_FILE, lesion_mask)
    (output / RESULT_FILE).write_text(json.dumps(result))  # written last: its presence means done
    return 0


if __name__ == "__main__":
    sys.exit(main())
