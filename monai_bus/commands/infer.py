"""``monai-bus infer``: classify image files with a trained bundle; one JSON line per image."""

from __future__ import annotations

import argparse
import json

from monai_bus.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, DICOM, ...)")
    parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: <bundle>/models/model.pt)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    from monai_bus.inference import BundleClassifier, BundleError

    try:
        classifier = BundleClassifier(args.bundle, checkpoint=args.checkpoint, device=args.device)
    except BundleError as error:
        raise CommandError(str(error)) from error
    failures = 0
    for image in args.images:
        try:
            result = {"image": image, **classifier.predict(image).to_dict()}
        except ValueError as error:
            result, failures = {"image": image, "error": str(error)}, failures + 1
        print(json.dumps(result))
    return 1 if failures else 0
