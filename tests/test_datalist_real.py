"""``monai-bus datalist`` on the real BUSI and BUS-BRA copies in ../shared/datasets (skipped when absent)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from monai_bus.cli import main

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SPLITS = ("training", "validation", "test")


def dataset(name: str) -> Path:
    if not (DATASETS / name).is_dir():
        pytest.skip(f"real dataset not found: {DATASETS / name}")
    return DATASETS / name


def run(tmp_path: Path, *args: str) -> tuple[dict, dict]:
    out = tmp_path / "datalist.json"
    assert main(["datalist", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text()), json.loads((tmp_path / "datalist_report.json").read_text())


def test_busbra_patients_never_cross_splits(tmp_path):
    root = dataset("BUS-BRA")
    with open(root / "bus_data.csv", newline="") as stream:
        rows = {row["ID"]: row for row in csv.DictReader(stream)}
    datalist, report = run(tmp_path, "--format", "busbra", "--root", str(root))
    cases = {}
    for part in SPLITS:
        for item in datalist[part]:
            row = rows[Path(item["image"]).stem]
            assert item["label"] == ("benign", "malignant").index(row["Pathology"])
            assert item["group"] == f"busbra:{row['Case']}"
            cases.setdefault(row["Case"], set()).add(part)
    assert all(len(parts) == 1 for parts in cases.values())
    assert len(cases) == len({row["Case"] for row in rows.values()})
    expected = Counter(row["Pathology"] for row in rows.values())
    assert {name: sum(report["counts"][part][name] for part in SPLITS) for name in expected} == expected
    assert report["skipped"] == [] and report["conflicting_groups_excluded"] == []
    assert 0.70 < len(datalist["training"]) / len(rows) < 0.80 and 0.07 < len(datalist["test"]) / len(rows) < 0.13


def test_busbra_authors_folds(tmp_path):
    root = dataset("BUS-BRA")
    with open(root / "5-fold-cv.csv", newline="") as stream:
        folds = {row["ID"]: int(row["kFold"]) for row in csv.DictReader(stream)}
    present = sorted(set(folds.values()))
    datalist, report = run(tmp_path, "--format", "busbra", "--root", str(root),
                           "--folds", str(len(present)), "--fold", "1")
    assert report["split"]["fold_source"] == "authors"
    assert {Path(item["image"]).stem for item in datalist["test"]} == {i for i, f in folds.items() if f == 1}
    assert {Path(item["image"]).stem for item in datalist["validation"]} == {i for i, f in folds.items() if f == 2}


def test_busi_identical_pair_under_two_labels_is_reported_and_excluded(tmp_path):
    root = dataset("BUSI")
    datalist, report = run(tmp_path, "--format", "busi", "--root", str(root))
    pair = {"Dataset_BUSI_with_GT/benign/benign (433).png", "Dataset_BUSI_with_GT/malignant/malignant (145).png"}
    assert any(pair in map(set, group["byte_identical"]) for group in report["conflicting_groups_excluded"])
    names = {Path(item["image"]).name for part in SPLITS for item in datalist[part]}
    assert not names & {"benign (433).png", "malignant (145).png"}
    excluded = sum(len(group["images"]) for group in report["conflicting_groups_excluded"])
    assert len(names) + excluded == 647
    groups = {}
    for part in SPLITS:
        for item in datalist[part]:
            groups.setdefault(item["group"], set()).add(part)
    assert all(len(parts) == 1 for parts in groups.values())
    assert len(report["duplicate_groups"]) > 50  # BUSI holds many near-duplicate frames


def test_bundle_trains_one_epoch_on_real_data(tmp_path):
    """End to end: a datalist built from BUS-BRA, thinned to a few patients, trains the bundle."""
    from monai.bundle import ConfigWorkflow

    from conftest import copy_bundle

    datalist, _ = run(tmp_path, "--format", "busbra", "--root", str(dataset("BUS-BRA")))
    tiny = {}
    for part, per_class in (("training", 6), ("validation", 3), ("test", 3)):
        tiny[part] = []
        for label in (0, 1):
            tiny[part] += [item for item in datalist[part] if item["label"] == label][:per_class]
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    bundle = copy_bundle(tmp_path / "bundle")
    flow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type="train", bundle_root=str(bundle), datalist=str(tmp_path / "tiny.json"),
        image_size=64, batch_size=4, num_workers=0, max_epochs=1,
    )
    flow.initialize()
    assert flow.check_properties() in (None, [])
    flow.run()
    flow.finalize()
    assert (bundle / "models" / "model.pt").is_file()
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    assert 0.0 <= evaluator.state.metrics["val_auc"] <= 1.0
