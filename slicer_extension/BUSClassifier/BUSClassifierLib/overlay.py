"""The attention map over the image: one volume per input image, drawn with a colour table whose zero
is fully transparent, so that the image outside the classified region shows unchanged.

The attention volume holds a node reference (role :data:`INPUT_ROLE`) to its input volume and the
attribute :data:`ATTENTION_ATTRIBUTE`, by which the panel keeps it out of its input selector.
"""

from __future__ import annotations

import numpy as np

from BUSClassifierLib.geometry import set_volume_like

COLOR_TABLE_NAME = "BUSClassifier attention"
INPUT_ROLE = "BUSClassifierInput"
ATTENTION_ATTRIBUTE = "BUSClassifier.attention"
LEVELS = 256
# Slicer's scalar volume display draws a pixel opaque whenever its colour's alpha is not 0: the slice
# view's foreground opacity sets how strongly the attention tints the image.
FOREGROUND_OPACITY = 0.5


def attention_colors(levels: int = LEVELS) -> np.ndarray:
    """[levels, 4] RGBA in [0, 1] for attention 0..1: dark red through red and orange to yellow; alpha 0
    (not drawn) for attention 0 only."""
    value = np.linspace(0.0, 1.0, levels)
    red = np.clip(0.4 + 1.5 * value, 0.0, 1.0)
    green = np.clip(1.6 * value - 0.6, 0.0, 1.0)
    return np.stack([red, green, np.zeros(levels), (value > 0).astype(float)], axis=1)


def attention_color_table(scene):
    """The scene's attention colour table node, created on first use."""
    node = scene.GetFirstNodeByName(COLOR_TABLE_NAME)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOR_TABLE_NAME)
        node.SetTypeToUser()
        node.SetNumberOfColors(LEVELS)
        for index, (red, green, blue, alpha) in enumerate(attention_colors()):
            node.SetColor(index, f"{index / (LEVELS - 1):.3f}", red, green, blue, alpha)
    return node


def attention_volumes(scene) -> list:
    """Every attention volume of the scene."""
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
            if nodes.GetItemAsObject(i).GetAttribute(ATTENTION_ATTRIBUTE)]


def attention_volume_of(volume_node):
    """The input volume's attention volume, or None before its first result with an attention map."""
    return next((node for node in attention_volumes(volume_node.GetScene())
                 if node.GetNodeReferenceID(INPUT_ROLE) == volume_node.GetID()), None)


def clear_attention(volume_node) -> None:
    """Empty the input volume's attention volume, if it has one: a result without a class has no map."""
    node = attention_volume_of(volume_node)
    if node is not None:
        set_volume_like(node, volume_node, np.zeros(node.GetImageData().GetDimensions()[1::-1], np.float32))


def show_attention(volume_node, attention: np.ndarray):
    """Put the attention map (the image's size, in [0, 1]) into the input volume's attention volume,
    made on the first call and reused after, with the input's geometry; returns that volume."""
    scene = volume_node.GetScene()
    node = attention_volume_of(volume_node)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{volume_node.GetName()} attention")
        node.SetAttribute(ATTENTION_ATTRIBUTE, "1")
        node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())
        node.CreateDefaultDisplayNodes()
    set_volume_like(node, volume_node, attention)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(attention_color_table(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetInterpolate(False)  # the classified region's edge stays exact
    return node
