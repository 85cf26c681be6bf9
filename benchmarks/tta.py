"""Test-time augmentation of the classifier: the AUC of P(malignant) averaged over test-time views.

    python benchmarks/tta.py --datalist docs/results/lists/busi_busbra.json \\
        --runs docs/results/recipe/busi_busbra/mask_loss/runs/attention_vgg16_ce_logcosh/seed_0 \\
        --localiser localiser --out docs/results/tta/busi_busbra

Each run folder is a bundle (a study run). Every test image goes through the inference API
(:meth:`monai_bus.inference.BundleClassifier.forward` with ``views``: the views of
:mod:`monai_bus.uncertainty`, each classified on its own) around the datalist's box and, with
``--localiser``, around the box the localiser finds. Three scores per image and box (:data:`SCORES`):

- ``plain``: P(malignant) of the image alone (the API's probability with the bundle's ``flip_tta`` off);
- ``flip``: the mean of it and its left-right mirror's (the API's with ``flip_tta`` on);
- ``flip_shifts``: the mean over those two and the crops around the 4 shifted boxes.

An image in which the localiser finds no lesion scores 0.5 (undecided) with every score.
``<out>/predictions.csv`` holds one row per run and image; ``<out>/table.md`` and ``table.json`` each
run's AUC per dataset (:func:`localiser.dataset_of`) and box, and the paired differences from
``plain`` with 95% percentile intervals of 2000 bootstrap resamples of the test groups (seed 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from localiser import NOT_FOUND_SCORE, dataset_of
from monai_bus.data.loading import load_split
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.metrics import roc_auc
from monai_bus.prediction_files import read_rows, write_rows
from monai_bus.study.statistics import group_resamples, percentile_interval

SCORES = ("plain", "flip", "flip_shifts")
N_RESAMPLES = 2000


def scores(model: BundleClassifier, item: dict) -> dict[str, float]:
    """The three :data:`SCORES` of one datalist item."""
    views = model.forward(item, views=True).view_probabilities  # as given, mirrored, then the shifted boxes
    return {"plain": views[0], "flip": float(np.mean(views[:2])), "flip_shifts": float(np.mean(views))}


def localiser_boxes(localiser: str, items: list[dict]) -> list[tuple | None]:
    """The localiser's box of each item's image, None where it finds no lesion."""
    found_by = LesionLocaliser(localiser, device="cpu")
    return [found_by.locate(item["image"]).box for item in items]


def measure(runs: list[str], datalist: str, localiser: str | None) -> list[dict]:
    """One row per run and test item: its label, group and every score with each box."""
    items = load_split(datalist, "test")
    listed = json.loads(Path(datalist).read_text())["test"]  # image paths as the datalist writes them
    boxes = {"dataset_box": [item.get("bbox") for item in items]}
    if localiser:
        boxes["localiser_box"] = localiser_boxes(localiser, items)
    rows = []
    for run in runs:
        model = BundleClassifier(run, device="cpu", uncertainty=False)
        start = time.perf_counter()
        for index, (item, entry) in enumerate(zip(items, listed)):
            row = {"run": run, "image": entry["image"], "group": item.get("group", ""), "label": item["label"]}
            for box_name, box_list in boxes.items():
                box = box_list[index]
                if box_name == "localiser_box" and box is None:
                    row.update({f"{score}_{box_name}": NOT_FOUND_SCORE for score in SCORES})
                    continue
                given = {**item, "bbox": box} if box is not None else item  # no bbox: the box of its masks
                row.update({f"{score}_{box_name}": round(value, 6) for score, value in scores(model, given).items()})
            rows.append(row)
        print(f"{run}: {len(items)} images in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def summarise(rows: list[dict], box_names: list[str]) -> dict:
    """Per run, dataset and box: each score's AUC and its paired difference from ``plain``, with CIs."""
    table = {}
    for run in dict.fromkeys(row["run"] for row in rows):
        run_rows = [row for row in rows if row["run"] == run]
        datasets = sorted({dataset_of(row["group"]) for row in run_rows})
        for dataset in ["all", *datasets] if len(datasets) > 1 else datasets:
            subset = [row for row in run_rows if dataset == "all" or dataset_of(row["group"]) == dataset]
            labels = np.array([int(row["label"]) for row in subset])
            resamples = group_resamples([row["group"] for row in subset], N_RESAMPLES, seed=0)
            for box in box_names:
                values = {s: np.array([float(row[f"{s}_{box}"]) for row in subset]) for s in SCORES}
                aucs = {s: np.array([roc_auc(labels[r], values[s][r]) for r in resamples]) for s in SCORES}
                entry = {"images": len(subset)}
                for s in SCORES:
                    entry[s] = roc_auc(labels, values[s])
                    if s != "plain":
                        low, high = (float(b[0]) for b in percentile_interval((aucs[s] - aucs["plain"])[:, None]))
                        entry[f"{s}_minus_plain"] = {"mean": entry[s] - entry["plain"], "ci": [low, high]}
                table.setdefault(run, {}).setdefault(dataset, {})[box] = entry
    return table


def markdown(table: dict) -> str:
    lines = ["| run | dataset | box | images | plain | flip (minus plain [95% CI]) | flip_shifts (minus plain) |",
             "|---|---|---|---|---|---|---|"]
    for run, datasets in table.items():
        for dataset, boxes in datasets.items():
            for box, e in boxes.items():
                cells = [f"{e[s]:.3f} ({e[f'{s}_minus_plain']['mean']:+.3f} [{e[f'{s}_minus_plain']['ci'][0]:+.3f}, "
                         f"{e[f'{s}_minus_plain']['ci'][1]:+.3f}])" for s in SCORES[1:]]
                lines.append(f"| {run} | {dataset} | {box} | {e['images']} | {e['plain']:.3f} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datalist", required=True)
    parser.add_argument("--runs", nargs="+", required=True, help="bundle folders of trained runs")
    parser.add_argument("--localiser", help="localiser bundle, to score around its boxes too")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictions = out / "predictions.csv"
    if not predictions.is_file():
        rows = measure(args.runs, args.datalist, args.localiser)
        write_rows(predictions, list(rows[0]), rows)
    box_names = ["dataset_box"] + (["localiser_box"] if args.localiser else [])
    columns = ["run", "group", "label", *(f"{score}_{box}" for box in box_names for score in SCORES)]
    rows = [row for _, row in read_rows(predictions, columns)]
    table = summarise(rows, box_names)
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "table.md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
