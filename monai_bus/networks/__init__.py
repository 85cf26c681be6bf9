"""Networks: VGG16 backbone, grid attention gate, and the paper's two classifiers."""

from monai_bus.networks.attention import GridAttentionGate
from monai_bus.networks.classifiers import AttentionVGG16, VGG16Classifier
from monai_bus.networks.pretrained import PretrainedWeightsUnavailable, load_imagenet_features
from monai_bus.networks.vgg import vgg16_features


def create_network(attention: bool = True, **kwargs) -> VGG16Classifier:
    """``AttentionVGG16(**kwargs)`` when ``attention`` is true, else ``VGG16Classifier(**kwargs)``.

    The bundle's ``network_def`` calls this, so that its ``attention`` id switches between the two
    rows of the paper's Table 1.
    """
    return (AttentionVGG16 if attention else VGG16Classifier)(**kwargs)


__all__ = [
    "AttentionVGG16",
    "GridAttentionGate",
    "PretrainedWeightsUnavailable",
    "VGG16Classifier",
    "create_network",
    "load_imagenet_features",
    "vgg16_features",
]
