"""Grid attention gate (Schlemper et al., Med. Image Anal. 2019; Oktay et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GridAttentionGate(nn.Module):
    """Additive soft attention of a feature map ``x`` gated by a coarser signal ``g``.

    ``alpha = sigmoid(psi(relu(W_x x + up(W_g g))))`` and the output is ``alpha * x``, where
    ``W_x``, ``W_g`` and ``psi`` are 1x1 convolutions and ``up`` is bilinear upsampling of the gating
    term to the grid of ``x`` (Kalafi et al., equations 1-2).

    Args:
        in_channels: channels of ``x`` (512 for VGG16's conv4_3).
        gating_channels: channels of ``g`` (512 for VGG16's pool5).
        inter_channels: channels of the intermediate map; defaults to ``in_channels // 2``.

    Shapes:
        - x: [B, in_channels, H, W]; g: [B, gating_channels, h, w] with h <= H, w <= W.
        - returns (attended [B, in_channels, H, W], alpha [B, 1, H, W] with values in [0, 1]).
    """

    def __init__(self, in_channels: int, gating_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter_channels = in_channels // 2 if inter_channels is None else inter_channels
        for name, value in (("in_channels", in_channels), ("gating_channels", gating_channels),
                            ("inter_channels", inter_channels)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        self.theta = nn.Conv2d(in_channels, inter_channels, kernel_size=1, bias=False)  # W_x
        self.phi = nn.Conv2d(gating_channels, inter_channels, kernel_size=1)  # W_g, b_g
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1)  # psi, b_psi

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta_x = self.theta(x)
        phi_g = F.interpolate(self.phi(g), size=theta_x.shape[2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        return alpha * x, alpha
