"""The committed study tables, and the ROI benchmark's table, are what their committed per-image predictions
give, to the byte."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from monai_bus.study.predictions import read_predictions
from monai_bus.study.report import summarise, write_comparisons, write_table

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
STUDIES = sorted(path.parent for path in RESULTS.rglob("table1.md"))
TABLES = ("table1.md", "table1.csv", "table1.json", "comparisons.md", "comparisons.json")


@pytest.mark.parametrize("study", STUDIES, ids=[str(path.relative_to(RESULTS)) for path in STUDIES])
def test_study_tables_recompute_identically(study, tmp_path):
    summary = summarise(read_predictions(study / "predictions.csv"))
    write_table(summary, tmp_path)
    write_comparisons(summary, tmp_path)
    for name in TABLES:
        assert (tmp_path / name).read_bytes() == (study / name).read_bytes(), name


def test_roi_table_recomputes_identically():
    sys.path.insert(0, str(RESULTS.parents[1] / "benchmarks"))
    try:
        import roi
    finally:
        sys.path.pop(0)
    with open(RESULTS / "roi" / "predictions.csv", encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    readme = (RESULTS / "roi" / "README.md").read_text().splitlines()
    committed = [line for line in readme if line.startswith(("| whole |", "| roi |"))]
    assert committed == roi.table_rows(roi.summarise(rows))
