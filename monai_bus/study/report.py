"""Table 1 and the paired comparisons, from the runs of ``predictions.csv``.

- ``table1.{md,csv,json}``: per configuration, each metric of :data:`~monai_bus.metrics.METRIC_NAMES`
  as the mean over seeds, with its 95% bootstrap interval (by group; see
  :mod:`~monai_bus.study.statistics`) and the value of each seed.
- ``comparisons.{md,json}``: for each pair of :data:`~monai_bus.study.configurations.COMPARISONS` in
  the study, the difference of the seed means over the seeds both have, its paired-bootstrap 95%
  interval and p-value, and DeLong's test for AUC.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from monai_bus.metrics import METRIC_NAMES, classification_metrics
from monai_bus.study.configurations import BY_ID, COMPARISONS, CONFIGURATIONS
from monai_bus.study.predictions import RunKey, RunPredictions
from monai_bus.study.statistics import (CONFIDENCE, bootstrap_metrics, bootstrap_p_value, delong_test, group_resamples,
                                        percentile_interval, resampling_units)

BOOTSTRAP_SEED = 0
HEADINGS = {"sensitivity": "Sensitivity", "specificity": "Specificity", "precision": "Precision",
            "accuracy": "Accuracy", "f1": "F1 score", "mcc": "MCC", "auc": "AUC"}


def _seeds(runs: dict[RunKey, RunPredictions], configuration_id: str) -> list[int]:
    return sorted(seed for name, seed in runs if name == configuration_id)


def _seed_mean(values: dict[RunKey, np.ndarray], configuration_id: str, seeds: list[int]) -> np.ndarray:
    return np.mean([values[(configuration_id, seed)] for seed in seeds], axis=0)


def _table(runs: dict[RunKey, RunPredictions], point: dict, resampled: dict) -> list[dict]:
    table = []
    for configuration in CONFIGURATIONS:
        seeds = _seeds(runs, configuration.id)
        if not seeds:
            continue
        mean = _seed_mean(point, configuration.id, seeds)
        low, high = percentile_interval(_seed_mean(resampled, configuration.id, seeds))
        table.append({
            "configuration": configuration.id, "network": configuration.network_name, "loss": configuration.loss_name,
            "seeds": seeds,
            "metrics": {name: {"mean": mean[i], "ci_low": low[i], "ci_high": high[i],
                               "per_seed": [point[(configuration.id, seed)][i] for seed in seeds]}
                        for i, name in enumerate(METRIC_NAMES)},
        })
    return table


def _comparisons(runs: dict[RunKey, RunPredictions], point: dict, resampled: dict) -> list[dict]:
    labels = next(iter(runs.values())).labels
    comparisons = []
    for comparison in COMPARISONS:
        seeds = sorted(set(_seeds(runs, comparison.a.id)) & set(_seeds(runs, comparison.b.id)))
        if not seeds:
            continue
        a, b = _seed_mean(point, comparison.a.id, seeds), _seed_mean(point, comparison.b.id, seeds)
        resampled_difference = (_seed_mean(resampled, comparison.a.id, seeds)
                                - _seed_mean(resampled, comparison.b.id, seeds))
        low, high = percentile_interval(resampled_difference)
        p = bootstrap_p_value(resampled_difference)
        comparisons.append({
            "title": comparison.title, "a": comparison.a.id, "b": comparison.b.id, "seeds": seeds,
            "metrics": {name: {"a": a[i], "b": b[i], "difference": a[i] - b[i], "ci_low": low[i],
                               "ci_high": high[i], "p_bootstrap": p[i]}
                        for i, name in enumerate(METRIC_NAMES)},
            "delong_auc": _delong(labels, [runs[(comparison.a.id, s)].p_malignant for s in seeds],
                                  [runs[(comparison.b.id, s)].p_malignant for s in seeds]),
        })
    return comparisons


def summarise(runs: dict[RunKey, RunPredictions], n_resamples: int = 2000) -> dict:
    """Table 1 and the comparisons as one JSON-ready dict (NaN as None).

    Args:
        runs: the runs of ``predictions.csv`` (:func:`~monai_bus.study.predictions.read_predictions`),
            all on the same test images.
        n_resamples: bootstrap resamples, drawn once with seed :data:`BOOTSTRAP_SEED` and shared by
            every run.
    """
    if not runs:
        raise ValueError("no runs to summarise.")
    first = next(iter(runs.values()))
    resamples = group_resamples(first.groups, n_resamples, BOOTSTRAP_SEED)
    point = {key: np.array([classification_metrics(run.labels, run.probabilities)[name] for name in METRIC_NAMES])
             for key, run in runs.items()}
    resampled = {key: bootstrap_metrics(run.labels, run.probabilities, resamples) for key, run in runs.items()}
    units = len(set(resampling_units(first.groups)))
    return _json_ready({
        "test_images": len(first.images),
        "malignant": int(first.labels.sum()),
        "bootstrap": {
            "unit": "group" if units < len(first.images) else "image",
            "units": units,
            "resamples": n_resamples, "seed": BOOTSTRAP_SEED, "confidence": CONFIDENCE,
            "statistic": "mean over seeds of each seed's metric on the resampled test set",
        },
        "table": _table(runs, point, resampled),
        "comparisons": _comparisons(runs, point, resampled),
    })


def _delong(labels: np.ndarray, scores_a: list, scores_b: list) -> dict[str, float]:
    """:func:`delong_test`, or NaN where the test set has fewer than 2 images of a class."""
    if min(int(labels.sum()), int((1 - labels).sum())) < 2:
        return {"difference": math.nan, "z": math.nan, "p": math.nan}
    return delong_test(labels, np.stack(scores_a), np.stack(scores_b))


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(entry: dict, key: str) -> str:
    return f"{_number(entry[key])} ({_number(entry['ci_low'])} to {_number(entry['ci_high'])})"


def _p(value: float | None) -> str:
    return "n/a" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _caption(summary: dict) -> str:
    bootstrap = summary["bootstrap"]
    return (f"{summary['test_images']} test images ({summary['malignant']} malignant). Mean over seeds, with the "
            f"{bootstrap['confidence']:.0%} interval of a bootstrap over test {bootstrap['unit']}s "
            f"({bootstrap['units']} {bootstrap['unit']}s, {bootstrap['resamples']} resamples, seed "
            f"{bootstrap['seed']}). Computed from predictions.csv; settings in study.json.")


def write_table(summary: dict, out: Path) -> None:
    """``table1.md``, ``table1.csv`` and ``table1.json`` in ``out``."""
    (out / "table1.json").write_text(json.dumps({key: summary[key] for key in ("test_images", "malignant", "bootstrap",
                                                                               "table")}, indent=1) + "\n")
    with open(out / "table1.csv", "w", encoding="utf8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["configuration", "network", "loss", "seeds"]
                        + [f"{name}{suffix}" for name in METRIC_NAMES for suffix in ("", "_ci_low", "_ci_high")])
        for row in summary["table"]:
            writer.writerow([row["configuration"], row["network"], row["loss"], " ".join(map(str, row["seeds"]))]
                            + [row["metrics"][name][key] for name in METRIC_NAMES
                               for key in ("mean", "ci_low", "ci_high")])
    lines = ["# Table 1", "", _caption(summary), "",
             "| Model | Loss | Seeds | " + " | ".join(HEADINGS[name] for name in METRIC_NAMES) + " |",
             "|---|---|---|" + "---|" * len(METRIC_NAMES)]
    for row in summary["table"]:
        lines.append(f"| {row['network']} | {row['loss']} | {len(row['seeds'])} | "
                     + " | ".join(_interval(row["metrics"][name], "mean") for name in METRIC_NAMES) + " |")
    (out / "table1.md").write_text("\n".join(lines) + "\n")


def write_comparisons(summary: dict, out: Path) -> None:
    """``comparisons.md`` and ``comparisons.json`` in ``out``."""
    (out / "comparisons.json").write_text(json.dumps({"bootstrap": summary["bootstrap"],
                                                      "comparisons": summary["comparisons"]}, indent=1) + "\n")
    lines = ["# Paired comparisons", "", _caption(summary),
             "Difference = first minus second configuration, on the seeds both have; p: two-sided paired "
             "bootstrap, and DeLong's test for AUC (which treats images as independent). The p-values are "
             "not corrected for multiple comparisons.", ""]
    if not summary["comparisons"]:
        lines += ["No pair of compared configurations in this study.", ""]
    for comparison in summary["comparisons"]:
        a, b = BY_ID[comparison["a"]], BY_ID[comparison["b"]]
        delong = comparison["delong_auc"]
        lines += [f"## {comparison['title']}", "",
                  f"{a.title} minus {b.title}, seeds {', '.join(map(str, comparison['seeds']))}.", "",
                  f"| metric | {a.title} | {b.title} | difference (95% CI) | p (bootstrap) |", "|---|---|---|---|---|"]
        for name in METRIC_NAMES:
            entry = comparison["metrics"][name]
            lines.append(f"| {HEADINGS[name]} | {_number(entry['a'])} | {_number(entry['b'])} | "
                         f"{_interval(entry, 'difference')} | {_p(entry['p_bootstrap'])} |")
        lines += ["", f"DeLong's test for AUC: difference {_number(delong['difference'])}, "
                      f"z = {_number(delong['z'], 2)}, p = {_p(delong['p'])}.", ""]
    (out / "comparisons.md").write_text("\n".join(lines))
