"""Run ``classify_worker.py`` in a child Python process, so that Slicer's GUI never waits on it.

The caller polls :meth:`ClassifierProcess.poll` (the module's Widget does it from a QTimer) and may
:meth:`~ClassifierProcess.cancel` at any time. No Qt here: tests drive it directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from BUSClassifierLib.classify_worker import ATTENTION_FILE, LESION_MASK_FILE, RESULT_FILE

WORKER = Path(__file__).with_name("classify_worker.py")


class ClassifierProcess:
    """One image being classified by ``classify_worker.py`` in a child process.

    Args:
        image: display-order image [H, W] or [H, W, C].
        bundle_dir: monai-bus bundle folder.
        box: the lesion box ``(row_start, row_stop, col_start, col_stop)`` in the image's pixels, or None.
        localiser_dir: the localiser bundle folder, which finds the box when there is none.
        name: the image's name (its volume's), for messages about it.

    The child runs ``sys.executable``: Slicer sets it to its own interpreter launcher, PythonSlicer.
    It starts in a new process group (POSIX) so that cancelling also ends the interpreter that the
    launcher starts.
    """

    def __init__(self, image: np.ndarray, bundle_dir: str | os.PathLike,
                 box: tuple[int, int, int, int] | None = None, localiser_dir: str | os.PathLike | None = None,
                 name: str | None = None) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="BUSClassifier-")
        folder = Path(self._folder.name)
        np.save(folder / "image.npy", image)
        self._log = open(folder / "log.txt", "w+", encoding="utf8")
        self.start_time = time.monotonic()
        options = ["--box", ",".join(str(value) for value in box)] if box is not None else []
        if localiser_dir is not None:
            options += ["--localiser", str(localiser_dir)]
        if name is not None:
            options += ["--name", name]
        try:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER), "--bundle", str(bundle_dir), "--image", str(folder / "image.npy"),
                 "--output", str(folder), *options],
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=os.name != "nt",
            )
        except OSError:
            self._cleanup()
            raise

    def status(self) -> str:
        """A one-line progress message for the panel."""
        return f"Classifying in the background... {time.monotonic() - self.start_time:.0f} s"

    def poll(self) -> tuple[dict, np.ndarray | None, np.ndarray | None] | None:
        """None while the child runs; then ``(result dict, attention map or None, lesion mask or None)``.

        Raises:
            ValueError: the child's message for whatever failed in it (the inference API's message for
                an image or bundle it cannot use).
            RuntimeError: the child ended without a result (killed, or its interpreter failed): the
                first line names its last line of output, the next lines hold the end of its output.
        """
        if self.process.poll() is None:
            return None
        folder = Path(self._folder.name)
        try:
            result_file = folder / RESULT_FILE
            if not result_file.is_file():
                self._log.seek(0)
                output = self._log.read().strip().splitlines()[-5:] or ["no output"]
                raise RuntimeError(f"The classification process failed (exit code {self.process.returncode}): "
                                   f"{output[-1]}\n" + "\n".join(output))
            result = json.loads(result_file.read_text())
            if "error" in result:
                raise ValueError(result["error"])
            arrays = (np.load(folder / name) if (folder / name).is_file() else None
                      for name in (ATTENTION_FILE, LESION_MASK_FILE))
            return result, *arrays
        finally:
            self._cleanup()

    def cancel(self) -> None:
        """Stop the child (and its children) and remove its files."""
        if self.process.poll() is None:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True)
            else:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._log.close()
        self._folder.cleanup()
