"""The Slicer module's files agree with each other: the widgets the code uses exist in the .ui file with
the expected class, its CMakeLists.txt names every Python file and resource and ships the bundles and a
monai-bus wheel where the module looks for them, and the extension's metadata (CMakeLists.txt, the Extensions
Index description) is complete. No Slicer needed."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
EXTENSION = REPOSITORY / "slicer_extension"
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


def test_cmake_ships_the_bundles_and_a_monai_bus_wheel():
    """CMakeLists.txt stages what ``dependencies.locate()`` looks for in a built extension: Resources/bundle,
    Resources/localiser and Resources/wheels in the module's build-tree folder, which
    slicerMacroBuildScriptedModule installs whole. The text only: CMake does not run here
    (test_slicer_install.py checks the module on that layout)."""
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf8")
    locate = (MODULE_DIR / "BUSClassifierLib" / "dependencies.py").read_text(encoding="utf8")
    assert 'set(MODULE_BUILD_DIR "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")' in cmake
    bundle_files = re.search(r"file\(GLOB_RECURSE BUNDLE_FILES .*?\)", cmake, re.DOTALL).group()
    assert re.findall(r'"\$\{BUNDLE_DIR\}/([^"]+)"', bundle_files) == [
        "configs/*", "docs/*", "LICENSE", "models/model.pt", "models/model.json",
        "models/feature_statistics.npz"]  # no checkpoints, eval, data
    assert "foreach(bundle IN ITEMS bundle localiser)" in cmake
    assert 'set(BUNDLE_DIR "${MONAI_BUS_REPOSITORY}/${bundle}")' in cmake
    assert 'configure_file("${BUNDLE_DIR}/${file}" "${MODULE_BUILD_DIR}/Resources/${bundle}/${file}" COPYONLY)' in cmake
    assert 'resources = MODULE_DIR / "Resources"' in locate and 'resources / "bundle"' in locate
    assert 'resources / "localiser"' in locate
    assert 'set(WHEEL_DIR "${MODULE_BUILD_DIR}/Resources/wheels")' in cmake
    assert '-m pip wheel "${MONAI_BUS_REPOSITORY}" --no-deps -w "${WHEEL_DIR}"' in cmake
    assert '(resources / "wheels").glob("monai_bus-*.whl")' in locate
    assert ('configure_file("${MONAI_BUS_REPOSITORY}/monai_bus/samples/${file}" '
            '"${MODULE_BUILD_DIR}/Resources/samples/${file}"') in cmake and 'resources / "samples"' in locate
    assert re.search(r"add_custom_target\(\$\{MODULE_NAME\}MonaiBusWheel ALL ", cmake)


def test_extension_metadata():
    cmake = (EXTENSION / "CMakeLists.txt").read_text(encoding="utf8")
    values = dict(re.findall(r'^set\((EXTENSION_\w+) "([^"]*)"\)', cmake, re.MULTILINE))
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert values.get(key), f"{key} is not set in slicer_extension/CMakeLists.txt"
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    assert "add_subdirectory(BUSClassifier)" in cmake
    raw = "https://raw.githubusercontent.com/monai-bus/monai-bus/main/"
    for url in [values["EXTENSION_ICONURL"], *values["EXTENSION_SCREENSHOTURLS"].split()]:
        assert url.startswith(raw) and (REPOSITORY / url.removeprefix(raw)).is_file(), url  # a file of the repository
    assert values["EXTENSION_HOMEPAGE"].endswith("/slicer_extension/README.md")


def test_extensions_index_description():
    """BUSClassifier.json follows the Extensions Index's catalog entry schema (v1.0.2) and agrees with the
    CMake metadata: named after the project(), same category and dependencies."""
    cmake = (EXTENSION / "CMakeLists.txt").read_text(encoding="utf8")
    project = re.search(r"^project\((\w+)\)", cmake, re.MULTILINE).group(1)
    entry = json.loads((EXTENSION / f"{project}.json").read_text(encoding="utf8"))
    assert entry["$schema"].endswith("/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert set(entry) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                          "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert entry["scm_url"].startswith("https://") and entry["scm_url"].endswith(".git")
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in cmake
    assert entry["build_dependencies"] == ["PyTorch"]
