"""Uncertainty of one classification, from test-time views, and when to refer the image to a reader.

The classifier sees each image in a few test-time views, each classified on its own, in the answer's
own batch (:meth:`monai_bus.inference.BundleClassifier.forward`): its input as it is and mirrored left
to right and, when it classified the region around a lesion box, that box shifted by :data:`SHIFT` of
its height up and down and of its width left and right (:func:`shifted_boxes`; the shift the training
crops already vary by,
:class:`monai_bus.data.roi.RandCropToLesiond`). The uncertainty is the standard deviation of
P(malignant) over these views (:func:`spread`). Its point is not the probability (with the bundle's
``flip_tta``, the probability is the mean of the first two views before the temperature,
:class:`monai_bus.inferers.FlipAveragingInferer`;
the shifted crops are not averaged into it, docs/results/tta/) but which answers depend on exactly
where the box lies: on the validation images of the shipped model, the spread ranks the errors at the
operating point above the right answers (docs/model_card.md).

``monai-bus calibrate`` stores :func:`refer_cutoff` of the validation uncertainties as the operating
point's ``refer_above``: the inference API then flags an image "refer" when its uncertainty is above it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monai_bus.data.boxes import MIN_BOX_SIDE, Box

SHIFT = 0.1  # fraction of the box's height (rows) or width (columns)
REFER_FRACTION = 0.1  # the most uncertain tenth of the validation images is referred


def shifted_boxes(box: Box, image_shape: Sequence[int]) -> list[Box]:
    """The box moved by :data:`SHIFT` of its height up and down and of its width left and right, rounded
    and at least one pixel (not clipped: at the image's edge the crop then moves less, or not at all,
    which lowers the spread). A moved box whose part inside an image of ``image_shape`` (H, W) would be
    below :data:`~monai_bus.data.boxes.MIN_BOX_SIDE` pixels (a thin box at the image's edge) stays where
    it is."""
    row_start, row_stop, col_start, col_stop = box
    rows, columns = (max(1, round(SHIFT * side)) for side in (row_stop - row_start, col_stop - col_start))
    moved = [(row_start - rows, row_stop - rows, col_start, col_stop),
             (row_start + rows, row_stop + rows, col_start, col_stop),
             (row_start, row_stop, col_start - columns, col_stop - columns),
             (row_start, row_stop, col_start + columns, col_stop + columns)]
    height, width = image_shape

    def inside(b: Box) -> int:  # the smaller side of its part inside the image
        return min(min(b[1], height) - max(b[0], 0), min(b[3], width) - max(b[2], 0))

    return [b if inside(b) >= MIN_BOX_SIDE else tuple(box) for b in moved]


def spread(p_malignant: Sequence[float]) -> float:
    """The standard deviation (population) of P(malignant) over an image's views [V], V >= 2."""
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    if p_malignant.ndim != 1 or len(p_malignant) < 2:
        raise ValueError(f"the spread needs the P(malignant) of at least 2 views, got shape {p_malignant.shape}.")
    return float(p_malignant.std())


def refer_cutoff(uncertainties: Sequence[float], fraction: float = REFER_FRACTION) -> float:
    """The uncertainty above which ``fraction`` of the given (validation) images lie: their
    ``1 - fraction`` quantile (linear interpolation)."""
    uncertainties = np.asarray(uncertainties, dtype=np.float64)
    if uncertainties.ndim != 1 or not len(uncertainties) or not np.isfinite(uncertainties).all():
        raise ValueError(f"uncertainties must be a non-empty 1-D array of finite values, got shape "
                         f"{uncertainties.shape}.")
    if not 0 < fraction < 1:
        raise ValueError(f"the fraction referred must be in (0, 1), got {fraction}.")
    return float(np.quantile(uncertainties, 1.0 - fraction))
