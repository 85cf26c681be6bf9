"""Command line: ``monai-bus <command>`` (also ``python -m monai_bus <command>``).

Each command lives in its own module, which provides ``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import os
import sys

from monai_bus.errors import MonaiBusError

# command name -> (module, one-line help)
COMMANDS = {
    "samples": ("monai_bus.commands.samples", "classify the four sample ultrasound images with the bundle's weights"),
    "demo": ("monai_bus.commands.demo", "train, evaluate and report on the synthetic demo data"),
    "infer": ("monai_bus.commands.infer", "classify images with a trained bundle"),
    "datalist": ("monai_bus.commands.datalist", "build a leakage-safe MONAI datalist from a dataset folder"),
    "metrics": ("monai_bus.commands.metrics", "recompute the metrics from a per-image predictions CSV"),
    "study": ("monai_bus.commands.study", "run the paper's Table 1 study (6 configurations x seeds) on a datalist"),
    "calibrate": ("monai_bus.commands.calibrate", "fit a trained bundle's temperature and operating point on "
                                                  "validation data"),
    "calibrate-localiser": ("monai_bus.commands.calibrate_localiser", "fit a trained localiser's cut-off for "
                                                                      "'check the box' on validation data"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monai-bus", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(subparsers.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        status = modules[args.command].run(args) or 0
        sys.stdout.flush()  # a full disk or a closed pipe fails here, within the handlers, and not at exit
        return status
    except MonaiBusError as error:
        print(f"monai-bus {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path (an output folder that is a file), a full disk, a closed pipe
        if error.filename is None and error.errno not in (errno.ENOSPC, errno.EPIPE):
            raise  # no path and not the disk or the pipe: a fault to see whole
        if error.errno in (errno.ENOSPC, errno.EPIPE):
            _drop_standard_output()
        where = f"{error.filename}: " if error.filename else ""
        print(f"monai-bus {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2


def _drop_standard_output() -> None:
    """Send what is left of standard output to the null device, so that Python's flush at exit adds no second
    error; a standard output without a file descriptor (a caller's stream) is left as it is."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
