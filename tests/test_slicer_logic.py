"""The 3D Slicer module's Logic, end to end on a real vtkMRMLScene from ``slicer-core`` (no Slicer app).

``BUSClassifier.py`` imports ``qt`` and ``slicer.ScriptedLoadableModule``, which only the Slicer
application has: the ``module`` fixture stands in minimal replacements for them, so the real Logic and
self-test classes run. The Widget is exercised in ``test_slicer_widget.py``, the overlay's rendering in
``test_slicer_overlay.py``; both use this file's fixtures.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import types
import unittest
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CONFIGS, REPO, copy_bundle
from monai_bus.inference import BOX_IGNORED_NOTE, NO_LESION_NOTE, NO_OPERATING_POINT_NOTE, BundleClassifier
from monai_bus.localiser import LesionLocaliser

if os.environ.get("CI") == "true":  # CI installs the slicer extra: there a missing slicer-core fails
    import slicer
else:
    slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install -e '.[slicer]')")
import slicer.util  # noqa: E402
import vtk  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[1] / "slicer_extension" / "BUSClassifier"
# A flip and a 90-degree in-plane rotation: columns (I) run towards -A, rows (J) towards -R.
IJK_TO_RAS = np.array([
    [0.0, -0.3, 0.0, 12.5],
    [-0.2, 0.0, 0.0, -40.0],
    [0.0, 0.0, 1.5, 7.0],
    [0.0, 0.0, 0.0, 1.0],
])
ROWS, COLUMNS = 96, 80


@contextmanager
def imported_module(module_dir: Path):
    """``BUSClassifier.py`` of ``module_dir`` imported with stand-ins for the Slicer-application-only modules;
    its modules leave ``sys.modules`` afterwards."""
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class Base:
        def __init__(self, parent=None):
            self.parent = parent

    class Widget(Base):
        def setup(self):
            self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

        def resourcePath(self, name):
            return str(module_dir / "Resources" / name)

    class Test(unittest.TestCase):
        def delayDisplay(self, message):
            pass

    scripted.ScriptedLoadableModule = scripted.ScriptedLoadableModuleLogic = Base
    scripted.ScriptedLoadableModuleWidget = Widget
    scripted.ScriptedLoadableModuleTest = Test
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "qt", types.ModuleType("qt"))
        patch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
        patch.syspath_prepend(str(module_dir))
        import BUSClassifier

        yield BUSClassifier
    for name in [name for name in sys.modules if name.startswith(("BUSClassifier", "BUSClassifierLib"))]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def module():
    """``BUSClassifier.py`` of the repository's checkout (see :func:`imported_module`)."""
    with imported_module(MODULE_DIR) as imported:
        yield imported


@pytest.fixture(scope="module")
def api(whole_bundle):
    return BundleClassifier(whole_bundle)


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(scope="module")
def image(module):
    return module.BUSClassifierTest.syntheticImage(ROWS, COLUMNS, seed=3)  # non-square: 96 x 80


def add_volume(scene, array, name="lesion", class_name="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(IJK_TO_RAS))
    slicer.util.updateVolumeFromArray(node, array)
    return node


def row(table, index=0) -> dict:
    """A results table row by column name."""
    return {table.GetColumnName(c): table.GetCellText(index, c) for c in range(table.GetNumberOfColumns())}


def test_end_to_end(module, api, whole_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    result, attention_node = logic.classify(volume, whole_bundle)

    expected = api.predict(image)
    assert {key: result[key] for key in expected.to_dict()} == expected.to_dict()
    checksum = hashlib.sha256((whole_bundle / "models" / "model.pt").read_bytes()).hexdigest()
    assert result["threshold"] is None and result["weights_sha256"] == checksum
    table = logic.resultsTable(scene)
    assert table.GetName() == "BUSClassifier results"
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        "Volume", "Class", "P(malignant)", "Likelihood", "Uncertainty", "Refer", "Threshold", "Model version",
        "Weights SHA-256", "Trained on", "Region", "Box source", "Localiser version", "Localiser confidence", "Note",
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Time"]
    assert table.GetNumberOfRows() == 1
    values = row(table)
    assert values["Volume"] == "lesion" and values["Class"] == expected.class_name
    assert float(values["P(malignant)"]) == pytest.approx(expected.malignancy_probability, abs=1e-6)
    assert values["Threshold"] == "argmax"
    bundle_version = json.loads((CONFIGS / "metadata.json").read_text())["version"]
    assert values["Model version"] == expected.model_version and expected.model_version.startswith(
        f"{bundle_version}+trained.")  # trained here, so not the bundle's release
    assert values["Weights SHA-256"] == checksum and values["Trained on"] == expected.trained_on
    assert values["Likelihood"] == expected.likelihood
    assert float(values["Uncertainty"]) == pytest.approx(expected.uncertainty, abs=1e-4)
    assert values["Refer"] == "" and expected.refer is None  # the bundle has no operating point to refer by
    assert values["Region"] == "whole image" and values["Box source"] == "none"
    assert values["Note"] == NO_OPERATING_POINT_NOTE
    assert values["StudyInstanceUID"] == values["SeriesInstanceUID"] == values["SOPInstanceUID"] == ""
    assert datetime.fromisoformat(values["Time"]).tzinfo is not None

    np.testing.assert_array_equal(module.ijk_to_ras(attention_node), IJK_TO_RAS)
    assert attention_node.GetOrigin() == volume.GetOrigin()
    assert attention_node.GetSpacing() == volume.GetSpacing()
    attention = slicer.util.arrayFromVolume(attention_node)
    assert attention.shape == (1, ROWS, COLUMNS)
    assert 0.0 <= attention.min() <= attention.max() <= 1.0
    np.testing.assert_allclose(attention[0], expected.attention, atol=1e-6)  # same orientation as the image
    color_table = scene.GetFirstNodeByName("BUSClassifier attention")
    assert attention_node.GetDisplayNode().GetColorNodeID() == color_table.GetID()
    rgba = [0.0] * 4
    color_table.GetColor(0, rgba)
    assert rgba[3] == 0.0  # attention 0 is not drawn
    color_table.GetColor(1, rgba)
    assert rgba[3] == 1.0

    assert logic.addResult(volume, result, expected.attention) is attention_node  # reused on every result
    assert table.GetNumberOfRows() == 2  # every result is kept, in the same table
    other = add_volume(scene, image[np.newaxis], name="other")
    assert logic.addResult(other, result, expected.attention).GetName() == "other attention"
    assert [node.GetName() for node in module.attention_volumes(scene)] == ["lesion attention", "other attention"]
    assert scene.GetNodesByClass("vtkMRMLColorTableNode").GetNumberOfItems() == 1


def test_table_from_an_older_version_gets_the_new_columns(module, scene):
    old = scene.AddNewNodeByClass("vtkMRMLTableNode", "BUSClassifier results")
    for name in ("Volume", "Class", "Time"):
        column = vtk.vtkStringArray()
        column.SetName(name)
        old.AddColumn(column)
    table = module.BUSClassifierLogic().resultsTable(scene)
    assert table is old
    assert {table.GetColumnName(c) for c in range(table.GetNumberOfColumns())} == set(
        module.BUSClassifierLogic.COLUMNS)


def test_row_threshold_note_and_dicom_uids(module, scene, image, monkeypatch):
    volume = add_volume(scene, image[np.newaxis])
    result = {"class_name": "benign", "malignancy_probability": 0.25, "threshold": 0.35, "model_version": "0.3.0",
              "weights_sha256": "ab" * 32, "roi": None, "note": BOX_IGNORED_NOTE, "likelihood": "probably benign",
              "trained_on": "the test's data", "box_source": None, "localiser_version": None,
              "localiser_confidence": None, "uncertainty": 0.01234, "refer": False}
    logic = module.BUSClassifierLogic()
    values = logic.rowValues(volume, result)
    assert values["Threshold"] == "0.35" and values["Note"] == BOX_IGNORED_NOTE and values["Box source"] == "none"
    assert (values["Uncertainty"], values["Refer"]) == ("0.0123", "no")
    assert logic.rowValues(volume, result | {"uncertainty": None, "refer": None})["Refer"] == ""

    volume.SetAttribute("DICOM.instanceUIDs", "1.2.3.4.5")  # as Slicer's DICOM loader sets it
    monkeypatch.delattr(slicer, "dicomDatabase", raising=False)  # slicer-core has no DICOM database
    values = logic.rowValues(volume, result)
    assert (values["StudyInstanceUID"], values["SeriesInstanceUID"], values["SOPInstanceUID"]) == ("", "", "1.2.3.4.5")

    tags = {("1.2.3.4.5", "0020,000D"): "1.2.3", ("1.2.3.4.5", "0020,000E"): "1.2.3.4"}
    database = types.SimpleNamespace(isOpen=True, instanceValue=lambda uid, tag: tags[uid, tag])
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    values = logic.rowValues(volume, result)
    assert (values["StudyInstanceUID"], values["SeriesInstanceUID"], values["SOPInstanceUID"]) == (
        "1.2.3", "1.2.3.4", "1.2.3.4.5")


def test_rgb_vector_volume(module, api, whole_bundle, scene, image):
    volume = add_volume(scene, np.stack([image] * 3, axis=-1)[np.newaxis], class_name="vtkMRMLVectorVolumeNode")
    result, attention_node = module.BUSClassifierLogic().classify(volume, whole_bundle)
    np.testing.assert_allclose(result["probabilities"], api.predict(image).probabilities, atol=1e-3)
    assert slicer.util.arrayFromVolume(attention_node).shape == (1, ROWS, COLUMNS)


def roi_over_pixels(scene, rows, columns, ijk_to_ras=IJK_TO_RAS):
    """A markups ROI whose extent covers the centres of the pixels rows[0]..rows[1]-1, columns[0]..columns[1]-1."""
    low = np.array([columns[0] - 0.4, rows[0] - 0.4, -1.0, 1.0])
    high = np.array([columns[1] - 0.6, rows[1] - 0.6, 1.0, 1.0])
    corners = (ijk_to_ras @ np.array([low, high]).T)[:3].T
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
    flat = roi_over_pixels(scene, (10, 30), (20, 50))
    flat.SetSize(flat.GetSize()[0], 0.0, flat.GetSize()[2])  # no extent along rows (A here): was "outside"
    with pytest.raises(ValueError, match="^The ROI 'box' has no width or no height on the image 'lesion'; resize it"):
        module.roi_pixel_box(volume, flat, (ROWS, COLUMNS))


def test_roi_is_the_lesion_box_of_the_inference_api(module, roi_bundle, scene, image):
    """The ROI, drawn on a volume with a flipped, rotated geometry, reaches the API as the box of the pixels
    it covers; the API crops around it; the attention map comes back at the image's size."""
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    result, attention_node = logic.classify(volume, roi_bundle, roi_over_pixels(scene, (10, 60), (20, 70)))
    expected = BundleClassifier(roi_bundle).predict(image, box=(10, 60, 20, 70))
    assert {key: result[key] for key in expected.to_dict()} == expected.to_dict()
    assert result["roi"] == [0, 73, 7, 80]  # box plus 25%, clipped
    attention = slicer.util.arrayFromVolume(attention_node)[0]
    np.testing.assert_allclose(attention, expected.attention, atol=1e-6)
    attention[0:73, 7:80] = 0
    assert not attention.any()  # zero outside the classified region
    np.testing.assert_array_equal(module.ijk_to_ras(attention_node), IJK_TO_RAS)
    values = row(logic.resultsTable(scene))
    assert values["Region"] == "rows 0-73, columns 7-80" and values["Box source"] == "given"
    assert values["Note"] == ""


def test_an_roi_placed_over_a_pixel_box_covers_those_pixels(module, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    for box in ((10, 30, 20, 50), (0, ROWS, 0, COLUMNS), (40, 41, 79, 80)):
        module.place_roi_over_pixel_box(roi, volume, box)
        assert module.roi_pixel_box(volume, roi, (ROWS, COLUMNS)) == box


def test_the_localisers_lesion_becomes_a_segmentation_and_a_movable_roi(module, scene):
    """Without an ROI, the shipped localiser's lesion (on a sample image, flipped and rotated geometry) becomes the
    volume's lesion segmentation and its box the volume's lesion ROI; classifying with that ROI gives the same."""
    pixels = np.asarray(Image.open(REPO / "monai_bus" / "samples" / "bus_0006-s.png").convert("L"))
    volume = add_volume(scene, pixels[np.newaxis])
    logic = module.BUSClassifierLogic()
    result, _ = logic.classify(volume, REPO / "bundle", None, REPO / "localiser")
    expected = BundleClassifier(REPO / "bundle", localiser=LesionLocaliser(REPO / "localiser")).predict(pixels)
    assert {key: result[key] for key in expected.to_dict()} == expected.to_dict()
    assert result["box_source"] == "localiser" and result["box"] == list(expected.box)
    first = row(logic.resultsTable(scene), 0)  # the localiser is unsure of this (right) box: check it
    assert expected.check_box and first["Refer"] == "yes" and "check that the box holds the lesion" in first["Note"]
    assert float(first["Localiser confidence"]) == pytest.approx(expected.localiser_confidence, abs=1e-4)
    segmentation = module.lesion_node(volume, "vtkMRMLSegmentationNode")
    assert segmentation.GetName() == "lesion lesion" and segmentation.GetSegmentation().GetNumberOfSegments() == 1
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "lesion"
    labelmap = slicer.util.arrayFromSegmentInternalBinaryLabelmap(segmentation,
                                                                  segmentation.GetSegmentation().GetNthSegmentID(0))
    assert labelmap.sum() == expected.lesion_mask.sum()
    roi = module.lesion_node(volume, "vtkMRMLMarkupsROINode")
    assert roi.GetName() == "lesion lesion box" and module.roi_pixel_box(volume, roi, pixels.shape) == expected.box

    again, _ = logic.classify(volume, REPO / "bundle", roi, REPO / "localiser")
    assert again["box_source"] == "given" and again["box"] == result["box"]
    assert again["probabilities"] == pytest.approx(result["probabilities"], abs=1e-6)
    assert [row(logic.resultsTable(scene), index)["Box source"] for index in (0, 1)] == ["localiser", "given"]
    assert module.lesion_node(volume, "vtkMRMLSegmentationNode") is segmentation  # one per image, reused


def test_no_lesion_found_is_said_and_nothing_is_classified(module, roi_bundle, scene, image, tmp_path):
    from test_localiser import copy_localiser, save_weights

    def background_everywhere(state):
        for value in state.values():
            value.zero_()
        state[[key for key in state if key.endswith("bias")][-1]][0] = 1.0

    localiser = copy_localiser(tmp_path / "localiser")
    save_weights(localiser, background_everywhere)
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    _, attention_before = logic.classify(volume, roi_bundle, roi_over_pixels(scene, (10, 60), (20, 70)))
    module.show_lesion(volume, np.ones((ROWS, COLUMNS), bool), (10, 60, 20, 70))  # as an earlier localised result
    result, attention_node = logic.classify(volume, roi_bundle, None, localiser)
    assert result["class_name"] is None and result["probabilities"] is None and attention_node is None
    assert not slicer.util.arrayFromVolume(attention_before).any()  # no earlier answer stays on screen
    assert result["note"] == NO_LESION_NOTE and result["box_source"] == "localiser" and result["box"] is None
    values = row(logic.resultsTable(scene), 1)
    assert (values["Class"], values["Box source"], values["Region"]) == (
        "no lesion found", "localiser", "not classified")
    assert values["Likelihood"] == "" and values["Note"] == NO_LESION_NOTE
    assert module.lesion_node(volume, "vtkMRMLSegmentationNode").GetSegmentation().GetNumberOfSegments() == 0
    assert module.lesion_node(volume, "vtkMRMLMarkupsROINode") is None


@pytest.fixture(scope="module")
def incompatible_bundle(tmp_path_factory):
    bundle = copy_bundle(tmp_path_factory.mktemp("incompatible") / "bundle")
    (bundle / "models").mkdir()
    torch.save({"classifier.weight": torch.zeros(2, 10)}, bundle / "models" / "model.pt")
    return bundle


@pytest.mark.parametrize("case, message", [
    ("no volume", "No input volume selected"),
    ("several slices", "'lesion' is a 3D volume of 3 slices; select a 2D image"),
    ("one slice along I", "'lesion' is one slice thick along another axis than its third .K.; load the 2D image"),
    ("under a transform", "'lesion' is under the transform 'shift'; harden it .Data module: right-click the volume, "
                          "Harden transform. and click Apply again.$"),
    ("oblique", r"'lesion' is oblique \(its axes do not run along R, A and S\); resample it along them"),
    ("zero spacing", r"'lesion' has no spacing along one of its axes; set its spacing in the Volumes module.$"),
    ("missing model", r"models/model.pt: model file not found; train the bundle first"),
    ("incompatible bundle", "models/model.pt: does not match the bundle's network_def"),
    ("no lesion box", "trained on lesion regions and needs a lesion box; draw a markups ROI"),
    ("nan pixels", "^'lesion': 1 pixels are NaN or infinite"),  # was "image array: ...", naming no volume
])
def test_errors_in_plain_words(module, scene, image, whole_bundle, roi_bundle, incompatible_bundle, tmp_path, case,
                               message):
    volume, bundle = add_volume(scene, image[np.newaxis]), whole_bundle
    if case == "no volume":
        volume = None
    elif case == "several slices":
        volume = add_volume(scene, np.stack([image] * 3))
    elif case == "one slice along I":  # was "a 3D volume of 80 slices"
        volume = add_volume(scene, image.T[:, :, np.newaxis].copy())
    elif case == "under a transform":  # the boxes and overlays would be placed off the image shown
        volume.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift").GetID())
    elif case == "oblique":  # the ROI's box would be turned against the image's pixels
        turned = np.array(IJK_TO_RAS)
        angle = np.radians(30)
        turned[:2, :2] = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ turned[:2, :2]
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(turned))
    elif case == "zero spacing":  # was called oblique
        flat = np.array(IJK_TO_RAS)
        flat[:3, 0] = 0.0
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(flat))
    elif case == "missing model":
        bundle = copy_bundle(tmp_path / "bundle")
    elif case == "incompatible bundle":
        bundle = incompatible_bundle
    elif case == "no lesion box":
        bundle = roi_bundle
    elif case == "nan pixels":
        pixels = image.astype(np.float32)
        pixels[3, 4] = np.nan
        volume = add_volume(scene, pixels[np.newaxis], name="lesion")
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


def test_background_process(module, api, whole_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    logic = module.BUSClassifierLogic()
    process = logic.startClassification(volume, whole_bundle)
    assert process.status().startswith("Classifying in the background")
    result, attention, lesion_mask = wait_for(process)
    assert lesion_mask is None
    expected = api.predict(image)
    assert result["class_name"] == expected.class_name
    np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)
    np.testing.assert_allclose(attention, expected.attention, atol=1e-5)
    assert logic.addResult(volume, result, attention).GetImageData().GetDimensions() == (COLUMNS, ROWS, 1)


def test_background_process_passes_the_box(module, roi_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    roi = roi_over_pixels(scene, (10, 60), (20, 70))
    process = module.BUSClassifierLogic().startClassification(volume, roi_bundle, roi)
    result, _, _ = wait_for(process)
    expected = BundleClassifier(roi_bundle).predict(image, box=(10, 60, 20, 70))
    assert result["roi"] == list(expected.roi)
    np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)


def test_background_process_reports_the_api_error(module, scene, image, whole_bundle, tmp_path):
    volume = add_volume(scene, image[np.newaxis])
    process = module.BUSClassifierLogic().startClassification(volume, copy_bundle(tmp_path / "bundle"))
    with pytest.raises(ValueError, match="model.pt: model file not found"):
        wait_for(process)
    pixels = image.astype(np.float32)
    pixels[3, 4] = np.inf
    process = module.BUSClassifierLogic().startClassification(add_volume(scene, pixels[np.newaxis], "scan 2"),
                                                              whole_bundle)
    with pytest.raises(ValueError, match="^'scan 2': 1 pixels are NaN or infinite"):  # the volume, not "image array"
        wait_for(process)


def test_worker_reports_any_error_in_one_message(module, tmp_path):
    """Not only the inference API's ValueError: whatever fails in the worker is written as its result."""
    worker = module.classify_worker
    with pytest.raises(FileNotFoundError):
        worker.main(["--bundle", str(tmp_path), "--image", str(tmp_path / "missing.npy"), "--output", str(tmp_path)])
    message = json.loads((tmp_path / worker.RESULT_FILE).read_text())["error"]
    assert message.startswith("FileNotFoundError: [Errno 2] No such file or directory") and "missing.npy" in message


def test_killed_worker_is_reported_in_one_line(module, whole_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    process = module.BUSClassifierLogic().startClassification(volume, whole_bundle)
    os.kill(process.process.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError) as error:
        wait_for(process)
    assert str(error.value).splitlines()[0].startswith("The classification process failed (exit code -9): ")


def test_background_process_can_be_cancelled(module, whole_bundle, scene, image):
    volume = add_volume(scene, image[np.newaxis])
    process = module.BUSClassifierLogic().startClassification(volume, whole_bundle)
    folder = Path(process._folder.name)
    assert process.poll() is None
    process.cancel()
    assert process.process.returncode is not None
    if os.name != "nt":
        with pytest.raises(ProcessLookupError):
            os.killpg(process.process.pid, 0)  # no process of its group is left
    assert not folder.exists()


def test_operating_point_label_names_the_threshold_the_result_was_classified_at(module, tmp_path):
    bundle = copy_bundle(tmp_path / "bundle")
    label = module.BUSClassifierLogic.operatingPointLabel
    assert label(bundle, None) == "threshold 0.50 (argmax; no validated operating point in this bundle)"
    metadata_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["operating_point"] = {"threshold": 0.35, "description": "sensitivity 0.95 on the validation split"}
    metadata_file.write_text(json.dumps(metadata))
    assert label(bundle, 0.35) == "threshold 0.35 (sensitivity 0.95 on the validation split)"
    assert label(bundle, 0.004).startswith("threshold 0.004 (")  # not "0.00", as the results table shows it
    # fitted for other weights, the API classified at the argmax: the label does not claim 0.35
    assert label(bundle, None) == ("threshold 0.50 (argmax; the bundle's operating point was not applied: see the "
                                   "note)")
    del metadata["operating_point"]["description"]  # optional for the API
    metadata_file.write_text(json.dumps(metadata))
    assert label(bundle, 0.35) == "threshold 0.35"


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
    # a checkout: its bundle, monai-bus from it, its samples
    assert dependencies.locate() == (REPO / "bundle", REPO, REPO / "monai_bus" / "samples", REPO / "localiser")
    assert args[:2] == [str(REPO), "-c"]
    assert constraints == f"torch=={torch.__version__}\n"  # the installed torch is pinned, never replaced
