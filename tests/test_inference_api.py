"""The inference API and the ``monai-bus infer`` / ``demo`` commands, on the session's trained bundle."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CONFIGS, REPO, TINY, copy_bundle, with_operating_point
from monai_bus.calibration import scale
from monai_bus.cli import main
from monai_bus.data.loading import load_split
from monai_bus.familiarity import LAYERS, FeatureStatistics, save_statistics
from monai_bus.inference import BundleClassifier, BundleError
from monai_bus.networks import VGG16Classifier
from monai_bus.prediction_files import read_labelled_predictions, read_rows
from monai_bus.uncertainty import refer_cutoff
from monai_bus.weights import ship

LINE = re.compile(r"^\| (\w+) \| ([-\d.]+|nan) \|$", re.MULTILINE)  # a metric's row of a printed table


@pytest.fixture(scope="module")
def classifier(trained_bundle):
    return BundleClassifier(trained_bundle, device="cpu")


@pytest.fixture(scope="module")
def test_image(tiny_data):
    return load_split(str(tiny_data / "datalist.json"), "test")[0]["image"]


def test_prediction(classifier, test_image):
    result = classifier.predict(test_image)
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert result.class_index == int(np.argmax(result.probabilities))  # no operating_point: argmax
    assert result.class_name == ("benign", "malignant")[result.class_index]
    assert result.malignancy_probability == result.probabilities[1]
    assert result.model_version.startswith(json.loads((CONFIGS / "metadata.json").read_text())["version"] + "+trained.")
    assert result.attention.shape == (96, 96)  # the input image's own size
    assert 0.0 <= result.attention.min() <= result.attention.max() <= 1.0


def test_array_and_file_give_the_same_result(classifier, test_image):
    from_file = classifier.predict(test_image)
    array = np.asarray(Image.open(test_image))
    from_array = classifier.predict(np.dstack([array] * 3))  # an RGB array of the same grey image
    np.testing.assert_allclose(from_array.probabilities, from_file.probabilities, atol=1e-3)


class InputAsAttention(torch.nn.Module):
    """Stands in for the network: its attention map is its input, rescaled to [0, 1] (a trained network's map
    depends on the image's orientation too, and this tiny one's is nearly flat: neither would show a map
    returned the wrong way round)."""

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_attention_map(x)[1]

    def logits_and_attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        return x.new_zeros(len(x), 2), (x - low) / (high - low)


def test_attention_follows_image_orientation(trained_bundle, test_image):
    """A transposed image must give the transposed attention map, each in the image's own pixels."""
    classifier = BundleClassifier(trained_bundle, device="cpu")
    classifier.network = InputAsAttention()
    array = np.asarray(Image.open(test_image))[:, :64]  # non-square: 96 rows x 64 columns
    upright, transposed = classifier.predict(array).attention, classifier.predict(array.T.copy()).attention
    assert upright.shape == (96, 64) and transposed.shape == (64, 96)
    np.testing.assert_allclose(transposed, upright.T, atol=1e-3)
    assert np.corrcoef(upright.ravel(), array.ravel())[0, 1] > 0.9  # the image's own map, where it was


def test_operating_point_from_metadata(trained_bundle, test_image, tmp_path):
    """metadata.json's operating_point threshold decides the class and the likelihood category, its
    temperature scales the log-odds; a bad one is refused."""
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    p_malignant = BundleClassifier(bundle, device="cpu").predict(test_image).malignancy_probability
    for threshold, expected in ((p_malignant, "malignant"), (min(p_malignant + 1e-4, 1.0), "benign")):
        meta["operating_point"] = {"threshold": threshold, "description": "test"}
        meta_file.write_text(json.dumps(meta))
        prediction = BundleClassifier(bundle, device="cpu").predict(test_image)
        assert prediction.class_name == expected
        assert (prediction.likelihood in ("suspicious", "malignant")) == (expected == "malignant")
    meta["operating_point"]["temperature"] = 2.0
    meta_file.write_text(json.dumps(meta))
    scaled = BundleClassifier(bundle, device="cpu").predict(test_image).malignancy_probability
    assert scaled == pytest.approx(float(scale([p_malignant], 2.0)[0]), abs=1e-5)
    for key, value in (("threshold", 1.5), ("threshold", 0.0), ("temperature", 0.0), ("temperature", float("inf"))):
        # threshold 1.0 stays: calibrate writes it when temperature scaling saturates the validation probabilities
        meta["operating_point"] = {"threshold": 0.5, "temperature": 1.0, key: value}
        meta_file.write_text(json.dumps(meta))
        with pytest.raises(BundleError, match="metadata.json: needs two classes, an operating_point threshold"):
            BundleClassifier(bundle, device="cpu")
    for point in ({"temperature": 1.0, "refer_above": 0.1}, {"threshold": None}):  # not the argmax silently
        meta["operating_point"] = point
        meta_file.write_text(json.dumps(meta))
        with pytest.raises(BundleError, match="metadata.json: operating_point has no threshold; run monai-bus "
                                              "calibrate"):
            BundleClassifier(bundle, device="cpu")


def test_bad_image_names_the_file(classifier, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        classifier.predict(tmp_path / "broken.png")


def test_missing_model_file(tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    with pytest.raises(BundleError, match="model.pt: model file not found"):
        BundleClassifier(bundle)


def test_incompatible_checkpoint(tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    (bundle / "models").mkdir()
    torch.save(VGG16Classifier(batch_norm=False, width=TINY["width"]).state_dict(), bundle / "models" / "model.pt")
    with pytest.raises(BundleError, match="does not match the bundle's network_def") as raised:
        BundleClassifier(bundle)
    assert "\n" not in str(raised.value)  # torch's list of the keys, on one line


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="inference.json: not found"):
        BundleClassifier(tmp_path)


@pytest.mark.parametrize("name, content, problem", [
    ("metadata.json", '{"version": "0.7.0", ', r"metadata.json: not readable JSON \(Expecting property name"),
    ("inference.json", "[]", "inference.json: holds a JSON list, not an object of ids"),
    ("metadata.json", {"operating_point": {"threshold": "abc"}},
     "metadata.json: operating_point must map threshold, temperature and refer_above to numbers"),
    ("metadata.json", {"operating_point": {"threshold": True}},  # was read as a threshold of 1.0
     r"metadata.json: operating_point must map .* to numbers, got \{'threshold': True\}"),
    ("metadata.json", {"operating_point": [0.3]}, r"metadata.json: operating_point must be an object, got \[0.3\]"),
    ("metadata.json", {"model_settings": None}, "metadata.json: model_settings must be an object of settings"),
])
def test_broken_bundle_files_are_named_in_one_line(tmp_path, name, content, problem):
    bundle = copy_bundle(tmp_path / "bundle")
    path = bundle / "configs" / name
    if isinstance(content, dict):
        content = json.dumps({**json.loads(path.read_text()), **content})
    path.write_text(content)
    with pytest.raises(BundleError, match=f"^{bundle}/configs/{problem}") as raised:
        BundleClassifier(bundle, device="cpu")
    assert "\n" not in str(raised.value)


def test_a_cuda_device_that_is_not_there_is_named(tmp_path):
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(BundleError, match=f"^device '{missing}': torch finds {torch.cuda.device_count()} CUDA"):
        BundleClassifier(copy_bundle(tmp_path / "bundle"), device=missing)


def test_infer_command(trained_bundle, test_image, tmp_path, capsys):
    assert main(["infer", "--bundle", str(trained_bundle), "--device", "cpu", test_image]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["image"] == test_image and line["class_name"] in ("benign", "malignant")
    assert main(["infer", "--bundle", str(trained_bundle), str(tmp_path / "missing.png"), test_image]) == 1
    output = capsys.readouterr()
    missing, classified = (json.loads(line) for line in output.out.splitlines())
    assert "missing.png: image file not found" in missing["error"] and classified["image"] == test_image
    assert output.err == f"monai-bus infer: error: {missing['error']}\n"  # seen when stdout goes to a file
    assert main(["infer", "--bundle", str(tmp_path), test_image]) == 2
    assert "inference.json: not found" in capsys.readouterr().err


def test_demo_command(tmp_path, tiny_data, capsys):
    """The README's main job, shortened: train, evaluate and print the table."""
    source, bundle = copy_bundle(tmp_path / "source"), tmp_path / "demo"
    shutil.copytree(tiny_data, bundle / "demo_data")  # stands in for the 300-image demo set
    train, meta = (json.loads((source / "configs" / name).read_text()) for name in ("train.json", "metadata.json"))
    train["num_workers"], meta["model_settings"]["image_size"] = 0, 64
    for name, config in (("train.json", train), ("metadata.json", meta)):
        (source / "configs" / name).write_text(json.dumps(config))
    (source / "models").mkdir()
    (source / "models" / "model.pt").write_bytes(b"the bundle's own weights")
    for _ in range(2):  # again: trained afresh, not refused as another run's checkpoint
        assert main(["demo", "--bundle", str(source), "--out", str(bundle), "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC demo data" in out and "| val_auc |" in out and "| mcc |" in out
    assert (bundle / "models" / "model.pt").is_file()
    assert (source / "models" / "model.pt").read_bytes() == b"the bundle's own weights"  # untouched
    # the per-image predictions reproduce the evaluator's table; the AUC up to the pairs of a cancer and a benign
    # image whose P(malignant) the file's 6 decimals can tie or order otherwise (this 1-epoch model's P differ by
    # little; the evaluator's are unrounded)
    predictions = bundle / "eval" / "test_predictions.csv"
    assert main(["metrics", str(predictions)]) == 0
    recomputed = dict(LINE.findall(capsys.readouterr().out))
    table = dict(LINE.findall(out.split("| metric | value |")[1].split("Per-image")[0]))
    assert set(table) - {"val_auc"} == set(recomputed) - {"auc"} and len(table) == 7
    labels, probabilities, _ = read_labelled_predictions(predictions)
    cancers, benign = (probabilities[np.array(labels) == label, 1] for label in (1, 0))
    close_pairs = (np.abs(cancers[:, None] - benign[None, :]) <= 2e-6).sum()  # rounding moves a pair by <= 1e-6
    tolerance = close_pairs / (len(cancers) * len(benign)) + 0.001 + 1e-9  # and each table rounding to 3 decimals
    assert abs(float(table.pop("val_auc")) - float(recomputed.pop("auc"))) <= tolerance
    assert table == recomputed


@pytest.mark.parametrize("box", [None, (10, 60, 20, 70)])
def test_one_forward_pass_per_image(trained_bundle, test_image, box):
    """Logits and attention map come from one pass through VGG16 (a batch of 2: the image and its mirror,
    with the bundle's flip_tta), with the uncertainty's test-time views in the same batch: of 2 (the image
    and its mirror, each on its own) for a whole image, of 6 around a box. The answer is the same either way."""
    results = {}
    for uncertainty, batches in ((False, [2]), (True, [2 if box is None else 6])):
        classifier = BundleClassifier(trained_bundle, device="cpu", uncertainty=uncertainty)
        calls = []
        classifier.network.features[0].register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
        results[uncertainty] = classifier.predict(test_image, box=box)
        assert calls == batches and results[uncertainty].attention is not None
        assert (results[uncertainty].uncertainty is not None) == uncertainty
    assert results[True].probabilities == pytest.approx(results[False].probabilities, abs=1e-5)
    np.testing.assert_allclose(results[True].attention, results[False].attention, atol=1e-5)


def test_every_prediction_names_its_weights(trained_bundle, test_image, tmp_path):
    """Trained weights carry their record (checksum, own version, data); weights shipped in metadata.json
    carry the bundle's version; unknown weights are never passed off as the release."""
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    weights = bundle / "models" / "model.pt"
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    checksum = hashlib.sha256(weights.read_bytes()).hexdigest()

    trained = BundleClassifier(bundle, device="cpu").predict(test_image)
    assert trained.weights_file == str(weights) and trained.weights_sha256 == checksum
    assert trained.model_version.startswith(meta["version"] + "+trained.")
    assert trained.trained_on.endswith("datalist.json: 30 training images (15 malignant), 6 validation images")

    (bundle / "models" / "model.json").unlink()
    unknown = BundleClassifier(bundle, device="cpu").predict(test_image)
    assert unknown.model_version == meta["version"] + "+unrecorded" and unknown.trained_on.startswith("unknown")

    meta["weights"] = {"models/model.pt": {"sha256": checksum, "trained_on": "the shipped data"}}
    meta_file.write_text(json.dumps(meta))
    shipped = BundleClassifier(bundle, device="cpu").predict(test_image)
    assert (shipped.model_version, shipped.trained_on) == (meta["version"], "the shipped data")
    assert shipped.to_dict()["weights_sha256"] == checksum

    torch.save({k: v + 1 for k, v in torch.load(weights).items()}, weights)  # other weights, same path
    assert BundleClassifier(bundle, device="cpu").version == meta["version"] + "+unrecorded"

    (bundle / "models" / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model.json: not a readable weights record"):
        BundleClassifier(bundle, device="cpu")


def test_shipped_weights_are_half_precision_recorded_and_classify_as_trained(trained_bundle, test_image, tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    trained = trained_bundle / "models" / "model.pt"
    record = json.loads((trained_bundle / "models" / "model.json").read_text())
    entry = ship(trained, bundle)
    shipped = bundle / "models" / "model.pt"
    state = torch.load(shipped, weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    assert entry == {"sha256": hashlib.sha256(shipped.read_bytes()).hexdigest(), "trained_on": record["trained_on"],
                     "trained_as": record["version"]}
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["weights"] == {"models/model.pt": entry}
    half = BundleClassifier(bundle, device="cpu").predict(test_image)
    full = BundleClassifier(trained_bundle, device="cpu").predict(test_image)
    assert (half.model_version, half.trained_on) == (meta["version"], record["trained_on"])
    assert half.malignancy_probability == pytest.approx(full.malignancy_probability, abs=2e-3)

    unrecorded = shutil.copy(trained, tmp_path / "model.pt")  # no model.json beside it
    with pytest.raises(ValueError, match=r"model.pt: no matching record model.json beside it"):
        ship(unrecorded, bundle)


def benign_only(tiny_data, path, benign_split):
    """``tiny_data``'s datalist, with absolute paths, whose ``benign_split`` keeps its benign images alone."""
    datalist = json.loads((tiny_data / "datalist.json").read_text())
    path.write_text(json.dumps({
        split: [{**item, **{key: str(tiny_data / item[key]) for key in ("image", "mask") if key in item}}
                for item in items if split != benign_split or item["label"] == 0]
        for split, items in datalist.items() if split in ("training", "validation", "test")}))
    return path


def test_calibrate_refuses_what_it_cannot_fit_before_predicting(tiny_data, tmp_path, capsys):
    """Checked before the bundle is read (this one has no weights) and before any image is predicted."""
    base = ["calibrate", "--bundle", str(copy_bundle(tmp_path / "bundle")), "--out", str(tmp_path / "report")]
    assert main([*base, "--datalist", str(tiny_data / "datalist.json"), "--target-sensitivity", "2"]) == 2
    assert "error: --target-sensitivity must be in (0, 1], got 2.0" in capsys.readouterr().err
    benign_validation = benign_only(tiny_data, tmp_path / "benign_validation.json", "validation")
    assert main([*base, "--datalist", str(benign_validation)]) == 2
    assert (f"error: {benign_validation}: the validation split has no malignant image; fitting the operating point "
            "needs both classes.") in capsys.readouterr().err
    benign_training = benign_only(tiny_data, tmp_path / "benign_training.json", "training")
    assert main([*base, "--datalist", str(benign_training)]) == 2  # was a traceback after every prediction
    assert (f"error: {benign_training}: the training split has no malignant image; fitting the feature statistics "
            "needs both classes.") in capsys.readouterr().err


def test_calibrate_replaces_an_operating_point_the_api_refuses(trained_bundle, tiny_data, tmp_path):
    """Bundle 0.8's single cut-off (and stale statistics) make the API refuse the bundle and ask for calibrate."""
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    with_operating_point(bundle, unfamiliar_above=35.6, feature_statistics_sha256="0" * 64)
    with pytest.raises(BundleError, match="run monai-bus calibrate.$"):
        BundleClassifier(bundle, device="cpu")
    assert main(["calibrate", "--bundle", str(bundle), "--datalist", str(tiny_data / "datalist.json"),
                 "--out", str(tmp_path / "report"), "--device", "cpu"]) == 0
    assert set(BundleClassifier(bundle, device="cpu").unfamiliar_above) == set(LAYERS)


def test_calibrate_refuses_a_threshold_of_zero_and_writes_no_operating_point(trained_bundle, tiny_data, tmp_path,
                                                                             monkeypatch, capsys):
    """A threshold that rounds down to 0 would call every image malignant, and the API refuses it: calibrate says so."""
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    meta_before = (bundle / "configs" / "metadata.json").read_text()
    monkeypatch.setattr("monai_bus.calibration.threshold_for_sensitivity", lambda *args: 9.9e-7)
    datalist = tiny_data / "datalist.json"
    assert main(["calibrate", "--bundle", str(bundle), "--datalist", str(datalist), "--out", str(tmp_path / "report"),
                 "--device", "cpu"]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: {bundle}: the threshold reaching the target sensitivity on {datalist}'s validation split, 9.9e-07, "
        "rounds down to 0; check the bundle's weights.\n")
    assert (bundle / "configs" / "metadata.json").read_text() == meta_before and not (tmp_path / "report").exists()


def test_calibrate_fits_on_validation_and_the_api_applies_it(trained_bundle, tiny_data, tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    image = load_split(str(tiny_data / "datalist.json"), "validation")[0]  # around its lesion, as in training
    raw = BundleClassifier(bundle, device="cpu").predict_item(image).malignancy_probability
    assert main(["calibrate", "--bundle", str(bundle), "--datalist", str(tiny_data / "datalist.json"),
                 "--out", str(tmp_path / "report"), "--device", "cpu"]) == 0
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    point, report = meta["operating_point"], json.loads((tmp_path / "report" / "calibration.json").read_text())
    assert report["validation_images"] == 6
    # the threshold rounded down to 6 decimals, like the prediction files; the others as fitted
    assert [point[key] for key in ("threshold", "temperature", "refer_above")] == [
        report[key] for key in ("threshold", "temperature", "refer_above")] and round(point["threshold"], 6) == point[
        "threshold"]
    assert point["weights_sha256"] == hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    validation = read_labelled_predictions(tmp_path / "report" / "validation_predictions.csv")[:2]
    sensitivity = np.mean([p >= point["threshold"] for label, (_, p) in zip(*validation) if label == 1])
    assert sensitivity >= 0.9 and (tmp_path / "report" / "reliability.png").stat().st_size > 0
    rows = [row for _, row in read_rows(tmp_path / "report" / "validation_predictions.csv", ("uncertainty", "refer"))]
    uncertainties = [float(row["uncertainty"]) for row in rows]
    assert point["refer_above"] == pytest.approx(refer_cutoff(uncertainties), abs=1e-6)
    decided = [(int(row["refer"]), int(u > report["refer_above"])) for row, u in zip(rows, uncertainties)
               if abs(u - report["refer_above"]) > 5e-7]  # the file rounds to 6 decimals: skip the ones it cannot tell
    assert decided and all(written == expected for written, expected in decided)
    tested = [row for _, row in read_rows(tmp_path / "report" / "test_predictions.csv",
                                          ("label", "predicted", "refer"))]
    assert report["test"]["referred"] == sum(int(row["refer"]) for row in tested)
    assert report["test"]["errors_referred"] == sum(int(row["refer"]) and row["label"] != row["predicted"]
                                                    for row in tested)
    columns = tuple(f"feature_distance_{layer}" for layer in LAYERS)
    validated = [row for _, row in read_rows(tmp_path / "report" / "validation_predictions.csv", columns)]
    for layer, column in zip(LAYERS, columns):  # each layer's cut-off lies beyond its farthest validation image
        assert point["unfamiliar_above"][layer] == pytest.approx(1.1 * max(float(row[column]) for row in validated),
                                                                 abs=1e-3)
    assert report["training_images"] == 30 and set(report["training_beyond_cutoff"]) == set(LAYERS)
    assert all(0 <= count <= 30 for count in report["training_beyond_cutoff"].values())
    statistics_file = bundle / "models" / "feature_statistics.npz"
    assert point["feature_statistics_sha256"] == hashlib.sha256(statistics_file.read_bytes()).hexdigest()

    classifier = BundleClassifier(bundle, device="cpu")
    calibrated = classifier.predict_item(image)
    assert calibrated.malignancy_probability == pytest.approx(float(scale([raw], point["temperature"])[0]), abs=1e-5)
    assert calibrated.class_index == int(calibrated.malignancy_probability >= point["threshold"])
    assert all(calibrated.feature_distance[layer] <= point["unfamiliar_above"][layer] for layer in LAYERS)
    noise = np.random.default_rng(0).integers(0, 256, (96, 96)).astype(np.uint8)  # no ultrasound image: no class
    unfamiliar = classifier.predict(noise)
    beyond = [layer for layer in LAYERS if unfamiliar.feature_distance[layer] > point["unfamiliar_above"][layer]]
    assert beyond and unfamiliar.class_name is None
    assert unfamiliar.probabilities is None and unfamiliar.refer and unfamiliar.attention is None
    assert unfamiliar.unclassified_reason == "unlike the training images" and calibrated.unclassified_reason is None
    distance = unfamiliar.feature_distance[beyond[0]]
    assert unfamiliar.note.startswith(f"unlike the training images ({beyond[0]} feature distance {distance:.1f}, above")
    statistics_file.write_bytes(statistics_file.read_bytes() + b"changed")
    with pytest.raises(BundleError, match="feature_statistics.npz: not the feature statistics that metadata.json's"):
        BundleClassifier(bundle, device="cpu")
    features = {"pool3": 4 * TINY["width"], "pool5": 8 * TINY["width"]}  # of a network twice as wide, recorded
    save_statistics(statistics_file, {layer: FeatureStatistics(np.zeros((2, 2 * f)), np.eye(2 * f))  # as its own
                                      for layer, f in features.items()})
    point["feature_statistics_sha256"] = hashlib.sha256(statistics_file.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=rf"feature_statistics.npz: pool3 statistics of {2 * features['pool3']} "
                                          rf"features, but the network's pool3 gives {features['pool3']} \(another"):
        BundleClassifier(bundle, device="cpu")
    save_statistics(statistics_file, {"pool5": FeatureStatistics(np.zeros((2, 8)), np.eye(8))})  # a layer missing
    point["feature_statistics_sha256"] = hashlib.sha256(statistics_file.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"feature_statistics.npz: not readable feature statistics of pool3 and "
                                          r"pool5 \(.*pool3_means.*\); run monai-bus calibrate.$"):
        BundleClassifier(bundle, device="cpu")

    point["weights_sha256"] = "0" * 64  # fitted for other weights: not applied, and said so
    meta_file.write_text(json.dumps(meta))
    stale = BundleClassifier(bundle, device="cpu").predict_item(image)
    assert stale.malignancy_probability == pytest.approx(raw, abs=1e-6) and "fitted for other weights" in stale.note


def test_threads_sharing_a_classifier_each_get_their_own_images_answer():
    """The shipped bundle's features (pool3, pool5) come from hooks on the network: two images classified at once
    must not swap them. A hook that waits after pool5 opens the window for the other thread's pass."""
    classifier = BundleClassifier(REPO / "bundle", device="cpu")
    samples = REPO / "monai_bus" / "samples"
    inputs = [(samples / sample["image"], tuple(sample["box"]))
              for sample in json.loads((samples / "samples.json").read_text())["samples"][:2]]
    alone = [classifier.predict(image, box) for image, box in inputs]
    classifier.network.features[-1].register_forward_hook(lambda *args: time.sleep(0.2))
    together = [None, None]

    def classify(index):
        together[index] = classifier.predict(*inputs[index])

    threads = [threading.Thread(target=classify, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for one, other in zip(alone, together):
        assert other.feature_distance == pytest.approx(one.feature_distance, abs=1e-6)
        assert other.malignancy_probability == pytest.approx(one.malignancy_probability, abs=1e-6)


def test_the_localiser_given_as_the_classifier_says_so():
    """It read "incompatible bundle (KeyError: ...flags::roi...)" alone."""
    with pytest.raises(BundleError, match=rf"incompatible bundle \(.*\); is {re.escape(str(REPO / 'localiser'))} the "
                                          r"classifier bundle\? \(the localiser bundle is given as the localiser\)$"):
        BundleClassifier(REPO / "localiser", device="cpu")
