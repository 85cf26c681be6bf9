"""Self-supervised pretraining of the classifier's features (benchmarks/pretrain.py), on tiny synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import benchmark
from monai_bus.networks import create_network

pretrain = benchmark("pretrain")
TINY = {"batch_size": 8, "image_size": 64, "view_size": 64, "num_workers": 0}


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """24 training and validation images with masks, and a test image that does not exist."""
    from monai_bus.data.demo import write_demo_dataset

    path = write_demo_dataset(tmp_path_factory.mktemp("pretrain_data"), num_images=24, size=64, seed=5)
    content = json.loads(path.read_text())
    content["test"] = [{"image": "images/absent.png", "label": 0}]  # read, it would fail
    path.write_text(json.dumps(content))
    return path


def test_the_two_views_of_an_image_differ(datalist):
    item = pretrain.pairs_dataset(datalist, image_size=64, view_size=32)[0]
    assert item["view_1"].shape == item["view_2"].shape == (1, 32, 32)
    assert not torch.equal(item["view_1"], item["view_2"])


def test_pretrained_features_load_into_the_classifier_and_a_stopped_run_goes_on(datalist, tmp_path, monkeypatch):
    class Stopped(Exception):
        pass

    class LossStoppingInEpoch2(pretrain.ContrastiveLoss):  # 22 images in batches of 8: 2 batches an epoch
        calls = 0

        def forward(self, *views):
            LossStoppingInEpoch2.calls += 1
            if LossStoppingInEpoch2.calls > 2:
                raise Stopped
            return super().forward(*views)

    monkeypatch.setattr(pretrain, "ContrastiveLoss", LossStoppingInEpoch2)
    with pytest.raises(Stopped):
        pretrain.pretrain(datalist, tmp_path, epochs=2, **TINY)
    first_epoch = json.loads((tmp_path / "log.json").read_text())
    assert [entry["epoch"] for entry in first_epoch] == [1]
    after_one_epoch = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["network"]["features.0.weight"]
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="checkpoint.pt: made for 2 epochs, not 3; run it with --epochs 2"):
        pretrain.pretrain(datalist, tmp_path, epochs=3, **TINY)
    features_file = pretrain.pretrain(datalist, tmp_path, epochs=2, **TINY)  # goes on with epoch 2
    log = json.loads((tmp_path / "log.json").read_text())
    assert [entry["epoch"] for entry in log] == [1, 2] and log[0] == first_epoch[0]

    features = torch.load(features_file, weights_only=True)
    network = create_network(attention=True, batch_norm=True, hidden=256, pretrained=True,
                             pretrained_path=str(features_file))
    assert features.keys() == {f"features.{name}" for name in network.features.state_dict()}
    for name, tensor in network.features.state_dict().items():
        torch.testing.assert_close(tensor, features[f"features.{name}"])
    assert not torch.equal(after_one_epoch, features["features.0.weight"])  # epoch 2 trained
