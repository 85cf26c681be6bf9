"""The lesion localiser: its bundle (``localiser/``) checked as the model zoo checks bundles, and the
``LesionLocaliser`` API, on tiny synthetic data (64 px, small channels, 2 epochs)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out
from monai.data import MetaTensor
from monai.transforms import KeepLargestConnectedComponent
from packaging.version import Version
from PIL import Image
from scipy import ndimage

from conftest import REPO, benchmark, torchrun_failure, trained_copy, unfamiliar_to_every_image, with_operating_point
from monai_bus.cli import main
from monai_bus.commands.demo import read_metrics
from monai_bus.data.boxes import MIN_BOX_SIDE, box_from_masks, box_iou, mask_union
from monai_bus.data.loading import load_split
from monai_bus.data.masks import LESION_COMPONENTS, LesionComponentd, LoadLesionMaskd, localiser_transforms
from monai_bus.data.transforms import LoadUltrasoundImaged
from monai_bus.errors import find_monai_bus_error
from monai_bus.inference import BundleClassifier, BundleError
from monai_bus.inferers import FlipAveragingInferer
from monai_bus.metrics import roc_auc
from monai_bus.localiser import LesionLocaliser
from monai_bus.prediction_files import read_rows, write_rows
from monai_bus.weights import sha256

LOCALISER = REPO / "localiser"
CONFIGS = LOCALISER / "configs"
META = json.loads((CONFIGS / "metadata.json").read_text())
# Small enough to train in seconds on 2 CPU cores; written into the copies' model_settings, so that
# training, evaluation, inference and the API all build the same network.
TINY_SETTINGS = {"image_size": 64, "channels": [8, 16, 32], "num_res_units": 1}
TINY_RUN = {"batch_size": 8, "num_workers": 0}
# PYTHONFAULTHANDLER: a process that crashes prints every thread's Python stack
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONFAULTHANDLER": "1"}


def copy_localiser(destination, **settings):
    """A copy of the localiser bundle (configs, docs, LICENSE) with tiny model settings, without the shipped
    weights' operating point."""
    shutil.copytree(LOCALISER, destination, ignore=shutil.ignore_patterns("models", "eval", "demo_data"))
    meta_file = destination / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata.pop("operating_point", None)
    metadata["model_settings"].update(TINY_SETTINGS, **settings)
    meta_file.write_text(json.dumps(metadata, indent=4))
    return destination


def workflow(bundle, data, config_names, workflow_type, **extra) -> ConfigWorkflow:
    configs = bundle / "configs"
    return ConfigWorkflow(config_file=[str(configs / name) for name in config_names],
                          meta_file=str(configs / "metadata.json"), logging_file=str(configs / "logging.conf"),
                          workflow_type=workflow_type, bundle_root=str(bundle), dataset_dir=str(data),
                          **TINY_RUN, **extra)


def run_to_end(flow: ConfigWorkflow) -> None:
    flow.initialize()
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()


def with_check_below(bundle, check_below, weights_sha256=None):
    """The localiser bundle with an operating point: ``check_below``, fitted for its weights unless another
    ``weights_sha256`` is given."""
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["operating_point"] = {"check_below": check_below,
                                   "weights_sha256": weights_sha256 or sha256(bundle / "models" / "model.pt")}
    meta_file.write_text(json.dumps(metadata, indent=4))
    return bundle


def save_weights(bundle, change) -> None:
    """Write ``models/model.pt``: the bundle's network with its weights changed by ``change(state)``."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    state = parser.get_parsed_content("network_def").state_dict()
    change(state)
    (bundle / "models").mkdir()
    torch.save(state, bundle / "models" / "model.pt")


@pytest.fixture(scope="module")
def trained_localiser(tmp_path_factory, tiny_data):
    """A localiser copy trained for 2 epochs on ``tiny_data`` through ``ConfigWorkflow``."""
    bundle = copy_localiser(tmp_path_factory.mktemp("localiser") / "localiser")
    run_to_end(workflow(bundle, tiny_data, ["train.json"], "train", max_epochs=2))
    return bundle


@pytest.fixture(scope="module")
def held_out_images(tiny_data):
    return [item["image"] for item in load_split(str(tiny_data / "datalist.json"), "test")]


# -- the bundle, as the model zoo checks it -----------------------------------------------------------------------

def test_bundle_files_and_metadata():
    for name in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "logging.conf"):
        assert (CONFIGS / name).is_file(), name
    assert (LOCALISER / "LICENSE").read_text() == (REPO / "bundle" / "LICENSE").read_text()
    headings = [line for line in (LOCALISER / "docs" / "README.md").read_text().splitlines() if line.startswith("#")]
    for heading in ("# Model Overview", "## Data", "## Training configuration", "### Input", "### Output",
                    "## Performance", "## MONAI Bundle Commands", "# References", "# License"):
        assert heading in headings, heading
    assert META["schema"].endswith("/meta_schema_20240725.json")
    assert META["task"] == "Breast ultrasound lesion segmentation"
    assert META["version"] in META["changelog"]
    assert list(META["changelog"]) == sorted(META["changelog"], key=Version, reverse=True)
    image, pred = META["network_data_format"]["inputs"]["image"], META["network_data_format"]["outputs"]["pred"]
    assert image["num_channels"] == 1 and image["channel_def"] == {"0": "image"}
    assert pred["num_channels"] == 2 and pred["channel_def"] == {"0": "background", "1": "lesion"}
    assert META["model_settings"] == {"image_size": 128, "channels": [16, 32, 64, 128, 256], "num_res_units": 2,
                                      "flip_tta": False, "lesion_component": "most_probable"}
    assert set(META["weights"]) == {"models/model.pt"} and "ships weights" in META["description"]


@pytest.mark.parametrize("n", [1, 4])
def test_verify_net_in_out(n):
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), device="cpu", n=n, bundle_root=str(LOCALISER))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        assert network(torch.rand(2, 1, 16 * n, 16 * n)).shape == (2, 2, 16 * n, 16 * n)  # a mask of the input's size


def test_ckpt_export_matches_eager(tmp_path):
    bundle = copy_localiser(tmp_path / "localiser")
    save_weights(bundle, lambda state: None)
    configs = bundle / "configs"
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(bundle / "models/model.pt"),
                meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"),
                bundle_root=str(bundle))
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    parser.read_meta(str(configs / "metadata.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models/model.pt", weights_only=True))
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "model.ts"))(x), network.eval()(x))


@pytest.mark.parametrize("config_names, workflow_type", [
    (["train.json"], "train"),
    (["train.json", "evaluate.json"], "eval"),
    (["inference.json"], "infer"),
])
def test_check_properties(tmp_path, tiny_data, config_names, workflow_type):
    flow = workflow(copy_localiser(tmp_path / "localiser"), tiny_data, config_names, workflow_type)
    flow.initialize()
    assert flow.check_properties() == []


def test_training_outputs(trained_localiser):
    models = trained_localiser / "models"
    state = torch.load(models / "checkpoint_last.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "best_model", "trainer", "trainer_best_metric",
                          "fingerprint", "random"}
    assert state["trainer"]["iteration"] == 2 * state["trainer"]["epoch_length"]
    assert 0.0 <= state["best_model"]["best_score"] <= 1.0
    record = json.loads((models / "model.json").read_text())
    assert record["version"].startswith(META["version"] + "+trained.") and "val_mean_dice" in record


def test_evaluation_writes_the_test_dice(trained_localiser, tiny_data, tmp_path):
    bundle = shutil.copytree(trained_localiser, tmp_path / "localiser")
    run_to_end(workflow(bundle, tiny_data, ["train.json", "evaluate.json"], "eval"))
    metrics = read_metrics(bundle / "eval" / "metrics.csv")
    assert set(metrics) == {"val_mean_dice"} and 0.0 <= metrics["val_mean_dice"] <= 1.0


@pytest.mark.parametrize("flip_tta", [False, True])
def test_inference_from_the_bundle_folder_agrees_with_the_api(trained_localiser, tiny_data, held_out_images, tmp_path,
                                                              flip_tta):
    """The zoo's usage, ``python -m monai.bundle run --config_file configs/inference.json`` in the bundle's
    folder, writes one mask PNG per test image at the image's size: the API's mask, before its minimum size;
    with ``flip_tta`` both average each image with its mirror image."""
    bundle = shutil.copytree(trained_localiser, tmp_path / "localiser")
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["model_settings"]["flip_tta"] = flip_tta
    meta_file.write_text(json.dumps(metadata, indent=4))
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                             "--dataset_dir", str(tiny_data)], cwd=bundle, capture_output=True, text=True,
                            timeout=600, env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    localiser = LesionLocaliser(bundle, device="cpu")
    assert isinstance(localiser.inferer, FlipAveragingInferer) == flip_tta
    for image in held_out_images:
        written = np.asarray(Image.open(bundle / "eval" / os.path.basename(image).replace(".png", "_mask.png")))
        assert written.shape == (96, 96) and set(np.unique(written)) <= {0, 255}
        found = localiser.locate(image)
        if found.found:
            np.testing.assert_array_equal(found.mask, written > 0)
        else:  # nothing, or a component whose box is below the minimum side
            rows, columns = np.flatnonzero(written.any(axis=1)), np.flatnonzero(written.any(axis=0))
            assert rows.size == 0 or min(np.ptp(rows), np.ptp(columns)) + 1 < MIN_BOX_SIDE


@pytest.mark.parametrize("flip_tta", [False, True])
def test_validation_and_evaluation_average_with_the_mirror_image_with_flip_tta(tmp_path, flip_tta):
    bundle = copy_localiser(tmp_path / "localiser", flip_tta=flip_tta)
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in ("train.json", "evaluate.json")])
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    for inferer in ("validate#inferer", "inferer"):  # train.json's validation, evaluate.json's evaluation
        assert isinstance(parser.get_parsed_content(inferer), FlipAveragingInferer) == flip_tta, inferer


def test_torchrun_two_processes(tmp_path, tiny_data):
    """The multi_gpu_train.json overlay: 2 processes on CPU (gloo), model.pt saved unwrapped from DDP."""
    bundle = copy_localiser(tmp_path / "localiser")
    configs = bundle / "configs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "monai.bundle", "run", "--config_file",
               f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']",
               "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
               "--bundle_root", str(bundle), "--dataset_dir", str(tiny_data), "--batch_size", "4",
               "--num_workers", "0", "--max_epochs", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)
    assert result.returncode == 0, torchrun_failure(result)
    state = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)
    assert state["trainer"]["epoch_length"] == 4  # 30 training images over 2 ranks with batch 4
    assert not any(key.startswith("module.") for key in state["model"])
    assert (bundle / "models" / "model.pt").is_file()


# -- the API ------------------------------------------------------------------------------------------------------

def test_the_trained_localiser_answers_at_the_input_size(trained_localiser, held_out_images):
    localiser = LesionLocaliser(trained_localiser, device="cpu")
    array = np.asarray(Image.open(held_out_images[0]))[:, :70]  # non-square: 96 rows x 70 columns
    for image, shape in ((held_out_images[0], (96, 96)), (array, (96, 70))):
        result = localiser.locate(image)
        assert result.mask.shape == shape and result.mask.dtype == bool
        assert result.lesion_fraction == pytest.approx(result.mask.mean())
        if result.found:
            row_start, row_stop, col_start, col_stop = result.box
            assert 0 <= row_start < row_stop <= shape[0] and 0 <= col_start < col_stop <= shape[1]
    assert localiser.weights["version"].startswith(META["version"] + "+trained.")


class BrightIsLesion(torch.nn.Module):
    """A stand-in network: lesion logit = the normalised intensity, background logit = its negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, H, W] -> [B, 2, H, W]
        return torch.cat([-x, x], dim=1)


def test_the_box_is_the_largest_component_in_the_input_pixels(tmp_path):
    bundle = copy_localiser(tmp_path / "localiser", image_size=64, lesion_component="largest")
    save_weights(bundle, lambda state: None)
    localiser = LesionLocaliser(bundle, device="cpu")
    localiser.network = BrightIsLesion()
    image = np.full((120, 200), 40, np.uint8)
    image[30:70, 100:180] = 220  # the lesion: 40 rows x 80 columns
    image[90:100, 10:20] = 220  # a smaller bright spot, dropped as not the largest component
    result = localiser.locate(image)
    assert result.found and result.mask.shape == (120, 200)
    assert ndimage.label(result.mask, structure=np.ones((3, 3)))[1] == 1
    assert not result.mask[90:100, 10:20].any()
    np.testing.assert_allclose(result.box, (30, 70, 100, 180), atol=3)  # up to the 64 px network's resolution
    rows, columns = np.flatnonzero(result.mask.any(axis=1)), np.flatnonzero(result.mask.any(axis=0))
    assert result.box == (rows[0], rows[-1] + 1, columns[0], columns[-1] + 1)  # half-open, rows first
    transposed = localiser.locate(image.T.copy())
    assert transposed.box == (result.box[2], result.box[3], result.box[0], result.box[1])
    np.testing.assert_array_equal(transposed.mask, result.mask.T)


@pytest.mark.parametrize("component", LESION_COMPONENTS)
def test_the_localiser_keeps_the_settings_component(tmp_path, component):
    """Through the API, at the input's size: ``most_probable`` keeps a smaller but brighter spot (more probable
    lesion for the stand-in network), ``largest`` the larger region."""
    bundle = copy_localiser(tmp_path / "localiser", image_size=64, lesion_component=component)
    save_weights(bundle, lambda state: None)
    localiser = LesionLocaliser(bundle, device="cpu")
    localiser.network = BrightIsLesion()
    image = np.full((120, 200), 40, np.uint8)
    image[30:70, 100:180] = 180  # the larger region
    image[80:100, 10:30] = 255  # a smaller, brighter spot
    found = localiser.locate(image)
    expected = (30, 70, 100, 180) if component == "largest" else (80, 100, 10, 30)
    np.testing.assert_allclose(found.box, expected, atol=3)  # up to the 64 px network's resolution


def two_channels(lesion: np.ndarray) -> torch.Tensor:
    """Softmax-like probabilities [2, H, W] (background, lesion) from a lesion probability map [H, W]."""
    lesion = torch.from_numpy(lesion.astype(np.float32))
    return torch.stack([1 - lesion, lesion])


def test_the_lesion_mask_is_the_argmax_of_the_two_channels():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(2, 50, 70, generator=generator)
    probabilities[1] = probabilities[0] - torch.rand(50, 70, generator=generator)
    probabilities[1, 10:30, 20:50] = probabilities[0, 10:30, 20:50] + 0.5  # one region of lesion pixels
    probabilities[1, :5] = probabilities[0, :5]  # ties are background, as with the argmax
    for component in LESION_COMPONENTS:
        lesion = LesionComponentd("pred", component)({"pred": probabilities})["pred"]
        assert lesion.shape == (1, 50, 70) and lesion.dtype == probabilities.dtype
        torch.testing.assert_close(lesion, torch.argmax(probabilities, dim=0, keepdim=True).to(probabilities.dtype))


def test_the_kept_component_is_the_largest_or_the_most_probable():
    lesion = np.zeros((40, 60))
    lesion[2:20, 2:30] = 0.8  # the largest component
    lesion[25:30, 40:45] = 0.95  # a small one, more probable
    lesion[20, 30] = 0.6  # touches the largest at a corner: 8-connected, so part of it
    lesion[35:37, 2:4] = 0.55  # a tiny one
    kept = {component: LesionComponentd("pred", component)({"pred": two_channels(lesion)})["pred"][0].numpy() > 0
            for component in LESION_COMPONENTS}
    largest = np.zeros_like(kept["largest"])
    largest[2:20, 2:30], largest[20, 30] = True, True
    np.testing.assert_array_equal(kept["largest"], largest)
    np.testing.assert_array_equal(kept["most_probable"], lesion == 0.95)
    in_bf16 = LesionComponentd("pred", "most_probable")({"pred": two_channels(lesion).to(torch.bfloat16)})["pred"]
    assert in_bf16.dtype == torch.bfloat16 and torch.equal(in_bf16[0] > 0, torch.from_numpy(lesion == 0.95))
    lesion[25:30, 40:45] = 0.8  # the peaks tie: the largest of them
    most_probable = LesionComponentd("pred", "most_probable")({"pred": two_channels(lesion)})["pred"]
    np.testing.assert_array_equal(most_probable[0].numpy() > 0, largest)
    tied = np.zeros((20, 20))
    tied[2:5, 10:13], tied[12:15, 2:5] = 0.9, 0.9  # the same peak and area: the first in row-major order
    for component in LESION_COMPONENTS:
        mask = LesionComponentd("pred", component)({"pred": two_channels(tied)})["pred"][0].numpy() > 0
        np.testing.assert_array_equal(mask, tied * (np.arange(20)[:, None] < 10) > 0)


@pytest.mark.parametrize("seed", range(5))
def test_the_largest_component_is_monais(seed):
    """``largest`` keeps what MONAI's ``KeepLargestConnectedComponent`` keeps, on smooth random maps."""
    lesion = ndimage.gaussian_filter(np.random.default_rng(seed).random((80, 90)), 3)
    probabilities = two_channels((lesion - lesion.min()) / np.ptp(lesion))
    mine = LesionComponentd("pred", "largest")({"pred": MetaTensor(probabilities, meta={"filename_or_obj": "x.png"})})
    monais = KeepLargestConnectedComponent(applied_labels=[1])((probabilities[1:] > probabilities[:1]).float())
    assert ndimage.label(probabilities[1].numpy() > 0.5)[1] > 1  # several components to choose from
    torch.testing.assert_close(mine["pred"].as_tensor(), torch.as_tensor(monais).as_subclass(torch.Tensor))
    assert mine["pred"].meta["filename_or_obj"] == "x.png"


def test_an_unknown_lesion_component_is_refused():
    with pytest.raises(ValueError, match="lesion_component must be one of largest, most_probable, got 'biggest'"):
        LesionComponentd("pred", "biggest")


def test_the_confidence_is_the_mean_lesion_probability_of_the_kept_component():
    lesion = np.zeros((40, 60))
    lesion[2:20, 2:30] = 0.8  # the largest component, 504 pixels
    lesion[2:4, 2:30] = 0.6  # 56 of them less probable
    lesion[25:30, 40:45] = 0.95  # the most probable component
    for component, expected in (("largest", (56 * 0.6 + 448 * 0.8) / 504), ("most_probable", 0.95)):
        found = LesionComponentd("pred", component, confidence_key="confidence")({"pred": two_channels(lesion)})
        assert found["confidence"] == pytest.approx(expected), component
    nothing = LesionComponentd("pred", "largest", confidence_key="confidence")({"pred": two_channels(lesion * 0)})
    assert nothing["confidence"] is None and not nothing["pred"].any()
    assert "confidence" not in LesionComponentd("pred", "largest")({"pred": two_channels(lesion)})
    with pytest.raises(ValueError, match=r"a confidence_key needs exactly one prediction key, got \['a', 'b'\]"):
        LesionComponentd(["a", "b"], "largest", confidence_key="confidence")


def test_a_lesion_found_with_little_confidence_asks_to_check_its_box(tmp_path):
    bundle = copy_localiser(tmp_path / "localiser", image_size=64)
    save_weights(bundle, lambda state: None)
    image = np.full((120, 200), 40, np.uint8)
    image[30:70, 100:180] = 220

    def located(check_below=None, weights_sha256=None):
        if check_below is not None:
            with_check_below(bundle, check_below, weights_sha256)
        localiser = LesionLocaliser(bundle, device="cpu")
        localiser.network = BrightIsLesion()
        return localiser, localiser.locate(image)

    localiser, plain = located()
    assert plain.found and 0.5 < plain.confidence <= 1.0 and not plain.check_box
    assert localiser.check_below is None and localiser.operating_point_note is None
    assert located(plain.confidence + 0.01)[1].check_box
    assert not located(plain.confidence - 0.01)[1].check_box
    localiser, other = located(1.0, weights_sha256="f" * 64)
    assert not other.check_box and localiser.check_below is None
    assert localiser.operating_point_note.startswith("the localiser's cut-off for checking its box was fitted for "
                                                     "other weights (ffffffffffff), so it was not applied")
    meta_file = bundle / "configs" / "metadata.json"
    for wrong in (1.5, "0.9", True):
        with pytest.raises(BundleError, match=f"^{meta_file}: operating_point must be an object whose check_below "
                                              r"is a number in \[0, 1\]"):
            located(wrong)


def test_configs_without_the_confidence_work_alone_and_a_cut_off_beside_them_is_named(tmp_path, tiny_data, capsys):
    """Configs of before the confidence (no confidence_key): the localiser finds lesions without one, the fitting
    command stops, and a metadata.json with a cut-off beside them is refused, each in one line naming the file."""
    bundle = copy_localiser(tmp_path / "localiser", image_size=64)
    save_weights(bundle, lambda state: None)
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    del config["lesion_mask"][-1]["confidence_key"]
    config_file.write_text(json.dumps(config))
    localiser = LesionLocaliser(bundle, device="cpu")
    localiser.network = BrightIsLesion()
    image = np.full((120, 200), 40, np.uint8)
    image[30:70, 100:180] = 220
    found = localiser.locate(image)
    assert not localiser.gives_confidence and found.found and found.confidence is None and not found.check_box
    assert main(["calibrate-localiser", "--localiser", str(bundle), "--datalist", str(tiny_data / "datalist.json"),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{config_file}: its lesion_mask gives no confidence" in error and error.count("\n") == 1
    with pytest.raises(BundleError, match=f"^{config_file}: its lesion_mask gives no lesion_confidence .* check_below "
                                          f"in {bundle / 'configs' / 'metadata.json'} needs") as raised:
        LesionLocaliser(with_check_below(bundle, 0.9), device="cpu")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("component", LESION_COMPONENTS)
def test_validation_evaluation_and_inference_keep_the_settings_component(tmp_path, component):
    bundle = copy_localiser(tmp_path / "localiser", lesion_component=component)
    for configs, postprocessing in ((("train.json", "evaluate.json"), "validate#postprocessing#transforms"),
                                    (("inference.json",), "lesion_mask")):
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / name) for name in configs])
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        parser["bundle_root"] = str(bundle)
        kept = [t for t in parser.get_parsed_content(postprocessing) if isinstance(t, LesionComponentd)]
        assert [t.component for t in kept] == [component], configs


def background_everywhere(state):
    """Weights whose network answers background logit 1, lesion logit 0, at every pixel."""
    for value in state.values():
        value.zero_()
    last_bias = [key for key in state if key.endswith("bias")][-1]
    assert state[last_bias].shape == (2,)
    state[last_bias][0] = 1.0


def test_nothing_found_is_said_plainly(tmp_path, held_out_images):
    bundle = copy_localiser(tmp_path / "localiser")
    save_weights(bundle, background_everywhere)
    result = LesionLocaliser(bundle, device="cpu").locate(held_out_images[0])
    assert not result.found and result.box is None
    assert result.mask.shape == (96, 96) and not result.mask.any() and result.lesion_fraction == 0.0


def test_bad_images_are_named(trained_localiser, tmp_path):
    localiser = LesionLocaliser(trained_localiser, device="cpu")
    Image.fromarray(np.full((96, 96), 128, np.uint8)).save(tmp_path / "constant.png")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'constant.png'}: no image content"):
        localiser.locate(tmp_path / "constant.png")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'missing.png'}: image file not found"):
        localiser.locate(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"^image array: expected a 2D image"):
        localiser.locate(np.zeros((2, 96, 96, 5)))


def test_bad_bundles_are_named(tmp_path):
    with pytest.raises(BundleError, match="inference.json: not found; is .* a monai-bus bundle folder"):
        LesionLocaliser(tmp_path)
    bundle = copy_localiser(tmp_path / "localiser")
    with pytest.raises(BundleError, match="model.pt: model file not found"):
        LesionLocaliser(bundle)
    save_weights(bundle, lambda state: state.pop(next(iter(state))))
    with pytest.raises(BundleError, match="model.pt: does not match the bundle's network_def") as raised:
        LesionLocaliser(bundle)
    assert "\n" not in str(raised.value)


def test_metadata_of_another_version_is_named(tmp_path):
    """New configs beside a metadata.json from before lesion_component: one line naming the file and the setting."""
    bundle = copy_localiser(tmp_path / "localiser")
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    del metadata["model_settings"]["lesion_component"]
    meta_file.write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match=f"^{meta_file}: model_settings lacks lesion_component, which "
                                          "inference.json reads; the configs and metadata.json come from different "
                                          "versions") as raised:
        LesionLocaliser(bundle)
    assert "\n" not in str(raised.value)


# -- masks --------------------------------------------------------------------------------------------------------

def write_mask(path, box, shape=(96, 96)):
    mask = np.zeros(shape, np.uint8)
    mask[box[0]:box[1], box[2]:box[3]] = 255
    Image.fromarray(mask).save(path)
    return str(path)


def test_the_label_is_the_union_of_the_masks(tiny_data, tmp_path):
    image = load_split(str(tiny_data / "datalist.json"), "test")[0]["image"]
    masks = [write_mask(tmp_path / "a.png", (10, 20, 10, 20)), write_mask(tmp_path / "b.png", (50, 60, 40, 80))]
    item = LoadLesionMaskd()(LoadUltrasoundImaged("image")({"image": image, "mask": masks, "label": 1}))
    assert item["label"].shape == (1, 96, 96) and item["label"].sum() == 100 + 400
    resized = localiser_transforms(64, masks=True)
    data = {"image": image, "mask": masks, "label": 1}
    for transform in resized:
        data = transform(data)
    assert data["image"].shape == data["label"].shape == (1, 64, 64)
    assert set(torch.unique(data["label"]).tolist()) == {0.0, 1.0}


def test_masks_that_do_not_fit_are_named(tiny_data, tmp_path):
    image = load_split(str(tiny_data / "datalist.json"), "test")[0]["image"]
    loaded = LoadUltrasoundImaged("image")({"image": image})
    with pytest.raises(ValueError, match=f"^{image}: has no lesion mask"):
        LoadLesionMaskd()(loaded)
    small = write_mask(tmp_path / "small.png", (1, 5, 1, 5), shape=(32, 32))
    with pytest.raises(ValueError, match=f"^{small}: mask of size \\[32, 32\\] does not match its image \\[96, 96\\]"):
        LoadLesionMaskd()({**loaded, "mask": small})
    with pytest.raises(ValueError, match=f"^{tmp_path / 'gone.png'}: mask file not found"):
        LoadLesionMaskd()({**loaded, "mask": str(tmp_path / "gone.png")})


def test_training_on_an_item_without_a_mask_stops_naming_it(tiny_data, tmp_path):
    datalist = json.loads((tiny_data / "datalist.json").read_text())
    del datalist["training"][3]["mask"]
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    flow = workflow(copy_localiser(tmp_path / "localiser"), tiny_data, ["train.json"], "train", max_epochs=1,
                    datalist=str(tmp_path / "datalist.json"))
    flow.initialize()
    with pytest.raises(RuntimeError) as error:
        flow.run()
    image = load_split(str(tmp_path / "datalist.json"), "training", str(tiny_data))[3]["image"]
    assert str(find_monai_bus_error(error.value)).startswith(f"{image}: has no lesion mask")


def test_the_benchmark_measures_dice_box_iou_and_the_classification_of_each_box(trained_localiser, roi_bundle,
                                                                               tiny_data, tmp_path):
    localiser_benchmark = benchmark("localiser")
    square = np.zeros((10, 10), dtype=bool)
    square[2:6, 2:6] = True
    shifted = np.roll(square, 2, axis=1)  # 8 of 16 pixels shared
    assert localiser_benchmark.dice(square, square) == 1.0
    assert localiser_benchmark.dice(square, shifted) == pytest.approx(0.5)
    assert localiser_benchmark.dice(np.zeros_like(square), square) == 0.0
    assert box_iou((2, 6, 2, 6), (2, 6, 4, 8)) == pytest.approx(8 / 24) and box_iou(None, (0, 1, 0, 1)) == 0

    rows = localiser_benchmark.measure(str(trained_localiser), str(roi_bundle), str(tiny_data / "datalist.json"))
    listed = json.loads((tiny_data / "datalist.json").read_text())["test"]
    assert [row["image"] for row in rows] == [item["image"] for item in listed]
    given = BundleClassifier(roi_bundle, device="cpu")
    for row, item in zip(rows, load_split(str(tiny_data / "datalist.json"), "test")):
        assert row["p_dataset_box"] == pytest.approx(given.predict_item(item).malignancy_probability, abs=1e-6)
        assert row["p_whole_image"] == pytest.approx(given.predict(item["image"]).malignancy_probability, abs=1e-6)
        found = LesionLocaliser(trained_localiser, device="cpu").locate(item["image"])
        assert row["found"] == int(found.found) and row["p_localiser_box"] == (
            "" if not found.found else pytest.approx(given.predict(item["image"], box=found.box).malignancy_probability,
                                                     abs=1e-6))
    validation = localiser_benchmark.measure(str(trained_localiser), str(roi_bundle), str(tiny_data / "datalist.json"),
                                             split="validation")
    validation_items = load_split(str(tiny_data / "datalist.json"), "validation")
    assert [row["image"] for row in validation] == [
        item["image"] for item in json.loads((tiny_data / "datalist.json").read_text())["validation"]]
    assert [row["label"] for row in validation] == [item["label"] for item in validation_items]
    assert validation[0]["p_dataset_box"] == pytest.approx(
        given.predict_item(validation_items[0]).malignancy_probability, abs=1e-6)
    write_rows(tmp_path / "predictions.csv", localiser_benchmark.COLUMNS, rows)
    summary = localiser_benchmark.summarise(tmp_path / "predictions.csv")
    assert list(summary) == ["test"] and summary["test"]["images"] == len(rows)  # one dataset: no "all"
    assert summary["test"]["dice"][0] == pytest.approx(np.mean([row["dice"] for row in rows]), abs=1e-6)
    labels = [int(item["label"]) for item in listed]
    p_whole = [float(row["p_whole_image"]) for row in rows]
    assert summary["test"]["auc_whole_image"][0] == pytest.approx(roc_auc(labels, p_whole))


def test_localiser_boxes_replace_the_training_boxes_only(trained_localiser, tiny_data):
    datalist = str(tiny_data / "datalist.json")
    boxed, ious = benchmark("localiser_boxes").localiser_boxes(str(trained_localiser), datalist)
    listed = json.loads(Path(datalist).read_text())
    assert {key: boxed[key] for key in ("validation", "test")} == {key: listed[key] for key in ("validation", "test")}
    localiser = LesionLocaliser(trained_localiser, device="cpu")
    for entry, item, written, iou in zip(listed["training"], load_split(datalist, "training"), boxed["training"], ious,
                                         strict=True):
        found = localiser.locate(item["image"])
        assert written == ({**entry, "bbox": list(found.box)} if found.found else entry)
        truth = box_from_masks(mask_union(item["mask"], found.mask.shape))
        assert iou == (box_iou(found.box, truth) if found.found else None)
    assert any(iou is not None for iou in ious)


def test_the_benchmark_leaves_the_score_of_an_image_given_no_class_empty(trained_localiser, roi_bundle, tiny_data,
                                                                          tmp_path):
    """An image that the inference API turns away (here: every image, as unlike the training images) has no
    P(malignant) in any column; the benchmark does not stop at it."""
    bundle = unfamiliar_to_every_image(trained_copy(roi_bundle, tmp_path / "bundle", roi=True))
    rows = benchmark("localiser").measure(str(trained_localiser), str(bundle), str(tiny_data / "datalist.json"))
    assert len(rows) == len(json.loads((tiny_data / "datalist.json").read_text())["test"])
    assert all(row[f"p_{box}"] == "" for row in rows for box in ("dataset_box", "localiser_box", "whole_image"))
    assert any(row["found"] for row in rows)  # the localiser's part is still measured


def test_the_benchmark_without_a_classifier_measures_the_localiser_alone(trained_localiser, roi_bundle, tiny_data,
                                                                       tmp_path):
    """Also the localiser's confidence and its check of the box (here a cut-off that flags every lesion found),
    the same with the classifier as without."""
    localiser_benchmark = benchmark("localiser")
    datalist = str(tiny_data / "datalist.json")
    localiser = with_check_below(shutil.copytree(trained_localiser, tmp_path / "localiser"), 1.0)
    alone = localiser_benchmark.measure(str(localiser), None, datalist)
    with_classifier = localiser_benchmark.measure(str(localiser), str(roi_bundle), datalist)
    found_by = LesionLocaliser(localiser, device="cpu")
    measured = ("image", "group", "label", "found", "dice", "box_iou", "confidence", "check_box")
    for row, classified, item in zip(alone, with_classifier, load_split(datalist, "test"), strict=True):
        assert {key: row[key] for key in measured} == {key: classified[key] for key in measured}
        assert all(row[f"p_{box}"] == "" for box in localiser_benchmark.BOXES)
        found = found_by.locate(item["image"])
        assert (row["confidence"], row["check_box"]) == (
            (pytest.approx(found.confidence, abs=1e-6), 1) if found.found else ("", 0))
    assert any(row["check_box"] for row in alone)
    write_rows(tmp_path / "predictions.csv", localiser_benchmark.COLUMNS, alone)
    summary = localiser_benchmark.summarise(tmp_path / "predictions.csv")
    assert set(summary["test"]) == {"images", "malignant", "not_found", "median_seconds", "dice", "box_iou"}
    table = localiser_benchmark.write_table(summary, tmp_path, "command")
    assert "| test set | images | no lesion found | Dice [95% CI] | box IoU [95% CI] |" in table and "AUC" not in table


def test_calibrate_localiser_fits_the_least_confident_tenth_for_its_weights(trained_localiser, tiny_data, tmp_path,
                                                                           capsys):
    bundle, out, datalist = tmp_path / "localiser", tmp_path / "out", str(tiny_data / "datalist.json")
    shutil.copytree(trained_localiser, bundle)
    assert main(["calibrate-localiser", "--localiser", str(bundle), "--datalist", datalist, "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = [row for _, row in read_rows(out / "validation_confidence.csv", ("image", "found", "confidence"))]
    assert [row["image"] for row in rows] == [entry["image"] for entry in json.loads(Path(datalist).read_text())[
        "validation"]]
    confidences = [float(row["confidence"]) for row in rows if row["found"] == "1"]
    point = json.loads((bundle / "configs" / "metadata.json").read_text())["operating_point"]
    assert point["check_below"] == pytest.approx(np.quantile(confidences, 0.1), abs=1e-6)
    assert point["weights_sha256"] == sha256(bundle / "models" / "model.pt")
    report = json.loads((out / "localiser_calibration.json").read_text())
    assert report["not_found"] == len(rows) - len(confidences) and report["check_below"] == point["check_below"]
    localiser = LesionLocaliser(bundle, device="cpu")
    assert localiser.check_below == point["check_below"] and localiser.operating_point_note is None
    flagged = [localiser.locate(item["image"]).check_box for item in load_split(datalist, "validation")]
    assert sum(flagged) == report["checked"] >= 1  # the API flags what the fit counted

    save_weights(nothing := copy_localiser(tmp_path / "nothing"), background_everywhere)
    assert main(["calibrate-localiser", "--localiser", str(nothing), "--datalist", datalist, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{datalist}: the localiser found no lesion in any of the 6 validation images" in error
    assert error.count("\n") == 1


def test_the_referral_benchmark_counts_the_referred_errors_and_localiser_misses(trained_localiser, trained_bundle,
                                                                               tiny_data, tmp_path, monkeypatch):
    referral = benchmark("referral")
    locate = LesionLocaliser.locate

    def central(self, image, frame=None):  # the 2-epoch localiser's boxes fill these small images; their centre
        found = locate(self, image, frame)  # moves with the box, so the uncertainty measures it
        return dataclasses.replace(found, box=(24, 72, 24, 72)) if found.found else found

    monkeypatch.setattr(LesionLocaliser, "locate", central)
    bundle = trained_copy(trained_bundle, tmp_path / "bundle", roi=True)
    datalist = str(tiny_data / "datalist.json")
    with pytest.raises(SystemExit, match="has no refer_above"):
        referral.measure(str(trained_localiser), str(bundle), datalist)
    unreferred = referral.measure(str(trained_localiser), str(with_operating_point(bundle, refer_above=1.0)), datalist)
    uncertainties = [float(row["uncertainty"]) for row in unreferred if row["uncertainty"] != ""]
    refer_above = float(np.median(uncertainties))
    rows = referral.measure(str(trained_localiser), str(with_operating_point(bundle, refer_above=refer_above)),
                            datalist)
    assert [row["refer"] for row in rows] == [int(row["uncertainty"] == "" or row["uncertainty"] > refer_above)
                                              for row in rows]
    write_rows(tmp_path / "predictions.csv", referral.COLUMNS, rows)
    summary = referral.summarise(tmp_path / "predictions.csv")["all"]
    wrong = [row["predicted"] != row["label"] for row in rows]
    missed = [row["box_iou"] < referral.MISS_IOU for row in rows]
    expected = {"errors": wrong, "missed_cancers": [w and row["label"] == 1 for w, row in zip(wrong, rows)],
                "false_alarms": [row["label"] == 0 and row["predicted"] == 1 for row in rows],
                "localiser_misses": missed, "errors_on_misses": [w and m for w, m in zip(wrong, missed)]}
    assert 0 < summary["referred"] < len(rows)
    for key, flags in expected.items():
        assert summary[key] == [sum(flags), sum(f and row["refer"] for f, row in zip(flags, rows))], key
    kept = [row for row in rows if not row["refer"]]
    malignant = [row for row in kept if row["label"] == 1]
    if malignant:
        assert summary["sensitivity_kept"] == pytest.approx(np.mean([row["predicted"] == 1 for row in malignant]))
    assert summary["box_checks"] == [0, 0]  # a localiser without a cut-off asks for no check

    confidences = sorted(row["localiser_confidence"] for row in rows if row["localiser_confidence"] != "")
    half = len(confidences) // 2
    check_below = (confidences[half - 1] + confidences[half]) / 2  # between two rounded values: no ties
    assert confidences[half - 1] < check_below < confidences[half]
    unsure = with_check_below(shutil.copytree(trained_localiser, tmp_path / "localiser"), check_below)
    checked = referral.measure(str(unsure), str(with_operating_point(bundle, refer_above=refer_above)), datalist)
    assert [row["check_box"] for row in checked] == [int(row["localiser_confidence"] != "" and
                                                         row["localiser_confidence"] < check_below) for row in rows]
    assert [row["refer"] for row in checked] == [max(row["refer"], box["check_box"]) for row, box in zip(rows, checked)]
    write_rows(tmp_path / "checked.csv", referral.COLUMNS, checked)
    assert referral.summarise(tmp_path / "checked.csv")["all"]["box_checks"] == [sum(row["check_box"] for row in
                                                                                     checked)] * 2
