"""One module per ``monai-bus`` command (see ``monai_bus.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_localiser_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--localiser DIR``, by default the folder ``localiser`` beside ``--bundle`` (as in a clone of the repository),
    wherever the command runs: read it back with :func:`localiser_folder`."""
    parser.add_argument("--localiser", help=f"{help} (default: the folder 'localiser' beside the bundle)")


def localiser_folder(args: argparse.Namespace) -> Path:
    """The localiser bundle folder: ``--localiser``, else ``localiser`` in the folder that holds ``--bundle``."""
    return Path(args.localiser) if args.localiser else Path(args.bundle).parent / "localiser"
