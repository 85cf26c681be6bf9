"""The Slicer module's files agree with each other: the widgets the code uses exist in the .ui file with
the expected class, and its CMakeLists.txt names every Python file and resource. No Slicer needed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[1] / "slicer_extension"
MODULE_DIR = EXTENSION / "BUSClassifier"

# Every `self.ui.<name>` of BUSClassifier.py, with the class its use needs.
EXPECTED_WIDGETS = {
    "inputVolumeSelector": "qMRMLNodeComboBox",
    "roiSelector": "qMRMLNodeComboBox",
    "bundlePathLineEdit": "ctkPathLineEdit",
    "applyButton": "QPushButton",
    "cancelButton": "QPushButton",
    "statusLabel": "QLabel",
    "classLabel": "QLabel",
    "probabilityLabel": "QLabel",
    "operatingPointLabel": "QLabel",
    "resultsTableView": "qMRMLTableView",
}


def ui_widgets() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "BUSClassifier.ui").getroot()
    return {widget.get("name"): widget for widget in root.iter("widget")}


def test_widgets_used_by_the_code_exist_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "BUSClassifier.py").read_text(encoding="utf8")))
    assert used == set(EXPECTED_WIDGETS)
    widgets = ui_widgets()
    for name, class_name in EXPECTED_WIDGETS.items():
        assert name in widgets, f"{name} is missing from BUSClassifier.ui"
        assert widgets[name].get("class") == class_name, name


def test_node_selectors_take_the_right_nodes():
    def node_types(name):
        prop = ui_widgets()[name].find("property[@name='nodeTypes']")
        return [string.text for string in prop.iter("string")]

    assert node_types("inputVolumeSelector") == ["vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"]
    assert node_types("roiSelector") == ["vtkMRMLMarkupsROINode"]


def test_cmake_names_every_file():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf8").replace("${MODULE_NAME}", "BUSClassifier")
    assert "slicerMacroBuildScriptedModule" in cmake
    files = {path.relative_to(MODULE_DIR).as_posix() for path in MODULE_DIR.rglob("*")
             if path.is_file() and path.name != "CMakeLists.txt" and "__pycache__" not in path.parts}
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png))$", cmake, re.MULTILINE))
    assert listed == files


def test_extension_metadata():
    cmake = (EXTENSION / "CMakeLists.txt").read_text(encoding="utf8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert f"set({key} " in cmake
    assert re.search(r'set\(EXTENSION_DEPENDS "[^"]*\bPyTorch\b', cmake)
    assert "add_subdirectory(BUSClassifier)" in cmake
