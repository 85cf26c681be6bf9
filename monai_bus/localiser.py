"""Lesion localisation API: find the lesion of one image with the trained localiser bundle.

:class:`LesionLocaliser` takes ``network_def``, ``preprocessing``, ``inferer`` and ``lesion_mask``
from the localiser bundle's own ``configs/inference.json`` (the definitions its ``evaluating``
workflow runs, so that the API and the workflow give the same mask): the image is read by the
project's one reader and resized to ``image_size``; the UNet's softmax (averaged with the mirror
image's when the bundle's ``flip_tta`` is on; it is off in the shipped bundle) is brought back to the
input's size (``Invertd``), each pixel called lesion where the lesion's probability is above the
background's, and one connected component of the lesion kept: the one holding the highest lesion
probability in the shipped bundle (:class:`monai_bus.data.masks.LesionComponentd`, with the bundle's
``lesion_component``). The lesion box is that component's bounding box
(:class:`monai.transforms.BoundingRect`), in the input's pixels, half-open, rows first, as
everywhere in the project (:mod:`monai_bus.data.boxes`).

The localiser's confidence in the lesion is the component's mean lesion probability. The bundle's
``metadata.json`` may hold an ``operating_point``: ``{"check_below": c, "weights_sha256": ...,
"description": "..."}``, fitted on validation data by ``monai-bus calibrate-localiser``; a lesion found
with a confidence below ``c`` is one whose box the user should check (``Localisation.check_box``). A cut-off
fitted for other weights is not applied, and :attr:`LesionLocaliser.operating_point_note` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.transforms import BoundingRect, Compose

from monai_bus.data.boxes import MIN_BOX_SIDE, Box
from monai_bus.data.masks import LesionComponentd
from monai_bus.errors import find_monai_bus_error, one_line
from monai_bus.inference import BundleError, load_weights, read_bundle

LESION_CLASSES = {"0": "background", "1": "lesion"}
CONFIDENCE_KEY = "lesion_confidence"  # where the bundle's lesion_mask puts the kept component's confidence


@dataclass(frozen=True)
class Localisation:
    """Where the localiser found the lesion of one image.

    Attributes:
        mask: bool [H, W] at the input image's size and orientation (rows first): the connected
            component of the predicted lesion that the bundle keeps; all False when no lesion was found.
        box: the mask's bounding box ``(row_start, row_stop, col_start, col_stop)`` in the input's
            pixels (half-open, rows first); None when no lesion was found.
        confidence: the mean lesion probability over ``mask``, above 0.5; None when no lesion was found, or
            when the bundle's ``lesion_mask`` gives no confidence (configs of before version 0.5.0).
        check_box: whether the confidence is below the operating point's ``check_below``, so that the
            user should check that the box holds the lesion.
    """

    mask: np.ndarray = field(repr=False, compare=False)
    box: Box | None
    confidence: float | None = None
    check_box: bool = False

    @property
    def found(self) -> bool:
        """Whether a lesion was found (then ``box`` is set and ``mask`` holds it)."""
        return self.box is not None

    @property
    def lesion_fraction(self) -> float:
        """The share of the image's pixels in ``mask``, in [0, 1]."""
        return float(self.mask.mean())


class LesionLocaliser:
    """A trained localiser bundle (``localiser/`` in the monai-bus repository), ready to find lesions.

    Args:
        bundle_dir: bundle folder holding ``configs/inference.json``, ``configs/metadata.json`` and
            ``models/model.pt``.
        device: torch device name; default as in the bundle's config (CUDA when available).

    Attributes:
        gives_confidence: whether the bundle's ``lesion_mask`` gives the confidence
            (:class:`~monai_bus.data.masks.LesionComponentd`'s ``confidence_key``, since version 0.5.0).
        check_below: the operating point's cut-off, None when there is none or it was fitted for other
            weights (then ``operating_point_note`` says so).

    Raises:
        BundleError: a missing file, a bundle whose configs or checkpoint do not fit together, a malformed
            ``operating_point``, or one with a ``check_below`` beside configs that give no confidence.
    """

    def __init__(self, bundle_dir: str | os.PathLike, device: str | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        config_file, meta_file = (self.bundle_dir / "configs" / name for name in ("inference.json", "metadata.json"))
        parser = read_bundle(self.bundle_dir, device)
        try:
            metadata = parser["_meta_"]
            classes = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
            self.device = parser.get_parsed_content("device")
            self.network = parser.get_parsed_content("network")
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
            self.lesion_mask = Compose(parser.get_parsed_content("lesion_mask"))
        except Exception as error:
            raise BundleError(f"{config_file}: incompatible bundle ({type(error).__name__}: {one_line(error)}).") \
                from error
        if classes != LESION_CLASSES:
            raise BundleError(f"{meta_file}: a localiser's output channels are {LESION_CLASSES}, got {classes}.")
        self.checkpoint_path = self.bundle_dir / "models" / "model.pt"
        self.weights = load_weights(self.network, self.checkpoint_path, metadata)
        operating_point = metadata.get("operating_point") or {}
        self.check_below = operating_point.get("check_below") if isinstance(operating_point, dict) else None
        if not isinstance(operating_point, dict) or self.check_below is not None and (
                isinstance(self.check_below, bool) or not isinstance(self.check_below, (int, float))
                or not 0.0 <= self.check_below <= 1.0):
            raise BundleError(f"{meta_file}: operating_point must be an object whose check_below is a number in "
                              f"[0, 1], got {operating_point!r}.")
        self.gives_confidence = any(isinstance(t, LesionComponentd) and t.confidence_key == CONFIDENCE_KEY
                                    for t in self.lesion_mask.transforms)
        if self.check_below is not None and not self.gives_confidence:
            raise BundleError(f"{config_file}: its lesion_mask gives no {CONFIDENCE_KEY} (LesionComponentd's "
                              f"confidence_key), which the operating point's check_below in {meta_file} needs.")
        self.operating_point_note = None
        fitted_for = operating_point.get("weights_sha256")
        if self.check_below is not None and fitted_for is not None and fitted_for != self.weights["sha256"]:
            self.check_below = None
            self.operating_point_note = (f"the localiser's cut-off for checking its box was fitted for other weights "
                                         f"({fitted_for[:12]}), so it was not applied; run monai-bus "
                                         "calibrate-localiser for these weights")

    @torch.no_grad()
    def locate(self, image: str | os.PathLike | np.ndarray, frame: int | None = None) -> Localisation:
        """Find the lesion of one image.

        A kept component whose bounding box is below :data:`monai_bus.data.boxes.MIN_BOX_SIDE`
        pixels high or wide counts as no lesion, so that every box found is one the classifier takes.

        Args:
            image: a file (PNG, JPEG, DICOM, ...) or an array [H, W] or [H, W, C] in display order.
            frame: the frame of a multi-frame file (counting from 0).

        Returns:
            the lesion's mask [H, W] at the input's size, its box, the confidence and whether to check the box.

        Raises:
            InputError: a ``ValueError`` naming the file, for every image that
                :func:`monai_bus.data.images.read_image` refuses.
            BundleError: when the network's output is not finite (corrupt weights).
        """
        try:
            data = self.preprocessing({"image": image, "frame": frame})
        except RuntimeError as error:  # MONAI's Compose wraps the reader's error: report the original
            raise find_monai_bus_error(error) or error from None
        logits = self.inferer(data["image"].unsqueeze(0).to(self.device), self.network)  # [1, 2, S, S]
        if not torch.isfinite(logits).all():
            raise BundleError(f"{data['image'].meta['filename_or_obj']}: the network's output is not finite; the "
                              f"weights of {self.checkpoint_path} are corrupt.")
        found = self.lesion_mask({"pred": logits[0].cpu(), "image": data["image"]})
        mask = found["pred"][0].numpy() > 0  # [H, W]
        row_start, row_stop, col_start, col_stop = (int(v) for v in BoundingRect()(mask[None])[0])
        if min(row_stop - row_start, col_stop - col_start) < MIN_BOX_SIDE:
            return Localisation(mask=np.zeros_like(mask), box=None)
        confidence = found.get(CONFIDENCE_KEY)
        return Localisation(mask=mask, box=(row_start, row_stop, col_start, col_stop), confidence=confidence,
                            check_box=self.check_below is not None and confidence < self.check_below)
