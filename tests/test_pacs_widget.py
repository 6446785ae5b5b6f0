"""The napari side of the PACS round trip: "Open from PACS…" lists studies and series of a real Orthanc and opens a
series with its geometry; a corrected mask goes back as a SEMIAUTOMATIC DICOM SEG with its report; a wrong
password is one clear message; the Save dialog and the Measure dock write DICOM SEG files; a SEG file dropped on
the viewer opens as Labels on its series."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from _duke_dicom import TUMOUR
from _orthanc import PASSWORD, USER, pacs_with_duke_series

from napari_lesionseg.core.io import dicomweb as dw

PLUGIN = "napari-lesionseg"
pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc holding the Duke subtraction series; stopped after the module."""
    yield from pacs_with_duke_series(tmp_path_factory.mktemp("pacs-gui"))


def _widget(viewer, pacs, password=PASSWORD):
    from napari_lesionseg.napari.pacs_widget import PacsWidget

    w = PacsWidget(viewer)
    w.url.value = pacs["server"].dicomweb
    w.user.value = USER
    w.password.value = password
    return w


def _mask_layer(viewer, image, edited=True):
    from napari_lesionseg.napari.dicom_export import EDITED_KEY, MODEL_KEY
    from napari_lesionseg.napari.layer_utils import derived_layer_kwargs

    mask = np.zeros(image.data.shape, np.uint8)
    mask[TUMOUR] = 1
    kw = derived_layer_kwargs(image, "mask")
    kw["metadata"][MODEL_KEY] = "mri-lesion"
    kw["metadata"][EDITED_KEY] = edited
    return viewer.add_labels(mask, **kw), mask


def test_open_from_pacs_then_store_the_corrected_mask(make_napari_viewer, pacs, qtbot):
    viewer = make_napari_viewer()
    w = _widget(viewer, pacs)
    viewer.window.add_dock_widget(w, name="Open from PACS…")  # docked: napari resets its choices on layer changes
    w.list_btn.clicked.emit()
    qtbot.waitUntil(lambda: len(w.series.choices) == 1, timeout=30000)
    assert w.study.value == pacs["study"] and w.series.value == pacs["series"]
    w.open_btn.clicked.emit()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    assert w.study.value == pacs["study"] and w.series.value == pacs["series"]  # still there to open again
    image = viewer.layers[0]
    np.testing.assert_array_equal(image.data, pacs["volume"])
    np.testing.assert_allclose(image.scale, (1.1, 0.7589286, 0.7589286), atol=1e-5)  # the crop's voxel size

    labels, mask = _mask_layer(viewer, image)
    viewer.layers.selection.active = labels
    w.store_btn.clicked.emit()
    qtbot.waitUntil(lambda: w.status.value.startswith("Stored SEG"), timeout=60000)
    client = dw.connect(dw.PacsLogin(pacs["server"].dicomweb, USER, PASSWORD))
    kinds = sorted(s["modality"] for s in dw.list_series(client, pacs["study"]))
    assert kinds == ["MR", "SEG", "SR"]
    seg_series = next(s for s in dw.list_series(client, pacs["study"]) if s["modality"] == "SEG")
    sop = client.search_for_instances(pacs["study"], seg_series["series_uid"])[0]["00080018"]["Value"][0]
    seg = dw.fetch_instance(client, pacs["study"], seg_series["series_uid"], sop)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    from napari_lesionseg.core.io.dicom_seg import read_seg
    from napari_lesionseg.core.geometry import geometry_from_metadata

    np.testing.assert_array_equal(read_seg(seg, geometry_from_metadata(image.metadata))[0], mask)

    # The stored SEG opens again from the PACS, as Labels on the series already open.
    w.list_btn.clicked.emit()
    qtbot.waitUntil(lambda: len(w.series.choices) == 2, timeout=30000)
    w.series.value = seg_series["series_uid"]
    w.open_btn.clicked.emit()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=30000)
    reopened = viewer.layers[-1]
    assert reopened._type_string == "labels" and reopened.name.startswith(image.name)
    np.testing.assert_array_equal(reopened.data, mask)
    np.testing.assert_allclose(reopened.scale, image.scale)

    # In a fresh viewer the SEG brings its source series from the PACS with it.
    w.viewer.layers.clear()
    w.open_btn.clicked.emit()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=30000)
    assert [la._type_string for la in viewer.layers] == ["image", "labels"]
    np.testing.assert_array_equal(viewer.layers[1].data, mask)


def test_a_wrong_password_is_one_clear_message(make_napari_viewer, pacs, qtbot):
    viewer = make_napari_viewer()
    w = _widget(viewer, pacs, password="not-the-password")
    w.list_btn.clicked.emit()
    qtbot.waitUntil(lambda: "refused the login" in w.status.value, timeout=30000)
    assert "not-the-password" not in w.status.value and w.study.choices == ()


def test_save_dialog_and_measure_dock_write_a_seg_that_opens_on_its_series(make_napari_viewer, pacs, tmp_path):
    from napari_lesionseg.napari.measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    [image] = viewer.open(pacs["files"][0].parent, plugin=PLUGIN)
    labels, mask = _mask_layer(viewer, image, edited=False)
    out = tmp_path / "saved.dcm"
    assert labels.save(str(out), plugin=PLUGIN) == [str(out)]  # File ▸ Save Selected Layer(s)
    ds = pydicom.dcmread(out)
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "mri-lesion"

    from napari_lesionseg.napari.segment_dock import SegmentDock

    exported = SegmentDock(viewer).export_to(tmp_path / "from_dock.dcm", labels)  # the Segment dock's Export mask…
    assert pydicom.dcmread(exported).SegmentSequence[0].SegmentLabel == "lesion"

    dock = MeasureWidget(viewer)
    dock.mask_combo.select(labels)
    seg_path, report_path = dock.export_dicom(tmp_path / "measured.dcm")
    sr = pydicom.dcmread(report_path)
    assert sr.Modality == "SR" and sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == pacs["study"]

    # The SEG file sits beside (above) the series folder: opening it gives the series and the mask on it.
    moved = pacs["files"][0].parent.parent / "opened_seg.dcm"
    out.replace(moved)
    layers = viewer.open(moved, plugin=PLUGIN)
    assert [la._type_string for la in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[1].data, mask)
    np.testing.assert_allclose(layers[1].scale, image.scale)
    moved.unlink()


def test_measure_dock_never_writes_over_a_slice_of_the_open_series(make_napari_viewer, pacs):
    """DICOM SEG + report, or the CSV, aimed at a file of the open series: refused with one message, slice intact."""
    import hashlib

    from napari_lesionseg.napari.measure_widget import MeasureWidget

    viewer = make_napari_viewer()
    [image] = viewer.open(pacs["files"][0].parent, plugin=PLUGIN)
    labels, _ = _mask_layer(viewer, image, edited=False)
    target = sorted(pacs["files"][0].parent.glob("*.dcm"))[0]
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    dock = MeasureWidget(viewer)
    dock.mask_combo.select(labels)
    errors = []
    from unittest import mock

    with mock.patch("napari.utils.notifications.show_error", errors.append):
        assert dock.export_dicom(target) is None
    assert len(errors) == 1 and "an open layer was read from it" in errors[0]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
