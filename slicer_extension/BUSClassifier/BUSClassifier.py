"""BUSClassifier: classify the breast lesion in a 2D ultrasound image as benign or malignant.

The module runs a monai-bus bundle (Attention-VGG16 of Kalafi et al.) through ``monai_bus``'s
inference API, the project's one inference code path, in a child process. It shows P(malignant), the
predicted class and the model's attention map over the image, and appends every result to a table.
Without a lesion ROI, the localiser bundle finds the lesion: the module shows its outline as a
segmentation and its box as an ROI that the user can move before classifying again.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
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
from BUSClassifierLib.geometry import ijk_to_ras, image_from_volume, place_roi_over_pixel_box, roi_pixel_box
from BUSClassifierLib.lesion import is_lesion_box_of_another_image, lesion_node, show_lesion
from BUSClassifierLib.overlay import FOREGROUND_OPACITY, attention_volumes, clear_attention, show_attention
from BUSClassifierLib.process import ClassifierProcess

DEFAULT_OPERATING_POINT = "threshold 0.50 (argmax; no validated operating point in this bundle)"
OPERATING_POINT_NOT_APPLIED = "threshold 0.50 (argmax; the bundle's operating point was not applied: see the note)"


class BUSClassifier(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "BUS Classifier"
        self.parent.categories = ["Classification"]
        self.parent.dependencies = []
        self.parent.contributors = ["monai-bus contributors"]
        self.parent.helpText = (
            "Classify the breast lesion in a 2D ultrasound image (PNG, JPEG or DICOM) as benign or malignant "
            "with a monai-bus bundle, and show the model's attention map over the image. A bundle trained on "
            "lesion regions classifies the region around the lesion box: a markups ROI you draw, or else the box "
            "of the lesion that the localiser finds, shown as a segmentation and an ROI you can move before "
            "classifying again. Research software, not a medical device."
        )
        self.parent.acknowledgementText = (
            "Kalafi EY et al., Classification of Breast Cancer Lesions in Ultrasound Images by using Attention "
            "Layer and loss Ensembles in Deep Convolutional Neural Networks, arXiv:2102.11519 (2021). Built on MONAI. "
            "Sample images: BUS-BRA (Gomez-Flores, Gregorio-Calas and Pereira, Medical Physics 2023), CC BY 4.0."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the four sample images (BUS-BRA, CC BY 4.0: see CREDITS.md beside them) in the Sample Data
    module, under "BUS Classifier"; each sample's lesion box is in its ``samples.json``."""
    import SampleData

    samples = dependencies.locate().samples
    for sample in json.loads((samples / "samples.json").read_text())["samples"]:
        path = samples / sample["image"]
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="BUS Classifier", sampleName=f"{path.stem} ({sample['pathology']})", uris=path.as_uri(),
            fileNames=path.name, nodeNames=path.stem, thumbnailFileName=str(path), loadFileType="VolumeFile")


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
        self.job = None  # (ClassifierProcess, input volume node, bundle folder, Logic.inputState) while one runs
        self.timer = qt.QTimer()
        self.timer.setInterval(self.POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)

        self.ui.bundlePathLineEdit.currentPath = self.logic.defaultBundlePath()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.hideAttentionVolumes()

    def enter(self):
        self.hideAttentionVolumes()  # those of a scene loaded meanwhile

    def cleanup(self):
        self.onCancel()

    def onApply(self):
        """Check the inputs and start classifying in a child process; any error goes to the status line.
        The previous result leaves the panel (it stays in the results table), so no error shows beside it."""
        self.showAnswer("", "", "")
        try:
            if not dependencies.install(confirm=slicer.util.confirmOkCancelDisplay):
                self.showStatus("Not run: BUSClassifier needs torch, monai and monai-bus.")
                return
            volumeNode, bundleDir = self.ui.inputVolumeSelector.currentNode(), self.ui.bundlePathLineEdit.currentPath
            roiNode = self.ui.roiSelector.currentNode()
            if volumeNode is not None and roiNode is not None and is_lesion_box_of_another_image(roiNode, volumeNode):
                roiNode = lesion_node(volumeNode, "vtkMRMLMarkupsROINode")  # this image's own, if any
                self.ui.roiSelector.setCurrentNode(roiNode)
            inputState = self.logic.inputState(volumeNode)  # first: a failure here leaves no process running
            process = self.logic.startClassification(volumeNode, bundleDir, roiNode, self.logic.defaultLocaliserPath())
        except Exception as error:
            self.showError(error)
            return
        self.job = (process, volumeNode, bundleDir, inputState)
        self.setRunning(True)
        self.showStatus(process.status())
        self.timer.start()

    def onPoll(self):
        """Called by the timer while a classification runs: shows its progress, then its result or error.
        Stops it when its input volume leaves the scene (deleted, or the scene closed), and discards its result
        when the volume's pixels or geometry changed meanwhile."""
        process, volumeNode, bundleDir, inputState = self.job
        try:
            if volumeNode.GetScene() is None:
                process.cancel()
                self.setRunning(False)
                self.showStatus(f"Stopped: the input volume '{volumeNode.GetName()}' was removed from the scene.")
                return
            output = process.poll()
            if output is None:
                self.showStatus(process.status())
                return
            self.setRunning(False)
            if self.logic.changedSince(volumeNode, inputState):
                self.showStatus(f"Discarded: '{volumeNode.GetName()}' changed while it was classified; click Apply "
                                "again.", isError=True)
                return
            self.showResult(volumeNode, bundleDir, *output)
        except Exception as error:
            self.setRunning(False)
            self.showError(error)

    def showResult(self, volumeNode, bundleDir, result, attention, lesionMask):
        """Add the result to the scene (table row, attention overlay, the localiser's lesion) and show it in
        the panel; the localiser's lesion box becomes the selected ROI."""
        attentionNode = self.logic.addResult(volumeNode, result, attention, lesionMask)
        classified = result["class_name"] is not None
        self.showAnswer(result["class_name"] if classified else result["unclassified_reason"],
                        f"{result['malignancy_probability']:.3f}" if classified else "-",
                        self.logic.operatingPointLabel(bundleDir, result["threshold"]))
        self.ui.resultsTableView.setMRMLTableNode(self.logic.resultsTable(volumeNode.GetScene()))
        if attentionNode:
            slicer.util.setSliceViewerLayers(background=volumeNode, foreground=attentionNode,
                                             foregroundOpacity=FOREGROUND_OPACITY)
            self.hideAttentionVolumes()
        if result["unclassified_reason"] == "no lesion found":
            self.showStatus(f"Done: the localiser found no lesion in {volumeNode.GetName()}, so it was not "
                            "classified. If there is a lesion, draw an ROI around it and click Apply again.")
            return
        moveHint = ""
        if result["box_source"] == "localiser":
            roiNode = lesion_node(volumeNode, "vtkMRMLMarkupsROINode")
            self.ui.roiSelector.setCurrentNode(roiNode)
            moveHint = (f" The box is the localiser's: move the ROI '{roiNode.GetName()}' if it misses the lesion "
                        "and click Apply again.")
        if not classified:
            self.showStatus(f"Done: {volumeNode.GetName()} was not classified: {result['note']}.{moveHint}")
            return
        note = f" Note: {result['note']}." if result["note"] else ""
        if result["check_box"]:
            note = f" Refer: check the box first.{note}"  # the note says why
        elif result["refer"]:
            spread = "" if result["uncertainty"] is None else (
                f" (uncertainty {result['uncertainty']:.3f}: the spread of P(malignant) over test-time views, the "
                "image mirrored and, around a box, the box moved a little)")
            note = f" Refer: a reader should decide{spread}.{note}"
        self.showStatus(f"Done: {volumeNode.GetName()} is {result['class_name']} "
                        f"(P(malignant) {result['malignancy_probability']:.3f}).{note}{moveHint}")

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

    def hideAttentionVolumes(self):
        """Keep the attention volumes, which are results, out of the input selector."""
        self.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs = [
            node.GetID() for node in attention_volumes(slicer.mrmlScene)]

    def showAnswer(self, classText, probabilityText, operatingPointText):
        """The result's class (or why it was not classified), P(malignant) and operating point in the panel."""
        self.ui.classLabel.text = classText
        self.ui.probabilityLabel.text = probabilityText
        self.ui.operatingPointLabel.text = operatingPointText

    def showError(self, error):
        """An exception as one line on the status line (see :func:`classify_worker.error_message`); its full
        text goes to the tooltip and the log, with the traceback of an unexpected one."""
        text = classify_worker.error_message(error)
        self.showStatus(text, isError=True)
        logging.error(text, exc_info=None if isinstance(error, (ValueError, RuntimeError)) else error)

    def showStatus(self, message, isError=False):
        """One line in the panel, the full text in its tooltip; red for an error."""
        text = str(message)
        self.ui.statusLabel.text = text.splitlines()[0] if text else ""
        self.ui.statusLabel.toolTip = text
        self.ui.statusLabel.styleSheet = "color: red" if isError else ""


class BUSClassifierLogic(ScriptedLoadableModuleLogic):
    """Classification on MRML nodes, without GUI: usable from tests, scripts and the Python console.

    The input is a scalar or RGB vector volume holding one slice. New nodes go into the input
    volume's own scene.
    """

    RESULTS_TABLE_NAME = "BUSClassifier results"
    COLUMNS = ("Volume", "Class", "P(malignant)", "Likelihood", "Uncertainty", "Refer", "Threshold", "Model version",
               "Weights SHA-256", "Trained on", "Region", "Box source", "Localiser version", "Localiser confidence",
               "Note", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Time")

    @staticmethod
    def defaultBundlePath() -> str:
        """The project's bundle: the repository's ``bundle`` folder, or the one a built extension ships
        (:func:`dependencies.locate`)."""
        return str(dependencies.locate().bundle)

    @staticmethod
    def defaultLocaliserPath() -> str:
        """The project's localiser bundle, found as :meth:`defaultBundlePath`."""
        return str(dependencies.locate().localiser)

    def prepareInput(self, volumeNode, roiNode=None):
        """``(image, box)``: the display-order image, and the ROI as the inference API's lesion box in its
        pixels (None without an ROI). The API crops around the box with the bundle's margin.

        Raises:
            ValueError: in plain words, for no volume, several slices or an ROI outside the image.
        """
        image = image_from_volume(volumeNode)
        return image, roi_pixel_box(volumeNode, roiNode, image.shape[:2]) if roiNode else None

    @staticmethod
    def inputState(volumeNode):
        """``(image, IJK-to-RAS matrix)``: what a classification of the volume started from."""
        return image_from_volume(volumeNode), ijk_to_ras(volumeNode)

    def changedSince(self, volumeNode, state) -> bool:
        """Whether the volume's pixels or geometry differ from ``state`` (:meth:`inputState`), or it can no
        longer be classified (e.g. it became 3D): a result for ``state`` would be placed on another image."""
        try:
            image, matrix = self.inputState(volumeNode)
        except ValueError:
            return True
        return not (np.array_equal(image, state[0]) and np.array_equal(matrix, state[1]))

    def classify(self, volumeNode, bundleDir, roiNode=None, localiserDir=None):
        """Classify in this process, wait for the result and add it; returns ``(result, attention node)``.

        Args:
            localiserDir: the localiser bundle, which finds the lesion box when there is no ROI.

        Raises:
            ValueError: the inputs' or the inference API's message (missing model, incompatible bundle),
                or neither an ROI nor a localiser for a bundle trained on lesion regions.
        """
        image, box = self.prepareInput(volumeNode, roiNode)
        result, attention, lesionMask = classify_worker.classify(
            image, str(bundleDir), box, None if localiserDir is None else str(localiserDir), volumeNode.GetName())
        return result, self.addResult(volumeNode, result, attention, lesionMask)

    def startClassification(self, volumeNode, bundleDir, roiNode=None, localiserDir=None):
        """Start classifying in a child process; returns the :class:`ClassifierProcess`.

        Poll the process; pass its output to :meth:`addResult`. Arguments as for :meth:`classify`.
        """
        image, box = self.prepareInput(volumeNode, roiNode)
        return ClassifierProcess(image, bundleDir, box, localiserDir, volumeNode.GetName())

    def addResult(self, volumeNode, result, attention, lesionMask=None):
        """Append a row to the results table; put the attention map (if any: the image's size, zero outside
        the classified region) into the input's attention volume (:func:`overlay.show_attention`), and the
        localiser's lesion mask (if any) into the input's lesion segmentation and its box into the input's
        lesion ROI (:func:`lesion.show_lesion`). Returns the attention volume node or None."""
        table = self.resultsTable(volumeNode.GetScene())
        row = table.AddEmptyRow()
        for name, value in self.rowValues(volumeNode, result).items():
            table.SetCellText(row, table.GetColumnIndex(name), value)
        if lesionMask is not None:
            show_lesion(volumeNode, lesionMask, result["box"])
        if result["class_name"] is None:
            clear_attention(volumeNode)
        return None if attention is None else show_attention(volumeNode, attention)

    def rowValues(self, volumeNode, result) -> dict:
        """The results table's row for a result of :func:`classify_worker.classify`, by column."""
        study, series, instances = self.dicomUIDs(volumeNode)
        classified = result["class_name"] is not None
        return {
            "Volume": volumeNode.GetName(),
            "Class": result["class_name"] if classified else result["unclassified_reason"],
            "P(malignant)": f"{result['malignancy_probability']:.6f}" if classified else "nan",
            "Likelihood": result["likelihood"] or "",
            "Uncertainty": "" if result["uncertainty"] is None else f"{result['uncertainty']:.4f}",
            "Refer": {True: "yes", False: "no", None: ""}[result["refer"]],
            "Threshold": "argmax" if result["threshold"] is None else f"{result['threshold']:g}",
            "Model version": result["model_version"],
            "Weights SHA-256": result["weights_sha256"],
            "Trained on": result["trained_on"],
            "Region": self.regionLabel(result["roi"]) if classified else "not classified",
            "Box source": result["box_source"] or "none",
            "Localiser version": result["localiser_version"] or "",
            "Localiser confidence": "" if result["localiser_confidence"] is None else
            f"{result['localiser_confidence']:.4f}",
            "Note": result["note"] or "",
            "StudyInstanceUID": study,
            "SeriesInstanceUID": series,
            "SOPInstanceUID": instances,
            "Time": datetime.now().astimezone().isoformat(timespec="seconds"),
        }

    @staticmethod
    def dicomUIDs(volumeNode) -> tuple[str, str, str]:
        """``(StudyInstanceUID, SeriesInstanceUID, SOPInstanceUIDs)`` of a volume loaded from Slicer's DICOM
        database: the instances from its ``DICOM.instanceUIDs`` attribute, study and series looked up in
        ``slicer.dicomDatabase``. Empty strings for what is unknown: a volume not loaded from DICOM, or no
        open database (as without the Slicer application)."""
        instances = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not instances or database is None or not database.isOpen:
            return "", "", " ".join(instances)
        return (database.instanceValue(instances[0], "0020,000D"), database.instanceValue(instances[0], "0020,000E"),
                " ".join(instances))

    @staticmethod
    def regionLabel(roi) -> str:
        """The classified region for the results table: pixel rows and columns (stops excluded), or the
        whole image."""
        if roi is None:
            return "whole image"
        return f"rows {roi[0]}-{roi[1]}, columns {roi[2]}-{roi[3]}"

    def resultsTable(self, scene):
        """The scene's results table, created on first use; columns that a table from an older version of
        the module lacks are added."""
        table = scene.GetFirstNodeByName(self.RESULTS_TABLE_NAME)
        if table is None:
            table = scene.AddNewNodeByClass("vtkMRMLTableNode", self.RESULTS_TABLE_NAME)
        for name in self.COLUMNS:
            if table.GetColumnIndex(name) < 0:
                column = vtk.vtkDoubleArray() if name == "P(malignant)" else vtk.vtkStringArray()
                column.SetName(name)
                table.AddColumn(column)
        return table

    @staticmethod
    def operatingPointLabel(bundleDir, threshold) -> str:
        """The operating point a result was classified at: its ``threshold`` (None: argmax) with the
        description of ``metadata.json``'s ``operating_point``, or why it is argmax (none in the bundle, or
        one the inference API did not apply, such as one fitted for other weights)."""
        metadata = json.loads((Path(bundleDir) / "configs" / "metadata.json").read_text(encoding="utf8"))
        point = metadata.get("operating_point")
        if threshold is None:
            return OPERATING_POINT_NOT_APPLIED if point else DEFAULT_OPERATING_POINT
        description = point.get("description") if isinstance(point, dict) else None
        return f"threshold {threshold:g}" + (f" ({description})" if description else "")


class BUSClassifierTest(ScriptedLoadableModuleTest):
    """Self-test, from the module's "Reload and Test" button: a shipped sample image classified the panel's way
    (a worker process, then the results table) with the shipped weights, around its lesion box and then around
    the box the shipped localiser finds; then, on a synthetic image with an untrained copy of the bundle, the
    errors (no model file, no ROI) and the reuse of the attention volume."""

    WORKER_TIMEOUT_S = 300

    LESION = (20, 50, 30, 70)  # rows and columns of the dark ellipse of syntheticImage(96, 96)

    @staticmethod
    def syntheticImage(rows=96, columns=96, seed=0) -> np.ndarray:
        """A uint8 grey image of speckle with a dark ellipse inside the pixel box ``LESION`` (scaled to the
        image's size): test data that looks vaguely like a B-mode lesion, not an ultrasound image."""
        rng = np.random.default_rng(seed)
        row, column = np.mgrid[0:rows, 0:columns] / np.array([rows, columns])[:, None, None] * 96
        top, bottom, left, right = BUSClassifierTest.LESION
        inside = ((row - (top + bottom) / 2) / ((bottom - top) / 2)) ** 2 + \
                 ((column - (left + right) / 2) / ((right - left) / 2)) ** 2 <= 1
        image = rng.gamma(2.0, 50.0, (rows, columns)) * np.where(inside, 0.2, 1.0)
        return np.clip(image, 0, 255).astype(np.uint8)

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_classify_sample_in_worker()
        self.setUp()
        self.test_classify_synthetic_image()

    def test_classify_sample_in_worker(self):
        missing = dependencies.missing_modules()
        self.assertFalse(missing, f"Install the module's dependencies first (click Apply once): {missing}")
        from PIL import Image

        samples = dependencies.locate().samples
        sample = json.loads((samples / "samples.json").read_text())["samples"][0]
        self.delayDisplay(f"Sample {sample['image']} with its lesion box, classified in a worker process")
        pixels = np.asarray(Image.open(samples / sample["image"]).convert("L"))
        volume = slicer.util.addVolumeFromArray(pixels[np.newaxis], np.eye(4), name=Path(sample["image"]).stem)
        logic = BUSClassifierLogic()
        bundle, localiser = Path(logic.defaultBundlePath()), logic.defaultLocaliserPath()
        self._classifyInWorker(logic, volume, bundle, self._roiOverPixels(volume, sample["box"]), localiser)
        self.delayDisplay("The same sample without an ROI: the localiser finds the lesion")
        localised = self._classifyInWorker(logic, volume, bundle, None, localiser)

        table = logic.resultsTable(slicer.mrmlScene)
        value = lambda row, column: table.GetCellText(row, table.GetColumnIndex(column))  # noqa: E731
        metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
        self.assertEqual(value(0, "Model version"), metadata["version"])  # the shipped weights, not "+unrecorded"
        self.assertEqual(value(0, "Trained on"), metadata["weights"]["models/model.pt"]["trained_on"])
        self.assertEqual([value(row, "Box source") for row in (0, 1)], ["given", "localiser"])
        localiserVersion = json.loads((Path(localiser) / "configs" / "metadata.json").read_text())["version"]
        self.assertEqual(value(1, "Localiser version"), localiserVersion)
        for row in (0, 1):
            self.assertIn(value(row, "Class"), ("benign", "malignant"))
            self.assertIn(value(row, "Refer"), ("yes", "no"))  # the shipped operating point has a refer cut-off
            self.assertGreaterEqual(float(value(row, "Uncertainty")), 0.0)
            self.delayDisplay(f"{sample['image']} ({sample['pathology']} by histology), {value(row, 'Box source')} "
                              f"box: {value(row, 'Class')}, P(malignant) {value(row, 'P(malignant)')}, refer "
                              f"{value(row, 'Refer')} (uncertainty {value(row, 'Uncertainty')})")
        segmentation = lesion_node(volume, "vtkMRMLSegmentationNode").GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        roi = lesion_node(volume, "vtkMRMLMarkupsROINode")  # over the localiser's box, to move and classify again
        self.assertEqual(list(roi_pixel_box(volume, roi, pixels.shape)), localised["box"])

    def _classifyInWorker(self, logic, volume, bundle, roi, localiser):
        """Classify as the panel does: in a worker process, polled, then the result added to the scene; returns
        the result."""
        process = logic.startClassification(volume, bundle, roi, localiser)
        deadline = time.monotonic() + self.WORKER_TIMEOUT_S
        while (output := process.poll()) is None:
            if time.monotonic() > deadline:
                process.cancel()
                self.fail(f"the worker did not finish in {self.WORKER_TIMEOUT_S} s")
            time.sleep(0.2)
        logic.addResult(volume, *output)
        return output[0]

    @staticmethod
    def _roiOverPixels(volume, box):
        """A markups ROI over the pixel box ``[row_start, row_stop, col_start, col_stop]`` of a volume."""
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Lesion box")
        place_roi_over_pixel_box(roi, volume, box)
        return roi

    def test_classify_synthetic_image(self):
        missing = dependencies.missing_modules()
        self.assertFalse(missing, f"Install the module's dependencies first (click Apply once): {missing}")

        self.delayDisplay("Synthetic image with a flipped, rotated geometry, and an ROI around its lesion")
        ijkToRAS = np.array([[0.0, -0.2, 0.0, 10.0], [-0.3, 0.0, 0.0, -5.0], [0.0, 0.0, 1.0, 2.0], [0, 0, 0, 1]])
        volume = slicer.util.addVolumeFromArray(self.syntheticImage()[np.newaxis], ijkToRAS, name="Synthetic lesion")
        roi = self._roiOverPixels(volume, self.LESION)
        logic = BUSClassifierLogic()

        with tempfile.TemporaryDirectory() as folder:
            self.delayDisplay("A missing model file is reported")
            bundle = Path(folder) / "bundle"
            shutil.copytree(Path(logic.defaultBundlePath()) / "configs", bundle / "configs")
            with self.assertRaisesRegex(ValueError, "model file not found"):
                logic.classify(volume, bundle, roi)

            self.delayDisplay("A bundle trained on lesion regions refuses to run without an ROI")
            self._saveUntrainedWeights(bundle)
            with self.assertRaisesRegex(ValueError, "needs a lesion box"):
                logic.classify(volume, bundle)

            self.delayDisplay("Classification with untrained weights, twice")
            result, attentionNode = logic.classify(volume, bundle, roi)
            _, attentionNodeAgain = logic.classify(volume, bundle, roi)

        self.assertIn(result["class_name"], ("benign", "malignant"))
        table = logic.resultsTable(slicer.mrmlScene)
        self.assertEqual(table.GetNumberOfRows(), 2)
        self.assertEqual(table.GetCellText(0, table.GetColumnIndex("Volume")), "Synthetic lesion")
        self.assertEqual(table.GetCellText(0, table.GetColumnIndex("Box source")), "given")
        self.assertEqual(attentionNodeAgain.GetID(), attentionNode.GetID())  # one attention volume per image
        np.testing.assert_allclose(ijk_to_ras(attentionNode), ijk_to_ras(volume))
        self.assertEqual(slicer.util.arrayFromVolume(attentionNode).shape, (1, 96, 96))
        self.delayDisplay("Test passed")

    @staticmethod
    def _saveUntrainedWeights(bundle):
        import torch
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        parser["bundle_root"] = str(bundle)
        (bundle / "models").mkdir()
        torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
