"""The module as a built Slicer extension installs it: outside the repository (issue 16).

``slicer_extension/BUSClassifier/CMakeLists.txt`` ships the bundles and a monai-bus wheel beside the module,
in ``Resources/bundle``, ``Resources/localiser`` and ``Resources/wheels``. The ``installed`` fixture lays out
that package by hand in a temporary folder, as the extension package holds it
(``lib/Slicer-X.Y/qt-scripted-modules``): the module's files, the repository's bundles (configs, docs,
LICENSE) with their shipped weights, and a wheel built from the repository's package. CMake itself is not
run here (that needs Slicer's build system). The module is imported from there, and must use what it
ships, never the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import types
import unittest
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import REPO
from monai_bus.data.images import read_image
from test_slicer_logic import MODULE_DIR, add_volume, imported_module, roi_over_pixels, row, slicer, wait_for

INSTALLED_MODULES = "lib/Slicer-5.10/qt-scripted-modules"  # where an extension package holds scripted modules


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The module's folder in a built extension, outside the repository: the module's files (not its
    CMakeLists.txt), ``Resources/bundle`` and ``Resources/localiser`` (copies of the repository's bundles with
    their shipped ``models/model.pt`` and, where there is one, ``models/feature_statistics.npz``), ``Resources/samples`` (the sample images) and ``Resources/wheels`` (a
    monai-bus wheel built from a copy of what setup.py packages)."""
    module_dir = tmp_path_factory.mktemp("extension") / INSTALLED_MODULES
    shutil.copytree(MODULE_DIR, module_dir, ignore=shutil.ignore_patterns("CMakeLists.txt", "__pycache__"))
    for name in ("bundle", "localiser"):
        bundle = module_dir / "Resources" / name
        shutil.copytree(REPO / name, bundle, ignore=shutil.ignore_patterns("models", "eval", "demo_data"))
        (bundle / "models").mkdir()
        for shipped in (REPO / name / "models").glob("*"):  # as CMakeLists.txt copies them
            if shipped.name in ("model.pt", "model.json", "feature_statistics.npz"):
                shutil.copy(shipped, bundle / "models" / shipped.name)
    shutil.copytree(REPO / "monai_bus" / "samples", module_dir / "Resources" / "samples")

    source = tmp_path_factory.mktemp("source")  # a copy, so that the build writes nothing into the repository
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "monai_bus", source / "monai_bus", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(module_dir / "Resources" / "wheels")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return module_dir


@pytest.fixture(scope="module")
def module(installed):
    """``BUSClassifier.py`` imported from the installed copy."""
    with imported_module(installed) as imported:
        yield imported


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def shipped_wheel(installed: Path) -> Path:
    wheel, = (installed / "Resources" / "wheels").glob("monai_bus-*.whl")
    return wheel


def test_the_shipped_bundle_and_wheel_are_used_not_the_repository(module, installed):
    assert not installed.is_relative_to(REPO)
    dependencies = module.dependencies
    assert dependencies.MODULE_DIR == installed.resolve()
    resources = installed.resolve() / "Resources"
    bundle, wheel = resources / "bundle", shipped_wheel(installed.resolve())
    assert dependencies.locate() == (bundle, wheel, resources / "samples", resources / "localiser")
    assert module.BUSClassifierLogic.defaultBundlePath() == str(bundle)
    assert module.BUSClassifierLogic.defaultLocaliserPath() == str(resources / "localiser")
    assert "monai_bus/inference.py" in zipfile.ZipFile(wheel).namelist()  # the package the worker imports


def test_the_shipped_samples_are_registered_as_sample_data(module, installed, monkeypatch):
    registered = []
    sample_data = types.ModuleType("SampleData")
    sample_data.SampleDataLogic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **k: registered.append(k))
    monkeypatch.setitem(sys.modules, "SampleData", sample_data)
    module.registerSampleData()
    assert len(registered) == 4 and {entry["category"] for entry in registered} == {"BUS Classifier"}
    for entry in registered:
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(entry["uris"]).path))
        assert path.parent == installed.resolve() / "Resources" / "samples" and path.is_file()
        assert entry["fileNames"] == path.name and entry["loadFileType"] == "VolumeFile"
    assert sorted(entry["sampleName"].split(" (")[1] for entry in registered) == ["benign)"] * 2 + ["malignant)"] * 2


def test_the_installer_installs_the_shipped_wheel(module, installed, monkeypatch):
    dependencies = module.dependencies
    asked, installed_args = [], []
    monkeypatch.setattr(slicer.util, "pip_install",
                        lambda args: installed_args.append((args, Path(args[2]).read_text())), raising=False)
    find_spec = dependencies.importlib.util.find_spec
    monkeypatch.setattr(dependencies.importlib.util, "find_spec",
                        lambda name: None if name == "monai_bus" else find_spec(name))
    dependencies.install(lambda message: asked.append(message) or True)
    assert "monai_bus" in asked[0]
    (args, constraints), = installed_args
    assert args[:2] == [str(shipped_wheel(installed.resolve())), "-c"]  # the wheel file, never the repository
    assert constraints == f"torch=={torch.__version__}\n"


def test_the_installer_says_when_there_is_nothing_to_install_from(module, tmp_path, monkeypatch):
    """A module folder with neither the repository around it nor a wheel in Resources/wheels."""
    dependencies = module.dependencies
    monkeypatch.setattr(dependencies, "MODULE_DIR", tmp_path / INSTALLED_MODULES)
    monkeypatch.setattr(dependencies, "missing_modules", lambda: ["monai_bus"])
    asked, installed_args = [], []
    monkeypatch.setattr(slicer.util, "pip_install", installed_args.append, raising=False)
    message = (f"monai-bus is not installed and there is nothing to install it from: {tmp_path / INSTALLED_MODULES} "
               "is neither in the monai-bus repository nor a built extension with one monai_bus wheel")
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}") as error:
        dependencies.install(lambda message: asked.append(message) or True)
    assert "\n" not in str(error.value)
    assert asked == [] and installed_args == []  # nothing asked, nothing installed


def test_the_worker_classifies_with_the_shipped_bundle(module, installed, scene):
    """The panel's path: Logic -> the installed copy's classify_worker.py in a child process -> results table."""
    worker = sys.modules["BUSClassifierLib.process"].WORKER
    assert worker == installed.resolve() / "BUSClassifierLib" / "classify_worker.py"  # the installed copy's
    sample = json.loads((REPO / "monai_bus" / "samples" / "samples.json").read_text())["samples"][0]
    image, _ = read_image(REPO / "monai_bus" / "samples" / sample["image"])  # a real image: the shipped model
    volume = add_volume(scene, image[None])  # turns a synthetic one away as unlike its training images
    logic = module.BUSClassifierLogic()
    bundle = logic.defaultBundlePath()
    row_start, row_stop, column_start, column_stop = sample["box"]
    result, attention, lesion_mask = wait_for(logic.startClassification(
        volume, bundle, roi_over_pixels(scene, (row_start, row_stop), (column_start, column_stop))))
    assert lesion_mask is None  # a box was given
    logic.addResult(volume, result, attention)

    table = logic.resultsTable(scene)
    assert table.GetNumberOfRows() == 1
    values = row(table)
    assert values["Volume"] == "lesion" and values["Class"] in ("benign", "malignant")
    weights = Path(bundle) / "models" / "model.pt"
    assert values["Weights SHA-256"] == hashlib.sha256(weights.read_bytes()).hexdigest()  # the shipped weights
    point = json.loads((Path(bundle) / "configs" / "metadata.json").read_text())["operating_point"]
    assert logic.operatingPointLabel(bundle, result["threshold"]) == (
        f"threshold {point['threshold']:g} ({point['description']})")


def test_self_test_in_the_installed_extension(module, monkeypatch):
    """The module's "Reload and Test" from the installed copy: it copies the shipped bundle's configs."""
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    outcome = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(module.BUSClassifierTest("runTest"))
    assert outcome.wasSuccessful(), outcome.failures + outcome.errors
