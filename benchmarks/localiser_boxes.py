"""A copy of a datalist whose training images carry the localiser's lesion box, for the recipe variant
``localiser_boxes`` (``benchmarks/recipes.py``: the classifier trained around the boxes it meets without
a hand-drawn one).

    python benchmarks/localiser_boxes.py --localiser localiser --datalist docs/results/lists/busi.json

writes ``docs/results/lists/busi_localiser_boxes.json``: the same lists, each training item's ``bbox``
replaced by the box of the lesion that :class:`monai_bus.localiser.LesionLocaliser` finds in its image
(the box ``monai-bus infer IMAGE`` classifies around). An item in which it finds no lesion keeps the
dataset's box. Validation and test items are unchanged, so that the variant is chosen and tested as the
others are. Prints how many boxes were replaced and their IoU with the boxes of the lesion masks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from monai_bus.data.boxes import box_from_masks, box_iou, mask_union
from monai_bus.data.loading import load_split
from monai_bus.localiser import LesionLocaliser

SUFFIX = "_localiser_boxes"


def localiser_boxes(localiser: str, datalist: str) -> tuple[dict, list[float | None]]:
    """The datalist (as its JSON) with the training items' boxes replaced, and each training item's box IoU
    with the box of its lesion masks (None where no lesion was found)."""
    found_by = LesionLocaliser(localiser, device="cpu")
    listed = json.loads(Path(datalist).read_text())
    training, ious = [], []
    for entry, item in zip(listed["training"], load_split(datalist, "training"), strict=True):
        found = found_by.locate(item["image"], frame=item.get("frame"))
        if found.found:
            ious.append(box_iou(found.box, box_from_masks(mask_union(item["mask"], found.mask.shape))))
            entry = {**entry, "bbox": list(found.box)}
        else:
            ious.append(None)
        training.append(entry)
    return {**listed, "training": training}, ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--localiser", required=True, help="trained localiser bundle folder")
    parser.add_argument("--datalist", required=True, help="datalist whose items have masks")
    args = parser.parse_args()
    boxed, ious = localiser_boxes(args.localiser, args.datalist)
    out = Path(args.datalist).with_name(Path(args.datalist).stem + SUFFIX + ".json")
    out.write_text(json.dumps(boxed, indent=2) + "\n")
    measured = np.array([iou for iou in ious if iou is not None])
    print(f"{out}: {len(measured)} of {len(ious)} training boxes are the localiser's; box IoU with the masks' "
          f"median {np.median(measured):.3f}, below 0.5 in {int((measured < 0.5).sum())}")


if __name__ == "__main__":
    main()
