"""The bundle, checked the way the MONAI model zoo's CI checks bundles, on tiny synthetic data."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser, ConfigWorkflow

from conftest import TRAINED_EPOCHS, bundle_overrides, copy_bundle
from monai_bus.commands.demo import read_metrics
from monai_bus.data.loading import load_split
from monai_bus.errors import find_monai_bus_error
from monai_bus.handlers import BestModelSaver, run_fingerprint
from monai_bus.metrics import METRIC_NAMES, classification_metrics
from monai_bus.prediction_files import read_predictions


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


def test_training_outputs(trained_bundle):
    models = trained_bundle / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_last.pt").is_file()
    assert not list(models.glob("*.partial"))  # written atomically
    assert list((trained_bundle / "eval").glob("events.out.tfevents.*"))
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "best_model", "trainer", "trainer_best_metric",
                          "fingerprint", "random"}
    assert state["trainer"]["iteration"] == TRAINED_EPOCHS * state["trainer"]["epoch_length"]
    assert 0.0 <= state["best_model"]["best_score"] <= 1.0 and 1 <= state["best_model"]["best_epoch"] <= TRAINED_EPOCHS
    assert set(state["random"]) == {"torch", "cuda", "numpy", "python"}


def kill_at(iteration: int):
    def kill(engine):
        raise KeyboardInterrupt(f"killed at iteration {iteration}")  # what Ctrl-C raises
    return Events.ITERATION_COMPLETED(once=iteration), kill


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(trained_bundle, tiny_data, tmp_path):
    """``trained_bundle`` ran ``TRAINED_EPOCHS`` epochs of 4 iterations without a stop; this copy is killed in epoch 2."""
    bundle = copy_bundle(tmp_path / "bundle")
    run = {"max_epochs": TRAINED_EPOCHS, "mask_loss_weight": 0}  # as trained_bundle
    flow = workflow(bundle, tiny_data, ["train.json"], "train", **run)
    flow.initialize()
    flow.parser.get_parsed_content("train#trainer").add_event_handler(*kill_at(6))
    with pytest.raises(KeyboardInterrupt):
        flow.run()
    saved = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == saved["trainer"]["epoch_length"]  # the end of epoch 1
    resumed_flow, best = workflow(bundle, tiny_data, ["train.json"], "train", **run), []
    resumed_flow.initialize()
    engines = [resumed_flow.parser.get_parsed_content(f"{name}#{engine}")
               for name, engine in (("train", "trainer"), ("validate", "evaluator"))]
    engines[0].add_event_handler(  # after the checkpoint's load
        Events.STARTED, lambda _: best.extend((e.state.best_metric, e.state.best_metric_epoch) for e in engines))
    resumed_flow.run()
    resumed_flow.finalize()
    # their "new best" log lines compare against epoch 1's scores, not MONAI's initial -1
    assert best == [tuple(saved["trainer_best_metric"]), (saved["best_model"]["best_score"], 1)]
    assert saved["trainer_best_metric"][1] == 1 and saved["trainer_best_metric"][0] >= 0
    for name, key in (("checkpoint_last.pt", "model"), ("model.pt", None)):
        resumed, uninterrupted = (torch.load(b / "models" / name, weights_only=True) for b in (bundle, trained_bundle))
        resumed, uninterrupted = (resumed[key], uninterrupted[key]) if key else (resumed, uninterrupted)
        for weight, value in uninterrupted.items():
            assert torch.equal(resumed[weight], value), (name, weight)
    best = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)["best_model"]
    assert best == torch.load(trained_bundle / "models" / "checkpoint_last.pt", weights_only=True)["best_model"]


@pytest.mark.parametrize("change", [{"max_epochs": 1}, {"learning_rate": 1e-3}, {"roi": False}, {"datalist": "other"},
                                    {"width": 16}])
def test_a_checkpoint_of_another_run_is_not_resumed(trained_bundle, tiny_data, tmp_path, change):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    same = {"max_epochs": TRAINED_EPOCHS, "mask_loss_weight": 0}  # as trained_bundle, which has nothing left to do
    assert epochs_trained(workflow(bundle, tiny_data, ["train.json"], "train", **same)) == []
    if change.get("datalist") == "other":  # the README's order: the demo first, then other data
        datalist = json.loads((tiny_data / "datalist.json").read_text())
        datalist["training"] = datalist["training"][1:]
        (tmp_path / "other.json").write_text(json.dumps(datalist))
        change = {"datalist": str(tmp_path / "other.json")}
    before = (bundle / "models" / "checkpoint_last.pt").read_bytes()
    change = {**same, **change}
    with pytest.raises(RuntimeError) as error:
        run_to_end(workflow(bundle, tiny_data, ["train.json"], "train", **change), check=False)
    assert "was saved by another run" in str(find_monai_bus_error(error.value))
    assert "--resume false" in str(find_monai_bus_error(error.value))
    assert (bundle / "models" / "checkpoint_last.pt").read_bytes() == before
    assert epochs_trained(workflow(bundle, tiny_data, ["train.json"], "train", resume=False, **change)) == list(
        range(1, change["max_epochs"] + 1))  # --resume false: a new run from epoch 1
    assert epochs_trained(workflow(bundle, tiny_data, ["train.json"], "train", **change)) == []  # then resumable


def epochs_trained(flow: ConfigWorkflow) -> list[int]:
    flow.initialize()
    epochs = []
    flow.parser.get_parsed_content("train#trainer").add_event_handler(
        Events.EPOCH_COMPLETED, lambda engine: epochs.append(engine.state.epoch))
    flow.run()
    return epochs


def test_the_fingerprint_follows_the_data_not_its_folder():
    items = [{"image": "/data/a/1.png", "label": 0, "mask": ["/data/a/1_mask.png"]}, {"image": "/data/b/2.png",
                                                                                       "label": 1}]
    moved = [{**item, "image": item["image"].replace("/data", "/mnt/copy")} for item in items]
    moved[0]["mask"] = ["/mnt/copy/a/1_mask.png"]
    assert run_fingerprint(items, items[:1], [1]) == run_fingerprint(moved, moved[:1], [1])
    assert run_fingerprint(items, items[:1], [1]) != run_fingerprint(items[::-1], items[:1], [1])
    assert run_fingerprint(items, items[:1], [1]) != run_fingerprint(items, items[:1], [2])
    assert run_fingerprint(items, items[:1], [1]) != run_fingerprint([{**items[0], "label": 1}, items[1]], items[:1], [1])


def test_a_corrupt_checkpoint_is_named(trained_bundle, tiny_data, tmp_path):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    checkpoint = bundle / "models" / "checkpoint_last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(RuntimeError) as error:
        run_to_end(workflow(bundle, tiny_data, ["train.json"], "train", max_epochs=2), check=False)
    assert str(find_monai_bus_error(error.value)).startswith(f"{checkpoint}: not a readable checkpoint")


def test_inference_and_evaluation_agree(trained_bundle, tiny_data, tmp_path):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    test_items = load_split(str(tiny_data / "datalist.json"), "test")
    test_items[0]["image"] = str(shutil.copy(test_items[0]["image"], tmp_path / "a, \"quoted\" name.png"))
    datalist = {**json.loads((tiny_data / "datalist.json").read_text()), "test": test_items}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    run_to_end(workflow(bundle, tiny_data, ["inference.json"], "infer", datalist=str(tmp_path / "datalist.json")))
    predictions = read_predictions(bundle / "eval" / "predictions.csv")
    assert sorted(predictions) == sorted(item["image"] for item in test_items)  # a comma in a name is quoted
    for probabilities in predictions.values():
        assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)

    run_to_end(workflow(bundle, tiny_data, ["train.json", "evaluate.json"], "train",
                        datalist=str(tmp_path / "datalist.json")), check=False)
    metrics = read_metrics(bundle / "eval" / "metrics.csv")
    labels = [item["label"] for item in test_items]
    expected = classification_metrics(labels, np.array([predictions[item["image"]] for item in test_items]))
    assert set(metrics) == {"val_auc"} | (set(METRIC_NAMES) - {"auc"})
    assert metrics["val_auc"] == pytest.approx(expected["auc"], abs=1e-4)
    for name in set(METRIC_NAMES) - {"auc"}:
        assert metrics[name] == pytest.approx(expected[name], abs=1e-4), name


def test_one_change_of_the_model_settings_reaches_training_and_inference(tmp_path, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["model_settings"].update(image_size=96, roi_margin=0.4, hidden=7, attention=False)
    meta_file.write_text(json.dumps(metadata))
    item = load_split(str(tiny_data / "datalist.json"), "test")[0]
    parsed = {}
    for name, ids in (("train.json", ("validate#preprocessing", "network")), ("inference.json", ("preprocessing",
                                                                                                 "network"))):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / name))
        parser.read_meta(str(meta_file))
        parser["bundle_root"] = str(bundle)
        parsed[name] = [parser.get_parsed_content(i) for i in ids]
    (validation, train_network), (inference, inference_network) = parsed["train.json"], parsed["inference.json"]
    image = inference(dict(item))["image"]
    assert image.shape == (1, 96, 96) and torch.equal(validation(dict(item))["image"], image.as_tensor())
    assert not hasattr(inference_network, "attention_map") and inference_network.head[0].out_features == 7
    assert train_network.state_dict().keys() == inference_network.state_dict().keys()


def test_a_nan_validation_score_is_never_the_best(tmp_path):
    network = torch.nn.Linear(2, 2)
    saver = BestModelSaver(tmp_path, network)
    evaluator = Engine(lambda engine, batch: None)
    for epoch, score in enumerate([float("nan"), 0.6, float("nan"), 0.5, 0.6], start=1):
        evaluator.state.epoch, evaluator.state.metrics = epoch, {"val_auc": score}
        network.bias.data.fill_(epoch)
        saver(evaluator)
        assert (tmp_path / "model.pt").exists() == (epoch >= 2)
    assert saver.state_dict() == {"best_score": 0.6, "best_epoch": 5}  # a tie keeps the later model
    assert torch.load(tmp_path / "model.pt", weights_only=True)["bias"].tolist() == [5.0, 5.0]


def test_training_never_overwrites_the_shipped_weights(tmp_path, trained_bundle, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    (bundle / "models" / "model.json").unlink()
    weights = bundle / "models" / "model.pt"
    shipped = weights.read_bytes()
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["weights"] = {"models/model.pt": {"sha256": hashlib.sha256(shipped).hexdigest(), "trained_on": "x"}}
    meta_file.write_text(json.dumps(metadata))
    flow = workflow(bundle, tiny_data, ["train.json"], "train", max_epochs=1, resume=False)
    with pytest.raises(Exception) as raised:
        flow.initialize()
        flow.run()
    assert "models/model.pt: the bundle's shipped weights; training would overwrite them" in str(
        find_monai_bus_error(raised.value))
    assert weights.read_bytes() == shipped
