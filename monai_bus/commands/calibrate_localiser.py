"""``monai-bus calibrate-localiser``: fit a trained localiser's cut-off for "check the box" on validation data.

The localiser (:class:`monai_bus.localiser.LesionLocaliser`) looks for the lesion of every image of the
datalist's ``validation`` split. The cut-off is the confidence (the found component's mean lesion
probability) below which the least confident :data:`monai_bus.uncertainty.REFER_FRACTION` of the lesions
found lie: their quantile (linear interpolation). It goes into the localiser's ``configs/metadata.json``
as ``operating_point`` (``check_below``, with the SHA-256 of the weights it was fitted for), which the
inference API (``monai-bus infer``, Slicer, MONAI Label) applies: an answer around a box found with less
confidence is flagged "refer", and its note asks the user to check the box
(docs/results/localiser/confidence/). Run it again after training or fine-tuning the localiser: a
cut-off fitted for other weights is not applied.

``--out`` receives ``validation_confidence.csv`` (one row per image: ``found`` and ``confidence``, empty
when no lesion was found; image paths as the datalist writes them) and ``localiser_calibration.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monai_bus.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--localiser", default="localiser", help="trained localiser bundle folder (default: "
                                                                "%(default)s)")
    parser.add_argument("--datalist", required=True, help="datalist with a 'validation' list")
    parser.add_argument("--out", required=True, help="folder for the report and the per-image confidences")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from monai_bus.data.loading import load_split
    from monai_bus.localiser import LesionLocaliser
    from monai_bus.prediction_files import write_rows
    from monai_bus.uncertainty import REFER_FRACTION

    items = load_split(args.datalist, "validation")
    localiser = LesionLocaliser(args.localiser, device=args.device)
    if not localiser.gives_confidence:
        raise CommandError(f"{Path(args.localiser) / 'configs' / 'inference.json'}: its lesion_mask gives no "
                           "confidence (LesionComponentd's confidence_key, since localiser 0.5.0), so there is "
                           "nothing to fit the cut-off on.")
    found = [localiser.locate(item["image"], frame=item.get("frame")) for item in items]
    confidences = np.array([f.confidence for f in found if f.found])
    if not len(confidences):
        raise CommandError(f"{args.datalist}: the localiser found no lesion in any of the {len(items)} validation "
                           "images; there is no confidence to fit the cut-off on.")
    check_below = float(np.quantile(confidences, REFER_FRACTION))

    out = Path(args.out)
    listed = json.loads(Path(args.datalist).read_text())["validation"]  # the image paths as the datalist writes them
    write_rows(out / "validation_confidence.csv", ("image", "found", "confidence"),
               [{"image": entry["image"], "found": int(f.found), "confidence": "" if f.confidence is None else
                 f"{f.confidence:.6f}"} for entry, f in zip(listed, found)])
    report = {"localiser": str(args.localiser), "weights": localiser.weights, "datalist": str(args.datalist),
              "validation_images": len(items), "not_found": len(items) - len(confidences),
              "fraction_checked": REFER_FRACTION, "check_below": check_below,
              "checked": int((confidences < check_below).sum())}
    (out / "localiser_calibration.json").write_text(json.dumps(report, indent=1) + "\n")

    meta_file = Path(args.localiser) / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["operating_point"] = {
        "check_below": check_below,  # not rounded: rounded up, it would flag one more validation image
        "weights_sha256": localiser.weights["sha256"],
        "description": f"the confidence (mean lesion probability of the component found) below which the least "
                       f"confident {REFER_FRACTION:.0%} of the lesions found on the validation split of "
                       f"{args.datalist} ({len(confidences)} of {len(items)} images) lie; an answer around a box "
                       "found with less confidence is flagged refer, and the user asked to check the box"}
    meta_file.write_text(json.dumps(metadata, indent=4) + "\n")
    print(json.dumps({key: report[key] for key in ("validation_images", "not_found", "check_below", "checked")},
                     indent=1))
    print(f"operating point written to {meta_file}; report in {out}")
    return 0
