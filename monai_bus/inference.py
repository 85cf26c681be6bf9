"""Inference API: classify one image with a trained bundle.

This is the one inference code path of the project: the ``monai-bus infer`` command, the 3D Slicer
module and the MONAI Label app all call :class:`BundleClassifier`, which takes ``network_def``,
``preprocessing`` and ``inferer`` from the bundle's own ``configs/inference.json`` (the same
definitions the bundle's ``evaluating`` workflow runs), and the class names and operating point from
``configs/metadata.json``. Every prediction names its weights: file, SHA-256, version and training
data (:mod:`monai_bus.weights`).

The operating point is ``metadata.json``'s optional ``operating_point``:
``{"threshold": t, "temperature": T, "refer_above": u, "weights_sha256": ..., "description": "..."}``, fitted
on validation data by ``monai-bus calibrate`` (:mod:`monai_bus.calibration`). The probabilities are
``softmax(logits / T)`` (T = 1 when not given), where the logits are the bundle's ``inferer``'s: with
``flip_tta`` on (``model_settings``), the log of the mean class probabilities of the input and its mirror
image (:class:`monai_bus.inferers.FlipAveragingInferer`). An image is classified malignant when
``P(malignant) >= t``; without the entry, the class is the argmax of the two probabilities, the rule of
the bundle's metrics (:mod:`monai_bus.metrics`), and every prediction's note says that the bundle has no
operating point. An operating point needs a threshold in (0, 1] and a finite temperature > 0. One fitted
for other weights (its ``weights_sha256``) is not applied, and every prediction's note says so. Every
prediction also carries a likelihood category (:func:`monai_bus.calibration.likelihood_category`, split at
``t``, or at 0.5 without an operating point), and, unless turned off, an uncertainty: the spread of P(malignant)
over test-time views (:mod:`monai_bus.uncertainty`), with a "refer" flag when it is above the operating
point's ``refer_above``.

An operating point fitted with feature statistics (its ``unfamiliar_above``, a cut-off for each layer of
:data:`monai_bus.familiarity.LAYERS`, and ``models/feature_statistics.npz``, :mod:`monai_bus.familiarity`)
also measures how unlike the training images each image is: above the cut-off of any layer, the image gets
no class, and its note says why.

A bundle trained on lesion regions (``roi`` true in ``inference.json``) classifies the region around a
lesion box: the box plus the bundle's fixed margin (:mod:`monai_bus.data.roi`). The box is the caller's
(``box_source`` ``"given"``), else, with a localiser (:class:`monai_bus.localiser.LesionLocaliser`), the
box of the lesion it finds (``"localiser"``; the prediction also carries its mask and the localiser's
confidence). When the localiser is unsure of the lesion it found (its confidence below the localiser's
``check_below``, :mod:`monai_bus.localiser`), the answer is flagged "refer" and its note asks the user to
check the box. When the localiser
finds no lesion, the image is not classified: the prediction has no class and its note says so. With
neither a box nor a localiser the whole image is classified, and the prediction's note says that this
is unreliable; a bundle trained on whole images ignores a box, and says so too.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.utils.misc import check_key_duplicates

from monai_bus.calibration import likelihood_category
from monai_bus.data.boxes import check_box
from monai_bus.data.roi import ROI_META_KEY
from monai_bus.errors import InputError, find_monai_bus_error, one_line
from monai_bus.familiarity import LAYERS, STATISTICS_FILE, FeatureStatistics, PooledFeatures, load_statistics
from monai_bus.inferers import FlipAveragingInferer
from monai_bus.metrics import predicted_malignant
from monai_bus.uncertainty import shifted_boxes, spread
from monai_bus.weights import provenance, sha256

if TYPE_CHECKING:
    from monai_bus.localiser import LesionLocaliser

NO_BOX_NOTE = ("no lesion box given: the whole image was classified, but this model was trained on lesion "
               "regions and is unreliable on whole images; give a box around the lesion")
BOX_IGNORED_NOTE = "this model classifies whole images (roi false): the lesion box was not used"
NO_LESION = "no lesion found"  # the reasons for an answer without a class (Prediction.unclassified_reason)
UNFAMILIAR = "unlike the training images"
NO_LESION_NOTE = (f"{NO_LESION}: the localiser found no lesion in this image, so it was not classified; if "
                  "there is one, give its box")


CHECK_BOX_NOTE = ("the localiser is unsure of the lesion it found (confidence {confidence:.3f}, below "
                  "{cutoff:.3f}): check that the box holds the lesion; if it does not, give the lesion's box")
BOX_FILLS_IMAGE_NOTE = ("the lesion box and its margin fill the image, so moving the box changes nothing and the "
                        "uncertainty measures the mirror image alone; check that the box holds the lesion and no more")
NO_OPERATING_POINT_NOTE = ("the bundle has no operating point: P(malignant) is not calibrated, the class is the argmax "
                           "and no image is checked against the training images; run monai-bus calibrate")
UNFAMILIAR_NOTE = (UNFAMILIAR + " ({distances}), "
                   "the lesion regions of BUSI's and BUS-BRA's breast ultrasound images, so it was not classified; "
                   "check that it is one and that the box holds the lesion")


class BundleError(InputError):
    """The bundle folder, its configs or its checkpoint cannot be used."""


@dataclass(frozen=True)
class Prediction:
    """Result for one image.

    Attributes:
        class_index: predicted class (0 benign, 1 malignant); None when the localiser found no lesion, or
            when the image is unlike the training images (then it was not classified, and ``note`` says so).
        class_name: its name from the bundle's metadata, or None as ``class_index``.
        probabilities: one probability per class, summing to 1, or None as ``class_index``.
        model_version: the version of the weights (:func:`monai_bus.weights.provenance`): the bundle's
            for its shipped weights, with ``+trained.<time>`` for weights trained or fine-tuned since.
        attention: attention coefficients [H, W] in [0, 1] at the input image's size and
            orientation (rows first), zero outside ``roi``; None for a network without an attention
            gate.
        roi: the region of the image that was classified, ``(row_start, row_stop, col_start,
            col_stop)`` in the input's pixels (the lesion box plus the bundle's margin, clipped to the
            image); None when the whole image was classified.
        note: that no lesion was found, why a lesion box was not used or its moves measure nothing, or
            that the bundle has no operating point or did not apply it; or None.
        likelihood: the likelihood category of ``probabilities`` (:data:`monai_bus.calibration.CATEGORIES`),
            or None as ``class_index``.
        uncertainty: the standard deviation of P(malignant) over the test-time views
            (:mod:`monai_bus.uncertainty`); None when not measured, or not classified.
        refer: whether a reader should decide: True when ``uncertainty`` is above the operating point's
            ``refer_above``, when the localiser found no lesion or is unsure of the lesion it found, when
            a model trained on lesion regions classified the whole image, or when the box and its margin
            fill the image (moving the box changes nothing); None when none applies and it
            could not be decided (no uncertainty, or no ``refer_above``); else False.
        weights_file: the weight file that classified the image.
        weights_sha256: its SHA-256.
        trained_on: the data that trained it, in words.
        box: the lesion box around which the image was classified, ``(row_start, row_stop, col_start,
            col_stop)`` in the input's pixels, clipped to the image; None when no box was used.
        box_source: where ``box`` came from: ``"given"`` (the caller's box, or the box of the item's
            masks) or ``"localiser"``; also ``"localiser"`` when it found no lesion; None without a box.
        lesion_mask: with ``box_source`` ``"localiser"``, the localiser's lesion mask, bool [H, W] at the
            input's size (all False when it found no lesion); else None.
        localiser_version: with ``box_source`` ``"localiser"``, the version of the localiser's weights.
        localiser_sha256: their SHA-256.
        localiser_confidence: with ``box_source`` ``"localiser"``, the localiser's confidence in the lesion
            it found (:class:`monai_bus.localiser.Localisation`); None when it found none, or gives none.
        check_box: whether the localiser is unsure of the lesion it found (its confidence below its
            ``check_below``): then ``refer`` is True and ``note`` asks the user to check the box.
        feature_distance: how unlike the training images the classified input is, by layer
            (:mod:`monai_bus.familiarity`: ``{"pool3": d3, "pool5": d5}``), when the operating point has
            feature statistics; else None.
        unclassified_reason: why the image has no class, in words a table can show: :data:`NO_LESION`
            (``"no lesion found"``) or :data:`UNFAMILIAR` (``"unlike the training images"``); ``note`` says
            more. None when it was classified.
    """

    class_index: int | None
    class_name: str | None
    probabilities: tuple[float, ...] | None
    model_version: str
    attention: np.ndarray | None = field(default=None, repr=False, compare=False)
    roi: tuple[int, int, int, int] | None = None
    note: str | None = None
    likelihood: str | None = None
    uncertainty: float | None = None
    refer: bool | None = None
    weights_file: str | None = None
    weights_sha256: str | None = None
    trained_on: str | None = None
    box: tuple[int, int, int, int] | None = None
    box_source: str | None = None
    lesion_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    localiser_version: str | None = None
    localiser_sha256: str | None = None
    localiser_confidence: float | None = None
    check_box: bool = False
    feature_distance: dict[str, float] | None = None
    unclassified_reason: str | None = None

    @property
    def malignancy_probability(self) -> float | None:
        """P(malignant), the probability of class 1; None when the image was not classified."""
        return None if self.probabilities is None else self.probabilities[1]

    def to_dict(self) -> dict:
        """JSON-ready summary (without the attention map and the lesion mask)."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probabilities": None if self.probabilities is None else list(self.probabilities),
            "malignancy_probability": self.malignancy_probability,
            "model_version": self.model_version,
            "roi": None if self.roi is None else list(self.roi),
            "note": self.note,
            "likelihood": self.likelihood,
            "uncertainty": self.uncertainty,
            "refer": self.refer,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "trained_on": self.trained_on,
            "box": None if self.box is None else list(self.box),
            "box_source": self.box_source,
            "localiser_version": self.localiser_version,
            "localiser_sha256": self.localiser_sha256,
            "localiser_confidence": self.localiser_confidence,
            "check_box": self.check_box,
            "feature_distance": self.feature_distance,
            "unclassified_reason": self.unclassified_reason,
        }


class ForwardPass(NamedTuple):
    """One classification of a datalist item (:meth:`BundleClassifier.forward`).

    Attributes:
        data: the preprocessed item; its ``image`` is the network input [1, S, S], a ``MetaTensor``.
        probabilities: the class probabilities [2], after the operating point's temperature.
        attention: the attention map [S, S] in [0, 1] over the network input; None for a network without
            an attention gate.
        view_probabilities: P(malignant) of each test-time view [V], after the temperature, when asked for.
        features: the features [F] of the network input averaged over space, by layer of
            :data:`monai_bus.familiarity.LAYERS` (:class:`~monai_bus.familiarity.PooledFeatures`).
        box_moves_nothing: whether every moved box's crop is the input itself (the box and its margin fill the
            image), so that the views measure the mirror image alone.
    """

    data: dict
    probabilities: torch.Tensor
    attention: torch.Tensor | None
    view_probabilities: list[float] | None
    features: dict
    box_moves_nothing: bool = False


def read_checkpoint(path: Path) -> dict:
    """The state dict in a weight file: a raw state dict, or a ``{"model": state_dict}`` checkpoint.

    Raises:
        BundleError: naming the file, when it is missing, a folder, or not a readable checkpoint.
    """
    if path.is_dir():
        raise BundleError(f"{path}: is a folder, not a model file.")
    if not path.is_file():
        raise BundleError(f"{path}: model file not found; train the bundle first (configs/train.json).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BundleError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {one_line(error)}).") \
            from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]  # a {"model": state_dict} checkpoint
    return checkpoint


MODEL_SETTING = re.compile(r"@model_settings\['(\w+)'\]")
"""A config's reference to one of ``metadata.json``'s ``model_settings``; group 1 is its name."""


def read_bundle(bundle_dir: Path, device: str | None = None) -> ConfigParser:
    """A parser of the bundle's ``configs/inference.json``, with its ``metadata.json`` read into
    ``_meta_``, ``bundle_root`` set, and ``device`` (when given) as a ``torch.device``.

    Raises:
        BundleError: naming a missing or unreadable file, a model setting that the configs read and the
            metadata lacks, or a device torch does not know or does not find.
    """
    config_file, meta_file = bundle_dir / "configs" / "inference.json", bundle_dir / "configs" / "metadata.json"
    for path in (config_file, meta_file):
        if not path.is_file():
            raise BundleError(f"{path}: not found; is {bundle_dir} a monai-bus bundle folder?")
    contents = {}
    for path in (config_file, meta_file):
        try:
            contents[path] = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=check_key_duplicates)
        except (OSError, ValueError) as error:  # ValueError: not UTF-8, not JSON, or a repeated id (MONAI's hook)
            raise BundleError(f"{path}: not readable JSON ({one_line(error)}).") from error
        if not isinstance(contents[path], dict):
            raise BundleError(f"{path}: holds a JSON {type(contents[path]).__name__}, not an object of ids.")
    parser = ConfigParser()
    parser.read_config(contents[config_file])
    parser.read_meta(contents[meta_file])
    settings = contents[meta_file].get("model_settings", {})
    if not isinstance(settings, dict):
        raise BundleError(f"{meta_file}: model_settings must be an object of settings, got {settings!r}.")
    missing = sorted({key for key in MODEL_SETTING.findall(json.dumps(contents[config_file])) if key not in settings})
    if missing:
        raise BundleError(f"{meta_file}: model_settings lacks {', '.join(missing)}, which {config_file.name} reads; "
                          "the configs and metadata.json come from different versions of the bundle (copy both "
                          "from one).")
    parser["bundle_root"] = str(bundle_dir)
    if device is not None:
        try:
            parser["device"] = torch.device(device)  # an object, never a config expression
        except RuntimeError as error:
            raise BundleError(f"device {device!r}: {error}") from error
        if parser["device"].type == "cuda" and (parser["device"].index or 0) >= torch.cuda.device_count():
            raise BundleError(f"device {device!r}: torch finds {torch.cuda.device_count()} CUDA device(s) here.")
    return parser


def read_feature_statistics(path: Path, operating_point: dict, meta_file: Path,
                            channels: dict[str, int]) -> dict[str, FeatureStatistics]:
    """The feature statistics, by layer, that the operating point's ``unfamiliar_above`` holds cut-offs for.

    Raises:
        BundleError: the file is missing, is not the one the operating point was fitted with (its
            ``feature_statistics_sha256``), cannot be read (a layer missing among them), or models another
            number of features than the network's layer gives (``channels``, by layer: another ``width``).
    """
    if not path.is_file():
        raise BundleError(f"{path}: not found; {meta_file.name}'s operating point needs it (run monai-bus calibrate).")
    if sha256(path) != operating_point.get("feature_statistics_sha256"):
        raise BundleError(f"{path}: not the feature statistics that {meta_file.name}'s operating point was fitted "
                          "with (its feature_statistics_sha256 differs); run monai-bus calibrate.")
    try:
        statistics = load_statistics(path)
    except (OSError, ValueError, KeyError) as error:
        raise BundleError(f"{path}: not readable feature statistics of {' and '.join(LAYERS)} ({one_line(error)}); "
                          "run monai-bus calibrate.") from error
    for layer, statistic in statistics.items():
        if statistic.means.shape[1] != channels[layer]:
            raise BundleError(f"{path}: {layer} statistics of {statistic.means.shape[1]} features, but the network's "
                              f"{layer} gives {channels[layer]} (another width); run monai-bus calibrate.")
    return statistics


def read_unfamiliar_cutoffs(operating_point: dict, meta_file: Path) -> dict[str, float] | None:
    """The operating point's ``unfamiliar_above``: a cut-off >= 0 for each layer of :data:`LAYERS`, or None.

    Raises:
        BundleError: anything else (a single number is an operating point of bundle 0.8, fitted on pool5 alone).
    """
    cutoffs = operating_point.get("unfamiliar_above")
    if cutoffs is None:
        return None
    if not isinstance(cutoffs, dict) or set(cutoffs) != set(LAYERS) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < float("inf")
            for value in cutoffs.values()):
        raise BundleError(f"{meta_file}: operating_point unfamiliar_above must map {' and '.join(LAYERS)} to finite "
                          f"numbers >= 0, got {cutoffs!r}; run monai-bus calibrate.")
    return {layer: float(cutoffs[layer]) for layer in LAYERS}


def load_weights(network: torch.nn.Module, checkpoint_path: Path, metadata: dict) -> dict:
    """Load a weight file into ``network`` and put it in eval mode; returns the file's
    :func:`~monai_bus.weights.provenance`.

    Raises:
        BundleError: naming the file, when it cannot be read or does not fit the network.
    """
    try:
        network.load_state_dict(read_checkpoint(checkpoint_path))
    except RuntimeError as error:
        raise BundleError(f"{checkpoint_path}: does not match the bundle's network_def ({one_line(error)}).") \
            from error
    network.eval()
    return provenance(checkpoint_path, metadata)


class BundleClassifier:
    """A trained monai-bus bundle, ready to classify images.

    Args:
        bundle_dir: bundle folder holding ``configs/inference.json``, ``configs/metadata.json`` and
            the checkpoint.
        checkpoint: checkpoint file; default ``<bundle_dir>/models/model.pt``.
        device: torch device name; default as in the bundle's config (CUDA when available).
        localiser: finds the lesion box of an image given without one, for a bundle trained on lesion
            regions; None to classify such an image whole (unreliable, and said in its note).
        uncertainty: measure each prediction's uncertainty from test-time views, classified in the
            answer's batch (up to 6 images in it, against 2 with ``flip_tta`` alone) and, around a box,
            cropped 4 more times from the image as read; False for predictions without ``uncertainty`` (and
            a ``refer`` flag only where it needs none).
        operating_point: apply ``metadata.json``'s ``operating_point``; False to ignore it (temperature 1, the
            argmax, no cut-offs), as ``monai-bus calibrate`` does to fit a new one, even over one that is stale
            or of an older form.

    Raises:
        BundleError: a missing file, or a bundle whose configs, checkpoint or operating point do not fit
            together.

    Threads may share one classifier: their network passes take turns, so that each answer's features
    (which the pooling layers' hooks keep) are its own image's.
    """

    def __init__(self, bundle_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                 device: str | None = None, localiser: LesionLocaliser | None = None,
                 uncertainty: bool = True, operating_point: bool = True) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.localiser = localiser
        self.uncertainty = uncertainty
        config_file, meta_file = (self.bundle_dir / "configs" / name for name in ("inference.json", "metadata.json"))
        parser = read_bundle(self.bundle_dir, device)
        try:
            metadata = parser["_meta_"]
            self.class_names = tuple(
                name for _, name in sorted(metadata["network_data_format"]["outputs"]["pred"]["channel_def"].items(),
                                           key=lambda item: int(item[0])))
            self.roi = parser.get_parsed_content("flags#roi")
            self.device = parser.get_parsed_content("device")
            self.network = parser.get_parsed_content("network")
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
        except Exception as error:
            raise BundleError(f"{config_file}: incompatible bundle ({type(error).__name__}: {one_line(error)}); is "
                              f"{self.bundle_dir} the classifier bundle? (the localiser bundle is given as the "
                              "localiser)") from error
        self.operating_point_note = NO_OPERATING_POINT_NOTE if operating_point and not metadata.get(
            "operating_point") else None
        operating_point = (metadata.get("operating_point") or {}) if operating_point else {}
        if not isinstance(operating_point, dict):
            raise BundleError(f"{meta_file}: operating_point must be an object, got {operating_point!r}.")
        if operating_point and operating_point.get("threshold") is None:
            raise BundleError(f"{meta_file}: operating_point has no threshold; run monai-bus calibrate.")
        numbers = {key: operating_point.get(key, default) for key, default in (
            ("threshold", None), ("temperature", 1.0), ("refer_above", None))}
        wrong = {key: value for key, value in numbers.items()  # JSON true and "0.3" are not numbers either
                 if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)))}
        if wrong:
            raise BundleError(f"{meta_file}: operating_point must map threshold, temperature and refer_above to "
                              f"numbers, got {wrong}.")
        self.threshold, self.temperature, self.refer_above = (
            None if value is None else float(value) for value in numbers.values())
        if len(self.class_names) != 2 or not (self.threshold is None or 0.0 < self.threshold <= 1.0) or not (
                0.0 < self.temperature < float("inf")) or not (
                self.refer_above is None or 0.0 <= self.refer_above < float("inf")):
            raise BundleError(f"{meta_file}: needs two classes, an operating_point threshold in (0, 1], a finite "
                              f"temperature > 0 and a finite refer_above >= 0, got {self.class_names}, "
                              f"{self.threshold}, {self.temperature} and {self.refer_above}.")
        self.checkpoint_path = Path(checkpoint) if checkpoint else self.bundle_dir / "models" / "model.pt"
        self.weights = load_weights(self.network, self.checkpoint_path, metadata)
        self.version = self.weights["version"]
        fitted_for = operating_point.get("weights_sha256")
        if fitted_for is not None and fitted_for != self.weights["sha256"]:
            self.threshold, self.temperature, self.refer_above, self.unfamiliar_above = None, 1.0, None, None
            self.operating_point_note = (f"the bundle's operating point was fitted for other weights "
                                         f"({fitted_for[:12]}), so it was not applied (argmax); run monai-bus "
                                         "calibrate for these weights")
        else:  # cut-offs of another form are refused only where they would apply (not for weights fine-tuned since)
            self.unfamiliar_above = read_unfamiliar_cutoffs(operating_point, meta_file)
        self.pooled_features = PooledFeatures(self.network)
        self._network_turn = threading.Lock()
        self.feature_statistics = None if self.unfamiliar_above is None else \
            read_feature_statistics(self.bundle_dir / "models" / STATISTICS_FILE, operating_point, meta_file,
                                    self.pooled_features.channels)

    @property
    def has_attention(self) -> bool:
        return hasattr(self.network, "attention_map")

    def predict(self, image: str | os.PathLike | np.ndarray,
                box: tuple[int, int, int, int] | None = None, frame: int | None = None) -> Prediction:
        """Classify one image, or the region around its lesion.

        Args:
            image: a file (PNG, JPEG, DICOM, ...) or an array [H, W] or [H, W, C] in display order.
            box: the lesion, ``(row_start, row_stop, col_start, col_stop)`` in the image's pixels
                (half-open, rows first), for a bundle trained on lesion regions. A box reaching past the
                image is clipped to it. Without it, the localiser's box (when the classifier has one).
            frame: the frame of a multi-frame file (counting from 0).

        Raises:
            InputError: a ``ValueError`` naming the file, for every image that
                :func:`monai_bus.data.images.read_image` refuses, and for a box that is malformed, lies
                outside the image or is below the minimum size.
            BundleError: when the network's output is not finite (corrupt weights).
        """
        item = {"image": image, "frame": frame}
        if box is not None:
            item["bbox"] = box
        return self.predict_item(item)

    @torch.no_grad()
    def forward(self, item: dict, views: bool = False) -> ForwardPass:
        """Preprocess a datalist item and classify it in one batch, for the class probabilities and the
        attention map together.

        Without ``views``, the batch is the network input through the bundle's ``inferer`` (with
        ``flip_tta``, the input and its mirror image, their probabilities averaged). With ``views``, it is
        the test-time views of :mod:`monai_bus.uncertainty`, each classified on its own (by the single pass
        that a :class:`~monai_bus.inferers.FlipAveragingInferer` wraps, or the ``inferer`` itself): the input
        as it is and mirrored left to right, then, when it was cropped around a lesion box ``data["bbox"]``,
        the crops around :func:`~monai_bus.uncertainty.shifted_boxes` (cut from the image as read once); the
        class probabilities are then those of the first view, or, with ``flip_tta``, of the first two
        averaged as the ``inferer`` averages them (:meth:`FlipAveragingInferer.average
        <monai_bus.inferers.FlipAveragingInferer.average>`), so that the answer is the same either way and
        the views cost no pass of their own for it.

        Raises:
            InputError: as :meth:`predict`.
            BundleError: when the network's output, or a probability, is not finite (corrupt weights).
        """
        try:
            read = self.preprocessing(dict(item), end=1)  # the first transform reads the image
            data = self.preprocessing(dict(read), start=1)
            inputs, moved = [data["image"]], []
            if views:
                inputs.append(torch.flip(data["image"], dims=[-1]))
                if self.roi and data.get("bbox") is not None:
                    moved = [self.preprocessing({**read, "bbox": box}, start=1)["image"]
                             for box in shifted_boxes(data["bbox"], read["image"].shape[-2:])]
                    inputs += moved
        except RuntimeError as error:  # MONAI's Compose wraps the loader's error: report the original
            raise find_monai_bus_error(error) or error from None
        flip_averaged = isinstance(self.inferer, FlipAveragingInferer)
        single_pass = self.inferer.inferer if flip_averaged else self.inferer
        inferer = single_pass if views else self.inferer
        batch = torch.stack(inputs).to(self.device)
        alpha = None
        with self._network_turn:
            if self.has_attention:
                logits, alpha = inferer(batch, self.network.logits_and_attention_map)
                alpha = alpha[0, 0].clamp(0.0, 1.0).cpu()
            else:
                logits = inferer(batch, self.network)
            features = dict(self.pooled_features.last)
        logits = logits.float()
        view_probabilities = torch.softmax(logits / self.temperature, dim=1)[:, 1].cpu() if views else None
        if views:
            logits = FlipAveragingInferer.average(logits[:1], logits[1:2]) if flip_averaged else logits[:1]
        probabilities = torch.softmax(logits / self.temperature, dim=1)[0].cpu()
        finite = [logits, probabilities] + ([] if view_probabilities is None else [view_probabilities])
        if not all(torch.isfinite(values).all() for values in finite):
            raise BundleError(f"{data['image'].meta['filename_or_obj']}: the network's output is not finite; the "
                              f"weights of {self.checkpoint_path} are corrupt.")
        return ForwardPass(data, probabilities, alpha, None if view_probabilities is None else
                           view_probabilities.tolist(), features,
                           bool(moved) and all(torch.equal(view, inputs[0]) for view in moved))

    def predict_item(self, item: dict) -> Prediction:
        """Classify a datalist item: its ``image`` (and ``frame``), around its lesion box: its ``bbox``,
        else the box of its ``mask`` files (:class:`monai_bus.data.roi.LesionBoxd`), else the box that
        the localiser finds. Errors as for :meth:`predict`."""
        localisation = None
        if self.roi and self.localiser is not None and item.get("bbox") is None and not item.get("mask"):
            localisation = self.localiser.locate(item["image"], frame=item.get("frame"))
            if not localisation.found:
                return self._unclassified(localisation)
            item = {**item, "bbox": localisation.box}
        data, probabilities, alpha, view_probabilities, features, box_moves_nothing = self.forward(
            item, views=self.uncertainty)
        meta = data["image"].meta
        image_shape = [int(s) for s in meta["spatial_shape"]]
        rows, columns = image_shape
        roi, note = None, None
        if self.roi and data.get("bbox") is not None:
            roi = tuple(int(v) for v in meta[ROI_META_KEY])  # checked and cropped by CropToLesiond
            given, inside = item.get("bbox"), [int(v) for v in data["bbox"]]  # check_box clipped it to the image
            if given is not None and [int(v) for v in given] != inside:
                note = (f"the lesion box {[int(v) for v in given]} reaches outside the image of {rows} rows and "
                        f"{columns} columns: its part inside, {inside}, was classified")
        elif self.roi:
            note = NO_BOX_NOTE
        elif item.get("bbox") is not None:
            check_box(item["bbox"], image_shape, str(meta.get("filename_or_obj") or "image"))  # a bad box is an error
            note = BOX_IGNORED_NOTE
        attention = None
        if alpha is not None:  # back onto the input image: the classified region, zero elsewhere
            row_start, row_stop, col_start, col_stop = roi or (0, rows, 0, columns)
            attention = np.zeros((rows, columns), dtype=np.float32)
            attention[row_start:row_stop, col_start:col_stop] = F.interpolate(
                alpha[None, None], size=(row_stop - row_start, col_stop - col_start), mode="bilinear",
                align_corners=False).clamp(0.0, 1.0)[0, 0].numpy()
        index = int(predicted_malignant(probabilities[None].numpy(), self.threshold)[0])
        uncertainty = spread(view_probabilities) if self.uncertainty else None
        refer = None if uncertainty is None or self.refer_above is None else uncertainty > self.refer_above
        if box_moves_nothing:
            note = "; ".join(n for n in (note, BOX_FILLS_IMAGE_NOTE) if n)
        if note == NO_BOX_NOTE or box_moves_nothing or localisation is not None and localisation.check_box:
            refer = True  # a model trained on lesion regions classified the whole image, or the box is in doubt
        source = {"box_source": None if roi is None else "given"} if localisation is None else \
            self._localiser_fields(localisation)
        distance = None if self.feature_statistics is None else {
            layer: float(statistics.distance(features[layer][None])[0])
            for layer, statistics in self.feature_statistics.items()}
        prediction = Prediction(
            class_index=index,
            class_name=self.class_names[index],
            probabilities=tuple(float(p) for p in probabilities),
            model_version=self.version,
            attention=attention,
            roi=roi,
            note="; ".join(n for n in (note, *self._localiser_notes(localisation), self.operating_point_note)
                           if n) or None,
            likelihood=likelihood_category(float(probabilities[1]), 0.5 if self.threshold is None else self.threshold),
            uncertainty=uncertainty,
            refer=refer,
            weights_file=self.weights["file"],
            weights_sha256=self.weights["sha256"],
            trained_on=self.weights["trained_on"],
            box=None if roi is None else tuple(int(v) for v in data["bbox"]),
            feature_distance=distance,
            **source,
        )
        beyond = [] if distance is None else [
            layer for layer in LAYERS if distance[layer] > self.unfamiliar_above[layer]]
        if not beyond:
            return prediction
        unfamiliar = UNFAMILIAR_NOTE.format(distances="; ".join(
            f"{layer} feature distance {distance[layer]:.1f}, above the cut-off {self.unfamiliar_above[layer]:.1f}"
            for layer in beyond))
        return replace(prediction, class_index=None, class_name=None, probabilities=None, likelihood=None,
                       uncertainty=None, refer=True, attention=None, unclassified_reason=UNFAMILIAR,
                       note="; ".join(n for n in (unfamiliar, prediction.note) if n))

    def _localiser_fields(self, localisation) -> dict:
        """The fields of a prediction whose box the localiser looked for: its mask, confidence and weights."""
        return {"box_source": "localiser", "lesion_mask": localisation.mask,
                "localiser_confidence": localisation.confidence, "check_box": localisation.check_box,
                "localiser_version": self.localiser.weights["version"],
                "localiser_sha256": self.localiser.weights["sha256"]}

    def _localiser_notes(self, localisation) -> tuple[str | None, str | None]:
        """What a prediction's note says of the localiser (None for each that does not apply): that the
        user should check its box, and that its cut-off was not applied."""
        if localisation is None:
            return None, None
        check = CHECK_BOX_NOTE.format(confidence=localisation.confidence, cutoff=self.localiser.check_below) \
            if localisation.check_box else None
        return check, self.localiser.operating_point_note

    def _unclassified(self, localisation) -> Prediction:
        """The answer for an image in which the localiser found no lesion: no class, and a note that says so."""
        return Prediction(
            class_index=None, class_name=None, probabilities=None, model_version=self.version,
            note="; ".join(n for n in (NO_LESION_NOTE, *self._localiser_notes(localisation)) if n), refer=True,
            unclassified_reason=NO_LESION,
            weights_file=self.weights["file"], weights_sha256=self.weights["sha256"],
            trained_on=self.weights["trained_on"], **self._localiser_fields(localisation))
