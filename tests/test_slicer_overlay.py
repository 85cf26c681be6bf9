"""The attention overlay as Slicer draws it: image and overlay blended by ``vtkMRMLSliceLogic``, the slice
view's own pipeline from ``slicer-core`` (no window is opened; the blend is the image the view shows).

The test saves the blended slice of a synthetic image, next to the image alone, as a PNG in its temporary
folder; ``slicer_extension/docs/BUSClassifier-overlay.png`` is a copy of it.
"""

from __future__ import annotations

import numpy as np
import pytest

import test_slicer_logic
from test_slicer_logic import roi_over_pixels, slicer

# after test_slicer_logic, which skips this file where slicer-core (and so vtk) is missing
import vtk
from vtk.util import numpy_support

module = test_slicer_logic.module  # the fixture: BUSClassifier.py with stand-ins for Slicer-only modules

SIZE = 192


@pytest.fixture
def slice_view():
    """``(scene, slice logic)``: a scene with the default colour tables and a Red slice view, as the Slicer
    application sets them up; the logics leave the scene first at teardown."""
    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLApplicationLogic(application)
    slice_logic.SetMRMLScene(scene)
    slice_node = slice_logic.AddSliceNode("Red")
    slice_node.SetOrientationToAxial()  # as the application's Red view
    slice_node.SetDimensions(SIZE, SIZE, 1)
    yield scene, slice_logic
    for logic in (slice_logic, application, colors):
        logic.SetMRMLScene(None)


def rendered(slice_logic) -> np.ndarray:
    """The slice view's blended RGBA image [rows, columns, 4], row 0 at the bottom (VTK's order)."""
    slice_logic.UpdatePipeline()
    producer = slice_logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    columns, rows, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, -1).copy()


def resliced_foreground(slice_logic) -> np.ndarray:
    """The foreground volume's values resampled on the slice view's pixels [rows, columns]."""
    reslice = slice_logic.GetForegroundLayer().GetReslice()
    reslice.Update()
    output = reslice.GetOutput()
    columns, rows, _ = output.GetDimensions()
    return numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(rows, columns)


def save_png(rgba: np.ndarray, path) -> None:
    """Write the colours of an RGBA array [rows, columns, 4] in VTK's row order as a PNG (which shows it
    upright, as the slice view does)."""
    image = vtk.vtkImageData()
    image.SetDimensions(rgba.shape[1], rgba.shape[0], 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(rgba[..., :3].reshape(-1, 3), deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()


def test_attention_overlay_leaves_the_image_unchanged_outside_the_classified_region(module, roi_bundle, slice_view,
                                                                                      tmp_path):
    scene, slice_logic = slice_view
    image = module.BUSClassifierTest.syntheticImage(SIZE, SIZE, seed=1)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ultrasound")
    volume.SetSpacing(0.1, 0.1, 1.0)
    volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)  # as Slicer loads a PNG: row 0 at the top
    slicer.util.updateVolumeFromArray(volume, image[np.newaxis])
    volume.CreateDefaultDisplayNodes()
    volume.GetDisplayNode().SetInterpolate(False)
    box = (40, 100, 60, 140)  # around the dark ellipse
    result, attention_node = module.BUSClassifierLogic().classify(
        volume, roi_bundle, roi_over_pixels(scene, box[:2], box[2:], module.ijk_to_ras(volume)))

    composite = slice_logic.GetSliceCompositeNode()
    composite.SetBackgroundVolumeID(volume.GetID())
    slice_logic.FitSliceToBackground(SIZE, SIZE)
    image_alone = rendered(slice_logic)
    composite.SetForegroundVolumeID(attention_node.GetID())
    composite.SetForegroundOpacity(module.FOREGROUND_OPACITY)  # as the panel sets it
    with_overlay = rendered(slice_logic)
    attention = resliced_foreground(slice_logic)

    drawn = attention > 0  # the classified region as the view samples it
    rows, columns = np.nonzero(drawn)
    shape = (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1)
    row_start, row_stop, col_start, col_stop = result["roi"]
    assert shape == (row_stop - row_start, col_stop - col_start) and drawn.sum() == shape[0] * shape[1]
    np.testing.assert_array_equal(with_overlay[~drawn], image_alone[~drawn])  # not tinted at all
    assert np.any(with_overlay != image_alone, axis=-1)[drawn].all()  # tinted inside

    gap = np.full((SIZE, 8, 4), 255, np.uint8)
    save_png(np.concatenate([image_alone, gap, with_overlay], axis=1), tmp_path / "BUSClassifier-overlay.png")
    assert (tmp_path / "BUSClassifier-overlay.png").stat().st_size > 0

    # the check can fail: Slicer's Iron colour table, the module's former choice, tints the whole image
    attention_node.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeIron")
    assert np.any(rendered(slice_logic) != image_alone, axis=-1)[~drawn].mean() > 0.9
