"""Where the module's bundle and monai-bus come from, and the Python packages it needs in Slicer's Python.

The module runs from one of two places (:func:`locate` tells them apart):

- a **repository checkout** (``<repository>/slicer_extension/BUSClassifier``): the bundles are
  ``<repository>/bundle`` and ``<repository>/localiser``, and monai-bus is installed from the repository;
- a **built extension** (the Extensions Manager's package, or the build tree): the bundles and a wheel of
  monai-bus lie in the module's ``Resources/bundle``, ``Resources/localiser`` and ``Resources/wheels``,
  put there by ``CMakeLists.txt`` at build time.

Nothing is installed at import time, nor without the user's confirmation. PyTorch comes from the
Slicer ``PyTorch`` extension (``PyTorchUtils``), which picks the build that fits the computer, at the
version ``setup.py`` asks for (>= 2.2). An installed torch is never replaced: ``monai-bus`` is
installed with torch pinned to its installed version.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

MODULE_DIR = Path(__file__).resolve().parents[1]  # the folder of BUSClassifier.py
MODULES = ("torch", "monai", "monai_bus")
MIN_PYTHON = (3, 10)  # setup.py's python_requires: Slicer 5.10 and later embed Python 3.12


class Sources(NamedTuple):
    """The classifier bundle folder, what pip installs monai-bus from (None when there is nothing), the
    folder of the sample images, and the localiser bundle folder."""

    bundle: Path
    monai_bus: Path | None
    samples: Path
    localiser: Path


def locate() -> Sources:
    """The bundles and the monai-bus install source of the module in :data:`MODULE_DIR`.

    In a repository checkout (``<repository>/slicer_extension/BUSClassifier``, with the repository's
    ``setup.py``): ``<repository>/bundle``, the repository, ``<repository>/monai_bus/samples`` and
    ``<repository>/localiser``. Elsewhere, a built extension: ``Resources/bundle``, the one
    ``monai_bus-*.whl`` of ``Resources/wheels`` (None if there is not exactly one: CMake empties the
    folder before building the wheel), ``Resources/samples`` and ``Resources/localiser``.
    """
    repository = MODULE_DIR.parents[1]
    if MODULE_DIR.parent.name == "slicer_extension" and (repository / "setup.py").is_file():
        return Sources(repository / "bundle", repository, repository / "monai_bus" / "samples",
                       repository / "localiser")
    resources = MODULE_DIR / "Resources"
    wheels = list((resources / "wheels").glob("monai_bus-*.whl"))
    return Sources(resources / "bundle", wheels[0] if len(wheels) == 1 else None, resources / "samples",
                   resources / "localiser")


def missing_modules() -> list[str]:
    """The modules of :data:`MODULES` that cannot be imported (found without importing them)."""
    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def install(confirm) -> bool:
    """Install what is missing, after asking; True when everything is importable afterwards.

    Args:
        confirm: ``confirm(message) -> bool``, e.g. ``slicer.util.confirmOkCancelDisplay``.

    Raises:
        RuntimeError: in plain words, when PyTorch or monai-bus cannot be installed (Slicer's Python too
            old, no PyTorch extension, nothing to install monai-bus from, pip failed).
    """
    import slicer.util

    missing = missing_modules()
    if not missing:
        return True
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"monai-bus needs Python {'.'.join(map(str, MIN_PYTHON))} or later and this Slicer "
                           f"embeds Python {sys.version_info.major}.{sys.version_info.minor}: use Slicer 5.10 or later.")
    needs_monai_bus, source = "monai_bus" in missing or "monai" in missing, locate().monai_bus
    if needs_monai_bus and source is None:
        raise RuntimeError(f"monai-bus is not installed and there is nothing to install it from: {MODULE_DIR} is "
                           "neither in the monai-bus repository nor a built extension with one monai_bus wheel in "
                           "Resources/wheels; rebuild the extension, or install monai-bus into Slicer's Python "
                           "(PythonSlicer -m pip install ...).")
    if not confirm(f"BUSClassifier needs the Python packages {', '.join(missing)}. Install them now? "
                   "This downloads several hundred MB and may take a few minutes."):
        return False
    if "torch" in missing:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError("PyTorch is missing: install the 'PyTorch' extension from the Extensions "
                               "Manager, restart Slicer and try again.") from None
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.2")
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; use the 'PyTorch Util' module to install it.")
    if needs_monai_bus:
        with tempfile.TemporaryDirectory() as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text(f"torch=={importlib.metadata.version('torch')}\n")
            try:
                slicer.util.pip_install([str(source), "-c", str(constraints)])
            except Exception as error:  # pip's failure (CalledProcessError, OSError...) in one line
                raise RuntimeError(f"Installing monai-bus from {source} failed ({type(error).__name__}: "
                                   f"{error}); pip's output is in the Python console.") from error
    importlib.invalidate_caches()
    return not missing_modules()
