"""Shared fixtures: a tiny synthetic data set and a bundle trained on it once per session."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER" in os.environ:  # pytest -n N: one thread per worker (and its subprocesses), so
    os.environ["OMP_NUM_THREADS"] = "1"  # that N workers on N cores do not oversubscribe them

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

# Small enough to train in seconds on 2 CPU cores: 64 px keeps VGG16's pool5 at 2x2, and width 8 (the model
# setting) gives it an eighth of VGG16's channels, 1/64 of its convolutions' work.
TINY = {"image_size": 64, "batch_size": 8, "num_workers": 0, "width": 8}
TRAINED_EPOCHS = 8  # of trained_bundle, 4 iterations each


def benchmark(name: str):
    """A module of ``benchmarks/``."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def bundle_overrides(bundle_root: Path, data_dir: Path, **extra) -> dict:
    """Overrides that point a copied bundle at ``data_dir``'s datalist and shrink the run."""
    return {"bundle_root": str(bundle_root), "dataset_dir": str(data_dir), **TINY, **extra}


def torchrun_failure(result) -> str:
    """What a failed torchrun run printed: its last lines and, where a rank crashed (PYTHONFAULTHANDLER), the
    crash's Python stacks, which the last lines of a long log would leave out."""
    crash = result.stderr.find("Fatal Python error")
    return result.stdout[-3000:] + (result.stderr[crash:crash + 6000] if crash >= 0 else "") + result.stderr[-3000:]


def copy_bundle(destination: Path) -> Path:
    """A copy of the repository's bundle folder (configs, docs, LICENSE) without models or data, and without
    the metadata of the shipped weights (``weights``, ``operating_point``), as before they were shipped; its
    network has ``TINY``'s width."""
    shutil.copytree(BUNDLE, destination, ignore=shutil.ignore_patterns("models", "eval", "demo_data"))
    meta_file = destination / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    for key in ("weights", "operating_point"):
        metadata.pop(key, None)
    metadata["model_settings"]["width"] = TINY["width"]
    meta_file.write_text(json.dumps(metadata, indent=4))
    return destination


def set_roi(bundle: Path, roi: bool) -> Path:
    """Set the bundle's ``roi`` model setting (metadata.json, read by train.json and inference.json)."""
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["model_settings"]["roi"] = roi
    meta_file.write_text(json.dumps(metadata, indent=4))
    return bundle


def trained_copy(trained: Path, destination: Path, roi: bool) -> Path:
    """A copy of the repository's bundle with ``trained``'s model and the given ``roi`` option."""
    bundle = set_roi(copy_bundle(destination), roi)
    shutil.copytree(trained / "models", bundle / "models")
    return bundle


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder with 40 synthetic 96 px images and ``datalist.json`` (30/6/4 split)."""
    from monai_bus.data.demo import write_demo_dataset

    folder = tmp_path_factory.mktemp("tiny_data")
    write_demo_dataset(folder, num_images=40, size=96, seed=1)
    return folder


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory, tiny_data) -> Path:
    """A bundle copy trained for ``TRAINED_EPOCHS`` epochs on ``tiny_data`` through ``ConfigWorkflow``."""
    from monai.bundle import ConfigWorkflow

    bundle = copy_bundle(tmp_path_factory.mktemp("trained") / "bundle")
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "train.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type="train",
        # The tests of the uncertainty and the referral need answers that vary from image to image. After 2 epochs
        # (8 steps) batch norm's running statistics still hold half their initial values, which shrink the
        # differences between images layer by layer: every image got nearly the same P. So more epochs, and without
        # the mask loss, which has its own tests.
        **bundle_overrides(bundle, tiny_data, max_epochs=TRAINED_EPOCHS, mask_loss_weight=0),
    )
    workflow.initialize()
    assert workflow.check_properties() in (None, []), workflow.check_properties()
    workflow.run()
    workflow.finalize()
    return bundle


@pytest.fixture(scope="session")
def roi_bundle(tmp_path_factory, trained_bundle) -> Path:
    """``trained_bundle``'s model in a bundle whose ``roi`` is on, with the argmax's operating point (threshold
    0.5, temperature 1), so that its notes are about the box alone."""
    return with_operating_point(trained_copy(trained_bundle, tmp_path_factory.mktemp("roi") / "bundle", roi=True))


@pytest.fixture(scope="session")
def whole_bundle(tmp_path_factory, trained_bundle) -> Path:
    """``trained_bundle``'s model in a bundle whose ``roi`` is off (whole images)."""
    return trained_copy(trained_bundle, tmp_path_factory.mktemp("whole") / "bundle", roi=False)


def with_operating_point(bundle, **point):
    """Give the bundle an operating point fitted for its own weights."""
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    checksum = hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    meta["operating_point"] = {"threshold": 0.5, "temperature": 1.0, "weights_sha256": checksum,
                               "description": "the test's", **point}
    meta_file.write_text(json.dumps(meta))
    return bundle


def unfamiliar_to_every_image(bundle):
    """Give the bundle feature statistics and a cut-off that every image lies beyond."""
    import numpy as np

    from monai_bus.familiarity import STATISTICS_FILE, FeatureStatistics, save_statistics

    statistics_file = bundle / "models" / STATISTICS_FILE
    channels = {"pool3": 4 * TINY["width"], "pool5": 8 * TINY["width"]}
    save_statistics(statistics_file, {layer: FeatureStatistics(np.full((2, features), 1e3), np.eye(features))
                                      for layer, features in channels.items()})
    with_operating_point(bundle, unfamiliar_above={"pool3": 1.0, "pool5": 1.0},
                         feature_statistics_sha256=hashlib.sha256(statistics_file.read_bytes()).hexdigest())
    return bundle
