"""``monai-bus samples``: classify the four sample ultrasound images that ship with monai-bus.

The samples are real BUS-BRA images (CC BY 4.0, ``monai_bus/samples/CREDITS.md``) of patients that
no training split holds, each with the dataset's lesion box. Each is classified twice with the
bundles' weights through the inference API: around the dataset's box, and without a box, around the
box that the localiser finds. The command prints a table for each (the dataset's pathology beside
the model's answer and its refer flag; for the localiser, its confidence and the IoU of its box with
the dataset's), below each table the note of every sample not classified (no lesion found, or unlike
the training images), and the weights used, and writes ``<out>/<image>_overlay.png`` and
``<out>/<image>_localiser_overlay.png``: the attention map, the lesion box (green) and the classified region (blue).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monai_bus.commands import SHIPPED_LOCALISER

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
    parser.add_argument("--localiser", default=str(SHIPPED_LOCALISER),
                        help="localiser bundle folder (default: the one that ships with monai-bus, %(default)s)")
    parser.add_argument("--out", default="samples_out", help="folder for the overlay PNGs (default: %(default)s)")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")


def _referral(prediction) -> str:
    """The refer flag and the uncertainty, as ``yes (0.129)``, or ``yes, check the box (0.038)`` when the
    localiser is unsure of its box."""
    flag = "yes, check the box" if prediction.check_box else {True: "yes", False: "no", None: "-"}[prediction.refer]
    return flag if prediction.uncertainty is None else f"{flag} ({prediction.uncertainty:.3f})"


def _answer(prediction) -> str:
    """The class, P(malignant) and likelihood columns; for an image not classified, why: ``no lesion found`` or
    ``unlike the training images`` (its note says more)."""
    if prediction.class_name is None:
        return f"{prediction.unclassified_reason} | - | -"
    return f"{prediction.class_name} | {prediction.malignancy_probability:.3f} | {prediction.likelihood}"


def _print_notes(notes: dict[str, str]) -> None:
    """The note of each sample not classified, by image name, below its table."""
    for name, note in notes.items():
        print(f"\n{name}: {note}")


def run(args: argparse.Namespace) -> int:
    from monai_bus.data.boxes import box_iou
    from monai_bus.data.images import read_image
    from monai_bus.inference import BundleClassifier
    from monai_bus.localiser import LesionLocaliser
    from monai_bus.overlay import write_overlay

    classifier = BundleClassifier(args.bundle, device=args.device,
                                  localiser=LesionLocaliser(args.localiser, device=args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = json.loads((SAMPLES / "samples.json").read_text())["samples"]
    print("With the dataset's lesion box:\n")
    print("| image | pathology (BUS-BRA) | class | P(malignant) | likelihood | refer (uncertainty) | overlay |")
    print("|---|---|---|---|---|---|---|")
    notes = {}
    for sample in samples:
        image = SAMPLES / sample["image"]
        prediction = classifier.predict(image, box=tuple(sample["box"]))
        overlay = out / f"{image.stem}_overlay.png"
        write_overlay(read_image(image)[0], prediction.attention, sample["box"], prediction.roi, overlay)
        print(f"| {image.name} | {sample['pathology']} ({sample['histology']}) | {_answer(prediction)} | "
              f"{_referral(prediction)} | {overlay} |")
        if prediction.class_name is None:
            notes[image.name] = prediction.note
    _print_notes(notes)
    print("\nWithout a box, around the localiser's box:\n")
    print("| image | pathology (BUS-BRA) | class | P(malignant) | likelihood | refer (uncertainty) | localiser "
          "confidence | box IoU with the dataset's | overlay |")
    print("|---|---|---|---|---|---|---|---|---|")
    notes = {}
    for sample in samples:
        image = SAMPLES / sample["image"]
        prediction = classifier.predict(image)
        overlay = out / f"{image.stem}_localiser_overlay.png"
        write_overlay(read_image(image)[0], prediction.attention, prediction.box, prediction.roi, overlay)
        confidence = "-" if prediction.localiser_confidence is None else f"{prediction.localiser_confidence:.3f}"
        print(f"| {image.name} | {sample['pathology']} ({sample['histology']}) | {_answer(prediction)} | "
              f"{_referral(prediction)} | {confidence} | {box_iou(prediction.box, tuple(sample['box'])):.2f} "
              f"| {overlay} |")
        if prediction.class_name is None:
            notes[image.name] = prediction.note
    _print_notes(notes)
    weights, located_by = classifier.weights, classifier.localiser.weights
    print(f"\nweights: {weights['file']} (version {weights['version']}, SHA-256 {weights['sha256'][:12]}...), "
          f"trained on {weights['trained_on']}")
    check_below = classifier.localiser.check_below
    print(f"localiser: {located_by['file']} (version {located_by['version']}, SHA-256 {located_by['sha256'][:12]}...)"
          + ("" if check_below is None else f"; check the box below confidence {check_below:.3f}"))
    print("threshold: " + ("argmax" if classifier.threshold is None else f"{classifier.threshold:g} (operating point)"))
    return 0
