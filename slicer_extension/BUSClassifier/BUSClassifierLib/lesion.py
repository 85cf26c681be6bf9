"""The localiser's answer in the scene: the lesion as a segmentation, and its box as a markups ROI.

Each input image gets one segmentation node (``<image> lesion``, one segment ``lesion``) and one ROI
node (``<image> lesion box``), made on the first localised result and reused after; both hold a node
reference (role :data:`INPUT_ROLE`) to their input volume. The ROI is an ordinary markups ROI: the
user can move or resize it and classify again with it as the given box. When the localiser finds no
lesion, the segmentation is emptied and the image's lesion ROI removed, so that no earlier answer
stays on screen.
"""

from __future__ import annotations

import numpy as np
import slicer

from BUSClassifierLib.geometry import place_roi_over_pixel_box, set_volume_like
from BUSClassifierLib.overlay import INPUT_ROLE

SEGMENT_NAME = "lesion"
SEGMENT_COLOR = (0.2, 0.9, 0.3)


def lesion_node(volume_node, class_name: str):
    """The volume's lesion node of ``class_name`` (``vtkMRMLSegmentationNode`` or ``vtkMRMLMarkupsROINode``),
    or None before its first localised result."""
    nodes = volume_node.GetScene().GetNodesByClass(class_name)
    return next((nodes.GetItemAsObject(index) for index in range(nodes.GetNumberOfItems())
                 if nodes.GetItemAsObject(index).GetNodeReferenceID(INPUT_ROLE) == volume_node.GetID()), None)


def is_lesion_box_of_another_image(roi_node, volume_node) -> bool:
    """Whether the ROI is the lesion ROI that the localiser placed on another image than this volume."""
    owner = roi_node.GetNodeReferenceID(INPUT_ROLE)
    return owner is not None and owner != volume_node.GetID()


def _lesion_node_made(volume_node, class_name: str, name: str):
    """:func:`lesion_node`, made (named ``name``) when there is none."""
    node = lesion_node(volume_node, class_name)
    if node is None:
        node = volume_node.GetScene().AddNewNodeByClass(class_name, name)
        node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())
        node.CreateDefaultDisplayNodes()
    return node


def show_lesion(volume_node, mask: np.ndarray, box: tuple[int, int, int, int] | None):
    """Show the localiser's lesion over the volume; returns ``(segmentation node, ROI node or None)``.

    Args:
        mask: bool [rows, columns], the image's size: the lesion's pixels (none when no lesion was found:
            then the segmentation is left empty and the image's lesion ROI is removed).
        box: the lesion's box ``(row_start, row_stop, col_start, col_stop)``, or None.
    """
    segmentation = _lesion_node_made(volume_node, "vtkMRMLSegmentationNode", f"{volume_node.GetName()} lesion")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation.GetSegmentation().RemoveAllSegments()
    if mask.any():
        labelmap = volume_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", SEGMENT_NAME)
        try:
            set_volume_like(labelmap, volume_node, mask.astype(np.uint8))
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
                raise RuntimeError(f"the lesion mask of '{volume_node.GetName()}' could not be made a segment")
        finally:
            volume_node.GetScene().RemoveNode(labelmap)
        segmentation.GetSegmentation().GetNthSegment(0).SetColor(*SEGMENT_COLOR)
    if box is None:
        old_roi = lesion_node(volume_node, "vtkMRMLMarkupsROINode")
        if old_roi is not None:
            volume_node.GetScene().RemoveNode(old_roi)
        return segmentation, None
    roi = _lesion_node_made(volume_node, "vtkMRMLMarkupsROINode", f"{volume_node.GetName()} lesion box")
    place_roi_over_pixel_box(roi, volume_node, box)
    return segmentation, roi
