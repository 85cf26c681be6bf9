"""``monai-bus infer``: classify image files with a trained bundle; one JSON line per image.

An image that cannot be classified gets a line with its ``error``, which also goes to stderr (a
terminal shows it when stdout goes to a file); the others are still classified, and the exit status is 1.

Without ``--box``, a bundle trained on lesion regions classifies the region around the lesion that the
localiser bundle finds (``box_source`` ``"localiser"``); an image in which it finds none gets no class
(``class_name`` null) and a note that says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from monai_bus.commands import SHIPPED_LOCALISER
from monai_bus.errors import CommandError


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected four integers ROW_START,ROW_STOP,COL_START,COL_STOP, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, DICOM, ...)")
    parser.add_argument("--box", type=_box, metavar="R0,R1,C0,C1",
                        help="the lesion box in the image's pixels: rows R0 to R1 and columns C0 to C1, stops "
                             "excluded, row 0 at the top (one image only; a box starting above or left of the image, "
                             "-5,60,..., is written --box=-5,60,...); without it the localiser finds the box")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="the frame of a multi-frame file (DICOM cine, multi-page TIFF), counting from 0")
    parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
    parser.add_argument("--checkpoint", help="checkpoint file (default: <bundle>/models/model.pt)")
    parser.add_argument("--localiser", default=str(SHIPPED_LOCALISER),
                        help="localiser bundle folder, which finds the lesion box of an image given without --box "
                             "(default: the one that ships with monai-bus, %(default)s)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    from monai_bus.inference import BundleClassifier, BundleError
    from monai_bus.localiser import LesionLocaliser

    if args.box and len(args.images) > 1:
        raise CommandError(f"--box is the lesion box of one image, but {len(args.images)} images were given")
    classifier = None
    try:
        classifier = BundleClassifier(args.bundle, checkpoint=args.checkpoint, device=args.device)
        if classifier.roi and not args.box:
            classifier.localiser = LesionLocaliser(args.localiser, device=args.device)
    except BundleError as error:
        if classifier is not None:  # the localiser, needed for an image without --box
            raise CommandError(f"{error} Pass the localiser bundle with --localiser DIR, or the lesion box with "
                               "--box.") from error
        raise CommandError(str(error)) from error
    failures = 0
    for image in args.images:
        try:
            result = {"image": image, **classifier.predict(image, box=args.box, frame=args.frame).to_dict()}
        except ValueError as error:
            result, failures = {"image": image, "error": str(error)}, failures + 1
            print(f"monai-bus infer: error: {error}", file=sys.stderr)
        _write(json.dumps(result, allow_nan=False))
    return 1 if failures else 0


def _write(line: str) -> None:
    """Print one result line. When standard output cannot take it, stop: quietly with exit status 1 when its
    reader has gone (``| head``), as other tools do, else with one line (a full disk). What is left of the
    output then goes to the null device, so that Python's flush at exit adds no second error."""
    try:
        print(line, flush=True)
    except OSError as error:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if isinstance(error, BrokenPipeError):
            raise SystemExit(1) from None
        raise CommandError(f"cannot write the results to standard output ({error.strerror})") from None
