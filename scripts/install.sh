#!/usr/bin/env bash
# Create .venv and install monai-bus into it. PyTorch is installed FIRST and pinned: an unpinned
# torch (or torchvision) pulls a multi-GB CUDA build. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
# flock: scripts/install_monailabel_env.sh may be writing the package's metadata (monai_bus.egg-info) here too
flock . .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,slicer,study]"
