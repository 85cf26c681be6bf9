"""``monai-bus demo``: train the bundle on the synthetic demo data, evaluate it, print the metrics.

The demo images are synthetic (see :mod:`monai_bus.demo_data`): the figures show that the pipeline
works end to end, and say nothing about clinical performance.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from monai_bus.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="bundle", help="bundle folder (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=10, help="training epochs (default: %(default)s)")


def read_metrics(metrics_csv: Path) -> dict[str, float]:
    """Read MONAI's ``MetricsSaver`` output (``name<delimiter>value`` lines)."""
    with open(metrics_csv, encoding="utf8") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f, delimiter=",") if len(row) == 2}


def format_table(metrics: dict[str, float]) -> str:
    """A two-column Markdown table of metric name and value."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in metrics.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from monai.bundle import run as run_bundle

    configs = Path(args.bundle) / "configs"
    if not (configs / "train.json").is_file():
        raise CommandError(f"{configs / 'train.json'}: not found; run from the repository root or pass --bundle.")
    common = {
        "meta_file": str(configs / "metadata.json"),
        "logging_file": str(configs / "logging.conf"),
        "bundle_root": args.bundle,
    }
    run_bundle("training", config_file=str(configs / "train.json"), max_epochs=args.max_epochs, **common)
    run_bundle("evaluating", config_file=[str(configs / "train.json"), str(configs / "evaluate.json")], **common)
    metrics_csv = Path(args.bundle) / "eval" / "metrics.csv"
    print(f"\nTest-split metrics of {Path(args.bundle) / 'models' / 'model.pt'} on the SYNTHETIC demo data "
          f"(not clinical data), from {metrics_csv}:\n")
    print(format_table(read_metrics(metrics_csv)))
    return 0
