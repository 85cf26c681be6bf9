"""A PNG of a classified image: the attention map over it, and the lesion box and classified region.

Attention 0 is not drawn, so the image shows unchanged outside the classified region; above 0 it is
tinted from dark red (low) to yellow (high) at half opacity, as in the Slicer module.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

OPACITY = 0.5
BOX_COLOUR = (0, 255, 0)  # the lesion box that was given
REGION_COLOUR = (0, 200, 255)  # the region that was classified: the box plus the bundle's margin


def attention_colours(attention: np.ndarray) -> np.ndarray:
    """RGB in [0, 1], [H, W, 3], for attention [H, W] in [0, 1]: dark red through orange to yellow."""
    red = np.clip(0.4 + 1.5 * attention, 0.0, 1.0)
    green = np.clip(1.6 * attention - 0.6, 0.0, 1.0)
    return np.stack([red, green, np.zeros_like(attention)], axis=-1)


def write_overlay(grey: np.ndarray, attention: np.ndarray | None, box, region, path: str | os.PathLike) -> None:
    """Write the image [H, W] (any range; shown min to max) with the attention map [H, W] in [0, 1]
    (None: no gate), the ``box`` and the classified ``region`` (``(row_start, row_stop, col_start,
    col_stop)`` each, or None) as an RGB PNG at the image's size."""
    low, high = float(grey.min()), float(grey.max())
    rgb = np.repeat(((grey - low) / (high - low or 1.0))[..., None], 3, axis=-1)
    if attention is not None:
        tinted = attention > 0
        rgb[tinted] = (1 - OPACITY) * rgb[tinted] + OPACITY * attention_colours(attention)[tinted]
    picture = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for rectangle, colour in ((region, REGION_COLOUR), (box, BOX_COLOUR)):
        if rectangle is not None:
            row_start, row_stop, col_start, col_stop = rectangle
            draw.rectangle((col_start, row_start, col_stop - 1, row_stop - 1), outline=colour, width=2)
    picture.save(path)
