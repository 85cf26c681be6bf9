"""The figures of ``docs/model_card.md``, recomputed from committed per-image predictions.

    python benchmarks/model_card.py

Reads (all committed):

- ``docs/results/calibration/``: ``monai-bus calibrate`` of the shipped weights on
  ``docs/results/lists/busi_busbra.json`` (``calibration.json``; ``validation_predictions.csv`` and
  ``test_predictions.csv``, calibrated, with each image's uncertainty and refer flag);
- ``docs/results/tta/intensity/<name>/predictions.csv``: the default recipe's runs (``intensity`` of
  ``benchmarks/recipes.py``) scored by ``benchmarks/tta.py`` as the bundle classifies (``flip``: each
  image averaged with its mirror image, ``flip_tta``): trained without one dataset and tested on all of
  it (leave-one-dataset-out), its BUSI seeds (``busi``), and the full-precision run the shipped weights
  come from (``busi_busbra``).

Writes ``docs/results/model_card/metrics.json`` and ``metrics.md``: the tables that the model card
shows verbatim (``tests/test_committed_results.py`` checks both). CIs are 95% percentile intervals of
2000 bootstrap resamples of the test groups (patients, near-duplicate groups), seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monai_bus.calibration import expected_calibration_error
from monai_bus.metrics import classification_metrics, roc_auc
from monai_bus.prediction_files import read_rows
from monai_bus.study.statistics import group_resamples, percentile_interval
from recipes import COLLAPSE

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
CALIBRATION = RESULTS / "calibration"
RECIPE_SCORES = RESULTS / "tta" / "intensity"  # the default recipe's runs, scored by benchmarks/tta.py
LEAVE_ONE_OUT = {"BUS-BRA → BUSI": "busbra_to_busi", "BUSI → BUS-BRA": "busi_to_busbra"}
DATASETS = {"BUSI": "busi:", "BUS-BRA": "busbra:"}  # group prefixes of the datalists
SCORE = "flip_dataset_box"  # benchmarks/tta.py's score of the bundle's flip_tta, around the datasets' boxes
N_RESAMPLES = 2000


def _calibrated_test() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Labels, calibrated P(malignant), groups and images of the shipped weights' test predictions."""
    rows = [row for _, row in read_rows(CALIBRATION / "test_predictions.csv",
                                        ("image", "group", "label", "p_malignant"))]
    return (np.array([int(row["label"]) for row in rows]), np.array([float(row["p_malignant"]) for row in rows]),
            [row["group"] for row in rows], [row["image"] for row in rows])


def _uncertainty_rows(split: str) -> dict[str, np.ndarray]:
    """Columns of calibration's ``<split>_predictions.csv``: label, predicted (at the operating point),
    p_malignant, uncertainty, refer, and ``BUSI``/``BUS-BRA`` (whether the image is of that dataset), as arrays."""
    rows = [row for _, row in read_rows(CALIBRATION / f"{split}_predictions.csv",
                                        ("group", "label", "p_malignant", "predicted", "uncertainty", "refer"))]
    columns = {name: np.array([float(row[name]) for row in rows]) for name in ("p_malignant", "uncertainty")}
    columns |= {name: np.array([int(row[name]) for row in rows]) for name in ("label", "predicted", "refer")}
    return columns | {name: np.array([row["group"].startswith(prefix) for row in rows])
                      for name, prefix in DATASETS.items()}


def _recipe_runs(name: str) -> list[dict[str, np.ndarray]]:
    """Labels, P(malignant) (:data:`SCORE`), groups and images of each run in
    :data:`RECIPE_SCORES` ``/<name>/predictions.csv``."""
    rows = [row for _, row in read_rows(RECIPE_SCORES / name / "predictions.csv",
                                        ("run", "image", "group", "label", SCORE))]
    runs = []
    for run in dict.fromkeys(row["run"] for row in rows):
        chosen = [row for row in rows if row["run"] == run]
        runs.append({"labels": np.array([int(row["label"]) for row in chosen]),
                     "p_malignant": np.array([float(row[SCORE]) for row in chosen]),
                     "groups": [row["group"] for row in chosen], "images": [row["image"] for row in chosen]})
    return runs


def _rates(labels: np.ndarray, p_malignant: np.ndarray, threshold: float | None) -> list[float]:
    metrics = classification_metrics(labels, np.stack([1 - p_malignant, p_malignant], 1), threshold)
    return [metrics["auc"], metrics["sensitivity"], metrics["specificity"]]


def _with_intervals(labels: np.ndarray, p_malignant: np.ndarray, groups: list[str], threshold: float | None) -> dict:
    """AUC, sensitivity and specificity at ``threshold`` (None: the argmax), each with its group-bootstrap 95% CI."""
    resampled = np.array([_rates(labels[r], p_malignant[r], threshold)
                          for r in group_resamples(groups, N_RESAMPLES, seed=0)])
    low, high = percentile_interval(resampled)
    values = _rates(labels, p_malignant, threshold)
    return {"images": len(labels), "malignant": int(labels.sum()),
            **{name: {"value": value, "ci": [lo, hi]}
               for name, value, lo, hi in zip(("auc", "sensitivity", "specificity"), values, low, high)}}


def ece_if_calibrated(labels: np.ndarray, p_malignant: np.ndarray) -> dict:
    """The ECE that a perfectly calibrated model with these P(malignant) would show on as many images.

    Labels are drawn from P(malignant) itself, :data:`N_RESAMPLES` times (seed 0). Returns the draws' median
    and 95th percentile, and the share of draws whose ECE is at least the measured one: how often calibration
    alone, with this few images, gives an ECE as high.
    """
    rng = np.random.default_rng(0)
    drawn = np.array([expected_calibration_error((rng.random(len(p_malignant)) < p_malignant).astype(int), p_malignant)
                      for _ in range(N_RESAMPLES)])
    return {"median": float(np.median(drawn)), "p95": float(np.percentile(drawn, 95)),
            "share_at_least_measured": float(np.mean(drawn >= expected_calibration_error(labels, p_malignant)))}


def internal_test() -> dict:
    """The shipped weights on the held-out test split of each dataset, at the stored operating point."""
    report = json.loads((CALIBRATION / "calibration.json").read_text())
    labels, p_malignant, groups, _ = _calibrated_test()
    subsets = {name: np.array([g.startswith(prefix) for g in groups]) for name, prefix in DATASETS.items()}
    subsets["both"] = np.ones(len(labels), dtype=bool)
    result = {}
    for name, chosen in subsets.items():
        result[name] = {**_with_intervals(labels[chosen], p_malignant[chosen],
                                          [g for g, c in zip(groups, chosen) if c], report["threshold"]),
                        "ece": expected_calibration_error(labels[chosen], p_malignant[chosen]),
                        "ece_if_calibrated": ece_if_calibrated(labels[chosen], p_malignant[chosen])}
    return {"threshold": report["threshold"], "temperature": report["temperature"],
            "ece_before_scaling": report["test"]["ece_before"], "sets": result}


def referral() -> dict:
    """The refer flag on the test splits, at the stored operating point: how many images it refers, their
    errors and those of the rest, and the rates on the rest; and how well the uncertainty ranks the errors
    above the right answers (the AUC of uncertainty for "wrong at the operating point"), on validation too."""
    report = json.loads((CALIBRATION / "calibration.json").read_text())
    test = _uncertainty_rows("test")
    sets = {name: test[name] for name in DATASETS} | {"both": np.ones(len(test["label"]), dtype=bool)}
    result = {}
    for name, chosen in sets.items():
        referred, kept = chosen & (test["refer"] == 1), chosen & (test["refer"] == 0)
        wrong = test["predicted"] != test["label"]
        missed = wrong & (test["label"] == 1)
        rates = classification_metrics(test["label"][kept], np.stack([1 - test["p_malignant"][kept],
                                                                      test["p_malignant"][kept]], 1),
                                       report["threshold"])
        result[name] = {"images": int(chosen.sum()), "referred": int(referred.sum()),
                        "errors_referred": int(wrong[referred].sum()), "errors_kept": int(wrong[kept].sum()),
                        "missed_cancers": int(missed[chosen].sum()),
                        "missed_cancers_referred": int(missed[referred].sum()),
                        **{f"{metric}_kept": rates[metric] for metric in ("auc", "sensitivity", "specificity")}}
    ranking = {}
    for split in ("validation", "test"):
        columns = _uncertainty_rows(split)
        ranking[split] = roc_auc(columns["predicted"] != columns["label"], columns["uncertainty"])
    return {"refer_above": report["refer_above"], "sets": result, "error_ranking_auc": ranking}


def leave_one_dataset_out() -> dict:
    """The default recipe trained on one dataset, tested on every image of the other, at the argmax."""
    result = {}
    for title, name in LEAVE_ONE_OUT.items():
        (run,) = _recipe_runs(name)
        result[title] = _with_intervals(run["labels"], run["p_malignant"], run["groups"], None)
    return result


def half_precision_change() -> dict:
    """How much storing the weights in half precision moved P(malignant) on the test images: the shipped
    weights' raw probabilities (calibration's, with the temperature undone) against those of the
    full-precision weights they came from (their :data:`SCORE` in :data:`RECIPE_SCORES` ``/busi_busbra``)."""
    temperature = json.loads((CALIBRATION / "calibration.json").read_text())["temperature"]
    _, p_malignant, _, images = _calibrated_test()
    (run,) = _recipe_runs("busi_busbra")
    full = dict(zip(run["images"], run["p_malignant"]))
    calibrated = np.clip(p_malignant, 1e-7, 1 - 1e-7)
    raw = 1 / (1 + np.exp(-temperature * np.log(calibrated / (1 - calibrated))))
    change = np.abs(raw - np.array([full[image] for image in images]))
    return {"images": len(images), "max": float(change.max()), "mean": float(change.mean())}


def seeds() -> dict:
    """Test AUC of each seed of the default recipe on BUSI, and how many collapsed (sensitivity or
    specificity at the argmax below the recipe ablation's ``COLLAPSE``)."""
    aucs, collapsed = [], 0
    for run in _recipe_runs("busi"):
        auc, sensitivity, specificity = _rates(run["labels"], run["p_malignant"], None)
        aucs.append(auc)
        collapsed += min(sensitivity, specificity) < COLLAPSE
    return {"aucs": aucs, "spread": max(aucs) - min(aucs), "collapsed": collapsed}


def _cell(metric: dict) -> str:
    low, high = metric["ci"]
    return f"{metric['value']:.3f} [{low:.3f}, {high:.3f}]"


def tables(card: dict) -> str:
    internal = card["internal_test"]
    lines = [f"Internal test splits, shipped weights (half precision), calibrated (temperature "
             f"{internal['temperature']:.3f}), at the operating point P(malignant) ≥ {internal['threshold']:.3f}:",
             "",
             "| test set | images (malignant) | AUC [95% CI] | sensitivity [95% CI] | specificity [95% CI] | ECE |",
             "|---|---|---|---|---|---|"]
    for name, row in internal["sets"].items():
        lines.append(f"| {name} | {row['images']} ({row['malignant']}) | {_cell(row['auc'])} "
                     f"| {_cell(row['sensitivity'])} | {_cell(row['specificity'])} | {row['ece']:.3f} |")
    lines += ["", f"ECE of both test sets before temperature scaling: {internal['ece_before_scaling']:.3f}.", "",
              "ECE that a perfectly calibrated model with these P(malignant) would show on as many images (labels "
              f"drawn from them, {N_RESAMPLES} draws): "
              + "; ".join(f"{name} median {row['ece_if_calibrated']['median']:.3f}, 95th percentile "
                          f"{row['ece_if_calibrated']['p95']:.3f}, as high as measured in "
                          f"{row['ece_if_calibrated']['share_at_least_measured']:.0%} of draws"
                          for name, row in internal["sets"].items()) + ".", "",
              "Leave one dataset out (the default recipe, 12 epochs, each image averaged with its mirror image "
              "as the bundle does, not calibrated; at the argmax, P(malignant) > 0.5):", "",
              "| trained on → tested on | images (malignant) | AUC [95% CI] | sensitivity [95% CI] "
              "| specificity [95% CI] |", "|---|---|---|---|---|"]
    for title, row in card["leave_one_dataset_out"].items():
        lines.append(f"| {title} | {row['images']} ({row['malignant']}) | {_cell(row['auc'])} "
                     f"| {_cell(row['sensitivity'])} | {_cell(row['specificity'])} |")
    half = card["half_precision"]
    lines += ["", f"Half precision moved P(malignant) by at most {half['max']:.4f} (mean {half['mean']:.4f}) on the "
              f"{half['images']} test images, against the full-precision weights."]
    spread = card["seeds"]
    lines += ["", f"Seeds of the default recipe on BUSI (test AUC): {' '.join(f'{a:.3f}' for a in spread['aucs'])}; "
              f"spread {spread['spread']:.3f}; {spread['collapsed']} collapsed."]
    refer = card["referral"]
    lines += ["", f"Referral (uncertainty > {refer['refer_above']:.4f}, the most uncertain tenth of the validation "
              "images), internal test splits at the operating point:", "",
              "| test set | images | referred | errors among referred | errors among the rest | missed cancers "
              "referred | the rest: AUC | sensitivity | specificity |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in refer["sets"].items():
        kept = row["images"] - row["referred"]
        lines.append(f"| {name} | {row['images']} | {row['referred']} ({row['referred'] / row['images']:.0%}) "
                     f"| {row['errors_referred']} of {row['referred']} | {row['errors_kept']} of {kept} "
                     f"| {row['missed_cancers_referred']} of {row['missed_cancers']} | {row['auc_kept']:.3f} "
                     f"| {row['sensitivity_kept']:.3f} | {row['specificity_kept']:.3f} |")
    ranking = refer["error_ranking_auc"]
    lines += ["", f"The uncertainty ranks the errors at the operating point above the right answers with an AUC of "
              f"{ranking['validation']:.3f} on validation and {ranking['test']:.3f} on test."]
    return "\n".join(lines) + "\n"


def figures() -> dict:
    return {"internal_test": internal_test(), "leave_one_dataset_out": leave_one_dataset_out(),
            "half_precision": half_precision_change(), "seeds": seeds(), "referral": referral()}


def main() -> None:
    card = figures()
    out = RESULTS / "model_card"
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(card, indent=1) + "\n")
    (out / "metrics.md").write_text(tables(card))
    print(tables(card))


if __name__ == "__main__":
    main()
