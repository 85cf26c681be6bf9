"""The lesion localiser's data: lesion masks as segmentation labels, its one preprocessing, and the
lesion mask it draws from its output.

A datalist item's ``mask`` is a file, or a list of files (one per lesion, as in BUSI); the
localiser learns their union. The classifier's datalists work unchanged: :class:`LoadLesionMaskd`
puts the segmentation label under ``label``, in place of the class index, which the localiser does
not use. :func:`localiser_transforms` is the localiser bundle's preprocessing for training,
validation, evaluation and inference (``localiser/configs/*.json`` and
:class:`monai_bus.localiser.LesionLocaliser`); :class:`LesionComponentd` turns the network's
probabilities into the one lesion it found, in all three.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from scipy import ndimage
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, NormalizeIntensityd, Resized

from monai_bus.data.boxes import mask_union
from monai_bus.data.transforms import LoadUltrasoundImaged
from monai_bus.errors import InputError


class LoadLesionMaskd(MapTransform):
    """Load an item's lesion mask file(s) as its segmentation label: float32 ``MetaTensor`` [1, H, W],
    1 on lesion pixels (the union of the masks under ``keys``), 0 elsewhere.

    Args:
        keys: the mask key(s); each value is a file or a list of files (one per lesion).
        label_key: where the label goes; it replaces what is there (a classifier datalist's class index).
        image_key: the loaded image [1, H, W], whose size the masks must have.

    Raises:
        InputError: naming the image, for an item without a mask, and naming the mask file, for a mask
            that cannot be read or whose size differs from the image's.
    """

    def __init__(self, keys: KeysCollection = "mask", label_key: str = "label", image_key: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.label_key, self.image_key = label_key, image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = d[self.image_key]
        masks = [file for key in self.key_iterator(d) for file in np.atleast_1d(d[key]).tolist()]
        if not masks:
            name = image.meta.get("filename_or_obj", "image") if isinstance(image, MetaTensor) else "image"
            raise InputError(f"{name}: has no lesion mask ({', '.join(map(str, self.keys))}); the localiser, and the "
                             "classifier's mask loss, train and are evaluated on images with lesion masks.")
        union = mask_union(masks, image.shape[-2:])
        d[self.label_key] = MetaTensor(torch.from_numpy(union[None].astype(np.float32)))
        return d


def localiser_transforms(image_size: int, masks: bool = False) -> list:
    """The localiser's preprocessing, from a datalist item (or an inference request) to its input.

    Load the image (:class:`~monai_bus.data.transforms.LoadUltrasoundImaged`, the project's one
    reader) and, with ``masks``, its lesion masks as ``label`` (:class:`LoadLesionMaskd`); resize both
    to ``image_size`` (the image bilinearly with anti-aliasing, the label by nearest neighbour) and
    z-score normalise the image.

    Returns:
        dictionary transforms; ``image`` comes out as a ``MetaTensor`` [1, image_size, image_size]
        whose meta data hold the file and the input's ``spatial_shape``, and whose applied operations
        let :class:`monai.transforms.Invertd` bring a prediction back to the input's size; ``label``
        (with ``masks``) as [1, image_size, image_size], 0 or 1.
    """
    keys = ["image", "label"] if masks else ["image"]
    return ([LoadUltrasoundImaged("image")] + ([LoadLesionMaskd("mask")] if masks else []) +
            [Resized(keys, spatial_size=(image_size, image_size), mode=("bilinear", "nearest")[:len(keys)],
                     anti_aliasing=(True, False)[:len(keys)]),
             NormalizeIntensityd("image")])


LESION_COMPONENTS = ("largest", "most_probable")


class LesionComponentd(MapTransform):
    """The localiser's lesion mask from its softmax: one connected component of the lesion pixels.

    The lesion pixels are those whose lesion probability is above background's (the argmax, written as a
    comparison, which is much faster on a CPU than torch's argmax over 2 channels). Of their connected
    components (8-connected, as in MONAI's ``KeepLargestConnectedComponent``), one is kept:

    - ``largest``: the one with the most pixels, as ``KeepLargestConnectedComponent`` keeps (except
      between components of equal area, where MONAI's sort decides);
    - ``most_probable``: the one that holds the highest lesion probability; between components that
      share it, the largest (docs/results/localiser/component/ of the monai-bus repository).

    Between components that tie, the first in row-major order is kept.

    Args:
        keys: the prediction key(s); each value is the softmax [2, H, W] (background, lesion).
        component: one of :data:`LESION_COMPONENTS`, the localiser bundle's ``lesion_component`` setting.
        confidence_key: with one key, where to put the localiser's confidence in the kept component: its
            mean lesion probability, a float above 0.5 (None when no pixel is lesion); not written when
            None (docs/results/localiser/confidence/ of the monai-bus repository).

    Returns:
        the mask [1, H, W] under each key, 1 on the kept component, 0 elsewhere (all 0 when no pixel is
        lesion), in the prediction's type and dtype (a ``MetaTensor`` keeps its meta data).
    """

    def __init__(self, keys: KeysCollection, component: str, confidence_key: str | None = None) -> None:
        if component not in LESION_COMPONENTS:
            raise ValueError(f"lesion_component must be one of {', '.join(LESION_COMPONENTS)}, got {component!r}.")
        super().__init__(keys)
        if confidence_key is not None and len(self.keys) != 1:
            raise ValueError(f"a confidence_key needs exactly one prediction key, got {list(self.keys)}.")
        self.component, self.confidence_key = component, confidence_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            probabilities = d[key]
            lesion = probabilities[1:] > probabilities[:1]  # [1, H, W]
            components, count = ndimage.label(lesion[0].cpu().numpy(), structure=np.ones((3, 3)))
            if count > 1:
                candidates = np.arange(1, count + 1)
                if self.component == "most_probable":
                    probability = np.where(components > 0, probabilities[1].float().cpu().numpy(), -np.inf)
                    candidates = np.unique(components[probability == probability.max()])
                areas = np.bincount(components.ravel(), minlength=count + 1)[candidates]
                kept = candidates[np.argmax(areas)]  # the largest candidate; between equal ones, the first
                lesion = lesion & torch.from_numpy(components == kept).to(lesion.device)[None]
            if self.confidence_key is not None:  # as plain tensors, a masked sum: a third of indexing's time
                values, on_lesion = (t.as_subclass(torch.Tensor) for t in (probabilities[1:].float(), lesion))
                d[self.confidence_key] = float((values * on_lesion).sum() / on_lesion.sum()) if count else None
            d[key] = lesion.to(probabilities.dtype)
        return d
