"""Checks of the bundle's user-facing ids, called by its configs before the values are used.

``python -m monai.bundle run ... --roi false`` hands the config the *string* ``'false'``, which
Python counts as true. :func:`flag` turns every spelling of a boolean into a ``bool`` and refuses
anything else, so a switch never silently stays on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai_bus.errors import InputError

TRUE_SPELLINGS = ("true", "1")
FALSE_SPELLINGS = ("false", "0")


def flag(value, name: str) -> bool:
    """The boolean meant by the value of the id ``name``.

    ``True``, ``1``, ``"true"``, ``"True"`` and ``"1"`` mean on; ``False``, ``0``, ``"false"``,
    ``"False"`` and ``"0"`` mean off.

    Raises:
        InputError: naming the id, for any other value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_SPELLINGS + FALSE_SPELLINGS:
        return value.strip().lower() in TRUE_SPELLINGS
    raise InputError(f"--{name} must be true or false (also True/False or 1/0), got {value!r}.")


def check_mask_loss(weight, attention: bool, training: list[dict]) -> None:
    """Check ``mask_loss_weight`` before training caches any image (the bundle's ``run`` calls it first): a
    number >= 0, and when above 0, an attention gate to supervise and a lesion ``mask`` on every training item.

    Raises:
        InputError: naming the id and the problem; for items without a mask, how many and the first.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise InputError(f"--mask_loss_weight must be a number >= 0 (0 turns the mask loss off), got {weight!r}.")
    if weight == 0:
        return
    if not attention:
        raise InputError(f"--mask_loss_weight {weight} supervises the attention gate, which the network lacks with "
                         "attention false: set attention true, or --mask_loss_weight 0.")
    without = [item["image"] for item in training if not item.get("mask")]
    if without:
        raise InputError(f"--mask_loss_weight {weight} needs a lesion mask for every training image; {len(without)} of "
                         f"{len(training)} have none (the first: {without[0]}). Add their masks, or train on boxes "
                         "alone with --mask_loss_weight 0.")


def bundle_path(bundle_root: str | os.PathLike, name: str) -> str:
    """``<bundle_root>/<name>``, a folder the bundle writes to, once ``bundle_root`` is known to be a bundle.

    ``bundle_root`` defaults to ``.``, as in the model zoo: run from the bundle's folder, or pass
    ``--bundle_root``. A folder without ``configs/`` is refused, so that a run started elsewhere
    writes no models, logs or demo data there.

    Raises:
        InputError: saying how to point the bundle at its folder.
    """
    if not (Path(bundle_root) / "configs").is_dir():
        raise InputError(
            f"bundle_root {str(bundle_root)!r} ({Path(bundle_root).resolve()}) is not a bundle folder: it has no "
            "configs/. Run from the bundle's folder, or pass --bundle_root <bundle folder>.")
    return str(Path(bundle_root) / name)



def metadata(bundle_root: str | os.PathLike) -> dict:
    """The bundle's ``configs/metadata.json``, for the configs' ``_meta_`` id.

    MONAI's workflows and the inference API read ``metadata.json`` into ``_meta_`` themselves,
    replacing this; a tool that parses a config alone (MONAI Label's ``BundleInferTask``) gets it
    from here, so that ``@_meta_`` (the ``model_settings`` that ``train.json`` and ``inference.json``
    share) resolves everywhere.

    Raises:
        InputError: naming the file, when ``bundle_root`` is no bundle folder or the file is unreadable.
    """
    meta_file = Path(bundle_path(bundle_root, "configs")) / "metadata.json"
    try:
        return json.loads(meta_file.read_text(encoding="utf8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{meta_file}: not a readable metadata file ({type(error).__name__}: {error}).") from None
