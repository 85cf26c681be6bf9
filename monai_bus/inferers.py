"""Forward passes for the bundles' engines: mixed precision, and flip test-time augmentation.

MONAI's engines autocast only on CUDA; :class:`MixedPrecisionInferer` also uses bfloat16 on CPUs with
native bf16 (AVX512-BF16 or AMX), where it trains VGG16 several times faster than float32.
:class:`FlipAveragingInferer` runs the network on a batch and its mirror image and averages their
probabilities: the classifier's (measured in docs/results/tta/) and the localiser's, pixel by pixel
(docs/results/localiser/flip/).
"""

from __future__ import annotations

import logging
import math

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

logger = logging.getLogger(__name__)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CPU: AVX512-BF16 or AMX; CUDA: Ampere or newer)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


class MixedPrecisionInferer(Inferer):
    """Call the network on a batch, optionally in channels_last layout and under bf16 autocast.

    Args:
        amp: autocast to bfloat16 where the device supports it natively; elsewhere float32 is used
            (and logged once). Outputs are always returned as float32.
        channels_last: pass images in ``torch.channels_last`` memory format (the network should be
            converted too: ``network.to(memory_format=torch.channels_last)``).

    Shapes:
        inputs [B, C, H, W] -> whatever the network returns (logits [B, num_classes], or a tuple of
        tensors such as ``AttentionVGG16.logits_and_attention_map``'s), as float32.
    """

    def __init__(self, amp: bool = True, channels_last: bool = True) -> None:
        super().__init__()
        self.amp = amp
        self.channels_last = channels_last
        self._warned = False

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()  # plain tensors avoid MetaTensor overhead in every layer
        if self.channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if not self.amp:
            return network(inputs, *args, **kwargs)
        if not bf16_supported(inputs.device):
            if not self._warned:
                logger.info("bf16 is not supported on %s: running in float32.", inputs.device)
                self._warned = True
            return network(inputs, *args, **kwargs)
        with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16):
            outputs = network(inputs, *args, **kwargs)
        return tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()


class FlipAveragingInferer(Inferer):
    """Run the network on a batch and its left-right mirror image (one batch of 2B), and average the two
    probabilities: test-time augmentation with the flip that training already applies (``RandFlipd``).

    Args:
        inferer: the single forward pass, such as a :class:`MixedPrecisionInferer`.

    Shapes:
        inputs [B, C, H, W] -> logits [B, K] or [B, K, H', W']: the log of the mean of the softmax (over
        dim 1) of the network's logits for the inputs and for their mirror images (flipped along W), so
        that their softmax is that mean. Logits with spatial dimensions (a segmentation's) of the mirror
        images are flipped back before the mean, so that each pixel averages with its own mirror. A
        network that returns a tuple (logits first, then maps such as
        ``AttentionVGG16.logits_and_attention_map``'s attention [B, 1, H, W]) gives the same tuple with the
        logits averaged and the other entries of the inputs as given (not of the mirror images).
    """

    def __init__(self, inferer: Inferer) -> None:
        super().__init__()
        self.inferer = inferer

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()
        if inputs.ndim != 4:
            raise ValueError(f"FlipAveragingInferer needs a batch of 2-D images [B, C, H, W], got shape "
                             f"{tuple(inputs.shape)}.")
        outputs = self.inferer(torch.cat([inputs, torch.flip(inputs, dims=[-1])]), network, *args, **kwargs)
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        batch = len(inputs)
        averaged = self.average(logits[:batch], logits[batch:])
        if isinstance(outputs, tuple):
            return (averaged, *(output[:batch] for output in outputs[1:]))
        return averaged

    @staticmethod
    def average(logits: torch.Tensor, mirrored_logits: torch.Tensor) -> torch.Tensor:
        """The log of the mean of the softmax (over dim 1) of ``logits`` [B, K] or [B, K, H, W] of the inputs
        and ``mirrored_logits`` (the same shape) of their mirror images, whose spatial dimensions (a
        segmentation's) are flipped back first. Finite wherever the logits are."""
        as_given, mirrored = (torch.log_softmax(x.float(), dim=1) for x in (logits, mirrored_logits))
        if mirrored.ndim > 2:  # back to the inputs' orientation, so that each pixel averages with its own mirror
            mirrored = torch.flip(mirrored, dims=[-1])
        return torch.logsumexp(torch.stack([as_given, mirrored]), dim=0) - math.log(2.0)
