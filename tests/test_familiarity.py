"""Feature statistics and the distance of an image from the training images (monai_bus.familiarity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_bus.familiarity import FeatureStatistics, PooledFeatures, unfamiliar_cutoff
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
    statistics.save(tmp_path / "statistics.npz")
    loaded = FeatureStatistics.load(tmp_path / "statistics.npz")
    np.testing.assert_allclose(loaded.distance(features[:5]), statistics.distance(features[:5]), rtol=1e-5)


@pytest.mark.parametrize("features, labels, problem", [
    (np.zeros((4, 3)), np.zeros(4), "needs images of two classes, got [0.0]"),
    (np.zeros((4, 3)), np.zeros(3), "need features [N, F] and labels [N], got (4, 3) and (3,)"),
])
def test_fit_refuses_what_it_cannot_fit(features, labels, problem):
    with pytest.raises(ValueError, match="^fitting|^need") as raised:
        FeatureStatistics.fit(features, labels)
    assert problem in str(raised.value)


def test_pooled_features_are_the_first_images_pool5_averaged():
    network = create_network(attention=True, batch_norm=True, hidden=8).eval()
    pooled = PooledFeatures(network)
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        network(images)
        expected = network._backbone(images[:1])[1].mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(pooled.last, expected, rtol=1e-4, atol=1e-6)


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
