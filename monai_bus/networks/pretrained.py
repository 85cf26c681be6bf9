"""ImageNet VGG16 weights for ``features``, from a local file, the torch hub cache or a download.

The files are torchvision's own (``vgg16-397923af.pth``, ``vgg16_bn-6c64b313.pth``). Only the
``features.*`` tensors are used: the paper replaces the ImageNet classifier with its own head. For a
greyscale network (one input channel) the first convolution's RGB kernels are summed, which equals
feeding the grey image to all three channels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

# batch_norm -> torchvision's download URL; the hex suffix of the file name is a SHA-256 prefix that
# torch.hub checks after downloading.
IMAGENET_URLS = {
    False: "https://download.pytorch.org/models/vgg16-397923af.pth",
    True: "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}


class PretrainedWeightsUnavailable(RuntimeError):
    """No ImageNet weights could be found or downloaded."""


def hub_cache_path(batch_norm: bool) -> Path:
    """Where torch hub keeps a downloaded copy of the weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(IMAGENET_URLS[batch_norm])


def imagenet_state_dict(batch_norm: bool, weights_path: str | os.PathLike | None = None) -> dict:
    """Find and load torchvision's ImageNet VGG16 state dict.

    Tried in order: ``weights_path`` (when given, it must exist), the torch hub cache, then a
    download from torchvision's URL with hash check (which also fills the cache).

    Raises:
        PretrainedWeightsUnavailable: nothing worked; the message says how to supply the file.
    """
    url = IMAGENET_URLS[batch_norm]
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise PretrainedWeightsUnavailable(f"{weights_path}: pretrained weights file not found.")
        source = Path(weights_path)
    elif hub_cache_path(batch_norm).is_file():
        source = hub_cache_path(batch_norm)
    else:
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, progress=False)
        except Exception as error:  # no network, HTTP error or hash mismatch: all mean "no weights"
            raise PretrainedWeightsUnavailable(
                f"ImageNet VGG16 weights are not available: no local file was given, "
                f"{hub_cache_path(batch_norm)} does not exist, and downloading {url} failed ({error}). "
                f"Download that file on a machine with internet access and either pass it as "
                f"pretrained_path (bundle: --pretrained_path FILE) or copy it to {hub_cache_path(batch_norm)}; "
                f"or train from scratch with pretrained=false (bundle: --pretrained false)."
            ) from error
        logger.info("loaded ImageNet weights downloaded from %s", url)
        return state
    logger.info("loading pretrained VGG16 weights from %s", source)  # ImageNet's, or benchmarks/pretrain.py's
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PretrainedWeightsUnavailable(f"{source}: cannot read a PyTorch state dict ({error}).") from error


def load_imagenet_features(
    features: nn.Sequential, batch_norm: bool, weights_path: str | os.PathLike | None = None
) -> None:
    """Copy ImageNet weights into ``features`` (built by :func:`~monai_bus.networks.vgg.vgg16_features`).

    Raises:
        PretrainedWeightsUnavailable: see :func:`imagenet_state_dict`.
        ValueError: the file's ``features.*`` tensors do not match the layout (e.g. a vgg16_bn file
            given for a network without batch norm, or ImageNet's weights for a network narrower than
            VGG16's width 64).
    """
    state = imagenet_state_dict(batch_norm, weights_path)
    prefix = "features."
    weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    first = features[0].weight
    if "0.weight" in weights and weights["0.weight"].shape[1] == 3 and first.shape[1] == 1:
        weights["0.weight"] = weights["0.weight"].sum(dim=1, keepdim=True)
    try:
        features.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        layout = "vgg16_bn" if batch_norm else "vgg16"
        width = "" if first.shape[0] == 64 else f" for width {first.shape[0]} (ImageNet's VGG16 has width 64)"
        problem = str(error).splitlines()[-1].strip().rstrip(".")  # torch lists a problem a line: one says enough
        raise ValueError(
            f"{weights_path or 'ImageNet weights'}: not a torchvision {layout} state dict{width} ({problem})."
        ) from error
