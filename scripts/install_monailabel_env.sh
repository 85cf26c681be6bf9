#!/usr/bin/env bash
# Create .venv-monailabel, the MONAI Label server environment for monailabel_app/ (docs/monailabel.md).
# It is separate from .venv: monailabel 0.8.5 needs numpy<2, pydicom 2 and torchvision, which the core
# package does not. PyTorch is installed FIRST, pinned with its torchvision, so nothing pulls another
# torch. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m venv .venv-monailabel
pip=(.venv-monailabel/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
# MONAI Label's own pins of its DICOM stack: pydicom-seg 0.4.1 fails to import with pydicom 3.
"${pip[@]}" monailabel==0.8.5 pydicom==2.4.4 pydicom-seg==0.4.1 pynetdicom==2.0.2 "dicomweb-client[gcp]==0.59.1"
flock . "${pip[@]}" -e .  # scripts/install.sh may be writing the package's metadata here too
.venv-monailabel/bin/python -m pip check
