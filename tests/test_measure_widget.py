"""Measure dock: table for the selected Labels layer, click a row to jump to the lesion, CSV beside the mask."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_lesionseg.core.geometry import Geometry

pytestmark = pytest.mark.gui


def _two_lesions():
    mask = np.zeros((12, 60, 60), np.uint8)
    mask[2:5, 5:15, 5:20] = 1       # small, slices 2-4
    mask[6:11, 30:55, 25:50] = 1    # large, slices 6-10
    mask[8, 30:55, 20:25] = 1       # largest on slice 8
    return mask


def test_table_jump_and_export(make_napari_viewer, qtbot, tmp_path):
    from napari_lesionseg.napari.measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    geom = Geometry(spacing=(2.0, 0.5, 0.5), extra={"source_path": str(tmp_path / "scan.nii.gz")})
    image = np.random.default_rng(0).normal(100, 5, (12, 60, 60)).astype(np.float32)
    mask = _two_lesions()
    image[mask > 0] += 50
    viewer.add_image(image, name="post1", scale=geom.spacing, metadata=geom.to_metadata())
    labels = viewer.add_labels(mask, name="lesions", scale=geom.spacing, metadata=geom.to_metadata())
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="other")
    viewer.layers.selection.active = labels

    w = MeasureWidget(viewer)
    qtbot.addWidget(w)
    assert w.mask_combo.currentText() == "lesions"
    assert w.image_combo.currentText() == "post1"
    w.measure_btn.click()  # runs in a worker thread
    qtbot.waitUntil(lambda: w.table.rowCount() == 2 and w.measure_btn.isEnabled(), timeout=10_000)
    headers = [w.table.horizontalHeaderItem(j).text() for j in range(w.table.columnCount())]
    for col in ("label", "volume_ml", "long_axis_mm", "short_axis_mm", "mean_intensity"):
        assert col in headers
    vol = float(w.table.item(1, headers.index("volume_ml")).text())
    assert vol == pytest.approx(int((mask > 0).sum() - 450) * 0.5 / 1000, rel=0.01)
    assert float(w.table.item(1, headers.index("mean_intensity")).text()) == pytest.approx(150, abs=1)

    # click the second lesion: the viewer goes to its largest slice (z = 8 -> 16 mm) and centres on it
    w.table.cellClicked.emit(1, 0)
    assert viewer.dims.point[0] == pytest.approx(8 * 2.0)
    cy, cx = viewer.camera.center[-2:]
    m = w.measurements[1]
    assert (cy, cx) == pytest.approx((m.centroid[1] * 0.5, m.centroid[2] * 0.5))
    w.table.cellClicked.emit(0, 0)
    assert viewer.dims.point[0] == pytest.approx(3 * 2.0)

    # export: beside the scan the mask was derived from, atomically
    out = w.export_csv()
    assert out == tmp_path / "lesions_measurements.csv"
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 2 and float(rows[1]["volume_ml"]) == pytest.approx(vol, rel=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions_measurements.csv"]

    # diameters drawn as a Shapes layer on the measured slices
    w.draw_check.setChecked(True)
    w.measure_now()
    shapes = viewer.layers["lesions diameters"]
    assert len(shapes.data) == 4
    assert {float(d[0, 0]) for d in shapes.data} == {3.0, 8.0}


def test_sample_mask_measured_in_pixels_when_spacing_unknown(make_napari_viewer, qtbot):
    from napari_lesionseg.napari.measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-lesionseg", "busi_ultrasound")
    w = MeasureWidget(viewer)
    qtbot.addWidget(w)
    res = w.measure_now()
    assert len(res) >= 1
    assert sum(m.n_voxels for m in res) == 12527
    assert "unknown" in w.status.text()


@pytest.mark.parametrize("name", ["Measure lesions", "Histology tools"])
def test_docks_open_from_the_manifest(make_napari_viewer, name, recwarn):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lesionseg", "duke_dce_mri")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-lesionseg", name)
    assert widget is not None
    if name == "Measure lesions":
        mask = np.zeros(viewer.layers[0].data.shape, np.uint8)
        mask[10:20, 40:60, 40:60] = 1
        viewer.add_labels(mask, name="box", scale=viewer.layers[0].scale, metadata=viewer.layers[1].metadata)
        widget.mask_combo.setCurrentText("box")
        widget.image_combo.setCurrentText("Duke-153 post1 (crop)")
        widget.pre_combo.setCurrentText("Duke-153 pre (crop)")
        (m,) = widget.measure_now()
        assert m.size == pytest.approx(4000 * 1.1 * 0.759 ** 2 / 1000, rel=0.01)
        assert m.mean_enhancement > 0
    private = [w for w in recwarn if "Private attribute access" in str(w.message)]
    assert not private, private[0].message
