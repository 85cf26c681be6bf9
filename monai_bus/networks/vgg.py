"""VGG16 convolutional backbone in torchvision's module layout.

The layers are held in one ``nn.Sequential`` named ``features``, indexed exactly as in
torchvision's ``vgg16`` (``features.0.weight`` ... ``features.28.weight``) or, with batch
normalisation, as in ``vgg16_bn`` (``features.0`` conv, ``features.1`` batch norm, ...). ImageNet
state dicts therefore load by key (see :mod:`monai_bus.networks.pretrained`).
"""

from __future__ import annotations

from torch import nn

# torchvision's configuration "D": output channels of each 3x3 conv, "M" = 2x2 max pooling.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_features(in_channels: int = 1, batch_norm: bool = False, width: int = 64) -> nn.Sequential:
    """Build the 13 conv + 5 max-pool layers of VGG16.

    Args:
        in_channels: image channels, 1 (greyscale ultrasound) or 3 (RGB).
        batch_norm: insert ``BatchNorm2d`` after every conv, as torchvision's ``vgg16_bn``.
        width: output channels of the first conv; every conv keeps VGG16's proportions, so conv4_3
            and pool5 have ``8 * width``. 64 is VGG16 itself (and ImageNet's weights); the tests
            train narrow copies.

    Returns:
        ``nn.Sequential`` mapping [B, in_channels, H, W] to [B, 8 * width, H/32, W/32].
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}.")
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = item * width // 64
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers)


def pool4_index(features: nn.Sequential) -> int:
    """Index in ``features`` of pool4, the max pooling right after conv4_3 (the paper's "layer 13").

    ``features[:pool4_index]`` ends with conv4_3's ReLU: ``8 * width`` channels at 1/8 of the input size.
    """
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    if len(pools) != 5:
        raise ValueError(f"expected the 5 max-pool layers of VGG16, found {len(pools)}.")
    return pools[3]
