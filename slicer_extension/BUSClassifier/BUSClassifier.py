"""BUSClassifier: classify the breast lesion in a 2D ultrasound image as benign or malignant.

The module runs a monai-bus bundle (Attention-VGG16 of Kalafi et al.) through ``monai_bus``'s
inference API, the project's one inference code path, in a child process. It shows P(malignant), the
predicted class and the model's attention map over the image, and appends every result to a table.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

from BUSClassifierLib import classify_worker, dependencies
from BUSClassifierLib.geometry import add_volume_like, ijk_to_ras, image_from_volume, roi_pixel_box
from BUSClassifierLib.process import ClassifierProcess

DEFAULT_OPERATING_POINT = "threshold 0.50 (argmax; no validated operating point in this bundle)"


class BUSClassifier(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "BUS Classifier"
        self.parent.categories = ["Classification"]
        self.parent.dependencies = []
        self.parent.contributors = ["monai-bus contributors"]
        self.parent.helpText = (
            "Classify the breast lesion in a 2D ultrasound image (PNG, JPEG or DICOM) as benign or malignant "
            "with a monai-bus bundle, and show the model's attention map over the image. Draw a markups ROI "
            "around the lesion: a bundle trained on lesion regions classifies the region around it. Research "
            "software, not a medical device."
        )
        self.parent.acknowledgementText = (
            "Kalafi EY et al., Classification of Breast Cancer Lesions in Ultrasound Images by using Attention "
            "Layer and loss Ensembles in Deep Convolutional Neural Networks, arXiv:2102.11519 (2021). Built on MONAI."
        )


class BUSClassifierWidget(ScriptedLoadableModuleWidget):
    """The panel: inputs, Apply/Cancel, a status line and the result. All GUI-only code lives here."""

    POLL_INTERVAL_MS = 250

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BUSClassifier.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BUSClassifierLogic()
        self.job = None  # (ClassifierProcess, input volume node, bundle folder) while one runs
        self.timer = qt.QTimer()
        self.timer.setInterval(self.POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

        self.ui.bundlePathLineEdit.currentPath = self.logic.defaultBundlePath()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)

    def cleanup(self):
        self.onCancel()

    def onApply(self):
        try:
            if not dependencies.install(confirm=slicer.util.confirmOkCancelDisplay):
                self.showStatus("Not run: BUSClassifier needs torch, monai and monai-bus.")
                return
            volumeNode, bundleDir = self.ui.inputVolumeSelector.currentNode(), self.ui.bundlePathLineEdit.currentPath
            process = self.logic.startClassification(volumeNode, bundleDir, self.ui.roiSelector.currentNode())
        except (ValueError, RuntimeError) as error:
            self.showStatus(error, isError=True)
            return
        self.job = (process, volumeNode, bundleDir)
        self.setRunning(True)
        self.showStatus(process.status())
        self.timer.start()

    def onPoll(self):
        process, volumeNode, bundleDir = self.job
        try:
            output = process.poll()
        except (ValueError, RuntimeError) as error:
            self.setRunning(False)
            self.showStatus(error, isError=True)
            return
        if output is None:
            self.showStatus(process.status())
            return
        self.setRunning(False)
        result, attention = output
        attentionNode = self.logic.addResult(volumeNode, result, attention)
        self.ui.classLabel.text = result["class_name"]
        self.ui.probabilityLabel.text = f"{result['malignancy_probability']:.3f}"
        self.ui.operatingPointLabel.text = self.logic.operatingPointLabel(bundleDir)
        self.ui.resultsTableView.setMRMLTableNode(self.logic.resultsTable(slicer.mrmlScene))
        if attentionNode:
            slicer.util.setSliceViewerLayers(background=volumeNode, foreground=attentionNode, foregroundOpacity=0.4)
        note = f" Note: {result['note']}." if result["note"] else ""
        self.showStatus(f"Done: {volumeNode.GetName()} is {result['class_name']} "
                        f"(P(malignant) {result['malignancy_probability']:.3f}).{note}")

    def onCancel(self):
        if self.job:
            self.job[0].cancel()
            self.setRunning(False)
            self.showStatus("Cancelled.")

    def setRunning(self, running):
        if not running:
            self.timer.stop()
            self.job = None
        self.ui.applyButton.enabled = not running
        self.ui.cancelButton.enabled = running

    def showStatus(self, message, isError=False):
        """One line in the panel; an error's full text goes to the tooltip and the log."""
        text = str(message)
        self.ui.statusLabel.text = text.splitlines()[0] if text else ""
        self.ui.statusLabel.toolTip = text
        self.ui.statusLabel.styleSheet = "color: red" if isError else ""
        if isError:
            logging.error(text)


class BUSClassifierLogic(ScriptedLoadableModuleLogic):
    """Classification on MRML nodes, without GUI: usable from tests, scripts and the Python console.

    The input is a scalar or RGB vector volume holding one slice. New nodes go into the input
    volume's own scene.
    """

    RESULTS_TABLE_NAME = "BUSClassifier results"
    COLUMNS = ("Volume", "Class", "P(malignant)", "Model version", "Region", "Time")

    @staticmethod
    def defaultBundlePath() -> str:
        """The project's bundle, next to the ``slicer_extension`` folder."""
        return str(dependencies.REPOSITORY / "bundle")

    def prepareInput(self, volumeNode, roiNode=None):
        """``(image, box)``: the display-order image, and the ROI as the inference API's lesion box in its
        pixels (None without an ROI). The API crops around the box with the bundle's margin.

        Raises:
            ValueError: in plain words, for no volume, several slices or an ROI outside the image.
        """
        image = image_from_volume(volumeNode)
        return image, roi_pixel_box(volumeNode, roiNode, image.shape[:2]) if roiNode else None

    def classify(self, volumeNode, bundleDir, roiNode=None):
        """Classify in this process, wait for the result and add it; returns ``(result, attention node)``.

        Raises:
            ValueError: the inputs' or the inference API's message (missing model, incompatible bundle).
        """
        image, box = self.prepareInput(volumeNode, roiNode)
        result, attention = classify_worker.classify(image, str(bundleDir), box)
        return result, self.addResult(volumeNode, result, attention)

    def startClassification(self, volumeNode, bundleDir, roiNode=None):
        """Start classifying in a child process; returns the :class:`ClassifierProcess`.

        Poll the process; pass its output to :meth:`addResult`.
        """
        image, box = self.prepareInput(volumeNode, roiNode)
        return ClassifierProcess(image, bundleDir, box)

    def addResult(self, volumeNode, result, attention):
        """Append a row to the results table; add the attention map (if any, at the image's size and zero
        outside the classified region) as a volume with the input's geometry. Returns the attention
        volume node or None."""
        table = self.resultsTable(volumeNode.GetScene())
        row = table.AddEmptyRow()
        values = (volumeNode.GetName(), result["class_name"], f"{result['malignancy_probability']:.6f}",
                  result["model_version"], self.regionLabel(result["roi"]),
                  datetime.now().astimezone().isoformat(timespec="seconds"))
        for column, value in enumerate(values):
            table.SetCellText(row, column, value)
        if attention is None:
            return None
        attentionNode = add_volume_like(volumeNode, attention, f"{volumeNode.GetName()} attention")
        display = attentionNode.GetDisplayNode()
        colorNodeID = slicer.vtkMRMLColorLogic.GetColorTableNodeID(slicer.vtkMRMLColorTableNode.Iron)
        display.SetAndObserveColorNodeID(colorNodeID)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        return attentionNode

    @staticmethod
    def regionLabel(roi) -> str:
        """The classified region for the results table: pixel rows and columns (stops excluded), or the
        whole image."""
        if roi is None:
            return "whole image"
        return f"rows {roi[0]}-{roi[1]}, columns {roi[2]}-{roi[3]}"

    def resultsTable(self, scene):
        """The scene's results table, created with its columns on first use."""
        table = scene.GetFirstNodeByName(self.RESULTS_TABLE_NAME)
        if table is None:
            table = scene.AddNewNodeByClass("vtkMRMLTableNode", self.RESULTS_TABLE_NAME)
            for name in self.COLUMNS:
                column = vtk.vtkDoubleArray() if name == "P(malignant)" else vtk.vtkStringArray()
                column.SetName(name)
                table.AddColumn(column)
        return table

    @staticmethod
    def operatingPointLabel(bundleDir) -> str:
        """The bundle's operating point: ``metadata.json``'s optional ``operating_point``
        ``{"threshold": float, "description": str}``, or the argmax default."""
        metadata = json.loads((Path(bundleDir) / "configs" / "metadata.json").read_text(encoding="utf8"))
        point = metadata.get("operating_point")
        if point is None:
            return DEFAULT_OPERATING_POINT
        return f"threshold {float(point['threshold']):.2f} ({point['description']})"


class BUSClassifierTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic image with an untrained copy of the project's bundle (checks the plumbing,
    not the model): run it from the module's "Reload and Test" button."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_classify_synthetic_image()

    def test_classify_synthetic_image(self):
        missing = dependencies.missing_modules()
        self.assertFalse(missing, f"Install the module's dependencies first (click Apply once): {missing}")
        from monai_bus.data.demo import synthesize_case

        self.delayDisplay("Synthetic image with a flipped, rotated geometry")
        image, _ = synthesize_case(1, 96, np.random.default_rng(0))
        ijkToRAS = np.array([[0.0, -0.2, 0.0, 10.0], [-0.3, 0.0, 0.0, -5.0], [0.0, 0.0, 1.0, 2.0], [0, 0, 0, 1]])
        volume = slicer.util.addVolumeFromArray(image[np.newaxis], ijkToRAS, name="Synthetic lesion")
        logic = BUSClassifierLogic()

        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("A missing model file is reported")
            bundle = Path(folder) / "bundle"
            shutil.copytree(Path(logic.defaultBundlePath()) / "configs", bundle / "configs")
            with self.assertRaisesRegex(ValueError, "model file not found"):
                logic.classify(volume, bundle)

            self.delayDisplay("Classification with untrained weights")
            self._saveUntrainedWeights(bundle)
            result, attentionNode = logic.classify(volume, bundle)

        self.assertIn(result["class_name"], ("benign", "malignant"))
        table = logic.resultsTable(slicer.mrmlScene)
        self.assertEqual(table.GetCellText(table.GetNumberOfRows() - 1, 0), "Synthetic lesion")
        np.testing.assert_allclose(ijk_to_ras(attentionNode), ijk_to_ras(volume))
        self.assertEqual(slicer.util.arrayFromVolume(attentionNode).shape, (1, 96, 96))
        self.delayDisplay("Test passed")

    @staticmethod
    def _saveUntrainedWeights(bundle):
        import torch
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        (bundle / "models").mkdir()
        torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
