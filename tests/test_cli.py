"""The ``monai-bus`` command line starts without loading the deep-learning stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monai_bus.cli import COMMANDS

HEAVY = ("torch", "monai", "ignite", "itk", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in COMMANDS]])
def test_help_loads_no_heavy_package(argv):
    probe = ("import sys\nfrom monai_bus.cli import main\n"
             f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
             f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
