"""Classify one image with a monai-bus bundle: run by the BUSClassifier module in a child process.

    python classify_worker.py --bundle BUNDLE_DIR --image IMAGE.npy --output OUTPUT_DIR [--box R0,R1,C0,C1]

It calls the project's one inference code path, ``monai_bus.inference.BundleClassifier``, and
writes ``OUTPUT_DIR/result.json`` (``Prediction.to_dict()``, or ``{"error": message}`` for an image or
bundle that cannot be used) and, for a network with an attention gate, ``OUTPUT_DIR/attention.npy``.
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
    """``(Prediction.to_dict(), attention map or None)`` for a display-order image [H, W] or [H, W, C].

    Args:
        box: the lesion box ``(row_start, row_stop, col_start, col_stop)`` in the image's pixels, or None.

    Raises:
        ValueError: (``BundleError`` included) with the inference API's message.
    """
    from monai_bus.inference import BundleClassifier

    prediction = BundleClassifier(bundle_dir).predict(image, box=box)
    return prediction.to_dict(), prediction.attention


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
    except ValueError as error:
        (output / RESULT_FILE).write_text(json.dumps({"error": str(error)}))
        return 1
    if attention is not None:
        np.save(output / ATTENTION_FILE, attention)
    (output / RESULT_FILE).write_text(json.dumps(result))  # written last: its presence means done
    return 0


if __name__ == "__main__":
    sys.exit(main())
