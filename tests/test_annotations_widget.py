"""The annotations dock in a real napari viewer: world → voxel mapping, Labels with the image's geometry, undo,
the threaded 3D path, and clear messages for an empty layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.annotations import longest_diameter
from napari_lesionseg.core.geometry import Geometry, geometry_from_metadata
from napari_lesionseg.core.metrics import dice

from test_annotations_lines import lesion_image

pytestmark = pytest.mark.gui


def _dock(viewer):
    from napari_lesionseg.napari.annotate_widget import AnnotateWidget

    return AnnotateWidget(viewer)


def test_line_drawn_in_mm_on_a_scaled_image(make_napari_viewer):
    viewer = make_napari_viewer()
    img, truth = lesion_image(seed=6)
    sp = (0.4, 0.4)
    meta = Geometry(spacing=sp).to_metadata()
    image = viewer.add_image(img, name="us", scale=sp, translate=(3.0, -2.0), metadata=meta)
    p0, p1 = longest_diameter(truth)
    world = [np.asarray(p0) * sp + (3.0, -2.0), np.asarray(p1) * sp + (3.0, -2.0)]
    viewer.add_shapes([np.array(world)], shape_type="line", name="lines")  # a Shapes layer with no scale: mm
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["lines"])
    dock.image_combo.select(image)
    dock.method_combo.setCurrentIndex(2)  # classical: quick and always available
    layer = dock.run(blocking=True)
    assert layer is not None and layer.__class__.__name__ == "Labels"
    assert dice(layer.data > 0, truth) > 0.85
    assert tuple(layer.scale) == sp and tuple(layer.translate) == (3.0, -2.0)
    assert geometry_from_metadata(layer.metadata).spacing == sp
    assert layer.editable


def test_result_into_an_existing_labels_layer_is_undoable(make_napari_viewer):
    viewer = make_napari_viewer()
    img, truth = lesion_image(seed=7)
    image = viewer.add_image(img, name="us")
    target = viewer.add_labels(np.zeros(img.shape, np.int32), name="mask")
    p0, p1 = longest_diameter(truth)
    viewer.add_shapes([np.array([p0, p1])], shape_type="line", name="lines")
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["lines"])
    dock.image_combo.select(image)
    dock.target_combo.select(target)
    dock.method_combo.setCurrentIndex(2)
    assert dock.run(blocking=True) is target
    assert dice(target.data > 0, truth) > 0.85
    target.undo()
    assert not target.data.any()


def test_points_give_disks_in_mm(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((60, 60)), name="he", scale=(0.5, 0.5))
    viewer.add_points(np.array([[10.0, 10.0]]), name="mitoses")  # world mm → voxel (20, 20)
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["mitoses"])
    dock.image_combo.select(image)
    dock.mode_combo.setCurrentIndex(0)
    dock.radius.setValue(2.0)
    layer = dock.run(blocking=True)
    assert layer.data[20, 20] == 1 and layer.data[20, 24] == 1 and layer.data[20, 25] == 0  # 2 mm = 4 px


def test_empty_layer_gives_a_message_not_a_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((60, 60)), name="us")
    viewer.add_shapes(name="lines")
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["lines"])
    dock.image_combo.select(image)
    n = len(viewer.layers)
    assert dock.run() is None
    assert "empty" in dock.status.text() and len(viewer.layers) == n


def test_volume_runs_in_a_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    sp = np.array([2.0, 0.8, 0.8])
    zz, yy, xx = np.mgrid[:16, :60, :60].astype(float)
    truth = (((zz - 8) * sp[0]) / 10) ** 2 + (((yy - 30) * sp[1]) / 12) ** 2 + (((xx - 30) * sp[2]) / 15) ** 2 <= 1
    vol = (30 + 8 * rng.standard_normal(truth.shape)).astype(np.float32)
    vol[truth] += 60
    image = viewer.add_image(vol, name="sub", scale=tuple(sp))
    p0, p1 = longest_diameter(truth[8], sp[1:])
    viewer.add_shapes([np.array([np.r_[8, p0], np.r_[8, p1]]) * sp], shape_type="line", name="lines")
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["lines"])
    dock.image_combo.select(image)
    worker = dock.run()
    assert worker is not None
    qtbot.waitUntil(lambda: dock.worker is None, timeout=30000)
    layer = viewer.layers["sub lesions"]
    assert dice(layer.data > 0, truth) > 0.75 and layer.data.any(axis=(1, 2)).sum() > 3
    assert tuple(layer.scale) == tuple(sp)


def test_rectangle_prompt_on_a_real_ultrasound_image(make_napari_viewer):
    """A box drawn with napari's rectangle tool gives the lesion inside it (prompt network)."""
    from test_prompts import _prompt_network, _real_lesion

    img, truth = _real_lesion("ultrasound")
    _prompt_network()
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="us")
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    rect = np.array([[rows[0], cols[0]], [rows[0], cols[-1]], [rows[-1], cols[-1]], [rows[-1], cols[0]]], float)
    viewer.add_shapes([rect], shape_type="rectangle", name="boxes")
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["boxes"])
    dock.image_combo.select(image)
    layer = dock.run(blocking=True)
    assert layer is not None and dice(layer.data > 0, truth) > 0.7


def test_line_with_its_short_axis_on_a_real_mri_slice(make_napari_viewer):
    """A long line and a shorter one across it (RECIST) are one lesion: one label, the short axis's width used."""
    from test_prompts import REAL, _prompt_network, _real_lesion

    from napari_lesionseg.core.annotations import line_to_mask, short_axis

    img, truth = _real_lesion("mri")
    _prompt_network()
    p0, p1 = longest_diameter(truth)
    s0, s1 = short_axis(truth, p0, p1)
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="mri")
    viewer.add_shapes([np.array([p0, p1]), np.array([s0, s1])], shape_type="line", name="lines")
    dock = _dock(viewer)
    dock.ann_combo.select(viewer.layers["lines"])
    dock.image_combo.select(image)
    layer = dock.run(blocking=True)
    assert layer is not None and set(np.unique(layer.data)) == {0, 1}
    assert dice(layer.data > 0, truth) > REAL["mri"][2]
    core = line_to_mask(img, p0, p1, short_axis=(s0, s1))
    assert dice(layer.data > 0, core) > 0.99  # the dock runs the core's cross, not the line alone
