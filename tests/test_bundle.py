"""The bundle, checked the way the MONAI model zoo's CI checks bundles, on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from conftest import CONFIGS, bundle_overrides
from monai_bus.bundle_data import load_split
from monai_bus.commands.demo import read_metrics
from monai_bus.metrics import METRIC_NAMES, classification_metrics


def workflow(bundle, data, config_names, workflow_type, **extra) -> ConfigWorkflow:
    configs = bundle / "configs"
    return ConfigWorkflow(
        config_file=[str(configs / name) for name in config_names],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **bundle_overrides(bundle, data, **extra),
    )


def run_to_end(flow: ConfigWorkflow, check: bool = True) -> None:
    flow.initialize()
    if check:
        assert flow.check_properties() in (None, []), flow.check_properties()
    flow.run()
    flow.finalize()


def read_predictions(path) -> dict[str, list[float]]:
    with open(path, encoding="utf8") as f:
        return {row[0]: [float(v) for v in row[1:]] for row in csv.reader(f)}


def test_training_outputs(trained_bundle):
    models = trained_bundle / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_last.pt").is_file()
    assert list((trained_bundle / "eval").glob("events.out.tfevents.*"))
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "trainer"}
    assert state["trainer"]["iteration"] == 2 * state["trainer"]["epoch_length"]


def test_resume_continues_from_last_epoch(trained_bundle, tiny_data, tmp_path):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    flow = workflow(bundle, tiny_data, ["train.json"], "train", max_epochs=3)
    run_to_end(flow, check=False)
    trainer = flow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3 and trainer.state.iteration == 3 * len(trainer.data_loader)
    saved = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)["trainer"]
    assert saved["iteration"] == 3 * saved["epoch_length"]


def test_inference_and_evaluation_agree(trained_bundle, tiny_data, tmp_path):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    run_to_end(workflow(bundle, tiny_data, ["inference.json"], "infer"))
    predictions = read_predictions(bundle / "eval" / "predictions.csv")
    test_items = load_split(str(tiny_data / "datalist.json"), "test")
    assert sorted(predictions) == sorted(item["image"] for item in test_items)
    for probabilities in predictions.values():
        assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)

    run_to_end(workflow(bundle, tiny_data, ["train.json", "evaluate.json"], "train"), check=False)
    metrics = read_metrics(bundle / "eval" / "metrics.csv")
    labels = [item["label"] for item in test_items]
    expected = classification_metrics(labels, np.array([predictions[item["image"]] for item in test_items]))
    assert set(metrics) == {"val_auc"} | (set(METRIC_NAMES) - {"auc"})
    assert metrics["val_auc"] == pytest.approx(expected["auc"], abs=1e-4)
    for name in set(METRIC_NAMES) - {"auc"}:
        assert metrics[name] == pytest.approx(expected[name], abs=1e-4), name


def test_train_and_inference_configs_define_the_same_model():
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    train_network = {k: v for k, v in train["network_def"].items() if k not in ("pretrained", "pretrained_path", "dropout")}
    assert train_network == inference["network_def"]
    pixel_transforms = lambda transforms: [  # noqa: E731  (the transforms that change pixel values)
        t for t in transforms if t["_target_"] not in ("SelectItemsd", "EnsureTyped")]
    parts = ("load_transforms", "crop_transforms", "resize_transforms")
    validation = [t for part in parts for t in train["train"][part]]
    assert train["train"]["deterministic_transforms"] == (
        "$@train#load_transforms + @train#crop_transforms + @train#resize_transforms")
    assert pixel_transforms(validation) == pixel_transforms(inference["preprocessing"]["transforms"])
    for key in ("image_size", "roi", "roi_margin", "attention", "batch_norm", "hidden", "amp", "channels_last",
                "bundle_root"):
        assert train[key] == inference[key], key
