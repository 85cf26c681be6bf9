"""Feature statistics and the distance of an image from the training images (monai_bus.familiarity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_bus.familiarity import (FeatureStatistics, PooledFeatures, load_statistics, pooling_outputs, save_statistics,
                                   unfamiliar_cutoff)
from monai_bus.networks import create_network

RNG = np.random.default_rng(0)


def test_distance_is_the_mahalanobis_distance_to_the_nearest_class_mean():
    statistics = FeatureStatistics(means=[[0.0, 0.0], [10.0, 0.0]], precision=np.diag([1.0, 0.25]))
    assert statistics.distance(np.array([[0.0, 2.0], [9.0, 0.0], [5.0, 0.0]])) == pytest.approx([1.0, 1.0, 5.0])


def test_fitted_statistics_set_images_of_another_kind_far_apart(tmp_path):
    labels = np.repeat([0, 1], 100)
    features = RNG.normal(size=(200, 16)) + labels[:, None] * 3.0  # two classes, 3 apart in every feature
    statistics = FeatureStatistics.fit(features, labels)
    np.testing.assert_allclose(statistics.means, [features[:100].mean(0), features[100:].mean(0)])
    like = statistics.distance(RNG.normal(size=(50, 16)) + 3.0)
    unlike = statistics.distance(RNG.normal(size=(50, 16)) * 5.0)
    assert like.max() < unlike.min()
    other = FeatureStatistics.fit(features[:, :4], labels)
    save_statistics(tmp_path / "statistics.npz", {"pool3": other, "pool5": statistics})
    loaded = load_statistics(tmp_path / "statistics.npz")
    np.testing.assert_allclose(loaded["pool5"].distance(features[:5]), statistics.distance(features[:5]), rtol=1e-5)
    np.testing.assert_allclose(loaded["pool3"].distance(features[:5, :4]), other.distance(features[:5, :4]), rtol=1e-5)


@pytest.mark.parametrize("features, labels, problem", [
    (np.zeros((4, 3)), np.zeros(4), "needs images of two classes, got [0.0]"),
    (np.zeros((4, 3)), np.zeros(3), "need features [N, F] and labels [N], got (4, 3) and (3,)"),
])
def test_fit_refuses_what_it_cannot_fit(features, labels, problem):
    with pytest.raises(ValueError, match="^fitting|^need") as raised:
        FeatureStatistics.fit(features, labels)
    assert problem in str(raised.value)


def test_pooled_features_are_the_first_images_pool3_and_pool5_averaged():
    network = create_network(attention=True, batch_norm=True, hidden=8, width=4).eval()
    pooled = PooledFeatures(network)
    assert pooled.channels == {"pool3": 16, "pool5": 32} and len(pooling_outputs(network)) == 5
    pool3 = list(network.features).index(pooling_outputs(network)["pool3"][0])
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        network(images)
        expected_pool5 = network._backbone(images[:1])[1].mean(dim=(2, 3))[0].numpy()
        expected_pool3 = network.features[:pool3 + 1](images[:1]).mean(dim=(2, 3))[0].numpy()
    assert expected_pool3.shape == (16,)
    np.testing.assert_allclose(pooled.last["pool5"], expected_pool5, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pooled.last["pool3"], expected_pool3, rtol=1e-4, atol=1e-6)


def test_the_cutoff_lies_beyond_every_validation_image():
    assert unfamiliar_cutoff([3.0, 7.5, 5.0]) == pytest.approx(8.25)
    with pytest.raises(ValueError, match="non-empty 1-D array of finite values"):
        unfamiliar_cutoff([3.0, float("nan")])


def test_the_benchmarks_images_keep_their_colour_and_are_the_same_each_run():
    from conftest import benchmark

    unfamiliar = benchmark("unfamiliar")
    first, second = unfamiliar.images(), unfamiliar.images()
    assert len(first) == len(unfamiliar.EXAMPLES) + unfamiliar.NOISE_IMAGES
    assert all(image.dtype == np.uint8 and image.shape[2:] in ((), (3,)) and image.min() == 0
               for image in first.values())
    assert first["astronaut"].ndim == 3 and first["camera"].ndim == 2
    assert all(np.array_equal(first[name], second[name]) for name in first)


def test_the_benchmark_reads_pydicoms_files_and_counts_what_pool3_alone_turned_away():
    from conftest import benchmark

    unfamiliar = benchmark("unfamiliar")
    files = unfamiliar.dicom_files()
    assert "CT_small.dcm" in files and "dicomdirtests/77654033/CR1/6154" in files
    assert all(file.is_file() for file in files.values())
    refused = unfamiliar.classify(None, files["rtplan.dcm"])  # no pixel data: refused before any classification
    assert [row["outcome"] for row in refused] == ["refused by the reader"] * 2 and refused[0]["problem"]
    row = {"set": "pydicom", "pixels": "ab"}
    rows = [{**row, "image": "a", "case": "central box", "outcome": "unlike the training images",
             "feature_distance_pool3": "30.0", "feature_distance_pool5": "20.0"},  # beyond pool3's cut-off alone
            {**row, "image": "a", "case": "no box", "outcome": "unlike the training images",
             "feature_distance_pool3": "30.0", "feature_distance_pool5": "40.0"},  # beyond both
            {**row, "image": "b", "case": "central box", "outcome": "benign",
             "feature_distance_pool3": "10.0", "feature_distance_pool5": "20.0"},
            {"set": "pydicom", "image": "c", "case": "central box", "outcome": "refused by the reader"}]
    summary = unfamiliar.summarise(rows, {"pool3": 19.0, "pool5": 35.0})["pydicom"]
    assert summary["central box"] == {"benign": 1, "refused by the reader": 1, "unlike the training images": 1,
                                      "turned away by pool3 alone": 1}
    assert summary["no box"]["turned away by pool3 alone"] == 0 and summary["distinct images read"] == 1
