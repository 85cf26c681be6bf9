"""Lesion regions of interest: boxes from masks, margins and jitter, the bundle's crop in training and
inference, and the inference API's box."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from conftest import CONFIGS, bundle_overrides, copy_bundle, set_roi
from monai_bus.cli import main
from monai_bus.data.boxes import box_from_masks, check_box, expand_box, shift_box
from monai_bus.data.loading import load_split
from monai_bus.data.roi import ROI_META_KEY, CropToLesiond, LesionBoxd, RandCropToLesiond
from monai_bus.data.transforms import LoadUltrasoundImage
from monai_bus.inference import BOX_IGNORED_NOTE, NO_BOX_NOTE, NO_OPERATING_POINT_NOTE, BundleClassifier


def mask(shape, *boxes) -> np.ndarray:
    array = np.zeros(shape, np.uint8)
    for row_start, row_stop, col_start, col_stop in boxes:
        array[row_start:row_stop, col_start:col_stop] = 255
    return array


def test_box_from_one_mask_and_from_several(tmp_path):
    assert box_from_masks(mask((40, 50), (5, 9, 10, 30))) == (5, 9, 10, 30)
    assert box_from_masks([mask((40, 50), (5, 9, 10, 30)), mask((40, 50), (20, 35, 2, 4))]) == (5, 35, 2, 30)
    assert box_from_masks([mask((40, 50)), mask((40, 50))]) is None  # no lesion pixel: no box
    Image.fromarray(mask((40, 50), (5, 9, 10, 30))).save(tmp_path / "a_mask.png")
    Image.fromarray(mask((40, 50), (30, 31, 45, 50)) > 0).save(tmp_path / "a_mask_1.png")  # bilevel
    assert box_from_masks([tmp_path / "a_mask.png", tmp_path / "a_mask_1.png"], (40, 50)) == (5, 31, 10, 50)


def test_box_from_masks_errors_name_the_mask(tmp_path):
    Image.fromarray(mask((40, 50), (5, 9, 10, 30))).save(tmp_path / "small_mask.png")
    with pytest.raises(ValueError, match=r"small_mask.png: mask of size \[40, 50\] does not match its image \[60, "):
        box_from_masks(tmp_path / "small_mask.png", (60, 50))
    with pytest.raises(ValueError, match="missing_mask.png: mask file not found"):
        box_from_masks([tmp_path / "small_mask.png", tmp_path / "missing_mask.png"])
    with pytest.raises(ValueError, match=r"mask array: mask of size \[30, 50\] does not match its image \[40, 50\]"):
        box_from_masks([mask((40, 50), (1, 2, 1, 2)), mask((30, 50))])


@pytest.mark.parametrize("box, message", [
    ((10, 10, 5, 20), r"the lesion box \[10, 10, 5, 20\] has zero height or width"),
    ((10, 20, 30, 5), r"the lesion box \[10, 20, 30, 5\] has zero height or width"),
    ((40, 50, 5, 20), r"the lesion box \[40, 50, 5, 20\] lies outside the image of 40 rows and 60 columns"),
    ((-9, -1, 5, 20), r"the lesion box \[-9, -1, 5, 20\] lies outside the image"),
    ((1, 2, 3), r"a lesion box is 4 integers \(row_start, row_stop, col_start, col_stop\), got \(1, 2, 3\)"),
    ((1.5, 2, 3, 4), r"a lesion box is 4 integers"),
])
def test_degenerate_box_is_refused(box, message):
    with pytest.raises(ValueError, match=rf"^case.png: {message}"):
        check_box(box, (40, 60), "case.png")


def test_box_arithmetic():
    assert check_box((-5, 10, 50, 70), (40, 60)) == (0, 10, 50, 60)  # partly outside: clipped
    assert expand_box((10, 20, 10, 30), 0.25, (40, 60)) == (7, 23, 5, 35)  # 2.5 rows, 5 columns: rounded outwards
    assert expand_box((10, 20, 10, 30), (0.0, 0.5, 1.0, 0.1), (40, 60)) == (10, 25, 0, 32)
    assert expand_box((2, 38, 1, 59), 0.4, (40, 60)) == (0, 40, 0, 60)  # clipped to the image
    assert shift_box((10, 20, 10, 30), 0.1, -0.1) == (11, 21, 8, 28)


def test_jittered_region_stays_inside_the_image_and_holds_the_lesion():
    """Random margins of 10-40% and shifts of up to 10%: the region never leaves the image and never cuts
    the lesion, for boxes anywhere (edges and corners included) and of any size."""
    crop = RandCropToLesiond(margin_range=(0.1, 0.4), max_shift=0.1)
    crop.set_random_state(0)
    rng = np.random.default_rng(0)
    image = LoadUltrasoundImage()(rng.random((37, 53), np.float32))
    regions = set()
    for _ in range(400):
        rows, columns = np.sort(rng.integers(0, 30, 2)), np.sort(rng.integers(0, 46, 2))
        box = (int(rows[0]), int(rows[1]) + 8, int(columns[0]), int(columns[1]) + 8)
        box = check_box(box, (37, 53))
        cropped = crop({"image": image, "bbox": box})["image"]
        row_start, row_stop, col_start, col_stop = region = tuple(cropped.meta[ROI_META_KEY])
        assert 0 <= row_start < row_stop <= 37 and 0 <= col_start < col_stop <= 53
        assert row_start <= box[0] and box[1] <= row_stop and col_start <= box[2] and box[3] <= col_stop
        assert cropped.shape == (1, row_stop - row_start, col_stop - col_start)
        regions.add(region)
    assert len(regions) > 300  # the margins and shifts vary


def test_fixed_crop_and_whole_image():
    image = LoadUltrasoundImage()(np.arange(40 * 60, dtype=np.float32).reshape(40, 60))
    cropped = CropToLesiond(margin=0.25)({"image": image, "bbox": [10, 20, 10, 30]})["image"]
    np.testing.assert_array_equal(cropped[0].numpy(), image[0, 7:23, 5:35].numpy())
    assert list(cropped.meta[ROI_META_KEY]) == [7, 23, 5, 35] and list(cropped.meta["spatial_shape"]) == [40, 60]
    whole = CropToLesiond()({"image": image})["image"]  # no box: the whole image
    assert whole.shape == (1, 40, 60) and list(whole.meta[ROI_META_KEY]) == [0, 40, 0, 60]
    with pytest.raises(ValueError, match="image array: the lesion box .* lies outside the image"):
        CropToLesiond()({"image": image, "bbox": [50, 60, 0, 5]})


def test_lesion_box_from_item(tmp_path):
    image = LoadUltrasoundImage()(np.random.default_rng(0).random((40, 50), np.float32))
    Image.fromarray(mask((40, 50), (5, 9, 10, 30))).save(tmp_path / "one.png")
    Image.fromarray(mask((40, 50), (20, 22, 40, 45))).save(tmp_path / "two.png")
    Image.fromarray(mask((40, 50))).save(tmp_path / "empty.png")
    find = LesionBoxd(keys="mask", box_key="bbox")
    assert find({"image": image, "mask": str(tmp_path / "one.png")})["bbox"] == (5, 9, 10, 30)
    both = [str(tmp_path / "one.png"), str(tmp_path / "two.png")]
    assert find({"image": image, "mask": both})["bbox"] == (5, 22, 10, 45)
    assert find({"image": image, "mask": str(tmp_path / "one.png"), "bbox": [1, 12, 3, 14]})["bbox"] == (1, 12, 3, 14)
    assert "bbox" not in find({"image": image, "mask": str(tmp_path / "empty.png")})  # kept whole
    assert "bbox" not in find({"image": image})


@pytest.fixture(scope="module")
def test_item(tiny_data):
    item = load_split(str(tiny_data / "datalist.json"), "test")[0]
    return {**item, "box": box_from_masks(item["mask"])}


def test_crop_matches_between_training_and_inference(test_item, roi_bundle, whole_bundle):
    """The same box gives the same network input in validation (train.json), in training without jitter,
    in the bundle's inference.json and in the inference API, and a crop made beforehand gives the same
    probabilities as the API's own crop."""
    train, inference = ConfigParser(), ConfigParser()
    for parser, name in ((train, "train.json"), (inference, "inference.json")):
        parser.read_config(str(CONFIGS / name))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        parser.update({"bundle_root": str(CONFIGS.parent), "roi": True, "image_size": 64})
    train["train#random_transforms"] = []  # no augmentation
    item = {"image": test_item["image"], "mask": test_item["mask"], "label": test_item["label"]}
    validation_input = train.get_parsed_content("validate#preprocessing")(item)["image"]
    training = train.get_parsed_content("train#preprocessing")
    random_crop, = (t for t in training.transforms if isinstance(t, RandCropToLesiond))
    random_crop.margin_range, random_crop.max_shift = (0.25, 0.25), 0.0  # no jitter
    training_input = training(item)["image"]
    inference_input = inference.get_parsed_content("preprocessing")({"image": test_item["image"],
                                                                       "bbox": test_item["box"]})["image"]
    assert validation_input.shape == (1, 64, 64)
    torch.testing.assert_close(training_input, validation_input)
    torch.testing.assert_close(inference_input.as_tensor(), validation_input)

    prediction = BundleClassifier(roi_bundle, device="cpu").predict(test_item["image"], box=test_item["box"])
    row_start, row_stop, col_start, col_stop = prediction.roi
    assert prediction.roi == expand_box(test_item["box"], 0.25, (96, 96)) and prediction.note is None
    pixels = np.asarray(Image.open(test_item["image"]))
    precropped = BundleClassifier(whole_bundle, device="cpu").predict(pixels[row_start:row_stop, col_start:col_stop])
    np.testing.assert_allclose(prediction.probabilities, precropped.probabilities, atol=1e-5)


def test_prediction_with_a_box(roi_bundle, test_item):
    prediction = BundleClassifier(roi_bundle, device="cpu").predict(test_item["image"], box=test_item["box"])
    row_start, row_stop, col_start, col_stop = prediction.roi
    attention = prediction.attention.copy()
    assert attention.shape == (96, 96) and attention[row_start:row_stop, col_start:col_stop].max() > 0
    attention[row_start:row_stop, col_start:col_stop] = 0
    assert not attention.any()  # zero outside the classified region
    assert prediction.to_dict()["roi"] == list(prediction.roi) and prediction.to_dict()["note"] is None


def test_prediction_without_a_box_uses_the_whole_image_and_says_so(roi_bundle, whole_bundle, test_item):
    prediction = BundleClassifier(roi_bundle, device="cpu").predict(test_item["image"])
    assert prediction.roi is None and prediction.note == NO_BOX_NOTE
    assert prediction.to_dict()["roi"] is None and "whole image" in prediction.to_dict()["note"]
    whole = BundleClassifier(whole_bundle, device="cpu").predict(test_item["image"])
    np.testing.assert_allclose(whole.probabilities, prediction.probabilities, atol=1e-6)
    np.testing.assert_allclose(whole.attention, prediction.attention, atol=1e-6)
    assert whole.note == NO_OPERATING_POINT_NOTE and whole.roi is None


def test_whole_image_bundle_ignores_a_box_and_says_so(whole_bundle, test_item):
    classifier = BundleClassifier(whole_bundle, device="cpu")
    with_box = classifier.predict(test_item["image"], box=test_item["box"])
    assert with_box.note == f"{BOX_IGNORED_NOTE}; {NO_OPERATING_POINT_NOTE}" and with_box.roi is None
    np.testing.assert_allclose(with_box.probabilities, classifier.predict(test_item["image"]).probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="lesion box .* lies outside the image of 96 rows and 96 columns"):
        classifier.predict(test_item["image"], box=(0, 5, 100, 120))  # still checked


@pytest.mark.parametrize("box, message", [((10, 10, 0, 5), "has zero height or width"),
                                          ((200, 300, 0, 5), "lies outside the image of 96 rows and 96 columns")])
def test_degenerate_box_error_names_the_image(roi_bundle, test_item, box, message):
    with pytest.raises(ValueError, match=rf"{test_item['image']}: the lesion box .* {message}"):
        BundleClassifier(roi_bundle, device="cpu").predict(test_item["image"], box=box)


def test_infer_command_box(roi_bundle, test_item, capsys):
    box = ",".join(str(value) for value in test_item["box"])
    assert main(["infer", "--bundle", str(roi_bundle), "--device", "cpu", "--box", box, test_item["image"]]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["roi"] == list(expand_box(test_item["box"], 0.25, (96, 96))) and line["note"] is None
    assert main(["infer", "--bundle", str(roi_bundle), "--box", box, test_item["image"], test_item["image"]]) == 2
    assert "--box is the lesion box of one image, but 2 images were given" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["infer", "--box", "1,2,3", test_item["image"]])
    assert "expected four integers ROW_START,ROW_STOP,COL_START,COL_STOP" in capsys.readouterr().err


@pytest.mark.parametrize("roi", [True, False])
def test_bundle_trains_with_and_without_roi(tiny_data, tmp_path, roi):
    """One epoch; with roi on, some items have no mask (kept whole) and the others are cropped."""
    datalist = json.loads((tiny_data / "datalist.json").read_text())
    for item in datalist["training"][::3] + datalist["validation"][:2]:
        del item["mask"]
        item["whole_image"] = True
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    for name in ("images", "masks"):
        (tmp_path / name).symlink_to(tiny_data / name)
    bundle = set_roi(copy_bundle(tmp_path / "bundle"), roi)
    flow = ConfigWorkflow(config_file=str(bundle / "configs" / "train.json"),
                          meta_file=str(bundle / "configs" / "metadata.json"), logging_file=False,
                          workflow_type="train",  # items without a mask: no mask loss
                          **bundle_overrides(bundle, tmp_path, max_epochs=1, mask_loss_weight=0))
    flow.initialize()
    assert flow.check_properties() in (None, [])
    names = [type(t).__name__ for t in flow.parser.get_parsed_content("train#preprocessing").transforms]
    assert ("RandCropToLesiond" in names) == roi and ("CropToLesiond" in names) is False
    names = [type(t).__name__ for t in flow.parser.get_parsed_content("validate#preprocessing").transforms]
    assert ("CropToLesiond" in names) == roi and ("LesionBoxd" in names) == roi
    flow.run()
    flow.finalize()
    assert (bundle / "models" / "model.pt").is_file()


def test_a_box_reaching_outside_the_image_is_clipped_and_says_so(roi_bundle, test_item):
    classifier = BundleClassifier(roi_bundle, device="cpu")
    row_start, row_stop, col_start, col_stop = test_item["box"]
    reaching = (row_start, 200, col_start, col_stop)  # the image has 96 rows
    prediction = classifier.predict(test_item["image"], box=reaching)
    inside = [row_start, 96, col_start, col_stop]
    assert list(prediction.box) == inside
    assert prediction.note == (f"the lesion box {list(reaching)} reaches outside the image of 96 rows and 96 columns: "
                               f"its part inside, {inside}, was classified")
    assert classifier.predict(test_item["image"], box=tuple(inside)).note is None
