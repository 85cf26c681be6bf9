"""The module's panel (Widget): Apply -> worker process -> poll -> result, and every error on its status line.

The Widget runs on a real vtkMRMLScene from ``slicer-core`` with real worker processes. The .ui file's Qt
widgets are stood in by :class:`FakeWidget` (the properties and calls the module uses) and ``qt.QTimer``
by :class:`FakeTimer`, which the tests fire by calling ``onPoll``. ``test_real_qt_event_loop`` runs the
same Apply -> poll path from a real Qt event loop (PyQt5, from the project's ``slicer`` extra).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import types
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import test_slicer_logic
from conftest import REPO, trained_copy, unfamiliar_to_every_image
from test_slicer_logic import MODULE_DIR, add_volume, roi_over_pixels, slicer

module = test_slicer_logic.module  # the fixture: BUSClassifier.py with stand-ins for Slicer-only modules


class FakeWidget:
    """Stands in for any widget of BUSClassifier.ui: the properties and methods the module uses."""

    def __init__(self, enabled=True):
        self.text = self.toolTip = self.styleSheet = self.currentPath = ""
        self.enabled = enabled
        self.node = self.tableNode = None
        self.slots = {}
        self.proxy = types.SimpleNamespace(hiddenNodeIDs=[])

    def connect(self, signal_name, slot):
        self.slots[signal_name] = slot

    def currentNode(self):
        return self.node

    def setCurrentNode(self, node):
        self.node = node

    def setMRMLTableNode(self, node):
        self.tableNode = node

    def sortFilterProxyModel(self):
        return self.proxy

    def setMRMLScene(self, scene):
        pass


class FakeTimer:
    """Stands in for qt.QTimer: records its state; the test calls the slot."""

    def __init__(self):
        self.active = False

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def connect(self, signal_name, slot):
        self.slot = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


def ui_widgets() -> types.SimpleNamespace:
    """A stand-in for every widget of BUSClassifier.ui, by name, enabled as the file says."""
    root = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "BUSClassifier.ui").getroot()
    return types.SimpleNamespace(**{
        widget.get("name"): FakeWidget(enabled=widget.findtext("property[@name='enabled']/bool") != "false")
        for widget in root.iter("widget")})


@pytest.fixture
def scene(monkeypatch):
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    return scene


def make_widget(module, monkeypatch, timer_class=FakeTimer):
    """The module's Widget after its real ``setup()``, on stand-in widgets."""
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: FakeWidget() if os.path.isfile(path) else None)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda ui: ui_widgets())
    monkeypatch.setattr(module.qt, "QTimer", timer_class, raising=False)
    widget = module.BUSClassifierWidget()
    widget.setup()
    return widget


def apply(widget, volume, bundle, roi=None):
    widget.ui.inputVolumeSelector.node, widget.ui.roiSelector.node = volume, roi
    widget.ui.bundlePathLineEdit.currentPath = str(bundle)
    widget.ui.applyButton.slots["clicked(bool)"]()  # PythonQt drops the arguments a slot does not take


def poll_until_idle(widget, timeout=120):
    deadline = time.monotonic() + timeout
    while widget.timer.active:
        assert time.monotonic() < deadline, "the classification did not finish"
        time.sleep(0.05)
        widget.timer.slot()


def assert_idle(widget):
    assert widget.job is None and not widget.timer.active
    assert widget.ui.applyButton.enabled and not widget.ui.cancelButton.enabled


def assert_error(widget, message):
    """The status line holds one red line starting with ``message``, beside no earlier answer; the panel is ready
    for the next Apply."""
    status = widget.ui.statusLabel
    assert "\n" not in status.text and status.text.startswith(message), status.text
    assert status.styleSheet == "color: red" and status.toolTip.startswith(status.text)
    assert widget.ui.classLabel.text == widget.ui.probabilityLabel.text == widget.ui.operatingPointLabel.text == ""
    assert_idle(widget)


@pytest.fixture
def image(module):
    return module.BUSClassifierTest.syntheticImage(96, 80, seed=3)


def test_apply_poll_result(module, whole_bundle, scene, image, monkeypatch):
    widget = make_widget(module, monkeypatch)
    assert widget.ui.bundlePathLineEdit.currentPath.endswith("bundle")
    assert_idle(widget)
    volume = add_volume(scene, image[np.newaxis])
    apply(widget, volume, whole_bundle)
    assert widget.timer.active and widget.ui.cancelButton.enabled and not widget.ui.applyButton.enabled
    assert widget.ui.statusLabel.text.startswith("Classifying in the background")
    poll_until_idle(widget)

    assert_idle(widget)
    assert widget.ui.statusLabel.text.startswith(f"Done: lesion is {widget.ui.classLabel.text} (P(malignant) ")
    assert widget.ui.statusLabel.styleSheet == ""
    assert widget.ui.operatingPointLabel.text.startswith("threshold 0.50 (argmax")
    table = widget.ui.resultsTableView.tableNode
    assert table.GetName() == "BUSClassifier results" and table.GetNumberOfRows() == 1
    attention, = module.attention_volumes(scene)
    assert widget.ui.inputVolumeSelector.proxy.hiddenNodeIDs == [attention.GetID()]  # not offered as an input

    apply(widget, volume, whole_bundle)
    poll_until_idle(widget)
    assert table.GetNumberOfRows() == 2 and module.attention_volumes(scene) == [attention]  # reused


def test_an_image_unlike_the_training_images_is_not_classified(module, whole_bundle, scene, image, monkeypatch,
                                                               tmp_path):
    bundle = unfamiliar_to_every_image(trained_copy(whole_bundle, tmp_path / "bundle", roi=False))
    widget = make_widget(module, monkeypatch)
    apply(widget, add_volume(scene, image[np.newaxis]), bundle)
    poll_until_idle(widget)
    assert widget.ui.classLabel.text == "unlike the training images" and widget.ui.probabilityLabel.text == "-"
    assert widget.ui.statusLabel.text.startswith("Done: lesion was not classified: unlike the training images")
    assert test_slicer_logic.row(widget.ui.resultsTableView.tableNode, 0)["Class"] == "unlike the training images"


def test_cancel(module, whole_bundle, scene, image, monkeypatch):
    widget = make_widget(module, monkeypatch)
    apply(widget, add_volume(scene, image[np.newaxis]), whole_bundle)
    process = widget.job[0]
    widget.ui.cancelButton.slots["clicked(bool)"]()
    assert process.process.returncode is not None and widget.ui.statusLabel.text == "Cancelled."
    assert_idle(widget)


@pytest.mark.parametrize("how", ["node deleted", "scene closed"])
def test_input_removed_during_the_run(module, whole_bundle, scene, image, monkeypatch, how):
    widget = make_widget(module, monkeypatch)
    volume = add_volume(scene, image[np.newaxis])
    apply(widget, volume, whole_bundle)
    process = widget.job[0]
    if how == "node deleted":
        scene.RemoveNode(volume)
    else:
        scene.Clear(0)
    widget.timer.slot()
    assert process.process.returncode is not None  # the worker was stopped
    assert widget.ui.statusLabel.text == "Stopped: the input volume 'lesion' was removed from the scene."
    assert_idle(widget)
    assert scene.GetFirstNodeByName("BUSClassifier results") is None


@pytest.mark.parametrize("change", ["pixels", "geometry", "3D"])
def test_a_result_for_a_volume_changed_during_the_run_is_discarded(module, whole_bundle, scene, image, monkeypatch,
                                                                    change):
    """It would be placed on another image: no row, no attention map, and the panel says to apply again."""
    widget = make_widget(module, monkeypatch)
    volume = add_volume(scene, image[np.newaxis])
    apply(widget, volume, whole_bundle)
    if change == "pixels":
        slicer.util.updateVolumeFromArray(volume, image[np.newaxis, ::2, ::2].copy())
    elif change == "geometry":
        volume.SetOrigin(5.0, 0.0, 0.0)
    else:
        slicer.util.updateVolumeFromArray(volume, np.stack([image] * 2))
    poll_until_idle(widget)
    assert_error(widget, "Discarded: 'lesion' changed while it was classified; click Apply again.")
    assert scene.GetFirstNodeByName("BUSClassifier results") is None and not module.attention_volumes(scene)


def raise_(error):
    raise error


def test_errors_reach_the_status_line_in_one_line(module, whole_bundle, roi_bundle, scene, image, monkeypatch,
                                                  tmp_path):
    widget = make_widget(module, monkeypatch)
    volume = add_volume(scene, image[np.newaxis])

    apply(widget, None, whole_bundle)  # an input error, found before the worker starts
    assert_error(widget, "No input volume selected: load an ultrasound image and select it as the input.")

    with monkeypatch.context() as patch:  # no ROI, and no localiser where the module looks for it
        patch.setattr(widget.logic, "defaultLocaliserPath", lambda: str(tmp_path / "localiser"))
        apply(widget, volume, roi_bundle)
        poll_until_idle(widget)
    assert_error(widget, f"{tmp_path}/localiser/configs/inference.json: not found; is {tmp_path}/localiser a "
                         "monai-bus bundle folder?")
    apply(widget, volume, roi_bundle, roi_over_pixels(scene, (10, 60), (20, 70)))
    poll_until_idle(widget)
    assert widget.ui.statusLabel.text.startswith("Done: lesion is ")

    apply(widget, volume, tmp_path)  # not a bundle: the inference API's message, from the worker
    poll_until_idle(widget)
    assert_error(widget, f"{tmp_path}/configs/inference.json: not found; is {tmp_path} a monai-bus bundle folder?")

    apply(widget, volume, whole_bundle)  # the worker is killed
    os.kill(widget.job[0].process.pid, signal.SIGKILL)
    poll_until_idle(widget)
    assert_error(widget, "The classification process failed (exit code -9): ")
    assert len(widget.ui.statusLabel.toolTip.splitlines()) > 1  # the end of its output, in the tooltip

    with monkeypatch.context() as patch:  # any exception, e.g. an OSError from the disk
        patch.setattr(widget.logic, "startClassification",
                      lambda *args: raise_(OSError(28, "No space left on device")))
        apply(widget, volume, whole_bundle)
    assert_error(widget, "OSError: [Errno 28] No space left on device")

    with monkeypatch.context() as patch:  # an error while showing the result
        patch.setattr(widget.logic, "addResult", lambda *args: raise_(KeyError("class_name")))
        apply(widget, volume, whole_bundle)
        poll_until_idle(widget)
    assert_error(widget, "KeyError: 'class_name'")

    with monkeypatch.context() as patch:  # pip fails while installing monai-bus
        patch.setattr(module.dependencies, "missing_modules", lambda: ["monai_bus"])
        patch.setattr(slicer.util, "confirmOkCancelDisplay", lambda message: True)
        patch.setattr(slicer.util, "pip_install",
                      lambda args: raise_(subprocess.CalledProcessError(1, ["pip", "install"])))
        apply(widget, volume, whole_bundle)
    assert_error(widget, f"Installing monai-bus from {REPO} failed (CalledProcessError: "
                         "Command '['pip', 'install']' returned non-zero exit status 1.); pip's output is in the "
                         "Python console.")


def test_without_an_roi_the_localiser_finds_the_lesion_and_its_box_can_be_moved(module, scene, monkeypatch):
    """The shipped bundle and localiser on a sample image: Apply without an ROI shows the lesion's segmentation and
    selects its box's ROI; Apply again classifies around that ROI, now a given box."""
    from PIL import Image

    widget = make_widget(module, monkeypatch)
    pixels = np.asarray(Image.open(REPO / "monai_bus" / "samples" / "bus_0006-s.png").convert("L"))
    volume = add_volume(scene, pixels[np.newaxis])
    apply(widget, volume, REPO / "bundle")
    poll_until_idle(widget)
    status = widget.ui.statusLabel.text
    assert status.startswith("Done: lesion is ") and "The box is the localiser's: move the ROI 'lesion lesion box'" \
        in status, status
    assert " Refer: check the box first. Note: the localiser is unsure of the lesion it found" in status, status
    roi = widget.ui.roiSelector.node
    assert roi is not None and roi.GetName() == "lesion lesion box"
    segmentation = scene.GetFirstNodeByName("lesion lesion")
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1

    widget.ui.applyButton.slots["clicked(bool)"]()  # the selected ROI, as the user left it
    poll_until_idle(widget)
    table = widget.ui.resultsTableView.tableNode
    column = lambda name: [table.GetCellText(row, table.GetColumnIndex(name)) for row in range(2)]  # noqa: E731
    assert column("Box source") == ["localiser", "given"]
    assert column("Region")[0] == column("Region")[1]  # the same box, so the same region

    other = add_volume(scene, np.asarray(Image.open(REPO / "monai_bus" / "samples" / "bus_0038-s.png").convert("L"))
                       [np.newaxis], name="other")
    widget.ui.inputVolumeSelector.node = other  # the first image's lesion ROI still selected
    widget.ui.applyButton.slots["clicked(bool)"]()
    poll_until_idle(widget)
    assert table.GetCellText(2, table.GetColumnIndex("Box source")) == "localiser"  # not the first image's box
    assert widget.ui.roiSelector.node.GetName() == "other lesion box"


def test_not_classified_around_the_localisers_box_selects_its_roi_to_move(module, whole_bundle, scene, monkeypatch,
                                                                          tmp_path):
    """An image too unlike the training images, around the box the localiser found: no class, and that box's ROI is
    selected, as after a classified answer, for the user to check and move."""
    from PIL import Image

    bundle = unfamiliar_to_every_image(trained_copy(whole_bundle, tmp_path / "bundle", roi=True))
    widget = make_widget(module, monkeypatch)
    pixels = np.asarray(Image.open(REPO / "monai_bus" / "samples" / "bus_0006-s.png").convert("L"))
    apply(widget, add_volume(scene, pixels[np.newaxis]), bundle)
    poll_until_idle(widget)
    status = widget.ui.statusLabel.text
    assert widget.ui.classLabel.text == "unlike the training images"
    assert status.startswith("Done: lesion was not classified: unlike the training images") and status.endswith(
        "The box is the localiser's: move the ROI 'lesion lesion box' if it misses the lesion and click Apply again."
    ), status
    assert widget.ui.roiSelector.node.GetName() == "lesion lesion box"


def test_real_qt_event_loop(module, whole_bundle, scene, image, monkeypatch):
    """Apply -> worker -> QTimer -> onPoll -> table, driven by a real Qt event loop (PyQt5's QTimer behind the
    ``qt.QTimer`` surface the module uses: ``connect("timeout()", slot)``)."""
    QtCore = pytest.importorskip("PyQt5.QtCore", reason="needs PyQt5 (a real Qt event loop)")

    class QTimer(QtCore.QTimer):
        def connect(self, signal_name, slot):
            getattr(self, signal_name.split("(")[0]).connect(slot)

    application = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    widget = make_widget(module, monkeypatch, QTimer)
    apply(widget, add_volume(scene, image[np.newaxis]), whole_bundle)
    assert widget.timer.isActive()

    watch = QtCore.QTimer()
    watch.timeout.connect(lambda: widget.job is None and application.quit())
    watch.start(50)
    QtCore.QTimer.singleShot(120_000, application.quit)
    application.exec_()
    watch.stop()

    assert widget.ui.statusLabel.text.startswith("Done: lesion is "), widget.ui.statusLabel.text
    assert not widget.timer.isActive() and widget.ui.resultsTableView.tableNode.GetNumberOfRows() == 1
