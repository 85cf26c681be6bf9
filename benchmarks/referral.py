"""The refer flag as the front ends raise it with no box drawn: around the localiser's box.

    python benchmarks/referral.py --localiser localiser --classifier bundle \\
        --datalist docs/results/lists/busi_busbra.json --out docs/results/referral

Every test image of the datalist goes through the inference API as ``monai-bus infer IMAGE`` sends it:
no box, so :class:`monai_bus.inference.BundleClassifier` asks the localiser, classifies around its box
at the bundle's operating point, and measures the uncertainty over its test-time views
(:mod:`monai_bus.uncertainty`); ``--split validation`` measures the validation split instead.
``<out>/predictions.csv`` holds one row per image: the box's IoU with the dataset's
(``benchmarks/localiser.py``'s measure), P(malignant), the class (empty when no lesion was found), the
uncertainty, the localiser's confidence, whether it asked to check its box (its confidence below the
localiser's ``check_below``, docs/results/localiser/confidence/) and ``refer``. ``<out>/table.md`` and
``table.json``, per dataset: how many images are referred, and how many of them for the box; the errors
at the operating point, the missed cancers and false alarms among them, the localiser's misses (box
IoU below :data:`MISS_IOU`, or no lesion) and the errors on them, each with how many are referred; and the AUC, sensitivity and specificity on the images not referred.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from localiser import dataset_of, run_benchmark
from monai_bus.data.boxes import box_from_masks, box_iou, mask_union
from monai_bus.data.loading import load_split
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.metrics import roc_auc
from monai_bus.prediction_files import read_rows

COLUMNS = ("image", "group", "label", "box_iou", "p_malignant", "predicted", "uncertainty", "localiser_confidence",
           "check_box", "refer")
MISS_IOU = 0.5


def measure(localiser: str, classifier: str, datalist: str, split: str = "test") -> list[dict]:
    """One row (COLUMNS) per item of the datalist's ``split``."""
    model = BundleClassifier(classifier, device="cpu", localiser=LesionLocaliser(localiser, device="cpu"))
    if model.refer_above is None:
        raise SystemExit(f"{classifier}: its operating point has no refer_above for its weights; run monai-bus "
                         "calibrate first.")
    listed = json.loads(Path(datalist).read_text())[split]  # image paths as the datalist writes them
    rows = []
    for item, entry in zip(load_split(datalist, split), listed):
        prediction = model.predict_item({"image": item["image"]})
        truth = mask_union(item["mask"], prediction.lesion_mask.shape)
        classified = prediction.class_index is not None
        rows.append({"image": entry["image"], "group": item.get("group", ""), "label": item["label"],
                     "box_iou": round(box_iou(prediction.box, box_from_masks(truth)), 6),
                     "p_malignant": round(prediction.malignancy_probability, 6) if classified else "",
                     "predicted": prediction.class_index if classified else "",
                     # unrounded: refer compares it with refer_above, and any rounding can tie the two
                     "uncertainty": prediction.uncertainty if classified else "",
                     "localiser_confidence": "" if prediction.localiser_confidence is None else
                     round(prediction.localiser_confidence, 6),
                     "check_box": int(prediction.check_box),
                     "refer": int(prediction.refer)})
    return rows


def summarise(predictions: Path) -> dict:
    """Per dataset (:func:`dataset_of`) and for all: the counts of the module's docstring and the rates on
    the images not referred."""
    rows = [row for _, row in read_rows(predictions, COLUMNS)]
    summary = {}
    for name in sorted({dataset_of(row["group"]) for row in rows}) + ["all"]:
        chosen = [row for row in rows if name in ("all", dataset_of(row["group"]))]
        referred = [row["refer"] == "1" for row in chosen]
        wrong = [row["predicted"] != row["label"] for row in chosen]  # no lesion found counts as wrong
        kinds = {"box_checks": [row["check_box"] == "1" for row in chosen], "errors": wrong,
                 "missed_cancers": [w and row["label"] == "1" for w, row in zip(wrong, chosen)],
                 "false_alarms": [row["label"] == "0" and row["predicted"] == "1" for row in chosen],
                 "localiser_misses": [float(row["box_iou"]) < MISS_IOU for row in chosen]}
        kinds["errors_on_misses"] = [w and m for w, m in zip(wrong, kinds["localiser_misses"])]
        kept = [row for row, refer in zip(chosen, referred) if not refer]  # all classified: no lesion refers
        labels = np.array([int(row["label"]) for row in kept])
        predicted = np.array([int(row["predicted"]) for row in kept])
        summary[name] = {
            "images": len(chosen), "referred": sum(referred),
            **{key: [sum(flags), sum(f and r for f, r in zip(flags, referred))] for key, flags in kinds.items()},
            "auc_kept": roc_auc(labels, np.array([float(row["p_malignant"]) for row in kept])),
            "sensitivity_kept": float(predicted[labels == 1].mean()),
            "specificity_kept": float(1 - predicted[labels == 0].mean())}
    return summary


def write_table(summary: dict, out: Path, command: str) -> str:
    counted = ("errors", "missed_cancers", "false_alarms", "localiser_misses", "errors_on_misses")
    lines = [f"Command: `{command}`", "",
             "| test set | images | referred | asked to check the box | errors at the operating point | missed cancers "
             "| false alarms | localiser misses | errors on them | not referred: AUC | sensitivity | specificity |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {row['images']} | {row['referred']} | {row['box_checks'][0]} | "
              + " | ".join(f"{row[key][0]} ({row[key][1]} referred)" for key in counted)
              + f" | {row['auc_kept']:.3f} | {row['sensitivity_kept']:.3f} | {row['specificity_kept']:.3f} |"
              for name, row in summary.items()]
    lines += ["", "Counts with, in brackets, how many of them are referred. Asked to check the box: referred because "
              "the localiser's confidence is below its cut-off (some also for their uncertainty). "
              "A missed cancer: a malignant lesion not called malignant (or not found); a false alarm: a benign one called malignant. A localiser miss: "
              f"its box's IoU with the dataset's below {MISS_IOU}, or no lesion found (IoU 0). An image without a "
              "lesion found is referred and counts as an error."]
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return table


if __name__ == "__main__":
    run_benchmark(sys.modules[__name__])
