"""``monai-bus samples``: classify the four sample ultrasound images that ship with monai-bus.

The samples are real BUS-BRA images (CC BY 4.0, ``monai_bus/samples/CREDITS.md``) of patients that
no training split holds, each with the dataset's lesion box. Each is classified with the bundle's
weights through the inference API; the command prints one table row per image (the dataset's
pathology beside the model's answer) and the weights used, and writes ``<out>/<image>_overlay.png``:
the attention map, the lesion box (green) and the classified region (blue).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
    parser.add_argument("--out", default="samples_out", help="folder for the overlay PNGs (default: %(default)s)")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    from monai_bus.data.images import read_image
    from monai_bus.inference import BundleClassifier
    from monai_bus.overlay import write_overlay

    classifier = BundleClassifier(args.bundle, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| image | pathology (BUS-BRA) | class | P(malignant) | likelihood | overlay |")
    print("|---|---|---|---|---|---|")
    for sample in json.loads((SAMPLES / "samples.json").read_text())["samples"]:
        image = SAMPLES / sample["image"]
        prediction = classifier.predict(image, box=tuple(sample["box"]))
        overlay = out / f"{image.stem}_overlay.png"
        write_overlay(read_image(image)[0], prediction.attention, sample["box"], prediction.roi, overlay)
        print(f"| {image.name} | {sample['pathology']} ({sample['histology']}) | {prediction.class_name} | "
              f"{prediction.malignancy_probability:.3f} | {prediction.likelihood} | {overlay} |")
    weights = classifier.weights
    print(f"\nweights: {weights['file']} (version {weights['version']}, SHA-256 {weights['sha256'][:12]}...), "
          f"trained on {weights['trained_on']}")
    print("threshold: " + ("argmax" if classifier.threshold is None else f"{classifier.threshold:g} (operating point)"))
    return 0
