"""The localiser on a datalist's test split: its Dice and box IoU, and the classification it feeds.

    python benchmarks/localiser.py --localiser localiser --classifier bundle \\
        --datalist docs/results/lists/busi_busbra.json --out docs/results/localiser/internal

With ``--split validation`` it measures the validation split instead, to choose a setting without
the test (docs/results/localiser/flip/). Without ``--classifier`` it measures the localiser alone: the
Dice and box IoU, with the ``p_`` columns empty and no AUC table (for a localiser whose matching
classifier is not at hand).

Every test image goes through the inference API three times, with the classifier bundle:

- ``localiser box``: no box given, so :class:`monai_bus.inference.BundleClassifier` asks the localiser
  (:class:`monai_bus.localiser.LesionLocaliser`: the component of the predicted lesion that it keeps, at the
  image's size) and classifies the region around its box, as ``monai-bus infer IMAGE`` does; the
  prediction's mask gives the Dice (MONAI's ``compute_dice``) against the union of the image's lesion
  masks, and its box the IoU (MONAI's ``box_iou``) with theirs; both are 0 when no lesion is found;
- ``dataset box``: the datalist's box (its ``bbox``, else the box of its masks);
- ``whole image``: no box and no localiser.

An image to which the API gives no class (the localiser found no lesion in it, or it is unlike the
classifier's training images, :mod:`monai_bus.familiarity`) has that ``p_`` column left empty, and
the AUC counts it as 0.5 (undecided). ``<out>/predictions.csv`` holds one row per image;
``<out>/table.md`` and ``table.json`` per dataset (:func:`dataset_of`): the mean Dice and box
IoU, and the AUC of each box with the paired differences from the dataset box, with 95% percentile
intervals of 2000 bootstrap resamples of the test groups (seed 0). ``seconds`` is the wall time of the
localiser-box prediction (reading the image twice, localising, classifying); without a classifier, of
the localisation alone. ``confidence`` is the localiser's confidence in the lesion it found (empty when it
found none) and ``check_box`` whether it is below the localiser's ``check_below``
(docs/results/localiser/confidence/); the tables do not use them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from monai.metrics import compute_dice

from monai_bus.data.boxes import box_from_masks, box_iou, mask_union
from monai_bus.data.loading import load_split
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.metrics import roc_auc
from monai_bus.prediction_files import read_rows, write_rows
from monai_bus.study.statistics import group_resamples, percentile_interval

BOXES = ("dataset_box", "localiser_box", "whole_image")
SUMMARISED = ("group", "label", "found", "dice", "box_iou", *(f"p_{box}" for box in BOXES), "seconds")
COLUMNS = ("image", "group", "label", "found", "dice", "box_iou", *(f"p_{box}" for box in BOXES), "confidence",
           "check_box", "seconds")  # the tables summarise SUMMARISED: files from before confidence still read
NOT_FOUND_SCORE = 0.5
N_RESAMPLES = 2000


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks [H, W]."""
    as_tensor = lambda mask: torch.from_numpy(mask[None, None].astype(np.float32))  # noqa: E731
    return float(compute_dice(as_tensor(predicted), as_tensor(truth), include_background=True))


def measure(localiser: str, classifier: str | None, datalist: str, split: str = "test") -> list[dict]:
    """One row (COLUMNS) per item of the datalist's ``split``; without a classifier, the localiser's alone."""
    found_by = LesionLocaliser(localiser, device="cpu")
    if classifier is None:
        return _measure_localiser(found_by, datalist, split)
    model = BundleClassifier(classifier, device="cpu", uncertainty=False)
    listed = json.loads(Path(datalist).read_text())[split]  # image paths as the datalist writes them
    rows = []
    for item, entry in zip(load_split(datalist, split), listed):
        image = {"image": item["image"]}
        model.localiser = found_by
        start = time.perf_counter()
        localised = model.predict_item(image)
        seconds = time.perf_counter() - start
        given = model.predict_item(item)
        model.localiser = None
        whole = model.predict_item(image)
        rows.append(_row(entry, item, localised.lesion_mask, localised.box, seconds, localised.localiser_confidence,
                         localised.check_box, p_dataset_box=_score(given), p_localiser_box=_score(localised),
                         p_whole_image=_score(whole)))
    return rows


def _score(prediction) -> float | str:
    """A prediction's P(malignant) rounded to 6 decimals; empty when the API gave it no class."""
    p_malignant = prediction.malignancy_probability
    return "" if p_malignant is None else round(p_malignant, 6)


def _measure_localiser(found_by: LesionLocaliser, datalist: str, split: str) -> list[dict]:
    """The rows of :func:`measure` without a classifier: ``found``, ``dice``, ``box_iou`` and the seconds of
    :meth:`~monai_bus.localiser.LesionLocaliser.locate`; the ``p_`` columns empty."""
    listed = json.loads(Path(datalist).read_text())[split]
    rows = []
    for item, entry in zip(load_split(datalist, split), listed):
        start = time.perf_counter()
        found = found_by.locate(item["image"], frame=item.get("frame"))
        seconds = time.perf_counter() - start
        rows.append(_row(entry, item, found.mask, found.box, seconds, found.confidence, found.check_box,
                         **{f"p_{box}": "" for box in BOXES}))
    return rows


def _row(entry: dict, item: dict, mask: np.ndarray, box, seconds: float, confidence: float | None, check_box: bool,
         **p_malignant) -> dict:
    """One row of COLUMNS: the item's lesion ``mask`` [H, W] and ``box`` (None when none was found) against the
    union of its lesion masks, the ``p_`` columns as given, the localiser's confidence (empty when it found no
    lesion) and whether it asked to check its box (its ``check_below``), and the seconds."""
    truth = mask_union(item["mask"], mask.shape)
    return {"image": entry["image"], "group": item.get("group", ""), "label": item["label"],
            "found": int(box is not None), "dice": round(dice(mask, truth), 6),
            "box_iou": round(box_iou(box, box_from_masks(truth)), 6), **p_malignant,
            "confidence": "" if confidence is None else round(confidence, 6), "check_box": int(check_box),
            "seconds": round(seconds, 4)}


def _statistics(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Mean Dice, mean box IoU and, when the columns hold P(malignant), the AUC of each of BOXES and the AUC
    differences localiser - dataset box and whole image - dataset box, from the columns of :func:`_columns`
    (or a resample of them)."""
    if "p_dataset_box" not in columns:
        return np.array([np.mean(columns["dice"]), np.mean(columns["box_iou"])])
    dataset_box, localiser_box, whole_image = (roc_auc(columns["label"], columns[f"p_{box}"]) for box in BOXES)
    return np.array([np.mean(columns["dice"]), np.mean(columns["box_iou"]),
                     dataset_box, localiser_box, whole_image, localiser_box - dataset_box, whole_image - dataset_box])


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """The prediction rows' label, Dice, box IoU and, when a classifier was measured, P(malignant) of each of
    BOXES (NOT_FOUND_SCORE where the API gave no class), as arrays [N]."""
    columns = {"label": np.array([int(row["label"]) for row in rows]),
               **{name: np.array([float(row[name]) for row in rows]) for name in ("dice", "box_iou")}}
    if all(row["p_dataset_box"] == "" for row in rows):
        return columns
    for box in BOXES:
        columns[f"p_{box}"] = np.array([float(row[f"p_{box}"] or NOT_FOUND_SCORE) for row in rows])
    return columns


STATISTICS = ("dice", "box_iou", "auc_dataset_box", "auc_localiser_box", "auc_whole_image",
              "auc_localiser_minus_dataset", "auc_whole_minus_dataset")


def dataset_of(group: str) -> str:
    """The dataset of a test group: the prefix of the datalists' ``busi:...`` and ``busbra:...``, else ``test``."""
    return group.split(":")[0] if ":" in group else "test"


def summarise(predictions: Path) -> dict:
    """Per dataset (:func:`dataset_of`) and, with several, for all: counts, median seconds, and each of
    STATISTICS as ``[value, low, high]``."""
    rows = [row for _, row in read_rows(predictions, SUMMARISED)]
    datasets = sorted({dataset_of(row["group"]) for row in rows})
    summary = {}
    for name in datasets + (["all"] if len(datasets) > 1 else []):
        chosen = [row for row in rows if name in ("all", dataset_of(row["group"]))]
        columns = _columns(chosen)
        resampled = np.array([_statistics({key: column[r] for key, column in columns.items()})
                              for r in group_resamples([row["group"] for row in chosen], N_RESAMPLES, seed=0)])
        low, high = percentile_interval(resampled)
        summary[name] = {"images": len(chosen), "malignant": sum(row["label"] == "1" for row in chosen),
                         "not_found": sum(row["found"] == "0" for row in chosen),
                         "median_seconds": float(np.median([float(row["seconds"]) for row in chosen])),
                         **{key: [value, lo, hi] for key, value, lo, hi in
                            zip(STATISTICS, _statistics(columns), low, high)}}
    return summary


def write_table(summary: dict, out: Path, command: str) -> str:
    cell = lambda v, sign="": f"{v[0]:{sign}.3f} [{v[1]:{sign}.3f}, {v[2]:{sign}.3f}]"  # noqa: E731
    lines = [f"Command: `{command}`", "",
             "| test set | images | no lesion found | Dice [95% CI] | box IoU [95% CI] |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {row['images']} | {row['not_found']} | {cell(row['dice'])} | {cell(row['box_iou'])} |"
              for name, row in summary.items()]
    if "auc_dataset_box" in next(iter(summary.values())):  # a classifier was measured
        lines += ["", "| test set | AUC, dataset box | AUC, localiser box | localiser - dataset | AUC, whole image "
                  "| whole - dataset |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {cell(row['auc_dataset_box'])} | {cell(row['auc_localiser_box'])} | "
                  f"{cell(row['auc_localiser_minus_dataset'], '+')} | {cell(row['auc_whole_image'])} | "
                  f"{cell(row['auc_whole_minus_dataset'], '+')} |" for name, row in summary.items()]
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return table


def run_benchmark(module: ModuleType, classifier_required: bool = True) -> None:
    """The command line of this benchmark and of ``benchmarks/referral.py``: ``module.measure`` the test
    split (or, with ``--split validation``, the validation split) with a localiser and a classifier (or,
    unless ``classifier_required``, without one), write ``<out>/predictions.csv`` (``module.COLUMNS``), then
    ``module.write_table`` of ``module.summarise``, with the command that made them."""
    parser = argparse.ArgumentParser(description=module.__doc__.splitlines()[0])
    parser.add_argument("--localiser", required=True, help="trained localiser bundle folder")
    parser.add_argument("--classifier", required=classifier_required,
                        help="trained classifier bundle folder (roi true)" + ("" if classifier_required else
                                                                               "; without it, the localiser alone"))
    parser.add_argument("--datalist", required=True, help="datalist whose items have masks")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="the datalist's split to measure (validation: to choose a setting without the test)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = module.measure(args.localiser, args.classifier, args.datalist, args.split)
    write_rows(out / "predictions.csv", module.COLUMNS, rows)
    command = (f"python benchmarks/{Path(module.__file__).name} --localiser {args.localiser}"
               + (f" --classifier {args.classifier}" if args.classifier else "")
               + f" --datalist {args.datalist} --out {args.out}"
               + (f" --split {args.split}" if args.split != "test" else ""))
    print(module.write_table(module.summarise(out / "predictions.csv"), out, command))


if __name__ == "__main__":
    run_benchmark(sys.modules[__name__], classifier_required=False)
