"""``monai-bus study``: statistics, report, run folders, and the study end to end on tiny demo data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BUNDLE, TINY, benchmark
from monai_bus.cli import main
from monai_bus.metrics import METRIC_NAMES, classification_metrics, roc_auc
from monai_bus.study import StudyError, runner
from monai_bus.study.bundle_runs import prepare_run
from monai_bus.study.configurations import COMPARISONS, CONFIGURATIONS, RECIPES
from monai_bus.study.figures import confusion_grid, roc_curves
from monai_bus.study.predictions import RunPredictions, probabilities_of, read_predictions, write_predictions
from monai_bus.study.report import summarise, write_comparisons, write_table
from monai_bus.study.statistics import (bootstrap_p_value, delong_components, delong_test, group_resamples,
                                        percentile_interval)

STUDIED = ["vgg16_ce_logcosh", "attention_vgg16_ce_logcosh"]
OUTPUTS = ["study.json", "predictions.csv", "table1.md", "table1.csv", "table1.json", "comparisons.md",
           "comparisons.json", "confusion_matrices.png", "roc_curves.png", "gallery_attention_vgg16_ce_logcosh.png"]


def scores_with_ties(rng, labels, k):
    return np.round(labels * rng.uniform(0.1, 0.5, (k, 1)) + rng.random((k, len(labels))), 1)


def test_delong_matches_its_definition():
    """The mid-rank algorithm against DeLong et al.'s structural components, computed pair by pair."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = scores_with_ties(rng, labels, 3)
    v10, v01 = delong_components(labels, scores)
    x, y = scores[:, labels == 1], scores[:, labels == 0]
    psi = (x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])  # [K, m, n]
    np.testing.assert_allclose(v10, psi.mean(axis=2), atol=1e-12)
    np.testing.assert_allclose(v01, psi.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(v10.mean(axis=1), [roc_auc(labels, s) for s in scores], atol=1e-12)


def test_delong_variance_is_that_of_the_contrast():
    """The contrast's variance equals L S L^T, S = cov(v10) / m + cov(v01) / n (DeLong et al. 1988)."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    scores = scores_with_ties(rng, labels, 5)
    v10, v01 = delong_components(labels, scores)
    covariance = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    contrast = np.array([1 / 3, 1 / 3, 1 / 3, -1 / 2, -1 / 2])
    result = delong_test(labels, scores[:3], scores[3:])
    assert result["difference"] == pytest.approx(contrast @ v10.mean(axis=1))
    assert result["z"] == pytest.approx(result["difference"] / np.sqrt(contrast @ covariance @ contrast))


def test_delong_test_of_seed_means():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 30)
    good, poor = labels + rng.normal(0, 0.5, (2, 60)), labels + rng.normal(0, 3.0, (2, 60))
    result = delong_test(labels, good, poor)
    assert result["difference"] == pytest.approx(np.mean([roc_auc(labels, s) for s in good])
                                                 - np.mean([roc_auc(labels, s) for s in poor]))
    assert result["difference"] > 0 and result["p"] < 0.01
    same = delong_test(labels, good, good)
    assert same["difference"] == 0 and np.isnan(same["p"])
    with pytest.raises(ValueError, match="at least 2 cases of each class"):
        delong_test(np.array([0, 0, 1]), good[:, :3], poor[:, :3])


def test_group_resamples_keep_groups_whole():
    groups = ["a", "a", "b", "c", "c", "c", ""]
    resamples = group_resamples(groups, 50, seed=3)
    assert all(np.array_equal(r1, r2) for r1, r2 in zip(resamples, group_resamples(groups, 50, seed=3)))
    for indices in resamples:
        counts = np.bincount(indices, minlength=7)
        assert counts[0] == counts[1] and counts[3] == counts[4] == counts[5]  # a group is drawn whole
    assert {len(indices) for indices in resamples} != {7}  # group sizes make the length vary


def test_bootstrap_p_value_and_interval():
    differences = np.array([[1.0, 0.0, np.nan], [2.0, 0.0, np.nan], [3.0, 0.0, np.nan]])
    np.testing.assert_allclose(bootstrap_p_value(differences), [0.5, 1.0, np.nan])
    low, high = percentile_interval(differences)
    assert low[0] == pytest.approx(1.05) and high[0] == pytest.approx(2.95) and np.isnan(low[2])


def synthetic_runs(seeds=(0, 1), n=24) -> dict:
    rng = np.random.default_rng(4)
    labels = np.arange(n) % 2
    images, groups = [f"images/{i}.png" for i in range(n)], [f"patient_{i // 3}" for i in range(n)]
    return {(c.id, seed): RunPredictions.rounded(images, groups, labels, np.clip(
        labels * (0.2 + 0.1 * c.attention) + rng.random(n) * 0.75, 0, 1)) for c in CONFIGURATIONS for seed in seeds}


def test_report_from_predictions(tmp_path):
    runs = synthetic_runs()
    write_predictions(tmp_path / "predictions.csv", runs)
    read = read_predictions(tmp_path / "predictions.csv")
    assert list(read) == [(c.id, seed) for c in CONFIGURATIONS for seed in (0, 1)]  # Table 1 order, then seed
    for key, run in runs.items():
        np.testing.assert_array_equal(read[key].p_malignant, run.p_malignant)
    summary = summarise(read, n_resamples=200)
    assert summary["bootstrap"]["unit"] == "group" and summary["bootstrap"]["units"] == 8
    row = summary["table"][0]
    per_seed = [classification_metrics(runs[("vgg16_ce", s)].labels, runs[("vgg16_ce", s)].probabilities)
                for s in (0, 1)]
    for name in METRIC_NAMES:
        assert row["metrics"][name]["per_seed"] == [m[name] for m in per_seed]
        assert row["metrics"][name]["mean"] == pytest.approx(np.mean([m[name] for m in per_seed]))
        assert row["metrics"][name]["ci_low"] <= row["metrics"][name]["ci_high"]
    assert [c["title"] for c in summary["comparisons"]] == [c.title for c in COMPARISONS]
    comparison = summary["comparisons"][0]
    auc = comparison["metrics"]["auc"]
    assert auc["difference"] == auc["a"] - auc["b"]
    assert auc["difference"] == pytest.approx(comparison["delong_auc"]["difference"])
    write_table(summary, tmp_path)
    write_comparisons(summary, tmp_path)
    confusion_grid(read, tmp_path / "confusion.png")
    roc_curves(read, tmp_path / "roc.png")
    assert "| Attention-VGG16 | CE-logcosh | 2 |" in (tmp_path / "table1.md").read_text()
    assert "DeLong's test for AUC" in (tmp_path / "comparisons.md").read_text()
    assert (tmp_path / "confusion.png").stat().st_size > 0 and (tmp_path / "roc.png").stat().st_size > 0


def test_predictions_errors_name_the_line(tmp_path):
    path = tmp_path / "predictions.csv"
    write_predictions(path, synthetic_runs(seeds=(0,)))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [lines[3].replace(",0.", ",1.")] + lines[4:]) + "\n")
    with pytest.raises(StudyError, match=r"predictions.csv, line 4: (label must be|predicted)"):
        read_predictions(path)


def test_prepare_run_writes_the_run_settings(tmp_path):
    prepare_run(BUNDLE, tmp_path / "run", RECIPES["paper"], {"attention": False, "loss": "ce", "seed": 2})
    configs = tmp_path / "run" / "configs"
    train = json.loads((configs / "train.json").read_text())
    metadata = json.loads((configs / "metadata.json").read_text())
    model_settings = metadata["model_settings"]
    assert (train["loss"], train["seed"], train["max_epochs"]) == ("ce", 2, 250)
    assert train["optimizer"]["_target_"] == "torch.optim.RMSprop" and train["train"]["random_transforms"] == []
    assert model_settings["attention"] is False and model_settings["batch_norm"] is False  # paper recipe: no BN
    assert model_settings["hidden"] == 10  # the paper's head, from paper_recipe.json
    assert train["mask_loss_weight"] == 0  # nor does the paper supervise the gate with masks
    assert model_settings["flip_tta"] is False  # nor average an image with its mirror (paper_recipe.json)
    assert "weights" not in metadata and "operating_point" not in metadata  # the source's shipped weights stay there
    assert not (tmp_path / "run" / "models").exists()
    assert train["batch_norm"] == "$@model_settings['batch_norm']"  # read from the metadata, as inference does
    assert (configs / "inference.json").read_text() == (BUNDLE / "configs" / "inference.json").read_text()
    with pytest.raises(StudyError, match="'max_epoch'] are neither model_settings"):
        prepare_run(BUNDLE, tmp_path / "other", RECIPES["default"], {"max_epoch": 3})


def test_prepare_run_sets_a_nested_id_inside_an_existing_one(tmp_path):
    prepare_run(BUNDLE, tmp_path / "run", RECIPES["default"], {"train#dataloader#shuffle": False,
                                                               "train#dataloader#sampler": "$None"})
    dataloader = json.loads((tmp_path / "run" / "configs" / "train.json").read_text())["train"]["dataloader"]
    assert dataloader["shuffle"] is False and dataloader["sampler"] == "$None"
    with pytest.raises(StudyError, match=r"\['train#data_loader#sampler'\] are neither"):
        prepare_run(BUNDLE, tmp_path / "other", RECIPES["default"], {"train#data_loader#sampler": "$None"})


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """48 synthetic 64 px images, 14 in the test split, whose test images come in pairs of one 'patient'."""
    from monai_bus.data.demo import write_demo_dataset

    path = write_demo_dataset(tmp_path_factory.mktemp("study_data"), num_images=48, size=64, seed=3,
                              split=(0.5, 0.2, 0.3))
    content = json.loads(path.read_text())
    for index, item in enumerate(content["test"]):
        item["group"] = f"patient_{index // 2}"
    path.write_text(json.dumps(content))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory, datalist) -> Path:
    """The study of 2 configurations, 1 seed and 1 epoch, through the bundle."""
    out = tmp_path_factory.mktemp("study") / "results"
    runner.run_study(datalist, out, seeds=1, max_epochs=1, configurations=STUDIED, bundle=BUNDLE, overrides=TINY)
    return out


def test_study_writes_every_output(study):
    for name in OUTPUTS:
        assert (study / name).is_file() and (study / name).stat().st_size > 0, name
    for name in STUDIED:
        run = study / "runs" / name / "seed_0"
        assert (run / "models" / "model.pt").is_file()
        model_settings = json.loads((run / "configs" / "metadata.json").read_text())["model_settings"]
        assert model_settings["attention"] == name.startswith("attention")
        assert model_settings["image_size"] == TINY["image_size"] and model_settings["width"] == TINY["width"]
    comparisons = json.loads((study / "comparisons.json").read_text())["comparisons"]
    assert [c["title"] for c in comparisons] == ["Attention-VGG16 vs VGG16 (CE-logcosh)"]


def test_table_recomputes_from_predictions(study, datalist):
    with open(study / "predictions.csv", encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    test_items = json.loads(datalist.read_text())["test"]
    assert len(rows) == len(STUDIED) * len(test_items)
    table = {row["configuration"]: row for row in json.loads((study / "table1.json").read_text())["table"]}
    assert json.loads((study / "table1.json").read_text())["bootstrap"]["unit"] == "group"
    with open(study / "table1.csv", encoding="utf8", newline="") as f:
        table_csv = {row["configuration"]: row for row in csv.DictReader(f)}
    for name in STUDIED:
        run = [row for row in rows if row["configuration"] == name]
        assert [row["image"] for row in run] == [item["image"] for item in test_items]
        labels = [int(row["label"]) for row in run]
        p = np.array([float(row["p_malignant"]) for row in run])
        assert [int(row["predicted"]) for row in run] == list(probabilities_of(p).argmax(axis=1))
        expected = classification_metrics(labels, probabilities_of(p))
        for metric in METRIC_NAMES:
            assert table[name]["metrics"][metric]["mean"] == expected[metric], (name, metric)
            assert float(table_csv[name][metric]) == expected[metric], (name, metric)


def test_finished_runs_are_not_trained_again(study, datalist, monkeypatch, capsys):
    before = (study / "table1.json").read_text()

    def no_training(run_dir):
        raise AssertionError(f"{run_dir} trained again")

    monkeypatch.setattr(runner, "train", no_training)
    runner.run_study(datalist, study, seeds=1, max_epochs=1, configurations=STUDIED, bundle=BUNDLE, overrides=TINY)
    assert capsys.readouterr().out.count("finished before") == 2
    assert (study / "table1.json").read_text() == before


def test_cli_refuses_a_folder_with_other_settings(study, datalist, capsys):
    assert main(["study", "--datalist", str(datalist), "--out", str(study), "--max-epochs", "1",
                 "--configurations", *STUDIED]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"monai-bus study: error: {study / 'study.json'}: this folder holds a study with other "
                            "settings (overrides:")
    assert main(["study", "--datalist", str(datalist.parent / "missing.json"), "--out", str(study)]) == 2
    assert "missing.json: datalist not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "--datalist", str(datalist), "--out", str(study), "--configurations", "vgg19_ce"])


def test_paper_recipe_starts_from_the_imagenet_weights_in_the_hub_cache(tmp_path, datalist, monkeypatch):
    """``--recipe paper`` through the bundle, with stand-in weights where torch hub caches torchvision's file."""
    from monai_bus.networks import vgg16_features
    from monai_bus.networks.pretrained import hub_cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    features = vgg16_features(3, batch_norm=False, width=TINY["width"])  # the study's narrow VGG16
    imagenet = {f"features.{k}": v for k, v in features.state_dict().items()}
    hub_cache_path(batch_norm=False).parent.mkdir(parents=True)
    torch.save(imagenet, hub_cache_path(batch_norm=False))
    out = tmp_path / "results"
    runner.run_study(datalist, out, seeds=1, max_epochs=1, configurations=["vgg16_ce"], bundle=BUNDLE,
                     overrides=TINY, recipe="paper")
    trained = torch.load(out / "runs" / "vgg16_ce" / "seed_0" / "models" / "model.pt", weights_only=True)
    imagenet["features.0.weight"] = imagenet["features.0.weight"].sum(1, keepdim=True)  # grey input
    for key, value in imagenet.items():  # one epoch at lr 2e-6 moves a weight by far less than 1e-3
        torch.testing.assert_close(trained[key], value, atol=1e-3, rtol=0)


def _train_variant(name: str, datalist: Path, out: Path) -> Path:
    recipes = benchmark("recipes")
    runner.run_study(datalist, out, seeds=1, max_epochs=1, configurations=[recipes.CONFIGURATION], bundle=BUNDLE,
                     overrides={**TINY, **recipes.VARIANTS[name]})
    return out / "runs" / recipes.CONFIGURATION / "seed_0" / "models"


def test_the_ema_variant_validates_and_keeps_the_averaged_weights(tmp_path, datalist):
    models = _train_variant("ema", datalist, tmp_path / "results")
    checkpoint = torch.load(models / "checkpoint_last.pt", weights_only=True)  # after the one epoch
    torch.testing.assert_close(torch.load(models / "model.pt", weights_only=True), checkpoint["ema_model"])
    assert any(not torch.equal(checkpoint["ema_model"][k], v) for k, v in checkpoint["model"].items())
    assert json.loads((models.parent / "configs" / "train.json").read_text())["mask_loss_weight"] == 0  # the study's
    assert json.loads((models.parent / "configs" / "metadata.json").read_text())["model_settings"]["flip_tta"] is False
    train = json.loads((models.parent / "configs" / "train.json").read_text())["train"]
    assert train["intensity_transforms"] == runner.STUDY_INTENSITY_TRANSFORMS  # the milder one, as before 0.7.0


def test_the_swa_variant_validates_and_keeps_the_averaged_weights(tmp_path, datalist):
    from monai.bundle import ConfigParser

    models = _train_variant("swa", datalist, tmp_path / "results")  # one epoch, so averaging starts at epoch 1
    checkpoint = torch.load(models / "checkpoint_last.pt", weights_only=True)
    averaged = checkpoint["averaged_model"]
    assert averaged.pop("n_averaged") == 1
    torch.testing.assert_close(torch.load(models / "model.pt", weights_only=True),
                               {key.removeprefix("module."): value for key, value in averaged.items()})
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.5 * checkpoint["optimizer"][
        "param_groups"][0]["initial_lr"])  # half the rate once the first half of the epochs is over
    parser = ConfigParser()
    parser.read_config(str(models.parent / "configs" / "train.json"))
    parser.read_meta(str(models.parent / "configs" / "metadata.json"))
    parser["bundle_root"] = str(models.parent)
    averaged_network = parser.get_parsed_content("train#averaged").module
    assert parser.get_parsed_content("validate#evaluator").network is averaged_network
    assert parser.get_parsed_content("best_model").network is averaged_network


def test_weight_averaging_averages_the_weights_of_each_epoch_from_its_start_on_and_follows_the_network_before():
    from ignite.engine import Engine, Events

    from monai_bus.errors import InputError
    from monai_bus.handlers import WeightAveraging

    network = torch.nn.BatchNorm1d(2)  # a weight, and running statistics as buffers
    averaged = torch.optim.swa_utils.AveragedModel(network, use_buffers=True)
    engine = Engine(lambda engine, batch: None)
    WeightAveraging(averaged, network, start_epoch=2).attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def train(engine):  # epoch e ends with weights e * e and running mean e
        with torch.no_grad():
            network.weight.fill_(engine.state.epoch ** 2)
            network.running_mean.fill_(engine.state.epoch)

    @engine.on(Events.EPOCH_COMPLETED)
    def validate(engine):  # attached after the averaging, as the validation handler is
        seen.append((averaged.module.weight[0].item(), averaged.module.running_mean[0].item()))

    seen = []
    engine.run([0], max_epochs=3)
    assert seen == [(1, 1), (4, 2), (6.5, 2.5)]  # epoch 1 the network's own weights, then the average
    assert averaged.n_averaged.item() == 2  # epochs 2 and 3
    torch.testing.assert_close(averaged.module.weight, torch.full((2,), (4 + 9) / 2))
    torch.testing.assert_close(averaged.module.running_mean, torch.full((2,), (2 + 3) / 2))
    with pytest.raises(InputError, match="start_epoch must be an integer >= 1, got 0"):
        WeightAveraging(averaged, network, start_epoch=0)

    wrapped = torch.nn.DataParallel(network)  # as multi_gpu_train.json wraps it (DDP); the average's copy is too
    averaged = torch.optim.swa_utils.AveragedModel(wrapped, use_buffers=True)
    WeightAveraging(averaged, wrapped, start_epoch=2).attach(engine := Engine(lambda engine, batch: None))
    engine.run([0], max_epochs=1)  # epoch 1 follows the network
    torch.testing.assert_close(averaged.module.module.weight, network.weight)


def test_the_localiser_boxes_variant_trains_around_the_boxes_of_the_datalists_copy(tmp_path, datalist):
    from monai.bundle import ConfigParser

    content = json.loads(datalist.read_text())
    for items in (content[split] for split in ("training", "validation", "test")):
        for item in items:  # absolute paths, so that both copies can lie in tmp_path
            item.update({key: str(datalist.parent / item[key]) for key in ("image", "mask")})
    (tmp_path / "list.json").write_text(json.dumps(content))
    boxed = {**content, "training": [{**item, "bbox": [1, 9, 2 + i % 5, 12]}
                                     for i, item in enumerate(content["training"])]}
    (tmp_path / "list_localiser_boxes.json").write_text(json.dumps(boxed))
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE), "datalist": str(tmp_path / "list.json"),
                   **benchmark("recipes").VARIANTS["localiser_boxes"]})
    assert [item["bbox"] for item in parser.get_parsed_content("train#dataset#data")] == \
        [item["bbox"] for item in boxed["training"]]
    validated = parser.get_parsed_content("validate#dataset#data")
    assert [item["image"] for item in validated] == [item["image"] for item in content["validation"]]
    assert not any("bbox" in item for item in validated)  # the datasets' own: here, the boxes of the masks


def test_the_intensity_variant_is_the_default_recipes_augmentation():
    bundle_train = json.loads((BUNDLE / "configs" / "train.json").read_text())["train"]
    assert bundle_train["random_transforms"] == "$@train#spatial_transforms + @train#intensity_transforms"
    measured = benchmark("recipes").VARIANTS["intensity"]["train#random_transforms"]
    assert measured == bundle_train["spatial_transforms"] + bundle_train["intensity_transforms"]
    assert bundle_train["intensity_transforms"] != runner.STUDY_INTENSITY_TRANSFORMS


def test_the_mask_loss_variant_trains_with_the_lesion_masks(tmp_path, datalist, monkeypatch):
    from monai_bus.handlers import AttentionMaskLoss

    calls = []
    add_to_the_loss = AttentionMaskLoss.__call__
    monkeypatch.setattr(AttentionMaskLoss, "__call__", lambda self, engine: (calls.append(engine.state.iteration),
                                                                           add_to_the_loss(self, engine)))
    models = _train_variant("mask_loss", datalist, tmp_path / "results")
    assert len(calls) == 3  # every iteration of the epoch: 24 training images in batches of 8
    train = json.loads((models.parent / "configs" / "train.json").read_text())
    assert train["mask_loss_weight"] == 0.5
    assert (models / "model.pt").is_file()


def test_a_test_split_without_both_classes_is_refused_before_training(datalist, tmp_path):
    """Every run's sensitivity or specificity read '0.000 (0.000 to 0.000)', as if measured."""
    content = json.loads(datalist.read_text())
    content["test"] = [item for item in content["test"] if item["label"] == 0]
    benign_test = datalist.with_name("benign_test.json")
    benign_test.write_text(json.dumps(content))
    with pytest.raises(StudyError, match=r"benign_test.json: the 'test' list holds no malignant image; the study's "
                                         "metrics need both classes.$"):
        runner.run_study(benign_test, tmp_path / "out", seeds=1, max_epochs=1, configurations=STUDIED, bundle=BUNDLE,
                         overrides=TINY)
    assert not (tmp_path / "out").exists()
