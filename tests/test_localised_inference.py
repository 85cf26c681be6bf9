"""Classification without a hand-drawn box: the localiser's box in the one inference path (issue 13).

The shipped classifier and localiser on a shipped sample image (BUS-BRA, CC BY 4.0), and stand-in
localisers for the cases the shipped one does not show on demand (no lesion found, never asked).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from monai_bus.cli import main
from monai_bus.inference import CHECK_BOX_NOTE, NO_LESION_NOTE, BundleClassifier
from monai_bus.localiser import LesionLocaliser, Localisation

SAMPLE = REPO / "monai_bus" / "samples" / "bus_0006-s.png"
SAMPLE_BOX = (107, 312, 134, 346)  # the dataset's box (samples.json)
STAND_IN_WEIGHTS = {"version": "stand-in", "sha256": "0" * 64}


@pytest.fixture(scope="module")
def localiser():
    return LesionLocaliser(REPO / "localiser", device="cpu")


@pytest.fixture(scope="module")
def classifier(localiser):
    return BundleClassifier(REPO / "bundle", device="cpu", localiser=localiser)


class StandIn:
    """What the inference API reads of a localiser besides ``locate``: its weights and operating point."""

    weights = STAND_IN_WEIGHTS
    check_below, operating_point_note = None, None


class NothingFound(StandIn):
    """A stand-in localiser that finds no lesion."""

    def locate(self, image, frame=None):
        rows, columns = np.asarray(Image.open(image)).shape[:2]
        return Localisation(mask=np.zeros((rows, columns), bool), box=None)


class NeverAsked(StandIn):
    """A stand-in localiser that fails the test when asked."""

    def locate(self, image, frame=None):
        raise AssertionError("the localiser was asked although a box was given")


def test_without_a_box_the_localisers_box_is_classified(classifier, localiser):
    found = localiser.locate(SAMPLE)
    assert found.found
    result = classifier.predict(SAMPLE)
    assert result.box_source == "localiser" and result.box == found.box
    np.testing.assert_array_equal(result.lesion_mask, found.mask)
    assert (result.localiser_version, result.localiser_sha256) == (localiser.weights["version"],
                                                                    localiser.weights["sha256"])
    given = classifier.predict(SAMPLE, box=found.box)  # the same box, given by hand
    assert given.box_source == "given" and given.lesion_mask is None and given.localiser_version is None
    assert result.probabilities == given.probabilities and result.roi == given.roi
    assert result.class_name in ("benign", "malignant") and given.note is None
    assert result.localiser_confidence == found.confidence and 0.5 < found.confidence < localiser.check_below
    assert result.check_box is found.check_box is True and result.refer is True  # its box is right, but in doubt
    assert result.note == CHECK_BOX_NOTE.format(confidence=found.confidence, cutoff=localiser.check_below)
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["box"] == list(found.box) and summary["box_source"] == "localiser"


class UnsureOfItsBox(StandIn):
    """A stand-in localiser that finds the dataset's box with a confidence below its cut-off."""

    check_below = 0.8

    def locate(self, image, frame=None):
        mask = np.zeros(np.asarray(Image.open(image)).shape[:2], bool)
        mask[SAMPLE_BOX[0]:SAMPLE_BOX[1], SAMPLE_BOX[2]:SAMPLE_BOX[3]] = True
        return Localisation(mask=mask, box=SAMPLE_BOX, confidence=0.7, check_box=True)


def test_a_box_the_localiser_is_unsure_of_is_classified_referred_and_to_be_checked(classifier):
    result = BundleClassifier(REPO / "bundle", device="cpu", localiser=UnsureOfItsBox()).predict(SAMPLE)
    given = classifier.predict(SAMPLE, box=SAMPLE_BOX)
    assert result.probabilities == given.probabilities and result.class_name == given.class_name
    assert result.box_source == "localiser" and result.box == SAMPLE_BOX
    assert result.refer is True and result.check_box is True and result.localiser_confidence == 0.7
    assert result.note == CHECK_BOX_NOTE.format(confidence=0.7, cutoff=0.8)
    assert result.note.startswith("the localiser is unsure of the lesion it found (confidence 0.700, below 0.800): "
                                  "check that the box holds the lesion")
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["check_box"] is True and summary["localiser_confidence"] == 0.7 and summary["refer"] is True
    assert given.check_box is False and given.localiser_confidence is None


class FittedForOtherWeights(UnsureOfItsBox):
    """A stand-in localiser whose cut-off was fitted for other weights: no check, and a note that says so."""

    check_below, operating_point_note = None, "the localiser's cut-off ... was not applied"

    def locate(self, image, frame=None):
        return replace(super().locate(image), check_box=False)


class FittedForOtherWeightsFindsNothing(FittedForOtherWeights):
    def locate(self, image, frame=None):
        return NothingFound().locate(image)


def test_a_localisers_cut_off_for_other_weights_is_said_in_every_answer_around_its_boxes():
    found = BundleClassifier(REPO / "bundle", device="cpu", localiser=FittedForOtherWeights()).predict(SAMPLE)
    note = FittedForOtherWeights.operating_point_note
    assert found.class_name is not None and not found.check_box and found.note == note
    nothing = BundleClassifier(REPO / "bundle", device="cpu", localiser=FittedForOtherWeightsFindsNothing()).predict(
        SAMPLE)
    assert nothing.class_name is None and nothing.note == f"{NO_LESION_NOTE}; {note}"


def test_a_given_box_or_the_items_masks_are_used_and_the_localiser_is_not_asked(tmp_path):
    classifier = BundleClassifier(REPO / "bundle", device="cpu", localiser=NeverAsked())
    by_hand = classifier.predict(SAMPLE, box=SAMPLE_BOX)
    assert by_hand.box_source == "given" and by_hand.box == SAMPLE_BOX
    mask = np.zeros(np.asarray(Image.open(SAMPLE)).shape[:2], np.uint8)
    mask[SAMPLE_BOX[0]:SAMPLE_BOX[1], SAMPLE_BOX[2]:SAMPLE_BOX[3]] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    from_masks = classifier.predict_item({"image": str(SAMPLE), "mask": [str(tmp_path / "mask.png")]})
    assert from_masks.box_source == "given" and from_masks.box == SAMPLE_BOX
    assert from_masks.probabilities == by_hand.probabilities


def test_no_lesion_found_gives_no_class_and_says_so():
    result = BundleClassifier(REPO / "bundle", device="cpu", localiser=NothingFound()).predict(SAMPLE)
    assert (result.class_index, result.class_name, result.probabilities, result.likelihood, result.uncertainty) == (
        None,) * 5
    assert result.refer is True  # a reader must look
    assert result.malignancy_probability is None and result.attention is None and result.roi is None
    assert result.note == NO_LESION_NOTE and NO_LESION_NOTE.startswith("no lesion found")
    assert result.unclassified_reason == "no lesion found"
    assert result.box is None and result.box_source == "localiser" and not result.lesion_mask.any()
    assert result.localiser_version == "stand-in" and result.weights_sha256  # which models said so
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_whole_image_bundle_never_asks_the_localiser(whole_bundle, tiny_data):
    image = sorted((tiny_data / "images").iterdir())[0]
    result = BundleClassifier(whole_bundle, device="cpu", localiser=NeverAsked()).predict(image)
    assert result.box_source is None and result.box is None and result.class_name in ("benign", "malignant")


def test_infer_command_without_a_box_uses_the_localiser(capsys, tmp_path):
    bundle, localiser = ["--bundle", str(REPO / "bundle")], ["--localiser", str(REPO / "localiser")]
    assert main(["infer", *bundle, *localiser, str(SAMPLE)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["box_source"] == "localiser" and len(line["box"]) == 4 and line["class_name"] in ("benign", "malignant")

    missing = ["--localiser", str(tmp_path / "nowhere")]
    assert main(["infer", *bundle, *missing, str(SAMPLE)]) == 2  # no box, and no localiser to find one
    error = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'}/configs/inference.json: not found" in error and error.count("\n") == 1
    assert main(["infer", *bundle, *missing, "--box", ",".join(map(str, SAMPLE_BOX)), str(SAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out)["box_source"] == "given"  # a box needs no localiser


def test_infer_command_finds_the_shipped_localiser_from_any_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no localiser here: the default is the repository's, not the working folder's
    assert main(["infer", "--bundle", str(REPO / "bundle"), str(SAMPLE)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["box_source"] == "localiser" and line["localiser_sha256"]
    assert line["class_name"] in ("benign", "malignant")
