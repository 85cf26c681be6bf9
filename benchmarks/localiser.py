"""Dice and box IoU of a trained localiser bundle on a datalist's test split, per image and per dataset.

    python benchmarks/localiser.py --bundle runs/localiser --datalist docs/results/lists/busi_busbra.json \\
        --out docs/results/localiser

Every test image goes through the localisation API (:class:`monai_bus.localiser.LesionLocaliser`: the
largest component of the predicted lesion, at the image's size). Against the union of the image's
lesion masks: the Dice of the masks (MONAI's ``compute_dice``; 0 when no lesion is found) and the IoU
of their bounding boxes (MONAI's ``box_iou``; 0 when none is found). ``<out>/predictions.csv`` holds one
row per image; ``<out>/table.md`` and ``table.json`` the means per dataset (by the datalist's group
prefix) with 95% percentile intervals of 2000 bootstrap resamples of the test groups (seed 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.data.box_utils import box_iou
from monai.metrics import compute_dice

from monai_bus.data.boxes import box_from_masks, mask_union
from monai_bus.data.loading import load_split
from monai_bus.localiser import LesionLocaliser
from monai_bus.prediction_files import read_rows, write_rows
from monai_bus.study.statistics import group_resamples, percentile_interval

COLUMNS = ("image", "group", "found", "dice", "box_iou", "seconds")
N_RESAMPLES = 2000


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks [H, W]."""
    as_tensor = lambda mask: torch.from_numpy(mask[None, None].astype(np.float32))  # noqa: E731
    return float(compute_dice(as_tensor(predicted), as_tensor(truth), include_background=True))


def iou(box, truth_box) -> float:
    """IoU of two boxes ``(row_start, row_stop, col_start, col_stop)``; 0 when ``box`` is None."""
    if box is None:
        return 0.0
    corners = lambda b: np.array([[b[0], b[2], b[1], b[3]]], dtype=np.float64)  # noqa: E731
    return float(box_iou(corners(box), corners(truth_box))[0, 0])


def measure(bundle: str, datalist: str) -> list[dict]:
    localiser = LesionLocaliser(bundle, device="cpu")
    listed = json.loads(Path(datalist).read_text())["test"]  # image paths as the datalist writes them
    rows = []
    for item, entry in zip(load_split(datalist, "test"), listed):
        start = time.perf_counter()
        found = localiser.locate(item["image"])
        seconds = time.perf_counter() - start
        truth = mask_union(item["mask"], found.mask.shape)
        rows.append({"image": entry["image"], "group": item.get("group", ""), "found": int(found.found),
                     "dice": round(dice(found.mask, truth), 6),
                     "box_iou": round(iou(found.box, box_from_masks(truth)), 6),
                     "seconds": round(seconds, 4)})
    return rows


def summarise(predictions: Path) -> dict:
    rows = [row for _, row in read_rows(predictions, COLUMNS)]
    prefixes = sorted({row["group"].split(":")[0] for row in rows})
    summary = {}
    for name in [*prefixes, "all"]:
        chosen = [row for row in rows if name == "all" or row["group"].split(":")[0] == name]
        values = np.array([[float(row["dice"]), float(row["box_iou"])] for row in chosen])
        resampled = np.array([values[r].mean(axis=0)
                              for r in group_resamples([row["group"] for row in chosen], N_RESAMPLES, seed=0)])
        low, high = percentile_interval(resampled)
        summary[name] = {"images": len(chosen), "not_found": sum(row["found"] == "0" for row in chosen),
                         "dice": [values[:, 0].mean(), low[0], high[0]],
                         "box_iou": [values[:, 1].mean(), low[1], high[1]],
                         "median_seconds": float(np.median([float(row["seconds"]) for row in chosen]))}
    return summary


def write_table(summary: dict, out: Path, command: str) -> str:
    lines = [f"Command: `{command}`", "", "| test set | images | no lesion found | Dice [95% CI] | box IoU [95% CI] |",
             "|---|---|---|---|---|"]
    for name, row in summary.items():
        cell = lambda v: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # noqa: E731
        lines.append(f"| {name} | {row['images']} | {row['not_found']} | {cell(row['dice'])} "
                     f"| {cell(row['box_iou'])} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps(summary, indent=1) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="trained localiser bundle folder")
    parser.add_argument("--datalist", required=True, help="datalist whose test items have masks")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "predictions.csv", COLUMNS, measure(args.bundle, args.datalist))
    command = f"python benchmarks/localiser.py --bundle {args.bundle} --datalist {args.datalist} --out {args.out}"
    print(write_table(summarise(out / "predictions.csv"), out, command))


if __name__ == "__main__":
    main()
