"""The model zoo's checks of a bundle, run offline: metadata, shapes, export, properties, usage, packaging.

The zoo's CI (``ci/verify_bundle.py``, ``ci/unit_tests``) downloads its metadata schema and runs
bundles from their own folder; these tests check the same things without a network.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, download, load, verify_net_in_out
from packaging.version import Version

from conftest import CONFIGS, REPO, TINY, bundle_overrides, copy_bundle
from monai_bus.bundle_options import flag
from monai_bus.networks import vgg16_features
from monai_bus.prediction_files import read_predictions

META = json.loads((CONFIGS / "metadata.json").read_text())
# Required by meta_schema_20240725 (the schema that metadata.json names) and the bundle specification.
SCHEMA_KEYS = ("version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task",
               "description", "authors", "copyright", "network_data_format")
SPEC_KEYS = ("name", "changelog", "data_source", "data_type", "image_classes", "label_classes", "pred_classes",
             "eval_metrics", "intended_use", "references")
TENSOR_KEYS = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
               "channel_def")
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def bundle_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", *args]


def run_command(command: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)


def test_metadata_has_the_schema_and_specification_keys():
    assert META["schema"].endswith("/meta_schema_20240725.json")
    for key in SCHEMA_KEYS + SPEC_KEYS:
        assert META.get(key) not in (None, "", {}, []), key
    assert META["version"] in META["changelog"]
    assert list(META["changelog"]) == sorted(META["changelog"], key=Version, reverse=True)
    assert Version(META["numpy_version"]) < Version("2.3"), "numpy 2.3 has no wheel for the zoo's Python 3.10"
    assert all(0.0 <= value <= 1.0 for value in META["eval_metrics"].values())
    image = META["network_data_format"]["inputs"]["image"]
    pred = META["network_data_format"]["outputs"]["pred"]
    for tensor in (image, pred):
        assert set(TENSOR_KEYS) <= set(tensor)
    assert image["num_channels"] == 1 and image["spatial_shape"] == ["32*n", "32*n"]
    assert pred["type"] == "logits" and pred["value_range"] == []  # the network returns logits, not probabilities
    assert pred["num_channels"] == 2 and pred["channel_def"] == {"0": "benign", "1": "malignant"}


def test_bundle_files():
    bundle = CONFIGS.parent
    for name in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "logging.conf"):
        assert (CONFIGS / name).is_file()
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in (bundle / "LICENSE").read_text()
    sections = [line for line in (bundle / "docs" / "README.md").read_text().splitlines() if line.startswith("#")]
    for heading in ("# Model Overview", "## Data", "## Training configuration", "### Input", "### Output",
                    "## Performance", "## MONAI Bundle Commands", "# References", "# License"):
        assert heading in sections, heading


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("n", [1, 4])
def test_verify_net_in_out(attention, n):
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), device="cpu", n=n, bundle_root=str(CONFIGS.parent),
                      attention=attention)


@pytest.mark.parametrize("attention", [True, False])
def test_ckpt_export_matches_eager(tmp_path, attention):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser["bundle_root"] = str(CONFIGS.parent)
    parser["attention"] = attention
    network = parser.get_parsed_content("network_def").eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
                meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json"),
                bundle_root=str(CONFIGS.parent), attention=attention)
    exported = torch.jit.load(str(tmp_path / "model.ts"))
    x = torch.randn(2, 1, 128, 128)
    torch.testing.assert_close(exported(x), network(x))


@pytest.mark.parametrize("config_names, workflow_type", [
    (["train.json"], "train"),
    (["train.json", "evaluate.json"], "eval"),
    (["inference.json"], "infer"),
])
def test_check_properties(tmp_path, tiny_data, config_names, workflow_type):
    bundle = copy_bundle(tmp_path / "bundle")
    flow = ConfigWorkflow(config_file=[str(bundle / "configs" / name) for name in config_names],
                          workflow_type=workflow_type, logging_file=False, **bundle_overrides(bundle, tiny_data))
    flow.initialize()
    assert flow.check_properties() == []


def test_inference_with_default_ids_from_the_bundle_folder(tmp_path, trained_bundle):
    """The zoo's usage: ``cd <bundle>; python -m monai.bundle run --config_file configs/inference.json``."""
    bundle = copy_bundle(tmp_path / "bundle")
    shutil.copytree(trained_bundle / "models", bundle / "models")
    result = run_command(bundle_command("run", "--config_file", "configs/inference.json"), cwd=bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(read_predictions(bundle / "eval" / "predictions.csv")) == 30  # the demo data's test split
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_training_from_the_bundle_folder_and_from_its_parent(tmp_path, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    tiny = ["--dataset_dir", str(tiny_data), "--image_size", "64", "--batch_size", "8", "--num_workers", "0",
            "--max_epochs", "1"]
    result = run_command(bundle_command("run", "training", "--config_file", "configs/train.json", *tiny), cwd=bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()

    shutil.rmtree(bundle / "models")  # the README's form, from the folder above the bundle
    result = run_command(bundle_command("run", "training", "--config_file", "bundle/configs/train.json",
                                        "--bundle_root", "bundle", *tiny), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_folder_that_is_not_the_bundle_is_refused_and_left_alone(tmp_path):
    """Without --bundle_root, a run started outside the bundle writes nothing where it stands."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_command(bundle_command("run", "training", "--config_file", str(CONFIGS / "train.json")),
                         cwd=elsewhere)
    assert result.returncode != 0
    assert "is not a bundle folder" in result.stderr and "--bundle_root" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_bundle_zip_loads_with_monai_bundle_load(tmp_path, trained_bundle):
    """Packaged as the zoo packages bundles: a zip of the bundle folder, then ``monai.bundle.load``."""
    name = "monai_bus_classification"
    archive = tmp_path / f"{name}.zip"
    metadata = dict(META, model_settings={**META["model_settings"], "width": TINY["width"]})  # the model's width
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(CONFIGS.parent.rglob("*")):
            if path.is_file() and path.relative_to(CONFIGS.parent).parts[0] in ("configs", "docs", "LICENSE"):
                if path == CONFIGS / "metadata.json":
                    zf.writestr(f"{name}/configs/metadata.json", json.dumps(metadata, indent=4))
                else:
                    zf.write(path, f"{name}/{path.relative_to(CONFIGS.parent)}")
        zf.write(trained_bundle / "models" / "model.pt", f"{name}/models/model.pt")
    download(name=name, bundle_dir=str(tmp_path / "bundles"), url=archive.as_uri(), progress=False)
    network = load(name=name, bundle_dir=str(tmp_path / "bundles"), device="cpu", progress=False)
    saved = torch.load(trained_bundle / "models" / "model.pt", weights_only=True)
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, saved[key])


@pytest.mark.parametrize("value, expected", [
    (True, True), ("true", True), ("True", True), (1, True), ("1", True),
    (False, False), ("false", False), ("False", False), (0, False), ("0", False),
])
def test_flag_spellings(value, expected):
    assert flag(value, "roi") is expected


@pytest.mark.parametrize("value", ["maybe", "no", 2, None, "", 0.5])
def test_flag_refuses_other_values(value):
    with pytest.raises(ValueError, match="--roi must be true or false"):
        flag(value, "roi")


def probe(bundle, config_name: str, probe_id: str, **overrides) -> dict:
    """What the bundle's objects do with the given overrides, through ``python -m monai.bundle run``."""
    configs = f"['{bundle / 'configs' / config_name}','{REPO / 'tests' / 'flag_probe.json'}']"
    arguments = [f"--{key}={value}" for key, value in overrides.items()]
    result = run_command(bundle_command("run", probe_id, "--config_file", configs, "--bundle_root", str(bundle),
                                        *arguments), cwd=bundle)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE "))
    return ast.literal_eval(line[len("PROBE "):])


def test_every_boolean_id_of_train_json_both_ways(tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    weights = {f"features.{key}": torch.full_like(value, 0.25)
               for key, value in vgg16_features(3, batch_norm=True, width=TINY["width"]).state_dict().items()}
    torch.save(weights, tmp_path / "vgg16_bn.pth")
    off = probe(bundle, "train.json", "probe_train", roi="false", attention="False", batch_norm=0,
                pretrained="false", amp="False", channels_last=0, resume="false", mask_loss_weight=0, flip_tta="false")
    assert off == dict.fromkeys(off, False) and len(off) == 8
    on = probe(bundle, "train.json", "probe_train", roi="true", attention="True", batch_norm=1, pretrained="true",
               pretrained_path=tmp_path / "vgg16_bn.pth", amp="True", channels_last=1, resume="true", flip_tta="1")
    assert on == dict.fromkeys(off, True)


def test_every_boolean_id_of_inference_json_both_ways(tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    off = probe(bundle, "inference.json", "probe_inference", roi="false", attention="False", batch_norm=0,
                amp="False", channels_last=0, load_pretrain="false", flip_tta="False")
    assert off == dict.fromkeys(off, False) and len(off) == 7
    on = probe(bundle, "inference.json", "probe_inference", roi="true", attention="True", batch_norm=1, amp="True",
               channels_last=1, load_pretrain="true", flip_tta="true")
    assert on == dict.fromkeys(off, True)


def test_a_wrong_boolean_is_refused_by_name(tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    result = run_command(bundle_command("run", "probe_inference", "--config_file",
                                        f"['{bundle / 'configs' / 'inference.json'}','{REPO / 'tests' / 'flag_probe.json'}']",
                                        "--bundle_root", str(bundle), "--roi", "maybe"), cwd=bundle)
    assert result.returncode != 0
    assert "--roi must be true or false (also True/False or 1/0), got 'maybe'" in result.stderr


@pytest.mark.parametrize("arguments, problem", [
    (["--attention", "false"], "--mask_loss_weight 0.5 supervises the attention gate, which the network lacks with "
                               "attention false: set attention true, or --mask_loss_weight 0."),
    (["--mask_loss_weight", "-1"], "--mask_loss_weight must be a number >= 0 (0 turns the mask loss off), got -1."),
    (["--mask_loss_weight", "high"], "--mask_loss_weight must be a number >= 0 (0 turns the mask loss off), got 'high'."),
])
def test_a_bad_mask_loss_is_refused_in_one_line_before_training(tmp_path, tiny_data, arguments, problem):
    bundle = copy_bundle(tmp_path / "bundle")
    result = run_command(bundle_command("run", "training", "--config_file", str(bundle / "configs" / "train.json"),
                                        "--bundle_root", str(bundle), "--dataset_dir", str(tiny_data), *arguments),
                         cwd=bundle)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {problem}"
    assert "Loading dataset" not in result.stdout + result.stderr  # refused before any image is cached
