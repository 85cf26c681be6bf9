"""Errors whose message says all a user needs, and their one-line report in bundle runs.

``python -m monai.bundle run`` wraps every error of a config expression in MONAI's own
``RuntimeError``s, so a bad datalist item ended in a traceback of hundreds of lines.
:func:`report_in_one_line`, called first by the bundle's ``initialize``, makes the process print
just ``error: <message>`` when the error, or one it was raised from, is a :class:`MonaiBusError`.
"""

from __future__ import annotations

import sys


class MonaiBusError(Exception):
    """An error whose message names what is wrong (the file, item, id or checkpoint) and the problem."""


class InputError(MonaiBusError, ValueError):
    """Bad input: an image, a datalist item, an override, a box or a checkpoint."""


class TrainingError(MonaiBusError, RuntimeError):
    """A training run that cannot go on (a non-finite loss, a checkpoint of another run)."""


def _monai_bus_error(error: BaseException | None) -> MonaiBusError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MonaiBusError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_in_one_line() -> None:
    """Make uncaught errors of this process that come from a :class:`MonaiBusError` print one line."""
    default_hook = sys.excepthook

    def hook(kind, error, traceback):
        found = _monai_bus_error(error)
        if found is None:
            default_hook(kind, error, traceback)
            return
        from tqdm import tqdm

        for bar in list(tqdm._instances):  # a progress bar closed later would print after the error
            bar.close()
        print(f"error: {found}", file=sys.stderr)

    sys.excepthook = hook
