"""The uncertainty of a prediction (the spread over test-time views) and its refer flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import trained_copy, with_operating_point
from monai_bus.data.loading import load_split
from monai_bus.data.transforms import LoadUltrasoundImage
from monai_bus.inference import BOX_FILLS_IMAGE_NOTE, NO_BOX_NOTE, BundleClassifier, BundleError
from monai_bus.uncertainty import refer_cutoff, shifted_boxes, spread

BOX = (20, 60, 30, 70)


@pytest.fixture(scope="module")
def image(tiny_data) -> np.ndarray:
    return np.asarray(Image.open(load_split(str(tiny_data / "datalist.json"), "test")[0]["image"]))


class LopsidedNetwork(torch.nn.Module):
    """A stand-in classifier whose logit of malignancy is the brightness of the input's left and upper
    halves against the rest: unlike a barely trained VGG16, every view changes its answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, S, S] -> [B, 2]
        half = x.shape[-1] // 2
        left = x[..., :half].mean((1, 2, 3)) - x[..., half:].mean((1, 2, 3))
        top = x[..., :half, :].mean((1, 2, 3)) - x[..., half:, :].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(left), 2.0 * left + top], dim=1)


class HugeLogits(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, S, S] -> [B, 2]
        return torch.tensor([[3e38, 0.0]]).expand(len(x), 2)


def lopsided(classifier: BundleClassifier) -> BundleClassifier:
    classifier.network = LopsidedNetwork()
    return classifier


def single_view(classifier: BundleClassifier) -> BundleClassifier:
    """The classifier, answering from each image alone (not averaged with its mirror: flip_tta off)."""
    classifier.inferer = classifier.inferer.inferer  # the pass that FlipAveragingInferer wraps
    return classifier


def test_shifted_boxes_move_by_a_tenth_of_the_box_and_at_least_a_pixel():
    assert shifted_boxes(BOX, (96, 96)) == [(16, 56, 30, 70), (24, 64, 30, 70), (20, 60, 26, 66), (20, 60, 34, 74)]
    assert shifted_boxes((0, 5, 10, 35), (96, 96)) == [(-1, 4, 10, 35), (1, 6, 10, 35), (0, 5, 8, 33), (0, 5, 12, 37)]


def test_a_thin_box_at_the_edge_is_not_moved_off_the_image():
    """Moved by a pixel, its part inside the image would be below the minimum box (4 pixels)."""
    assert shifted_boxes((0, 4, 10, 35), (96, 96)) == [(0, 4, 10, 35), (1, 5, 10, 35), (0, 4, 8, 33), (0, 4, 12, 37)]
    assert shifted_boxes((10, 30, 92, 96), (96, 96)) == [(8, 28, 92, 96), (12, 32, 92, 96), (10, 30, 91, 95),
                                                         (10, 30, 92, 96)]


def test_spread_and_refer_cutoff():
    assert spread([0.2, 0.4]) == pytest.approx(0.1)
    assert spread([0.3] * 6) == 0.0
    assert refer_cutoff(np.arange(11.0)) == pytest.approx(9.0)  # one in ten above it
    assert refer_cutoff(np.arange(11.0), fraction=0.5) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="at least 2 views"):
        spread([0.5])
    with pytest.raises(ValueError, match="finite"):
        refer_cutoff([0.1, np.nan])
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        refer_cutoff([0.1, 0.2], fraction=1.0)


def test_uncertainty_is_the_spread_over_the_mirrored_and_shifted_views(roi_bundle, image):
    """The views, each classified on its own: the image mirrored (with its box mirrored), and the box
    shifted four ways."""
    plain = single_view(lopsided(BundleClassifier(roi_bundle, device="cpu", uncertainty=False)))
    columns = image.shape[1]
    views = [plain.predict(image, box=BOX), plain.predict(np.fliplr(image).copy(),
                                                          box=(BOX[0], BOX[1], columns - BOX[3], columns - BOX[2]))]
    views += [plain.predict(image, box=box) for box in shifted_boxes(BOX, image.shape[:2])]
    assert views[0].uncertainty is None and views[0].refer is None  # not measured, no need to refer
    p_views = [view.malignancy_probability for view in views]

    assert spread(p_views) > 0.01 and spread(p_views[:1] + p_views[2:]) > 0.01  # each kind of view counts
    assert abs(spread(p_views) - spread(p_views[:1] + p_views[2:])) > 1e-3 < abs(spread(p_views) - spread(p_views[:2]))

    result = lopsided(BundleClassifier(roi_bundle, device="cpu")).predict(image, box=BOX)
    assert result.malignancy_probability == pytest.approx(np.mean(p_views[:2]), abs=1e-5)  # flip_tta: the mirror's
    assert result.uncertainty == pytest.approx(spread(p_views), abs=1e-5)
    assert result.to_dict()["uncertainty"] == result.uncertainty
    assert result.refer is None  # no operating point: nothing to compare with


def test_the_views_are_cut_from_the_image_as_read_once(roi_bundle, tiny_data, monkeypatch):
    reads = []
    read = LoadUltrasoundImage.__call__
    monkeypatch.setattr(LoadUltrasoundImage, "__call__", lambda self, *args: reads.append(args[0]) or read(self, *args))
    item = load_split(str(tiny_data / "datalist.json"), "test")[0]
    result = BundleClassifier(roi_bundle, device="cpu").predict(item["image"], box=BOX)
    assert reads == [item["image"]] and result.uncertainty is not None


def test_refer_above_the_operating_points_cutoff(trained_bundle, image, tmp_path):
    bundle = trained_copy(trained_bundle, tmp_path / "bundle", roi=True)
    uncertainty = BundleClassifier(bundle, device="cpu").predict(image, box=BOX).uncertainty
    for refer_above, expected in ((uncertainty * 0.99, True), (uncertainty * 1.01, False)):
        result = BundleClassifier(with_operating_point(bundle, refer_above=refer_above), device="cpu").predict(
            image, box=BOX)
        assert result.uncertainty == pytest.approx(uncertainty, abs=1e-6)
        assert result.refer is expected and result.to_dict()["refer"] is expected

    whole = BundleClassifier(bundle, device="cpu").predict(image)  # a lesion-region model without a box
    assert whole.note.startswith(NO_BOX_NOTE) and whole.refer is True


def test_an_operating_point_for_other_weights_refers_nothing(trained_bundle, image, tmp_path):
    bundle = with_operating_point(trained_copy(trained_bundle, tmp_path / "bundle", roi=True), refer_above=0.0)
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["operating_point"]["weights_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    result = lopsided(BundleClassifier(bundle, device="cpu")).predict(image, box=BOX)
    assert result.uncertainty > 0.0 and result.refer is None and "fitted for other weights" in result.note


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_a_bad_cutoff_is_refused(trained_bundle, tmp_path, value):
    bundle = with_operating_point(trained_copy(trained_bundle, tmp_path / "bundle", roi=True), refer_above=value)
    with pytest.raises(BundleError, match=r"metadata.json: .*a finite refer_above >= 0"):
        BundleClassifier(bundle, device="cpu")


@pytest.mark.parametrize("cutoffs", [
    35.6,  # bundle 0.8's single pool5 cut-off
    {"pool5": 35.6},
    {"pool3": 19.1, "pool5": float("nan")},
    {"pool3": -0.1, "pool5": 35.6},
    {"pool3": True, "pool5": 35.6},
    {"pool3": 19.1, "pool5": 35.6, "pool4": 1.0},
])
def test_a_bad_unfamiliar_cutoff_is_refused(trained_bundle, tmp_path, cutoffs):
    bundle = with_operating_point(trained_copy(trained_bundle, tmp_path / "bundle", roi=True), unfamiliar_above=cutoffs)
    with pytest.raises(BundleError, match=r"metadata.json: operating_point unfamiliar_above must map pool3 and pool5 "
                                          r"to finite numbers >= 0, got .*; run monai-bus calibrate.$"):
        BundleClassifier(bundle, device="cpu")


def test_cutoffs_of_the_old_form_for_other_weights_are_not_applied_and_not_refused(trained_bundle, tmp_path, image):
    """Weights fine-tuned in MONAI Label keep a 0.8 bundle's operating point: skipped with a note, as before."""
    bundle = with_operating_point(trained_copy(trained_bundle, tmp_path / "bundle", roi=True), unfamiliar_above=35.6,
                                  weights_sha256="0" * 64)  # fitted for other weights
    classifier = BundleClassifier(bundle, device="cpu")
    assert classifier.unfamiliar_above is None and classifier.feature_statistics is None
    assert "fitted for other weights" in classifier.predict(image, box=BOX).note


def test_views_with_a_non_finite_output_are_an_error(roi_bundle, image):
    """One shifted view whose output is not finite (the last of the batch) is enough."""
    classifier = BundleClassifier(roi_bundle, device="cpu")
    classify = classifier.network.logits_and_attention_map

    def last_view_not_finite(x):
        logits, attention = classify(x)
        return logits * torch.tensor([1.0] * (len(x) - 1) + [float("nan")])[:, None], attention

    classifier.network.logits_and_attention_map = last_view_not_finite
    with pytest.raises(BundleError, match="the network's output is not finite"):
        classifier.predict(image, box=BOX)
    classifier.uncertainty = False  # the answer alone: its batch of the image and its mirror, the mirror not finite
    with pytest.raises(BundleError, match="the network's output is not finite"):
        classifier.predict(image, box=BOX)


def test_probabilities_that_overflow_are_an_error(roi_bundle, image):
    """Finite logits, but beyond float32 once divided by a temperature below 1."""
    classifier = single_view(BundleClassifier(roi_bundle, device="cpu"))
    classifier.network, classifier.temperature = HugeLogits(), 0.5
    for uncertainty in (False, True):
        classifier.uncertainty = uncertainty
        with pytest.raises(BundleError, match="the network's output is not finite"):
            classifier.predict(image, box=BOX)


def test_a_thin_box_at_the_edge_of_the_image_is_classified_with_its_views(roi_bundle, image):
    box = (0, 4, 30, 70)  # 4 rows: moved up by a pixel it would be 3 rows inside the image
    measured = BundleClassifier(roi_bundle, device="cpu").predict(image, box=box)
    alone = BundleClassifier(roi_bundle, device="cpu", uncertainty=False).predict(image, box=box)
    assert measured.uncertainty is not None and measured.box == alone.box == box
    assert measured.probabilities == pytest.approx(alone.probabilities, abs=1e-5)


def test_whole_image_model_views_are_the_mirror_only(whole_bundle, image):
    plain = single_view(lopsided(BundleClassifier(whole_bundle, device="cpu", uncertainty=False)))
    p_views = [plain.predict(view).malignancy_probability for view in (image, np.fliplr(image).copy())]
    result = lopsided(BundleClassifier(whole_bundle, device="cpu")).predict(image)
    assert spread(p_views) > 0.01 and result.uncertainty == pytest.approx(spread(p_views), abs=1e-5)


def test_a_box_whose_moves_change_nothing_is_referred_and_says_so(trained_bundle, image, tmp_path):
    """A box over the whole image: every moved box crops the same region, so the spread would measure the
    mirror image alone and could not refer the answer."""
    bundle = with_operating_point(trained_copy(trained_bundle, tmp_path / "bundle", roi=True), refer_above=1.0)
    classifier = lopsided(BundleClassifier(bundle, device="cpu"))
    whole = classifier.predict(image, box=(0, image.shape[0], 0, image.shape[1]))
    assert whole.refer is True and whole.note == BOX_FILLS_IMAGE_NOTE
    lesion = classifier.predict(image, box=BOX)
    assert lesion.refer is False and lesion.note is None
