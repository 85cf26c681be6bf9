import pytest
import torch

from monai_bus.networks import AttentionVGG16, GridAttentionGate, VGG16Classifier, create_network, vgg16_features


@pytest.mark.parametrize("network_class", [VGG16Classifier, AttentionVGG16])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape(network_class, batch_norm, in_channels):
    network = network_class(in_channels=in_channels, num_classes=2, batch_norm=batch_norm).eval()
    assert network(torch.randn(3, in_channels, 64, 96)).shape == (3, 2)


def test_torchvision_key_layout():
    plain = vgg16_features(3, batch_norm=False).state_dict()
    assert [k for k in plain if k.endswith("weight")][:3] == ["0.weight", "2.weight", "5.weight"]
    assert "28.weight" in plain and len([k for k in plain if k.endswith("weight")]) == 13
    with_bn = vgg16_features(3, batch_norm=True).state_dict()
    assert {"0.weight", "1.running_mean", "40.weight", "41.running_var"} <= set(with_bn)
    assert "features.0.weight" in VGG16Classifier().state_dict()


def test_width_scales_every_conv_and_keeps_the_layout():
    """VGG16's own channels at width 64 (the gate's intermediate map: 256), an eighth of them at width 8."""
    vgg16 = AttentionVGG16(batch_norm=True)
    convs = [layer.out_channels for layer in vgg16.features if isinstance(layer, torch.nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert vgg16.gate.theta.out_channels == 256 and vgg16.head[0].in_features == 1024
    narrow = AttentionVGG16(batch_norm=True, width=8).eval()
    assert [layer.out_channels for layer in narrow.features if isinstance(layer, torch.nn.Conv2d)] == [
        channels // 8 for channels in convs]
    assert narrow.gate.theta.out_channels == 32 and narrow.head[0].in_features == 128
    assert list(narrow.state_dict()) == list(vgg16.state_dict())  # the same keys: one layout
    logits, alpha = narrow.logits_and_attention_map(torch.randn(2, 1, 64, 96))
    assert logits.shape == (2, 2) and alpha.shape == (2, 1, 64, 96)


def test_attention_map_range_and_size():
    network = AttentionVGG16(batch_norm=True).eval()
    alpha = network.attention_map(torch.randn(2, 1, 96, 64))
    assert alpha.shape == (2, 1, 96, 64)
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert alpha.std() > 0  # not a constant map


def test_gate_shapes_and_range():
    gate = GridAttentionGate(in_channels=8, gating_channels=4, inter_channels=3)
    attended, alpha = gate(torch.randn(2, 8, 16, 12), torch.randn(2, 4, 4, 3))
    assert attended.shape == (2, 8, 16, 12) and alpha.shape == (2, 1, 16, 12)
    assert ((alpha > 0) & (alpha < 1)).all()


def test_gradients_reach_gate():
    torch.manual_seed(0)
    network = AttentionVGG16(batch_norm=True)
    network(torch.randn(2, 1, 64, 64)).sum().backward()
    for module in (network.gate.theta, network.gate.phi, network.gate.psi):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_create_network_switch():
    assert type(create_network(attention=True)) is AttentionVGG16
    assert type(create_network(attention=False)) is VGG16Classifier


@pytest.mark.parametrize(
    "kwargs, message",
    [({"in_channels": 2}, "in_channels"), ({"hidden": 0}, "hidden"), ({"dropout": 1.0}, "dropout"),
     ({"num_classes": 1}, "num_classes"), ({"width": 0}, "width must be a positive integer, got 0"),
     ({"width": 8.0}, "width must be a positive integer, got 8.0")],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionVGG16(**kwargs)


def test_input_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        VGG16Classifier()(torch.randn(1, 1, 100, 64))


@pytest.mark.parametrize("network_class", [VGG16Classifier, AttentionVGG16])
def test_torchscript_matches_eager(network_class):
    network = network_class(batch_norm=True).eval()
    scripted = torch.jit.script(network)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(scripted(x), network(x))
    if network_class is AttentionVGG16:
        torch.testing.assert_close(scripted.attention_map(x), network.attention_map(x))
