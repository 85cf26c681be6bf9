"""Between Slicer volume nodes and the 2D images of the inference API.

A Slicer volume's voxel array is [K, J, I] (slices, rows, columns). A 2D image (PNG, JPEG or a
single-frame DICOM) is one slice, [1, rows, columns], whose row 0 is the image's top row: ``array[0]``
is the image in display order, as the inference API takes it. Pixel boxes are half-open
``(row_start, row_stop, column_start, column_stop)``.
"""

from __future__ import annotations

import numpy as np
import slicer.util
import vtk


def image_from_volume(volume_node) -> np.ndarray:
    """The volume's pixels as a 2D image, [rows, columns] or [rows, columns, components] for RGB.

    Raises:
        ValueError: in plain words, for no volume, an empty volume, a volume of several slices (or of one
            along another axis than K), one under
            a transform, one without spacing along an axis, or an oblique one (axes not along R, A and S): the
            boxes, the lesion and the attention map are placed through the volume's own IJK-to-RAS matrix,
            which is then not where the volume is shown, or would turn the ROI's box.
    """
    if volume_node is None:
        raise ValueError("No input volume selected: load an ultrasound image and select it as the input.")
    if volume_node.GetImageData() is None:
        raise ValueError(f"'{volume_node.GetName()}' holds no image data.")
    transform = volume_node.GetParentTransformNode()
    if transform is not None:
        raise ValueError(f"'{volume_node.GetName()}' is under the transform '{transform.GetName()}'; harden it "
                         "(Data module: right-click the volume, Harden transform) and click Apply again.")
    direction = ijk_to_ras(volume_node)[:3, :3]
    spacing = np.linalg.norm(direction, axis=0)
    if not (spacing > 0).all():
        raise ValueError(f"'{volume_node.GetName()}' has no spacing along one of its axes; set its spacing in the "
                         "Volumes module.")
    direction = direction / spacing
    if not np.allclose(np.abs(direction).max(axis=0), 1.0, atol=1e-6):
        raise ValueError(f"'{volume_node.GetName()}' is oblique (its axes do not run along R, A and S); resample it "
                         "along them (Resample Scalar/Vector/DWI Volume) or load the image file itself.")
    array = slicer.util.arrayFromVolume(volume_node)
    if array.shape[0] != 1 and 1 in array.shape[1:]:  # it was called a 3D volume of array.shape[0] slices
        raise ValueError(f"'{volume_node.GetName()}' is one slice thick along another axis than its third (K); "
                         "load the 2D image file itself, which Slicer reads as one slice along K.")
    if array.shape[0] != 1:
        raise ValueError(f"'{volume_node.GetName()}' is a 3D volume of {array.shape[0]} slices; "
                         "select a 2D image (a single-slice volume).")
    return np.array(array[0])


def ijk_to_ras(volume_node) -> np.ndarray:
    """The volume's 4x4 IJK-to-RAS matrix: origin, spacing and direction together."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def roi_pixel_box(volume_node, roi_node, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixels of the image inside a markups ROI, clamped to the image: the lesion box of the
    inference API, whatever the volume's origin, spacing and direction.

    The ROI's corners go from RAS to IJK through the volume's RAS-to-IJK matrix; the box holds the
    pixels whose centres lie within their extent in I (columns) and J (rows). The ROI's extent across
    the slice (K) is ignored: a box drawn on the image counts wherever its depth lies.

    Raises:
        ValueError: when the ROI holds no pixel of the image, or has no width or height on it.
    """
    half = np.array(roi_node.GetSize()) / 2.0
    corners = np.array([[x, y, z, 1.0] for x in (-half[0], half[0]) for y in (-half[1], half[1])
                        for z in (-half[2], half[2])])
    roi_to_ras = slicer.util.arrayFromVTKMatrix(roi_node.GetObjectToWorldMatrix())
    ijk = (np.linalg.inv(ijk_to_ras(volume_node)) @ roi_to_ras @ corners.T)[:3].T
    if not (np.ptp(ijk[:, 0]) > 0 and np.ptp(ijk[:, 1]) > 0):  # it was said to lie outside the image
        raise ValueError(f"The ROI '{roi_node.GetName()}' has no width or no height on the image "
                         f"'{volume_node.GetName()}'; resize it around the lesion.")
    rows, columns = image_shape
    row_start, row_stop = max(int(np.ceil(ijk[:, 1].min())), 0), min(int(np.floor(ijk[:, 1].max())) + 1, rows)
    col_start, col_stop = max(int(np.ceil(ijk[:, 0].min())), 0), min(int(np.floor(ijk[:, 0].max())) + 1, columns)
    if row_start >= row_stop or col_start >= col_stop:
        raise ValueError(f"The ROI '{roi_node.GetName()}' lies outside the image '{volume_node.GetName()}'; "
                         "move it over the lesion or clear the ROI selector.")
    return row_start, row_stop, col_start, col_stop


def set_volume_like(node, reference_node, array: np.ndarray) -> None:
    """Give a scalar volume node the reference's geometry (origin, spacing, direction) and these voxels.

    Args:
        array: [rows, columns] in display order, the reference's in-plane size.
    """
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(reference_node)))
    slicer.util.updateVolumeFromArray(node, array[np.newaxis])


def place_roi_over_pixel_box(roi_node, volume_node, box: tuple[int, int, int, int]) -> None:
    """Put a markups ROI over the pixel box ``(row_start, row_stop, col_start, col_stop)`` of the volume:
    the inverse of :func:`roi_pixel_box` for volumes whose axes run along RAS axes (any flip or
    permutation), one slice thick."""
    top, bottom, left, right = box
    corners = (ijk_to_ras(volume_node) @ np.array([[left - 0.5, top - 0.5, -0.5, 1],
                                                   [right - 0.5, bottom - 0.5, 0.5, 1]]).T)[:3].T
    roi_node.SetCenter(*corners.mean(axis=0))
    roi_node.SetSize(*np.abs(corners[1] - corners[0]))
