"""Flip test-time augmentation: FlipAveragingInferer, and the classifier bundle's flip_tta setting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY, trained_copy
from monai_bus.data.loading import load_split
from monai_bus.inference import BundleClassifier
from monai_bus.inferers import FlipAveragingInferer, MixedPrecisionInferer
from monai_bus.prediction_files import read_predictions
from test_bundle import run_to_end, workflow

FLOAT32 = MixedPrecisionInferer(amp=False, channels_last=False)


class LeftHeavy(torch.nn.Module):
    """Logits [B, 2] from the brightness of the left half against the right, and a map [B, 1, H, W] (the
    input itself): the mirror image gets the opposite answer."""

    def __init__(self, scale: float = 1.0, with_map: bool = False) -> None:
        super().__init__()
        self.scale, self.with_map = scale, with_map

    def forward(self, x):
        half = x.shape[-1] // 2
        left = self.scale * (x[..., :half].mean((1, 2, 3)) - x[..., half:].mean((1, 2, 3)))
        logits = torch.stack([torch.zeros_like(left), left], dim=1)
        return (logits, x.clone()) if self.with_map else logits


def test_the_probabilities_are_the_mean_of_the_image_and_its_mirror():
    x = torch.rand(3, 1, 8, 8)
    network = LeftHeavy()
    averaged = torch.softmax(FlipAveragingInferer(FLOAT32)(x, network), dim=1)
    expected = (torch.softmax(network(x), dim=1) + torch.softmax(network(torch.flip(x, dims=[-1])), dim=1)) / 2
    torch.testing.assert_close(averaged, expected)
    assert not torch.allclose(averaged, torch.softmax(network(x), dim=1), atol=1e-3)


def test_a_tuple_keeps_the_maps_of_the_inputs_as_given():
    x = torch.rand(2, 1, 8, 8)
    logits, maps = FlipAveragingInferer(FLOAT32)(x, LeftHeavy(with_map=True))
    assert logits.shape == (2, 2)
    torch.testing.assert_close(maps, x)  # not the mirror images' maps


def test_saturated_logits_stay_finite():
    x = torch.zeros(2, 1, 8, 8)
    x[0, ..., :4] = 1.0
    logits = FlipAveragingInferer(FLOAT32)(x, LeftHeavy(scale=1e4))
    assert torch.isfinite(logits).all()
    # sure of one class, then of the other: the mean is a tie
    torch.testing.assert_close(torch.softmax(logits, dim=1)[0], torch.tensor([0.5, 0.5]))


class LeftRamp(torch.nn.Module):
    """Logits [B, 2, H, W]: the lesion's grows with the column, times the input, so that the mirror image
    gets another answer at each pixel."""

    def forward(self, x):
        ramp = torch.linspace(-2.0, 2.0, x.shape[-1])
        return torch.cat([torch.zeros_like(x), x * ramp], dim=1)


def test_a_segmentation_averages_each_pixel_with_its_own_mirror():
    x = torch.rand(2, 1, 6, 8)
    network = LeftRamp()
    averaged = torch.softmax(FlipAveragingInferer(FLOAT32)(x, network), dim=1)
    mirrored = torch.flip(torch.softmax(network(torch.flip(x, dims=[-1])), dim=1), dims=[-1])
    torch.testing.assert_close(averaged, (torch.softmax(network(x), dim=1) + mirrored) / 2)
    assert averaged.shape == (2, 2, 6, 8)


def test_a_mirror_symmetric_segmentation_is_unchanged():
    network = torch.nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():  # kernels symmetric left-right: the output of the mirror is the mirror of the output
        network.weight.copy_((network.weight + torch.flip(network.weight, dims=[-1])) / 2)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(torch.softmax(FlipAveragingInferer(FLOAT32)(x, network), dim=1),
                               torch.softmax(network(x), dim=1))


def test_only_batches_of_2d_images():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\], got shape \(1, 8, 8\)"):
        FlipAveragingInferer(FLOAT32)(torch.zeros(1, 8, 8), LeftHeavy())


def test_the_bundle_workflow_and_the_api_both_average_and_flip_tta_false_turns_it_off(trained_bundle, tiny_data,
                                                                                       tmp_path):
    """One inference path: the bundle's ``evaluating`` and ``BundleClassifier`` give the same averaged
    probabilities; with ``flip_tta`` false in ``model_settings`` both classify each image once."""
    items = load_split(str(tiny_data / "datalist.json"), "test")
    p_malignant = {}
    for flip_tta in (False, True):
        bundle = trained_copy(trained_bundle, tmp_path / f"flip_{flip_tta}", roi=False)
        meta_file = bundle / "configs" / "metadata.json"
        meta = json.loads(meta_file.read_text())
        assert meta["model_settings"]["flip_tta"] is True  # the shipped default
        meta["model_settings"].update(flip_tta=flip_tta, image_size=TINY["image_size"])  # the workflow's size
        meta_file.write_text(json.dumps(meta))
        # a barely trained VGG16 answers alike for an image and its mirror: LeftHeavy does not
        run_to_end(workflow(bundle, tiny_data, ["inference.json"], "infer", load_pretrain=False,
                            network_def={"_target_": "test_inferers.LeftHeavy"}))
        evaluated = read_predictions(bundle / "eval" / "predictions.csv")
        classifier = BundleClassifier(bundle, device="cpu", uncertainty=False)
        classifier.network = LeftHeavy()
        batches = []
        classifier.network.register_forward_hook(lambda module, inputs, output: batches.append(len(output)))
        p_malignant[flip_tta] = [classifier.predict_item(item).malignancy_probability for item in items]
        assert batches == [2 if flip_tta else 1] * len(items)
        assert p_malignant[flip_tta] == pytest.approx([evaluated[item["image"]][1] for item in items], abs=1e-5)
    assert p_malignant[True] != pytest.approx(p_malignant[False], abs=1e-3)  # LeftHeavy's mirror answers otherwise


def test_the_attention_map_is_the_input_as_given(roi_bundle, tiny_data):
    item = load_split(str(tiny_data / "datalist.json"), "test")[0]
    averaged = BundleClassifier(roi_bundle, device="cpu", uncertainty=False)
    single = BundleClassifier(roi_bundle, device="cpu", uncertainty=False)
    single.inferer = single.inferer.inferer
    torch.testing.assert_close(averaged.forward(item)[2], single.forward(item)[2])  # not the mirror image's map


def test_a_bundle_made_before_flip_tta_still_classifies(trained_bundle, tiny_data, tmp_path):
    """configs/inference.json of bundle 0.5.0: one ``inferer``, no ``flip_tta``, no ``single_view_inferer``."""
    bundle = trained_copy(trained_bundle, tmp_path / "bundle", roi=False)
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    for key in ("flip_tta", "inferer"):
        del config[key]
    del config["flags"]["flip_tta"]
    config["inferer"] = config.pop("single_view_inferer")
    config_file.write_text(json.dumps(config))
    classifier = BundleClassifier(bundle, device="cpu")
    batches = []
    classifier.network.features[0].register_forward_hook(lambda module, inputs, output: batches.append(len(output)))
    item = load_split(str(tiny_data / "datalist.json"), "test")[0]
    result = classifier.predict_item(item)
    assert batches == [2] and result.uncertainty is not None  # the views: the image and its mirror, in one batch
    classifier.uncertainty = False
    classifier.predict_item(item)
    assert batches == [2, 1]  # the answer alone: the image, not averaged with its mirror

    classifier.network = LeftHeavy()  # the mirror image answers otherwise
    alone = classifier.predict_item(item)
    classifier.uncertainty = True
    assert classifier.predict_item(item).probabilities == pytest.approx(alone.probabilities, abs=1e-6)
    assert abs(np.mean(classifier.forward(item, views=True).view_probabilities) - alone.probabilities[1]) > 1e-3
