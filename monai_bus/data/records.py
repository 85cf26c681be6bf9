"""The record a dataset reader yields per image, the label names, and how bad files are handled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monai_bus.errors import InputError

# label index -> class name: the two classes the models tell apart (the bundle's metadata.json names
# them the same way), and the datasets' "normal" (2), only kept with --include-normal
CLASS_NAMES = ("benign", "malignant")
CLASSES = (*CLASS_NAMES, "normal")


class DatasetError(InputError):
    """A problem with the input data, reported as ``"<path>: <problem>"`` (the path quoted as Python writes it
    when it holds a newline or another character that is not printable).

    Parameters
    ----------
    path : Path or str
        The offending file or folder.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: Path | str, problem: str):
        shown = str(path) if str(path).isprintable() else repr(str(path))  # a newline in a name: still one line
        super().__init__(f"{shown}: {problem}")
        self.path, self.problem = str(path), problem


@dataclass
class Record:
    """One labelled image found by a reader.

    Parameters
    ----------
    image : Path
        The image file.
    label : int
        Index into :data:`CLASSES`.
    mask : Path or list of Path, optional
        The lesion mask, or several masks for a multi-lesion image.
    patient : str, optional
        Patient id, prefixed with the format name (``"busbra:12"``), where the format has one.
    fold : int, optional
        The dataset authors' own fold (1-based), where they publish one.
    bbox : tuple of int, optional
        The lesion box from the dataset's own table, ``(row_start, row_stop, col_start, col_stop)``
        in pixels (half-open, rows first), where it has one (BUS-BRA's ``BBOX``).
    frame : int, optional
        The frame of a multi-frame file (counting from 0), where the dataset names one.
    """

    image: Path
    label: int
    mask: Path | list[Path] | None = None
    patient: str | None = None
    fold: int | None = None
    bbox: tuple[int, int, int, int] | None = None
    frame: int | None = None


class BadFiles:
    """Collects problems with input files: raises at once, or (``skip=True``) records and goes on.

    Parameters
    ----------
    skip : bool
        Record problems in :attr:`skipped` instead of raising :class:`DatasetError`.
    """

    def __init__(self, skip: bool):
        self.skip = skip
        self.skipped: list[dict[str, str]] = []

    def __call__(self, path: Path | str, problem: str) -> None:
        """Report that ``path`` cannot be used because of ``problem``."""
        if not self.skip:
            raise DatasetError(path, problem)
        self.skipped.append({"file": str(path), "reason": problem})
