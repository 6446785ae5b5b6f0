"""Issue 14, the docks: what a user on an ordinary screen with real files runs into (overwrites, layout, duplicates,
double errors, units, closing while busy)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from napari.layers import Image, Labels
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import QApplication, QPushButton

from conftest import REPO

SCREEN_W, SCREEN_H = 1600, 1000
DOCKS = ("Segment lesions", "Measure lesions", "Fine-tune a model")


def _open(viewer, name):
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", name)
    return dock


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scroll_ancestor(widget):
    from qtpy.QtWidgets import QScrollArea

    w = widget.parentWidget()
    while w is not None:
        if isinstance(w, QScrollArea):
            return w
        w = w.parentWidget()
    return None


def test_three_stacked_docks_fit_a_1600x1000_screen(make_napari_viewer, qtbot):
    """Segment, Measure and Fine-tune stacked in one column: the window stays within the screen and every button of
    every dock can be brought into view (scrolled to) inside the window."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(SCREEN_W, SCREEN_H)
    docks = [_open(viewer, name) for name in DOCKS]
    window.resize(SCREEN_W, SCREEN_H)
    qtbot.wait(200)
    QApplication.processEvents()
    assert window.height() <= SCREEN_H, f"the docks push the window to {window.height()} px"
    win_rect = QRect(window.mapToGlobal(QPoint(0, 0)), window.size())
    for dock in docks:
        buttons = [b for b in dock.findChildren(QPushButton) if not b.isHidden()]
        assert buttons
        for button in buttons:
            area = _scroll_ancestor(button)
            if area is not None:
                area.ensureWidgetVisible(button)
                QApplication.processEvents()
            rect = QRect(button.mapToGlobal(QPoint(0, 0)), button.size())
            assert button.isVisible() and not button.visibleRegion().isEmpty(), \
                f"{type(dock).__name__}: '{button.text()}' cannot be seen"
            assert win_rect.contains(rect), f"{type(dock).__name__}: '{button.text()}' at {rect} lies outside the " \
                                            f"window {win_rect}"
            assert rect.bottom() <= SCREEN_H, f"{type(dock).__name__}: '{button.text()}' is below the screen"


# -- Accept and Export never overwrite what they did not write ------------------------------------------------

SAMPLE = "busi_malignant_006"


@pytest.fixture
def sample_beside_expert_mask(tmp_path):
    """The `make run` sample and its shipped expert mask, side by side as they are in sample_data/."""
    for name in (f"{SAMPLE}.png", f"{SAMPLE}_mask.png"):
        shutil.copy2(REPO / "sample_data" / name, tmp_path / name)
    return tmp_path / f"{SAMPLE}.png", tmp_path / f"{SAMPLE}_mask.png"


def _segment(dock, qtbot, model="ultrasound-lesion"):
    dock.model_combo.setCurrentText(model)
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=180_000)


def test_accept_beside_the_expert_mask_keeps_it(make_napari_viewer, qtbot, sample_beside_expert_mask):
    """Segment, then Ctrl+Shift+A (accept): the expert mask is byte-identical, the new mask lands at the next free
    name and the dock says where; accepting again replaces only the dock's own file."""
    scan, expert = sample_beside_expert_mask
    before = {p.name: _sha(p) for p in (scan, expert)}
    viewer = make_napari_viewer()
    viewer.open(str(scan), plugin="napari-lesionseg")
    dock = _open(viewer, "Segment lesions")
    _segment(dock, qtbot)
    mask_layer = dock.result.labels_layer
    assert mask_layer.data.any()

    out = dock.accept()
    assert {p.name: _sha(p) for p in (scan, expert)} == before, "Accept changed the scan or the expert mask"
    assert out == scan.parent / f"{SAMPLE}_mask-1.png" and out.exists()
    assert "mask-1.png" in dock.status.text() and "kept" in dock.status.text()
    import imageio.v3 as iio

    np.testing.assert_array_equal(iio.imread(out) > 0, mask_layer.data > 0)

    mask_layer.paint((10, 10), 1, refresh=True)
    again = dock.accept()  # its own file from this session may be replaced; nothing else
    assert again == out and sorted(p.name for p in scan.parent.iterdir()) == sorted(
        [f"{SAMPLE}.png", f"{SAMPLE}_mask.png", f"{SAMPLE}_mask-1.png"])
    assert iio.imread(out)[10, 10] > 0
    assert {p.name: _sha(p) for p in (scan, expert)} == before


def test_export_refuses_the_scan_and_any_open_file(make_napari_viewer, sample_beside_expert_mask):
    scan, expert = sample_beside_expert_mask
    before = {p.name: _sha(p) for p in (scan, expert)}
    viewer = make_napari_viewer()
    [image] = viewer.open(str(scan), plugin="napari-lesionseg")
    [opened_mask] = viewer.open(str(expert), plugin="napari-lesionseg")
    dock = _open(viewer, "Segment lesions")
    from napari_lesionseg.napari.layer_utils import derived_layer_kwargs

    mine = viewer.add_labels(np.ones(image.data.shape, np.uint8), **derived_layer_kwargs(image, "mine"))
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    assert dock.export_to(scan, mine) is None
    assert dock.export_to(expert, mine) is None
    assert dock.export_to(expert.with_suffix(".PNG").with_name(expert.name), mine) is None
    assert {p.name: _sha(p) for p in (scan, expert)} == before
    assert sum("Refusing to overwrite" in m for m in seen) == 3, seen
    # napari's File ▸ Save goes through the plugin writer: refused as well
    from napari_lesionseg.napari._writer import write_labels

    assert write_labels(str(expert), np.asarray(mine.data), {"metadata": mine.metadata, "scale": mine.scale}) == []
    assert {p.name: _sha(p) for p in (scan, expert)} == before
    assert dock.export_to(scan.parent / "mine_mask.png", mine) is not None


# -- Masks come back as Labels -------------------------------------------------------------------------------

def test_exported_mask_reopens_as_labels(make_napari_viewer, tmp_path):
    from napari_lesionseg.napari.layer_utils import derived_layer_kwargs
    from napari_lesionseg.napari.segment_dock import default_mask_name

    scan = tmp_path / "scan.png"
    shutil.copy2(REPO / "sample_data" / f"{SAMPLE}.png", scan)
    viewer = make_napari_viewer()
    [image] = viewer.open(str(scan), plugin="napari-lesionseg")
    dock = _open(viewer, "Segment lesions")
    mask = np.zeros(image.data.shape, np.uint8)
    mask[100:150, 200:260] = 1
    layer = viewer.add_labels(mask, **derived_layer_kwargs(image, "scan mask"))
    name = default_mask_name(layer)
    assert "_mask" in name and name.endswith(".png")
    out = dock.export_to(tmp_path / name, layer)
    [back] = viewer.open(str(out), plugin="napari-lesionseg")
    assert isinstance(back, Labels), f"{out.name} came back as {type(back).__name__}"
    np.testing.assert_array_equal(back.data, mask)  # 0/255 on disk, 0/1 again as labels
    np.testing.assert_allclose(back.scale, image.scale)
    # the shipped expert mask too; the scan itself (named without _mask) stays an image
    [expert] = viewer.open(str(REPO / "sample_data" / f"{SAMPLE}_mask.png"), plugin="napari-lesionseg")
    assert isinstance(expert, Labels) and set(np.unique(expert.data)) == {0, 1}
    assert isinstance(image, Image)
    # a grey image named like a mask but holding many values is still an image
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "looks_like_a_mask.png", np.arange(256, dtype=np.uint8).reshape(16, 16))
    [grey] = viewer.open(str(tmp_path / "looks_like_a_mask.png"), plugin="napari-lesionseg")
    assert isinstance(grey, Image)


# -- Segment twice ---------------------------------------------------------------------------------------------

def test_segment_twice_replaces_its_layers_but_keeps_a_corrected_mask(make_napari_viewer, qtbot, tmp_path):
    scan = tmp_path / f"{SAMPLE}.png"
    shutil.copy2(REPO / "sample_data" / scan.name, scan)
    viewer = make_napari_viewer()
    viewer.open(str(scan), plugin="napari-lesionseg")
    dock = _open(viewer, "Segment lesions")

    def names():
        return [l.name for l in viewer.layers]

    _segment(dock, qtbot)
    first = names()
    _segment(dock, qtbot)
    assert names() == first, "a second run added layers"
    assert not any("[" in n for n in names()), names()
    assert len([l for l in viewer.layers if isinstance(l, Labels)]) == 1

    corrected = dock.result.labels_layer
    corrected.paint((5, 5), 1, refresh=True)  # the user corrects the mask
    painted = corrected.data.copy()
    _segment(dock, qtbot)
    labels = [l for l in viewer.layers if isinstance(l, Labels)]
    assert len(labels) == 2, names()
    assert any(l is corrected or getattr(l, "__wrapped__", None) is corrected for l in labels), "correction dropped"
    np.testing.assert_array_equal(corrected.data, painted)
    new = dock.result.labels_layer
    assert new is not corrected and new.name != corrected.name and "run 2" in new.name
    assert len([l for l in viewer.layers if l.metadata.get("lesionseg_probs")]) == 1
    # the reference list offers the corrected mask but not the model's own output
    refs = [dock.reference_combo.itemText(i) for i in range(dock.reference_combo.count())]
    assert corrected.name in refs and new.name not in refs
    assert dock.reference_combo.toolTip() == dock.reference_combo.currentText()


# -- One message per failing job ---------------------------------------------------------------------------------

@pytest.fixture
def messages():
    from napari.utils.notifications import notification_manager

    seen = []

    def collect(n):
        seen.append(str(n.message))

    notification_manager.notification_ready.connect(collect)
    yield seen
    notification_manager.notification_ready.disconnect(collect)


@pytest.mark.parametrize("error", [RuntimeError("the weights are damaged"),
                                   __import__("napari_lesionseg.core.errors", fromlist=["x"]).LesionSegError(
                                       "the weights are damaged")])
def test_segment_error_shown_once(make_napari_viewer, qtbot, messages, monkeypatch, error):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="scan")
    dock = _open(viewer, "Segment lesions")

    def broken(job):
        raise error

    monkeypatch.setattr(dock, "_predict", broken)
    _segment(dock, qtbot)
    qtbot.wait(100)
    assert sum("the weights are damaged" in m for m in messages) == 1, messages
    assert "the weights are damaged" in dock.status.text() and dock.segment_btn.isEnabled()


def test_measure_error_shown_once(make_napari_viewer, qtbot, messages, monkeypatch):
    from napari_lesionseg.napari import measure_widget

    viewer = make_napari_viewer()
    viewer.add_labels(np.ones((32, 32), np.uint8), name="m")
    dock = _open(viewer, "Measure lesions")

    def broken(**_):
        raise ValueError("cannot measure this")

    monkeypatch.setattr(measure_widget, "measure_lesions", broken)
    dock.measure_async()
    qtbot.waitUntil(lambda: dock.measure_btn.isEnabled(), timeout=10_000)
    qtbot.wait(100)
    assert sum("cannot measure this" in m for m in messages) == 1, messages


# -- Closing napari while Segment runs --------------------------------------------------------------------------

@pytest.fixture
def mri_model(tmp_path_factory, _user_model_dir):
    from napari_lesionseg.core.models import default_registry
    from tiny_models import tiny_model

    card = tiny_model("slices", tmp_path_factory.getbasetemp() / "tiny-models", install_into=_user_model_dir)
    return default_registry().get(card).name


def test_closing_the_viewer_while_segment_runs_stops_the_job(make_napari_viewer, qtbot, mri_model):
    """The worker is cancelled and joined when the window closes (it used to run on into a torn-down viewer and
    end napari with a segfault)."""
    viewer = make_napari_viewer(show=True)
    dock, vol = _segment_a_long_volume(viewer, qtbot, mri_model, seed=2)
    assert not dock._idle.is_set(), "the job should still be running"
    viewer.close()
    assert dock._cancel.is_set(), "closing did not cancel the job"
    assert dock._idle.is_set(), "closing returned while the worker thread was still running"
    assert dock.progress.value() < vol.shape[0]
    # the worker's queued 'returned'/'finished' arrive after the close: nothing is added, nothing raises
    qtbot.waitUntil(lambda: dock._worker is None, timeout=10_000)


def test_removing_the_dock_while_segment_runs_stops_the_job(make_napari_viewer, qtbot, mri_model):
    viewer = make_napari_viewer()
    dock, _vol = _segment_a_long_volume(viewer, qtbot, mri_model, seed=3)
    idle, cancel = dock._idle, dock._cancel
    viewer.window.remove_dock_widget("all")
    qtbot.waitUntil(idle.is_set, timeout=30_000)
    assert cancel.is_set(), "the job ran on after its dock was removed"
    qtbot.waitUntil(lambda: dock._worker is None, timeout=10_000)
    assert len(viewer.layers) == 1
    dock.deleteLater()  # a removed dock is the caller's to delete


# -- Units: px when the pixel size is unknown; stated or from a ruler -----------------------------------------------

def test_units_follow_spacing_known_and_the_stated_pixel_size(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, expert = viewer.open_sample("napari-lesionseg", "busi_ultrasound")  # a PNG: pixel size unknown
    segment = _open(viewer, "Segment lesions")
    measure = _open(viewer, "Measure lesions")
    assert "px²" in segment.min_size.suffix() and "mm" not in segment.min_size.suffix()
    assert not segment.units_note.isHidden() and "pixel size unknown" in segment.units_note.text().lower()
    measure.mask_combo.select(expert)
    rows = measure.measure_now()
    header = [measure.table.horizontalHeaderItem(i).text() for i in range(measure.table.columnCount())]
    assert "area_px2" in header and not any("mm" in h for h in header), header
    assert not measure.units_note.isHidden()
    pixels = rows[0].size

    segment.pixel_size.setValue(0.1)
    segment.set_pixel_size_btn.click()
    assert "mm²" in segment.min_size.suffix() and segment.units_note.isHidden()
    from napari_lesionseg.core.geometry import geometry_from_metadata

    for layer in (image, expert):  # the expert mask was derived from the image: it moves with it
        np.testing.assert_allclose(layer.scale, (0.1, 0.1))
    geom = geometry_from_metadata(image.metadata)
    assert geom.spacing == (0.1, 0.1) and geom.spacing_known and geom.extra["spacing_source"] == "given"
    rows = measure.measure_now()
    header = [measure.table.horizontalHeaderItem(i).text() for i in range(measure.table.columnCount())]
    assert "area_mm2" in header and measure.units_note.isHidden()
    assert rows[0].size == pytest.approx(pixels * 0.01)
    assert "³" not in segment.min_size.suffix()  # an area on a 2D image

    volume = viewer.add_image(np.zeros((4, 32, 32), np.float32), scale=(2.0, 0.5, 0.5), name="volume")
    segment.image_combo.setCurrentText(volume.name)
    assert segment.min_size.suffix() == " mm³"  # a volume with its voxel size: clean-up by volume


def test_ruler_sets_the_pixel_size(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = viewer.open_sample("napari-lesionseg", "busi_ultrasound")
    segment = _open(viewer, "Segment lesions")
    ruler = segment.add_ruler()
    assert ruler.name == "ruler" and ruler.mode == "add"
    ruler.add([[40.0, 30.0], [40.0, 230.0]])  # two depth-scale ticks 200 pixels apart...
    segment.ruler_distance.setValue(20.0)  # ...that are 20 mm apart
    segment.ruler_set_btn.click()
    np.testing.assert_allclose(image.scale, (0.1, 0.1))
    assert segment.units_note.isHidden() and "mm²" in segment.min_size.suffix()
    np.testing.assert_allclose(ruler.scale, (0.1, 0.1))  # the ruler stays on the same pixels
    assert "0.1 mm" in segment.status.text()
    ruler.add([[50.0, 50.0]])  # a third point: a clear message, nothing changed
    segment.ruler_distance.setValue(5.0)
    segment.ruler_set_btn.click()
    np.testing.assert_allclose(image.scale, (0.1, 0.1))


# -- Fine-tune: 'Start from' stays the user's choice ------------------------------------------------------------

def test_start_from_stays_after_a_new_model_is_published(make_napari_viewer, tmp_path_factory, _user_model_dir):
    """A run's new model is listed (and picked in the Segment dock), but 'Start from' keeps what the user chose, so
    a second run does not silently chain onto the first run's model."""
    from napari_lesionseg.core.models import default_registry
    from tiny_models import tiny_model

    viewer = make_napari_viewer()
    segment = _open(viewer, "Segment lesions")
    tune = _open(viewer, "Fine-tune a model")
    tune.base_combo.setCurrentText("ultrasound-lesion")
    tiny_model("gray2d", tmp_path_factory.mktemp("tiny"), install_into=_user_model_dir)  # what a run publishes
    default_registry().notify("tiny-gray")  # as TrainingProcess.poll does when a run has published
    assert "tiny-gray" in [tune.base_combo.itemText(i) for i in range(tune.base_combo.count())]
    assert tune.base_combo.currentText() == "ultrasound-lesion"
    assert segment.model_combo.currentText() == "tiny-gray"


def _segment_a_long_volume(viewer, qtbot, mri_model, seed: int):
    """Start Segment on a 256-slice volume, one slice per batch (a long job), and wait until it is under way."""
    from tiny_models import blob_volume

    rng = np.random.default_rng(seed)
    vol = np.concatenate([blob_volume(rng, (16, 64, 64))[0] for _ in range(16)])
    viewer.add_image(vol, name="long volume")
    dock = _open(viewer, "Segment lesions")
    dock.model_combo.setCurrentText(mri_model)
    dock.scope_combo.setCurrentText("Whole volume")
    dock._predictor(mri_model, dock.device_combo.currentText()).batch_size = 1
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock.progress.value() >= 2, timeout=60_000)
    return dock, vol
