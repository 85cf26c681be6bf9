"""Classify one image with a monai-bus bundle: run by the BUSClassifier module in a child process.

    python classify_worker.py --bundle BUNDLE_DIR --image IMAGE.npy --output OUTPUT_DIR [--box R0,R1,C0,C1]

It calls the project's one inference code path, ``monai_bus.inference.BundleClassifier``, and
writes ``OUTPUT_DIR/result.json`` (see :func:`classify`, or ``{"error": message}`` for anything that
failed) and, for a network with an attention gate, ``OUTPUT_DIR/attention.npy``.
It imports neither ``slicer`` nor Qt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULT_FILE = "result.json"
ATTENTION_FILE = "attention.npy"


def classify(image: np.ndarray, bundle_dir: str, box: tuple[int, int, int, int] | None = None
             ) -> tuple[dict, np.ndarray | None]:
    """``(result, attention map or None)`` for a display-order image [H, W] or [H, W, C].

    ``result`` is ``Prediction.to_dict()`` (with the weights' file, SHA-256 and training data) plus
    ``threshold`` (the bundle's operating point, None for argmax).

    Args:
        box: the lesion box ``(row_start, row_stop, col_start, col_stop)`` in the image's pixels, or None.

    Raises:
        ValueError: (``BundleError`` included) with the inference API's message, and for a bundle
            trained on lesion regions (``BundleClassifier.roi``) given no box.
    """
    from monai_bus.inference import BundleClassifier

    classifier = BundleClassifier(bundle_dir)
    if classifier.roi and box is None:
        raise ValueError(f"{bundle_dir}: this model was trained on lesion regions and needs a lesion box; "
                         "draw a markups ROI around the lesion, select it and click Apply again.")
    prediction = classifier.predict(image, box=box)
    result = {**prediction.to_dict(), "threshold": classifier.threshold}
    return result, prediction.attention


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
    args = parser.parse_args(argv)
    output = Path(args.output)
    print(f"Classifying with {args.bundle}", flush=True)
    try:
        result, attention = classify(np.load(args.image), args.bundle, args.box)
    except Exception as error:  # every failure reaches the panel as one message
        (output / RESULT_FILE).write_text(json.dumps({"error": error_message(error)}))
        raise
    if attention is not None:
        np.save(output / ATTENTION_FILE, attention)
    (output / RESULT_FILE).write_text(json.dumps(result))  # written last: its presence means done
    return 0


if __name__ == "__main__":
    sys.exit(main())
