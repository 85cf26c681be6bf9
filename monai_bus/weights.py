"""Where a weight file came from: its checksum, its version and the data that trained it.

Every ``model.pt`` that training writes (:class:`monai_bus.handlers.BestModelSaver`) gets a record
beside it, ``model.json``: ``{"sha256", "version", "trained_on", ...}``. The version is the bundle's
with ``+trained.<UTC time>`` appended, so that a model trained or fine-tuned here never passes for
the bundle's release. Weights shipped with a bundle are recorded in its ``metadata.json`` instead,
under ``weights``: ``{"models/model.pt": {"sha256", "trained_on", "trained_as"}}``; :func:`ship` puts
them there, in half precision.

:func:`provenance` tells the inference API which of the two applies; a file known to neither is
reported as such, never as the bundle's release.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from monai_bus.errors import InputError

UNKNOWN = "unknown: not the bundle's shipped weights, and no record beside the file"
SHIPPED = "models/model.pt"  # the shipped weight file, in the bundle folder


def save_atomically(content: dict, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(content, partial)
    os.replace(partial, path)


def sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(weights: str | os.PathLike) -> Path:
    """The record beside a weight file: ``model.pt`` -> ``model.json``."""
    return Path(weights).with_suffix(".json")


def write_record(weights: str | os.PathLike, bundle_version: str, trained_on: str, **details) -> None:
    """Write the record of freshly trained weights (atomically), with their checksum and a version of their own."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {"sha256": sha256(weights), "version": f"{bundle_version}+trained.{stamp}", "trained_on": trained_on,
              **details}
    path = record_path(weights)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(partial, path)


def describe_training_data(datalist_file: str, training: list[dict], validation: list[dict]) -> str:
    """One line naming the datalist and counting its training and validation images."""
    malignant = sum(item["label"] == 1 for item in training)
    return (f"{datalist_file}: {len(training)} training images ({malignant} malignant), "
            f"{len(validation)} validation images")


def read_record(weights: str | os.PathLike) -> dict:
    """The record beside a weight file (:func:`write_record`), or ``{}`` when there is none.

    Raises:
        InputError: naming the record, when it cannot be read as JSON.
    """
    record_file = record_path(weights)
    try:
        return json.loads(record_file.read_text()) if record_file.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{record_file}: not a readable weights record ({error}); delete it or retrain.") from None


def provenance(weights: str | os.PathLike, metadata: dict) -> dict:
    """``{"file", "sha256", "version", "trained_on"}`` of a weight file.

    From the record beside the file when its checksum matches; else from ``metadata["weights"]`` when
    the file is one shipped there (same checksum, wherever it lies), with the bundle's version; else the
    bundle's version marked ``+unrecorded`` and :data:`UNKNOWN` as ``trained_on``.
    """
    weights = Path(weights)
    checksum = sha256(weights)
    result = {"file": str(weights), "sha256": checksum}
    record = read_record(weights)
    if record.get("sha256") == checksum:
        return {**result, "version": str(record["version"]), "trained_on": str(record["trained_on"])}
    shipped = [entry for entry in metadata.get("weights", {}).values() if entry.get("sha256") == checksum]
    if shipped:
        return {**result, "version": str(metadata["version"]), "trained_on": str(shipped[0]["trained_on"])}
    return {**result, "version": f"{metadata['version']}+unrecorded", "trained_on": UNKNOWN}


def ship(trained: str | os.PathLike, bundle_dir: str | os.PathLike, trained_on: str | None = None) -> dict:
    """Make trained weights the bundle's shipped weights: ``<bundle_dir>/models/model.pt`` in half
    precision, recorded in ``configs/metadata.json`` ``weights`` with their checksum, ``trained_on``
    (default their record's, which names the datalist as the training machine saw it) and their record's
    version (``trained_as``). Integer tensors (batch norm's counters) stay as they are. An
    ``operating_point`` fitted for other weights is removed: calibrate the new ones (``monai-bus
    calibrate``). Returns the metadata entry.

    Raises:
        InputError: when ``trained`` has no record beside it (:func:`write_record`) that matches its checksum.
    """
    trained = Path(trained)
    record = read_record(trained)
    if record.get("sha256") != sha256(trained):
        raise InputError(f"{trained}: no matching record {record_path(trained).name} beside it; ship only weights that "
                         "training wrote, so that their training data is known.")
    state = torch.load(trained, map_location="cpu", weights_only=True)
    half = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    target = Path(bundle_dir) / SHIPPED
    save_atomically(half, target)
    entry = {"sha256": sha256(target), "trained_on": trained_on or record["trained_on"],
             "trained_as": record["version"]}
    metadata_file = Path(bundle_dir) / "configs" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata.setdefault("weights", {})[SHIPPED] = entry
    if metadata.get("operating_point", {}).get("weights_sha256") != entry["sha256"]:
        metadata.pop("operating_point", None)
    metadata_file.write_text(json.dumps(metadata, indent=4, ensure_ascii=False) + "\n")
    return entry
