"""The two networks of the paper's Table 1: plain VGG16 and Attention-VGG16.

Both share torchvision's VGG16 ``features`` (so ImageNet weights load by key) and the same small
fully connected head; they differ only in the attention gate. Class 0 is benign, class 1 malignant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monai_bus.networks.attention import GridAttentionGate
from monai_bus.networks.pretrained import load_imagenet_features
from monai_bus.networks.vgg import pool4_index, vgg16_features


def classifier_head(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Linear(in_features, hidden) -> ReLU -> Dropout -> Linear(hidden, num_classes)."""
    if hidden < 1 or num_classes < 2:
        raise ValueError(f"need hidden >= 1 and num_classes >= 2, got hidden={hidden}, num_classes={num_classes}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )


class VGG16Classifier(nn.Module):
    """VGG16 features, global average pooling of pool5, then the fully connected head.

    Args:
        in_channels: 1 (greyscale) or 3.
        num_classes: number of output logits (2: benign, malignant).
        hidden: width of the hidden fully connected layer (the paper uses 10).
        dropout: dropout probability before the last layer.
        batch_norm: use the ``vgg16_bn`` layout (needed to train from scratch).
        pretrained: initialise ``features`` from ImageNet weights (see ``pretrained_path``).
        pretrained_path: a local torchvision VGG16 state-dict file; when None, the torch hub cache,
            then a download with hash check, are tried.
        width: channels of VGG16's first conv (64; ImageNet's weights need it); conv4_3 and pool5
            have ``feature_channels = 8 * width``.

    Shapes:
        input [B, in_channels, H, W] with H, W multiples of 32; output logits [B, num_classes].
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        hidden: int = 10,
        dropout: float = 0.5,
        batch_norm: bool = False,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.features = vgg16_features(in_channels, batch_norm, width)
        self.feature_channels = 8 * width
        self.pool4 = pool4_index(self.features)
        if pretrained:
            load_imagenet_features(self.features, batch_norm=batch_norm, weights_path=pretrained_path)
        self.head = classifier_head(self._head_inputs(), hidden, num_classes, dropout)

    def _head_inputs(self) -> int:
        return self.feature_channels

    def _backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (conv4_3 features [B, F, H/8, W/8], pool5 features [B, F, H/32, W/32]), F = ``feature_channels``."""
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {list(x.shape[-2:])}.")
        conv4_3 = x
        for index, layer in enumerate(self.features):
            if index == self.pool4:
                conv4_3 = x
            x = layer(x)
        return conv4_3, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool5 = self._backbone(x)[1]
        return self.head(pool5.mean(dim=(2, 3)))


class AttentionVGG16(VGG16Classifier):
    """The paper's Attention-VGG16: a grid attention gate on conv4_3, gated by pool5.

    The attended conv4_3 features and the pool5 (gating) features are each averaged over space and
    concatenated (``2 * feature_channels`` values, 1024 for VGG16) before the fully connected head.
    Arguments as for :class:`VGG16Classifier`, plus ``inter_channels`` of the gate (default
    ``feature_channels // 2``, 256 for VGG16).

    Shapes:
        input [B, in_channels, H, W] with H, W multiples of 32; ``forward`` returns logits
        [B, num_classes]; :meth:`attention_map` returns [B, 1, H, W] in [0, 1].
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        hidden: int = 10,
        dropout: float = 0.5,
        batch_norm: bool = False,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        width: int = 64,
        inter_channels: int | None = None,
    ) -> None:
        super().__init__(in_channels, num_classes, hidden, dropout, batch_norm, pretrained, pretrained_path, width)
        self.gate = GridAttentionGate(self.feature_channels, self.feature_channels, inter_channels)

    def _head_inputs(self) -> int:
        return 2 * self.feature_channels

    def _logits_and_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv4_3, pool5 = self._backbone(x)
        attended, alpha = self.gate(conv4_3, pool5)
        pooled = torch.cat([attended.mean(dim=(2, 3)), pool5.mean(dim=(2, 3))], dim=1)
        return self.head(pooled), alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits_and_attention(x)[0]

    @torch.jit.export
    def logits_and_attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and attention map of one forward pass.

        Args:
            x: images [B, in_channels, H, W].

        Returns:
            logits [B, num_classes], and the gate's attention coefficients bilinearly upsampled to
            the input size, [B, 1, H, W] in [0, 1] (high where the gate passes conv4_3 features).
        """
        logits, alpha = self._logits_and_attention(x)
        return logits, F.interpolate(alpha, size=x.shape[2:], mode="bilinear", align_corners=False).clamp(0.0, 1.0)

    @torch.jit.export
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map [B, 1, H, W] of :meth:`logits_and_attention_map`."""
        return self.logits_and_attention_map(x)[1]
