"""The Python packages that the module needs in Slicer's Python, and their installation.

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

REPOSITORY = Path(__file__).resolve().parents[3]  # slicer_extension/BUSClassifier/BUSClassifierLib/..
MODULES = ("torch", "monai", "monai_bus")
MIN_PYTHON = (3, 10)  # setup.py's python_requires: Slicer 5.10 and later embed Python 3.12


def missing_modules() -> list[str]:
    """The modules of :data:`MODULES` that cannot be imported (found without importing them)."""
    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def install(confirm) -> bool:
    """Install what is missing, after asking; True when everything is importable afterwards.

    Args:
        confirm: ``confirm(message) -> bool``, e.g. ``slicer.util.confirmOkCancelDisplay``.

    Raises:
        RuntimeError: in plain words, when PyTorch or monai-bus cannot be installed (Slicer's Python too
            old, no PyTorch extension, pip failed).
    """
    import slicer.util

    missing = missing_modules()
    if not missing:
        return True
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"monai-bus needs Python {'.'.join(map(str, MIN_PYTHON))} or later and this Slicer "
                           f"embeds Python {sys.version_info.major}.{sys.version_info.minor}: use Slicer 5.10 or later.")
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
    if "monai_bus" in missing or "monai" in missing:
        if not (REPOSITORY / "setup.py").is_file():
            raise RuntimeError(f"monai-bus is not installed and {REPOSITORY} is not its repository: "
                               "install monai-bus into Slicer's Python (PythonSlicer -m pip install ...).")
        with tempfile.TemporaryDirectory() as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text(f"torch=={importlib.metadata.version('torch')}\n")
            try:
                slicer.util.pip_install([str(REPOSITORY), "-c", str(constraints)])
            except Exception as error:  # pip's failure (CalledProcessError, OSError...) in one line
                raise RuntimeError(f"Installing monai-bus from {REPOSITORY} failed ({type(error).__name__}: "
                                   f"{error}); pip's output is in the Python console.") from error
    importlib.invalidate_caches()
    return not missing_modules()
