"""Whole image against lesion ROI: the bundle trained both ways on one datalist, and the ROI model's
sensitivity to box error.

Trains the bundle twice through ``ConfigWorkflow``, with the same seed and epochs: ``roi`` false and
``roi`` true (Attention-VGG16, CE-logcosh, from scratch, the default recipe without the mask loss). Each run goes into
``<out>/<model>/``, a complete bundle folder (the repository's configs with ``roi`` set), whose best
checkpoint by validation AUC is then used through the inference API on the test split:

- ``whole`` model: the whole image;
- ``roi`` model: the datalist's box (``true box``), the box shrunk and enlarged by 20% of its height
  and width about its centre, the box shifted by 10% of its height and width (towards one of the
  four diagonals, drawn per image with a fixed seed), and no box at all (the API's whole-image fallback).

Writes ``<results>/predictions.csv`` (one row per model, box condition and test image) and
``<results>/README.md``: AUC with a 95% bootstrap CI (resampling the datalist's ``group``, the
patient for BUS-BRA, with a fixed seed), and the paired AUC difference from the whole-image model.
A finished training run leaves ``<out>/<model>/training.json`` and is not repeated.

    python benchmarks/roi.py --datalist runs/datalists/busbra_roi.json --max-epochs 12 --out runs/roi
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from monai_bus.data.boxes import box_from_masks, shift_box
from monai_bus.data.loading import load_split
from monai_bus.inference import BundleClassifier
from monai_bus.inferers import bf16_supported
from monai_bus.metrics import classification_metrics, roc_auc
from monai_bus.prediction_files import labelled_row, write_rows
from monai_bus.study.bundle_runs import prepare_run
from monai_bus.study.configurations import RECIPES
from monai_bus.study.statistics import group_resamples

BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
MODELS = {"whole": False, "roi": True}
COLUMNS = ("model", "box_condition", "image", "group", "label", "p_benign", "p_malignant", "predicted")
SEED = 0
BOOTSTRAP = 2000


def scale_box(box, factor: float):
    """The box with its height and width multiplied by ``factor`` about its centre (at least 1 pixel)."""
    row_start, row_stop, col_start, col_stop = box
    height, width = max(round((row_stop - row_start) * factor), 1), max(round((col_stop - col_start) * factor), 1)
    row_centre, col_centre = (row_start + row_stop) / 2, (col_start + col_stop) / 2
    row_start, col_start = round(row_centre - height / 2), round(col_centre - width / 2)
    return row_start, row_start + height, col_start, col_start + width


def box_conditions(box, rng: np.random.Generator) -> dict:
    """The ROI model's test boxes for one image's true box (None: no box; an image without a true box
    gets None in every condition)."""
    signs = rng.choice([-1.0, 1.0], size=2)
    if box is None:
        return dict.fromkeys(("true box", "shrunk 20%", "enlarged 20%", "shifted 10%", "no box"))
    return {"true box": box, "shrunk 20%": scale_box(box, 0.8), "enlarged 20%": scale_box(box, 1.2),
            "shifted 10%": shift_box(box, 0.1 * signs[0], 0.1 * signs[1]), "no box": None}


def train(bundle: Path, roi: bool, datalist: str, max_epochs: int) -> dict:
    """Train a copy of the repository's bundle in ``bundle``; the validation AUC curve and wall time."""
    record = bundle / "training.json"
    if record.is_file():
        return json.loads(record.read_text())
    if bundle.exists():
        shutil.rmtree(bundle)
    prepare_run(BUNDLE, bundle, RECIPES["default"], {"roi": roi})
    flow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type="train", bundle_root=str(bundle), datalist=datalist,
        max_epochs=max_epochs, seed=SEED, pretrained=False, attention=True, loss="ce_logcosh", resume=False,
        mask_loss_weight=0,  # as measured, before the mask loss joined the default recipe
    )
    flow.initialize()
    curve: list[float] = []
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: curve.append(engine.state.metrics["val_auc"]))
    start = time.perf_counter()
    flow.run()
    flow.finalize()
    result = {"roi": roi, "max_epochs": max_epochs, "val_auc": curve, "seconds": time.perf_counter() - start}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


def predict(bundles: dict[str, Path], items: list[dict]) -> list[dict]:
    """One row (COLUMNS) per model, box condition and test item."""
    rng = np.random.default_rng(SEED)
    conditions = [box_conditions(item["bbox"] if "bbox" in item else box_from_masks(item["mask"]) if "mask" in item
                                 else None, rng) for item in items]
    rows = []
    for model, bundle in bundles.items():
        classifier = BundleClassifier(bundle, uncertainty=False)
        for item, boxes in zip(items, conditions):
            for condition, box in (boxes.items() if MODELS[model] else [("whole image", None)]):
                p_malignant = classifier.predict(item["image"], box=box).malignancy_probability
                rows.append({"model": model, "box_condition": condition, "group": item.get("group", item["image"]),
                             **labelled_row(Path(item["image"]).name, item["label"], p_malignant)})
    return rows


def bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, groups: list[str]) -> np.ndarray:
    """AUC of each of BOOTSTRAP resamples of the groups (:func:`~monai_bus.study.statistics.group_resamples`,
    seed SEED); scores [N, K] -> [BOOTSTRAP, K]."""
    return np.array([[roc_auc(labels[chosen], scores[chosen, k]) for k in range(scores.shape[1])]
                     for chosen in group_resamples(groups, BOOTSTRAP, SEED)])


def summarise(rows: list[dict]) -> list[dict]:
    """Per model and box condition: metrics at 0.5, AUC and its difference from the whole-image model,
    each with a 95% percentile CI from one shared (paired) bootstrap over the groups."""
    keys = list(dict.fromkeys((row["model"], row["box_condition"]) for row in rows))
    by_key = {key: [row for row in rows if (row["model"], row["box_condition"]) == key] for key in keys}
    reference = by_key[("whole", "whole image")]
    labels = np.array([int(row["label"]) for row in reference])
    groups = [row["group"] for row in reference]
    for key, part in by_key.items():
        if [row["image"] for row in part] != [row["image"] for row in reference]:
            raise RuntimeError(f"{key}: the test images differ from the whole-image model's")
    scores = np.stack([[float(row["p_malignant"]) for row in by_key[key]] for key in keys], axis=1)
    aucs = bootstrap_aucs(labels, scores, groups)
    differences = aucs - aucs[:, [0]]
    summary = []
    for k, key in enumerate(keys):
        metrics = classification_metrics(labels, np.stack([1 - scores[:, k], scores[:, k]], axis=1))
        summary.append({"model": key[0], "box_condition": key[1], **metrics,
                        "auc_ci": np.nanpercentile(aucs[:, k], [2.5, 97.5]).tolist(),
                        "auc_difference": metrics["auc"] - roc_auc(labels, scores[:, 0]),
                        "auc_difference_ci": np.nanpercentile(differences[:, k], [2.5, 97.5]).tolist()})
    return summary


def table_rows(summary: list[dict]) -> list[str]:
    """The Markdown rows of the results table, one per model and box condition of :func:`summarise`."""
    lines = []
    for row in summary:
        low, high = row["auc_difference_ci"]
        difference = "" if row["model"] == "whole" else f"{row['auc_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        lines.append(f"| {row['model']} | {row['box_condition']} | {row['auc']:.3f} [{row['auc_ci'][0]:.3f}, "
                     f"{row['auc_ci'][1]:.3f}] | {difference} | {row['sensitivity']:.3f} | {row['specificity']:.3f} | "
                     f"{row['accuracy']:.3f} | {row['mcc']:.3f} |")
    return lines


def write_readme(path: Path, args, summary: list[dict], runs: dict, items: list[dict], seconds: float) -> None:
    """The results page: the table of :func:`summarise`, the training curves, the command and the hardware;
    ``seconds`` is the wall time of the test predictions and the bootstrap."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hardware = (torch.cuda.get_device_name(0) if device.type == "cuda" else
                f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
    hardware += f", {'bf16' if bf16_supported(device) else 'fp32'} autocast"
    malignant = sum(item["label"] for item in items)
    lines = [
        "# Whole image against lesion ROI",
        "",
        f"Datalist `{args.datalist}`; test split: {len(items)} images ({malignant} malignant) of "
        f"{len({item.get('group', item['image']) for item in items})} groups (patients).",
        f"Both models: Attention-VGG16, CE-logcosh, from scratch, the bundle's default recipe without the mask loss, "
        f"{args.max_epochs} epochs, seed {SEED}; the checkpoint with the best validation AUC.",
        "",
        "| model | test boxes | AUC [95% CI] | AUC - whole [95% CI] | sensitivity | specificity | accuracy | MCC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(summary)
    lines += [
        "",
        f"CIs: 95% percentile intervals of {BOOTSTRAP} bootstrap resamples of the test groups (patients), "
        f"seed {SEED}; the differences are paired (the same resamples for every row). Sensitivity, specificity, "
        "accuracy and MCC at the argmax, P(malignant) > 0.5.",
        "",
        "Validation AUC per epoch (model selection):",
        "",
        "```",
    ]
    for model, run in runs.items():
        curve = run["val_auc"]
        lines.append(f"{model:6s} best {max(curve):.3f} at epoch {curve.index(max(curve)) + 1}, "
                     f"{run['seconds'] / 60:.1f} min: " + " ".join(f"{auc:.2f}" for auc in curve))
    lines += [
        "```",
        "",
        f"Command: `python benchmarks/roi.py --datalist {args.datalist} --max-epochs {args.max_epochs} "
        f"--out {args.out}`",
        f"on {hardware}. Wall time: training as above, then {seconds / 60:.1f} min for the test predictions and "
        "the bootstrap.",
        "Per-image predictions: [predictions.csv](predictions.csv) (one row per model, box condition and "
        "test image; `group` is the patient).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, help="MONAI datalist JSON whose items have a bbox or mask")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--out", default="runs/roi", help="folder for the two trained bundles")
    parser.add_argument("--results", default="docs/results/roi", help="folder for predictions.csv and README.md")
    args = parser.parse_args()
    items = load_split(args.datalist, "test")
    bundles = {model: Path(args.out) / model for model in MODELS}
    runs = {model: train(bundle, MODELS[model], os.path.abspath(args.datalist), args.max_epochs)
            for model, bundle in bundles.items()}
    start = time.perf_counter()
    rows = predict(bundles, items)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_rows(results / "predictions.csv", COLUMNS, rows)
    summary = summarise(rows)
    write_readme(results / "README.md", args, summary, runs, items, time.perf_counter() - start)
    print((results / "README.md").read_text())


if __name__ == "__main__":
    main()
