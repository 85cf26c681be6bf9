"""ImageNet weight loading, with a weights file written in torchvision's key layout."""

import urllib.error

import pytest
import torch

from monai_bus.networks import AttentionVGG16, PretrainedWeightsUnavailable, VGG16Classifier, pretrained, vgg16_features


def torchvision_state_dict(batch_norm: bool) -> dict:
    """Random weights under torchvision's VGG16 keys, including its ImageNet classifier."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features(3, batch_norm).state_dict().items()}
    state.update({"classifier.0.weight": torch.randn(40, 25), "classifier.6.bias": torch.randn(1000)})
    return state


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_local_file_rgb(tmp_path, batch_norm):
    state = torchvision_state_dict(batch_norm)
    torch.save(state, tmp_path / "vgg.pth")
    network = AttentionVGG16(in_channels=3, batch_norm=batch_norm, pretrained=True, pretrained_path=tmp_path / "vgg.pth")
    for key, value in network.features.state_dict().items():
        torch.testing.assert_close(value, state[f"features.{key}"])


def test_local_file_grey_sums_rgb_kernels(tmp_path):
    state = torchvision_state_dict(False)
    torch.save(state, tmp_path / "vgg.pth")
    network = VGG16Classifier(in_channels=1, pretrained=True, pretrained_path=str(tmp_path / "vgg.pth"))
    torch.testing.assert_close(network.features[0].weight, state["features.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(network.features[28].weight, state["features.28.weight"])


def test_hub_cache_is_used(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = pretrained.hub_cache_path(batch_norm=False)
    assert cache.name == "vgg16-397923af.pth" and str(cache).startswith(str(tmp_path))
    cache.parent.mkdir(parents=True)
    state = torchvision_state_dict(False)
    torch.save(state, cache)
    network = VGG16Classifier(in_channels=3, pretrained=True)
    torch.testing.assert_close(network.features[0].weight, state["features.0.weight"])


def test_clear_error_without_weights(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        AttentionVGG16(pretrained=True)
    message = str(error.value)
    assert "vgg16-397923af.pth" in message and "pretrained_path" in message and "pretrained=false" in message


def test_missing_local_file(tmp_path):
    with pytest.raises(PretrainedWeightsUnavailable, match="missing.pth: pretrained weights file not found"):
        AttentionVGG16(pretrained=True, pretrained_path=tmp_path / "missing.pth")


def test_wrong_layout_is_reported(tmp_path):
    torch.save(torchvision_state_dict(batch_norm=True), tmp_path / "vgg16_bn.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg16 state dict"):
        AttentionVGG16(batch_norm=False, pretrained=True, pretrained_path=tmp_path / "vgg16_bn.pth")


def test_imagenet_weights_for_a_narrow_network_are_refused(tmp_path):
    torch.save(torchvision_state_dict(batch_norm=True), tmp_path / "vgg16_bn.pth")
    message = r"vgg16_bn.pth: not a torchvision vgg16_bn state dict for width 8 \(ImageNet's VGG16 has width 64\) \(size"
    with pytest.raises(ValueError, match=message) as error:
        AttentionVGG16(batch_norm=True, width=8, pretrained=True, pretrained_path=tmp_path / "vgg16_bn.pth")
    assert "\n" not in str(error.value)  # one line
