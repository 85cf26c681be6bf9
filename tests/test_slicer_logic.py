"""The 3D Slicer module's Logic, end to end on a real vtkMRMLScene from ``slicer-core`` (no Slicer app).

``BUSClassifier.py`` imports ``qt`` and ``slicer.ScriptedLoadableModule``, which only the Slicer
application has: the ``module`` fixture stands in minimal replacements for them, so the real Logic and
self-test classes run; the Widget is not exercised here.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
import unittest
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CONFIGS, copy_bundle
from monai_bus.data.demo import synthesize_case
from monai_bus.inference import BundleClassifier
from monai_bus.networks import VGG16Classifier

if os.environ.get("CI") == "true":  # CI installs the slicer extra: there a missing slicer-core fails
    import slicer
else:
    slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install -e '.[slicer]')")
import slicer.util  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "BUSClassifier"
# A flip and a 90-degree in-plane rotation: columns (I) run towards -A, rows (J) towards -R.
IJK_TO_RAS = np.array([
    [0.0, -0.3, 0.0, 12.5],
    [-0.2, 0.0, 0.0, -40.0],
    [0.0, 0.0, 1.5, 7.0],
    [0.0, 0.0, 0.0, 1.0],
])
ROWS, COLUMNS = 96, 80


@pytest.fixture(scope="module")
def module():
    """``BUSClassifier.py`` imported with stand-ins for the Slicer-application-only modules."""
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, parent=None):
            self.parent = parent

    class Test(unittest.TestCase):
        def delayDisplay(self, message):
            pass

    scripted.ScriptedLoadableModule = scripted.ScriptedLoadableModuleWidget = Base
    scripted.ScriptedLoadableModuleLogic = Base
    scripted.ScriptedLoadableModuleTest = Test
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "qt", types.ModuleType("qt"))
        patch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
        patch.syspath_prepend(str(MODULE_DIR))
        import BUSClassifier

        yield BUSClassifier
    for name in [name for name in sys.modules if name.startswith(("BUSClassifier", "BUSClassifierLib"))]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def api(trained_bundle):
    return BundleClassifier(trained_bundle)


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(scope="module")
def image():
    return synthesize_case(1, ROWS, np.random.default_rng(3))[0][:, :COLUMNS]  # non-square: 96 x 80


def add_volume(scene, array, name="lesion", class_name="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(IJK_TO_RAS))
    slicer.util.updateVolumeFromArray(node, array)
    return node


def test_end_to_end(module, api, trained_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    result, attention_node = logic.classify(volume, trained_bundle)

    expected = api.predict(image)
    assert result == expected.to_dict()
    table = logic.resultsTable(scene)
    assert table.GetName() == "BUSClassifier results"
    assert [table.GetColumnName(c) for c in range(6)] == ["Volume", "Class", "P(malignant)", "Model version", "Region",
                                                          "Time"]
    assert table.GetNumberOfRows() == 1
    assert table.GetCellText(0, 0) == "lesion"
    assert table.GetCellText(0, 1) == expected.class_name
    assert float(table.GetCellText(0, 2)) == pytest.approx(expected.malignancy_probability, abs=1e-6)
    assert table.GetCellText(0, 3) == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    assert table.GetCellText(0, 4) == "whole image"
    assert datetime.fromisoformat(table.GetCellText(0, 5)).tzinfo is not None

    np.testing.assert_array_equal(module.ijk_to_ras(attention_node), IJK_TO_RAS)
    assert attention_node.GetOrigin() == volume.GetOrigin()
    assert attention_node.GetSpacing() == volume.GetSpacing()
    attention = slicer.util.arrayFromVolume(attention_node)
    assert attention.shape == (1, ROWS, COLUMNS)
    assert 0.0 <= attention.min() <= attention.max() <= 1.0
    np.testing.assert_allclose(attention[0], expected.attention, atol=1e-6)  # same orientation as the image
    assert attention_node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeIron"

    logic.addResult(volume, result, expected.attention)
    assert table.GetNumberOfRows() == 2  # every result is kept, in the same table


def test_rgb_vector_volume(module, api, trained_bundle, scene, image):
    volume = add_volume(scene, np.stack([image] * 3, axis=-1)[np.newaxis], class_name="vtkMRMLVectorVolumeNode")
    result, attention_node = module.BUSClassifierLogic().classify(volume, trained_bundle)
    np.testing.assert_allclose(result["probabilities"], api.predict(image).probabilities, atol=1e-3)
    assert slicer.util.arrayFromVolume(attention_node).shape == (1, ROWS, COLUMNS)


def roi_over_pixels(scene, rows, columns):
    """A markups ROI whose extent covers the centres of the pixels rows[0]..rows[1]-1, columns[0]..columns[1]-1."""
    low = np.array([columns[0] - 0.4, rows[0] - 0.4, -1.0, 1.0])
    high = np.array([columns[1] - 0.6, rows[1] - 0.6, 1.0, 1.0])
    corners = (IJK_TO_RAS @ np.array([low, high]).T)[:3].T
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(*corners.mean(axis=0))
    roi.SetSize(*np.abs(corners[1] - corners[0]))
    return roi


def test_roi_pixel_box(module, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    assert module.roi_pixel_box(volume, roi_over_pixels(scene, (10, 30), (20, 50)), (ROWS, COLUMNS)) == (10, 30, 20, 50)
    assert module.roi_pixel_box(volume, roi_over_pixels(scene, (-5, 8), (70, 99)), (ROWS, COLUMNS)) == (0, 8, 70, 80)
    with pytest.raises(ValueError, match="ROI 'box' lies outside the image 'lesion'"):
        module.roi_pixel_box(volume, roi_over_pixels(scene, (200, 230), (20, 50)), (ROWS, COLUMNS))


def test_roi_is_the_lesion_box_of_the_inference_api(module, roi_bundle, scene, image):
    """The ROI, drawn on a volume with a flipped, rotated geometry, reaches the API as the box of the pixels
    it covers; the API crops around it; the attention map comes back at the image's size."""
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    result, attention_node = logic.classify(volume, roi_bundle, roi_over_pixels(scene, (10, 60), (20, 70)))
    expected = BundleClassifier(roi_bundle).predict(image, box=(10, 60, 20, 70))
    assert result == expected.to_dict() and result["roi"] == [0, 73, 7, 80]  # box plus 25%, clipped
    attention = slicer.util.arrayFromVolume(attention_node)[0]
    np.testing.assert_allclose(attention, expected.attention, atol=1e-6)
    attention[0:73, 7:80] = 0
    assert not attention.any()  # zero outside the classified region
    np.testing.assert_array_equal(module.ijk_to_ras(attention_node), IJK_TO_RAS)
    table = logic.resultsTable(scene)
    assert table.GetCellText(0, 4) == "rows 0-73, columns 7-80"


@pytest.fixture(scope="module")
def incompatible_bundle(tmp_path_factory):
    bundle = copy_bundle(tmp_path_factory.mktemp("incompatible") / "bundle")
    (bundle / "models").mkdir()
    torch.save(VGG16Classifier(batch_norm=False).state_dict(), bundle / "models" / "model.pt")
    return bundle


@pytest.mark.parametrize("case, message", [
    ("no volume", "No input volume selected"),
    ("several slices", "'lesion' is a 3D volume of 3 slices; select a 2D image"),
    ("missing model", r"models/model.pt: model file not found; train the bundle first"),
    ("incompatible bundle", "models/model.pt: does not match the bundle's network_def"),
])
def test_errors_in_plain_words(module, scene, image, trained_bundle, incompatible_bundle, tmp_path, case, message):
    volume, bundle = add_volume(scene, image[np.newaxis]), trained_bundle
    if case == "no volume":
        volume = None
    elif case == "several slices":
        volume = add_volume(scene, np.stack([image] * 3))
    elif case == "missing model":
        bundle = copy_bundle(tmp_path / "bundle")
    elif case == "incompatible bundle":
        bundle = incompatible_bundle
    logic = module.BUSClassifierLogic()
    with pytest.raises(ValueError, match=message):
        logic.classify(volume, bundle)
    assert scene.GetFirstNodeByName("BUSClassifier results") is None  # no row for a failed run


def wait_for(process, timeout=120):
    deadline = time.monotonic() + timeout
    while (output := process.poll()) is None:
        assert time.monotonic() < deadline, "the classification process did not finish"
        time.sleep(0.1)
    return output


def test_background_process(module, api, trained_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    process = logic.startClassification(volume, trained_bundle)
    assert process.status().startswith("Classifying in the background")
    result, attention = wait_for(process)
    expected = api.predict(image)
    assert result["class_name"] == expected.class_name
    np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)
    np.testing.assert_allclose(attention, expected.attention, atol=1e-5)
    assert logic.addResult(volume, result, attention).GetImageData().GetDimensions() == (COLUMNS, ROWS, 1)


def test_background_process_passes_the_box(module, roi_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    roi = roi_over_pixels(scene, (10, 60), (20, 70))
    process = module.BUSClassifierLogic().startClassification(volume, roi_bundle, roi)
    result, _ = wait_for(process)
    expected = BundleClassifier(roi_bundle).predict(image, box=(10, 60, 20, 70))
    assert result["roi"] == list(expected.roi)
    np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)


def test_background_process_reports_the_api_error(module, scene, image, tmp_path):
    volume = add_volume(scene, image[np.newaxis])
    process = module.BUSClassifierLogic().startClassification(volume, copy_bundle(tmp_path / "bundle"))
    with pytest.raises(ValueError, match="model.pt: model file not found"):
        wait_for(process)


def test_background_process_can_be_cancelled(module, trained_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    process = module.BUSClassifierLogic().startClassification(volume, trained_bundle)
    folder = Path(process._folder.name)
    assert process.poll() is None
    process.cancel()
    assert process.process.returncode is not None
    if os.name != "nt":
        with pytest.raises(ProcessLookupError):
            os.killpg(process.process.pid, 0)  # no process of its group is left
    assert not folder.exists()


def test_operating_point_label(module, tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    label = module.BUSClassifierLogic.operatingPointLabel
    assert label(bundle) == "threshold 0.50 (argmax; no validated operating point in this bundle)"
    metadata_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["operating_point"] = {"threshold": 0.35, "description": "sensitivity 0.95 on the validation split"}
    metadata_file.write_text(json.dumps(metadata))
    assert label(bundle) == "threshold 0.35 (sensitivity 0.95 on the validation split)"


def test_self_test(module, monkeypatch):
    """The module's own ScriptedLoadableModuleTest, as users run it in Slicer."""
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)
    outcome = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(module.BUSClassifierTest("runTest"))
    assert outcome.wasSuccessful(), outcome.failures + outcome.errors


def test_dependencies_installed_only_after_confirmation_and_torch_kept(module, monkeypatch):
    dependencies = module.dependencies
    asked, installed = [], []
    monkeypatch.setattr(slicer.util, "pip_install",
                        lambda args: installed.append((args, Path(args[2]).read_text())), raising=False)
    assert dependencies.install(lambda message: asked.append(message) or False)
    assert asked == [] and installed == []  # nothing missing: nothing asked, nothing installed

    find_spec = dependencies.importlib.util.find_spec
    monkeypatch.setattr(dependencies.importlib.util, "find_spec",
                        lambda name: None if name == "monai_bus" else find_spec(name))
    assert not dependencies.install(lambda message: asked.append(message) or False)
    assert "monai_bus" in asked[0] and installed == []  # refused: nothing installed

    dependencies.install(lambda message: True)
    (args, constraints), = installed
    assert args[:2] == [str(dependencies.REPOSITORY), "-c"]
    assert constraints == f"torch=={torch.__version__}\n"  # the installed torch is pinned, never replaced
