"""The ``monai-bus`` command line starts without loading the deep-learning stack."""

from __future__ import annotations

import errno
import os
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


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a full disk")
def test_a_path_or_disk_that_fails_ends_in_one_line(tmp_path, monkeypatch, capsys):
    """A full disk, an output folder that is a file: one line, naming the path where there is one; no traceback."""
    from monai_bus.cli import main
    from monai_bus.commands import samples

    predictions = tmp_path / "p.csv"
    predictions.write_text("image,label,p_malignant\na.png,1,0.9\nb.png,0,0.2\n")
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "monai_bus", "metrics", str(predictions)], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (2, "monai-bus metrics: error: No space left on device\n")

    def write_into_a_file(args):
        raise NotADirectoryError(20, "Not a directory", str(tmp_path / "a file" / "out"))
    monkeypatch.setattr(samples, "run", write_into_a_file)
    assert main(["samples"]) == 2
    assert capsys.readouterr().err == f"monai-bus samples: error: {tmp_path / 'a file' / 'out'}: Not a directory\n"

    def fault(args):  # no path, and neither the disk nor a pipe: shown whole, as any other fault
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(samples, "run", fault)
    with pytest.raises(OSError, match="Input/output error"):
        main(["samples"])


def test_demo_refuses_a_number_of_epochs_below_one(capsys):
    """It trained nothing and ended in a 56-line traceback, after writing the demo data."""
    from monai_bus.cli import main

    assert main(["demo", "--max-epochs", "0", "--out", "/nonexistent/demo"]) == 2
    assert capsys.readouterr().err == "monai-bus demo: error: --max-epochs must be at least 1, got 0\n"
