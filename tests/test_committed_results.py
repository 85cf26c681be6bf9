"""The committed study tables, the ROI benchmark's, recipe ablations' and test-time augmentation's tables and the
model card's figures are what their committed per-image predictions give, to the byte."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import benchmark
from monai_bus.study.predictions import read_predictions
from monai_bus.study.report import summarise, write_comparisons, write_table

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
ABLATIONS = sorted(path.parent for path in (RESULTS / "recipe").rglob("ablation.md"))
STUDIES = sorted(path.parent for path in RESULTS.rglob("table1.md"))
TTA = sorted(path.parent for path in (RESULTS / "tta").rglob("table.md"))
LOCALISER_BOX_RUNS = sorted(path.parent for path in (RESULTS / "recipe").rglob("*_seed_*/table.md"))  # ninth round
TABLES = ("table1.md", "table1.csv", "table1.json", "comparisons.md", "comparisons.json")


@pytest.mark.parametrize("study", STUDIES, ids=[str(path.relative_to(RESULTS)) for path in STUDIES])
def test_study_tables_recompute_identically(study, tmp_path):
    summary = summarise(read_predictions(study / "predictions.csv"))
    write_table(summary, tmp_path)
    write_comparisons(summary, tmp_path)
    for name in TABLES:
        assert (tmp_path / name).read_bytes() == (study / name).read_bytes(), name


def test_roi_table_recomputes_identically():
    roi = benchmark("roi")
    with open(RESULTS / "roi" / "predictions.csv", encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    readme = (RESULTS / "roi" / "README.md").read_text().splitlines()
    committed = [line for line in readme if line.startswith(("| whole |", "| roi |"))]
    assert committed == roi.table_rows(roi.summarise(rows))


@pytest.mark.parametrize("out", ABLATIONS, ids=[str(path.relative_to(RESULTS)) for path in ABLATIONS])
def test_ablation_tables_recompute_identically(out, tmp_path):
    recipes = benchmark("recipes")
    committed = json.loads((out / "ablation.json").read_text())
    command = (out / "ablation.md").read_text().splitlines()[2].removeprefix("Command: `").removesuffix("`")
    summary = recipes.summarise(out, list(committed["variants"]))
    recipes.write_summary(summary, tmp_path, command)
    for name in ("ablation.md", "ablation.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


@pytest.mark.parametrize("out", TTA, ids=[str(path.relative_to(RESULTS)) for path in TTA])
def test_tta_tables_recompute_identically(out):
    tta = benchmark("tta")
    with open(out / "predictions.csv", encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    boxes = [box for box in ("dataset_box", "localiser_box") if f"plain_{box}" in rows[0]]
    table = tta.summarise(rows, boxes)
    assert table == json.loads((out / "table.json").read_text())
    assert tta.markdown(table) == (out / "table.md").read_text()


def test_model_card_figures_recompute_identically():
    model_card = benchmark("model_card")
    tables = model_card.tables(model_card.figures())
    assert tables == (RESULTS / "model_card" / "metrics.md").read_text()
    assert tables in (RESULTS.parent / "model_card.md").read_text()  # shown verbatim in the model card


def test_the_bundle_eval_metrics_are_the_model_card_figures():
    internal = benchmark("model_card").internal_test()["sets"]
    metadata = json.loads((RESULTS.parents[1] / "bundle" / "configs" / "metadata.json").read_text())
    assert metadata["eval_metrics"] == {
        "busi_test_auc": round(internal["BUSI"]["auc"]["value"], 3),
        "busbra_test_auc": round(internal["BUS-BRA"]["auc"]["value"], 3),
        "test_auc": round(internal["both"]["auc"]["value"], 3),
        "test_sensitivity": round(internal["both"]["sensitivity"]["value"], 3),
        "test_specificity": round(internal["both"]["specificity"]["value"], 3),
        "test_ece": round(internal["both"]["ece"], 3)}


@pytest.mark.parametrize("folder", ["referral", "localiser/confidence/validation"])
def test_referral_table_recomputes_identically(tmp_path, folder):
    referral = benchmark("referral")
    committed = RESULTS / folder
    command = (committed / "table.md").read_text().splitlines()[0].removeprefix("Command: `").removesuffix("`")
    referral.write_table(referral.summarise(committed / "predictions.csv"), tmp_path, command)
    for name in ("table.md", "table.json"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
    if folder == "referral":
        assert (committed / "table.md").read_text().split("\n", 2)[2] in (committed / "README.md").read_text()


def test_the_localisers_cut_off_is_the_committed_fit():
    """The shipped check_below and weights are those of the committed fit, whose confidences give that cut-off."""
    fitted = RESULTS / "localiser" / "confidence" / "calibration"
    report = json.loads((fitted / "localiser_calibration.json").read_text())
    point = json.loads((RESULTS.parents[1] / "localiser" / "configs" / "metadata.json").read_text())["operating_point"]
    assert (point["check_below"], point["weights_sha256"]) == (report["check_below"], report["weights"]["sha256"])
    with open(fitted / "validation_confidence.csv", newline="") as f:
        confidences = [float(row["confidence"]) for row in csv.DictReader(f) if row["found"] == "1"]
    assert len(confidences) == report["validation_images"] - report["not_found"]
    assert np.quantile(confidences, report["fraction_checked"]) == pytest.approx(point["check_below"], abs=1e-6)
    assert sum(c < point["check_below"] for c in confidences) == report["checked"]


@pytest.mark.parametrize("run", LOCALISER_BOX_RUNS, ids=[str(path.relative_to(RESULTS)) for path in LOCALISER_BOX_RUNS])
def test_recipe_runs_localiser_box_tables_recompute_identically(tmp_path, run):
    localiser = benchmark("localiser")
    command = (run / "table.md").read_text().splitlines()[0].removeprefix("Command: `").removesuffix("`")
    localiser.write_table(localiser.summarise(run / "predictions.csv"), tmp_path, command)
    for name in ("table.md", "table.json"):
        assert (tmp_path / name).read_bytes() == (run / name).read_bytes(), name


@pytest.mark.parametrize("test_set", ["internal", "busbra_to_busi", "busi_to_busbra", "internal_seed_1",
                                      "internal_six_levels", "four_levels/internal", "four_levels/busbra_to_busi",
                                      "four_levels/busi_to_busbra", "internal_60_epochs", "internal_256px",
                                      "busi_to_busbra_intensity", "busbra_to_busi_intensity",
                                      "internal_intensity", "flip/validation_plain", "flip/validation_flip",
                                      "flip/test_plain", "flip/test_flip", "component/validation_most_probable",
                                      "wider/validation_shipped", "wider/validation_wider",
                                      "five_levels_256px/validation", "weight_averaging/validation",
                                      "confidence/busi_to_busbra",
                                      "confidence/busbra_to_busi",
                                      *(f"component/{lodo}_{component}" for lodo in ("busi_to_busbra", "busbra_to_busi")
                                        for component in ("most_probable", "largest"))])
def test_localiser_tables_recompute_identically(tmp_path, test_set):
    localiser = benchmark("localiser")
    committed = RESULTS / "localiser" / test_set
    command = (committed / "table.md").read_text().splitlines()[0].removeprefix("Command: `").removesuffix("`")
    localiser.write_table(localiser.summarise(committed / "predictions.csv"), tmp_path, command)
    for name in ("table.md", "table.json"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
    tables = (committed / "table.md").read_text().split("\n", 2)[2]
    in_own_folder = test_set.startswith(("flip/", "component/", "wider/", "five_levels_256px/", "weight_averaging/",
                                                 "confidence/"))
    readme = committed.parent / "README.md" if in_own_folder else RESULTS / "localiser" / "README.md"
    assert tables in readme.read_text()  # shown there verbatim
    if test_set == "internal":
        assert tables.split("\n\n")[0] in (RESULTS.parents[1] / "localiser" / "docs" / "README.md").read_text()
