"""Errors whose message says all a user needs, and their one-line report in bundle runs.

``python -m monai.bundle run`` wraps every error of a config expression in MONAI's own
``RuntimeError``s, so a bad datalist item ended in a traceback of hundreds of lines.
:func:`report_in_one_line`, called first by the bundle's ``initialize``, makes the process print
just ``error: <message>`` when the error, or one it was raised from, is a :class:`MonaiBusError`.
"""

from __future__ import annotations

import os
import sys


class MonaiBusError(Exception):
    """An error whose message names what is wrong (the file, item, id or checkpoint) and the problem."""


class CommandError(MonaiBusError):
    """A user-facing error of a ``monai-bus`` command: printed without a traceback, exit status 2."""


class InputError(MonaiBusError, ValueError):
    """Bad input: an image, a datalist item, an override, a box or a checkpoint."""


class TrainingError(MonaiBusError, RuntimeError):
    """A training run that cannot go on (a non-finite loss, a checkpoint of another run)."""


def find_monai_bus_error(error: BaseException | None) -> MonaiBusError | None:
    """The :class:`MonaiBusError` that ``error`` is, or was raised from (``raise ... from``), if any.

    Only explicit causes are followed: an unrelated error raised while one was being handled keeps
    its own traceback.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MonaiBusError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


ONE_LINE_LIMIT = 300  # characters


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (whitespace runs made single spaces), cut at :data:`ONE_LINE_LIMIT`.

    For messages of other libraries that span lines, such as torch's list of a state dict's missing keys.
    """
    text = " ".join(str(error).split())
    return text if len(text) <= ONE_LINE_LIMIT else text[:ONE_LINE_LIMIT] + " ..."


def _report(kind, error, traceback) -> None:
    found = find_monai_bus_error(error)
    if found is None:
        _report.default_hook(kind, error, traceback)
        return
    from tqdm import tqdm

    for bar in list(tqdm._instances):  # a progress bar closed later would print after the error
        bar.close()
    print(f"error: {found}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # End at once: MONAI's data-caching threads may still run, and the interpreter's shutdown would
    # then abort ("terminate called without an active exception").
    os._exit(1)


def report_in_one_line() -> None:
    """Make uncaught errors of this process that come from a :class:`MonaiBusError` print one line.

    Such an error ends the process with exit status 1 and ``error: <message>`` as the last line of
    stderr; any other error keeps Python's traceback. Calling it again changes nothing.
    """
    if sys.excepthook is not _report:
        _report.default_hook = sys.excepthook
        sys.excepthook = _report
