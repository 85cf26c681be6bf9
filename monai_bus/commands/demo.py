"""``monai-bus demo``: train the bundle on the synthetic demo data, evaluate it, print the metrics.

The demo trains a copy of the bundle in its own folder (``--out``, :func:`monai_bus.study.bundle_runs.
prepare_run`), from scratch every time, so that it never touches the bundle's own weights. It also
classifies every test image with :class:`monai_bus.inference.BundleClassifier` and writes the
per-image results to ``<out>/eval/test_predictions.csv``, from which ``monai-bus metrics`` recomputes
the table.

The demo images are synthetic (see :mod:`monai_bus.data.demo`): the figures show that the pipeline
works end to end, and say nothing about clinical performance.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from monai_bus.commands.metrics import format_table
from monai_bus.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="bundle", help="bundle whose configs the demo trains (default: %(default)s)")
    parser.add_argument("--out", default="runs/demo", help="the demo's copy of the bundle: its models, evaluation and "
                                                           "demo data (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=10, help="training epochs (default: %(default)s)")


def read_metrics(metrics_csv: Path) -> dict[str, float]:
    """Read MONAI's ``MetricsSaver`` output (``name<delimiter>value`` lines)."""
    with open(metrics_csv, encoding="utf8") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f, delimiter=",") if len(row) == 2}


def write_test_predictions(bundle: Path, out_csv: Path) -> None:
    """Classify the demo test split with the trained bundle; one CSV row per image."""
    from monai_bus.data.loading import find_datalist, load_split
    from monai_bus.inference import BundleClassifier
    from monai_bus.prediction_files import LABELLED_COLUMNS, labelled_row, write_rows

    classifier = BundleClassifier(bundle, uncertainty=False)
    items = load_split(find_datalist(None, None, str(bundle / "demo_data")), "test")
    write_rows(out_csv, LABELLED_COLUMNS, [
        labelled_row(Path(item["image"]).name, item["label"], classifier.predict_item(item).malignancy_probability,
                     classifier.threshold) for item in items])


def run(args: argparse.Namespace) -> int:
    from monai.bundle import run as run_bundle

    from monai_bus.study.bundle_runs import prepare_run

    if args.max_epochs < 1:
        raise CommandError(f"--max-epochs must be at least 1, got {args.max_epochs}")
    if not (Path(args.bundle) / "configs" / "train.json").is_file():
        raise CommandError(f"{Path(args.bundle) / 'configs' / 'train.json'}: not found; run from the repository root "
                           "or pass --bundle.")
    bundle = Path(args.out)
    prepare_run(Path(args.bundle), bundle, ("train.json",), {})
    configs = bundle / "configs"
    common = {
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
        "bundle_root": str(bundle),
    }
    run_bundle("training", config_file=str(configs / "train.json"), max_epochs=args.max_epochs, resume=False, **common)
    run_bundle("evaluating", config_file=[str(configs / "train.json"), str(configs / "evaluate.json")], **common)
    predictions_csv = bundle / "eval" / "test_predictions.csv"
    write_test_predictions(bundle, predictions_csv)
    metrics_csv = bundle / "eval" / "metrics.csv"
    print(f"\nTest-split metrics of {bundle / 'models' / 'model.pt'} on the SYNTHETIC demo data "
          f"(not clinical data), from {metrics_csv}:\n")
    print(format_table(read_metrics(metrics_csv)))
    print(f"\nPer-image predictions: {predictions_csv} (recompute: monai-bus metrics {predictions_csv})")
    return 0
