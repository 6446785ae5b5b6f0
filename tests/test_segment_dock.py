"""The path a user takes: open a scan → Segment dock → model → Segment → threshold → correct → Export."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Labels

from napari_lesionseg.core.metrics import dice
from napari_lesionseg.core.models import default_registry
from tiny_models import blob_volume, tiny_model

from conftest import REPO, SHARED_DATA

BUSI_VALIDATION_IMAGE = "malignant_051"  # in the validation groups of the shipped model's split (not trained on)


def _busi_image():
    """A real BUSI image and its mask: a validation image from ../shared/data, else the bundled sample."""
    import imageio.v3 as iio

    p = SHARED_DATA / "ultrasound" / "busi" / "images" / f"{BUSI_VALIDATION_IMAGE}.png"
    if p.exists():
        return p, iio.imread(SHARED_DATA / "ultrasound" / "busi" / "masks" / p.name) > 0
    p = REPO / "sample_data" / "busi_malignant_006.png"
    return p, iio.imread(REPO / "sample_data" / "busi_malignant_006_mask.png") > 0


def _open_dock(viewer):
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    return dock


def _wait(qtbot, dock, timeout=180_000):
    qtbot.waitUntil(lambda: dock._worker is None, timeout=timeout)


def test_dock_opens_from_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _open_dock(viewer)
    assert dock.segment_btn.text() == "Segment"
    assert "ultrasound-lesion" in [dock.model_combo.itemText(i) for i in range(dock.model_combo.count())]


def test_segment_threshold_correct_export_on_real_busi(make_napari_viewer, qtbot, tmp_path):
    path, truth = _busi_image()
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-lesionseg")
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText("ultrasound-lesion")
    dock.segment_btn.click()
    _wait(qtbot, dock)

    labels = [l for l in viewer.layers if isinstance(l, Labels)]
    probs = [l for l in viewer.layers if l.metadata.get("lesionseg_probs")]
    assert len(labels) == 1 and len(probs) == 1
    mask = labels[0].data > 0
    assert mask.shape == truth.shape
    assert mask.any(), "Segment gave an empty mask on a malignant lesion"
    assert dice(mask, truth) > 0.5, f"mask does not overlap the lesion (Dice {dice(mask, truth):.2f})"

    # Moving the threshold changes the mask without running the model again.
    predictor = next(iter(dock._predictors.values()))
    calls = predictor.calls
    dock.set_threshold(0.05)
    low = labels[0].data.copy()
    dock.set_threshold(0.95)
    high = labels[0].data.copy()
    assert low.sum() > high.sum()
    assert predictor.calls == calls

    # Paint a correction with napari's own label tool, then export next to a chosen name.
    layer = labels[0]
    layer.paint((5, 5), 1, refresh=True)
    assert dock.result.edited
    dock.set_threshold(0.5)  # does not overwrite the correction
    assert layer.data[5, 5] == 1
    # Re-applying the threshold discards the correction, undoably (the Labels layer's own history).
    corrected = layer.data.copy()
    dock.reapply_btn.click()
    assert layer.data[5, 5] == 0
    layer.undo()
    np.testing.assert_array_equal(layer.data, corrected)
    # Shortcuts' actions: next lesion centres the view on a lesion; accept exports beside the scan.
    dock.next_lesion()
    assert "Lesion 1 of" in dock.status.text()
    out = dock.export_to(tmp_path / "corrected.png", layer)
    import imageio.v3 as iio

    back = iio.imread(out)
    np.testing.assert_array_equal(back > 0, layer.data > 0)


def test_export_nifti_keeps_affine(make_napari_viewer, qtbot, tmp_path):
    """A mask exported from a volume carries the scan's affine."""
    import nibabel as nib

    rng = np.random.default_rng(1)
    vol, _ = blob_volume(rng, (10, 48, 48))
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.0, 30], [0, 0, 0, 1]])
    src = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol.transpose(), affine), src)
    viewer = make_napari_viewer()
    viewer.open(str(src), plugin="napari-lesionseg")
    dock = _open_dock(viewer)
    layer = viewer.add_labels(np.zeros(vol.shape, np.uint8),
                              **__import__("napari_lesionseg.napari.layer_utils", fromlist=["x"])
                              .derived_layer_kwargs(viewer.layers["vol"], "vol mask"))
    layer.data[4, 10:20, 10:20] = 1
    out = dock.export_to(tmp_path / "mask.nii.gz", layer)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(), layer.data)


@pytest.fixture
def mri_model(tmp_path_factory, _user_model_dir):
    card = tiny_model("slices", tmp_path_factory.getbasetemp() / "tiny-models", install_into=_user_model_dir)
    return default_registry().get(card).name


def test_segment_current_slice_then_whole_volume(make_napari_viewer, qtbot, mri_model):
    rng = np.random.default_rng(5)
    vol, truth = blob_volume(rng, (16, 64, 64))
    viewer = make_napari_viewer()
    viewer.add_image(vol, name="volume", scale=(3.0, 1.0, 1.0))
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText(mri_model)
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    viewer.dims.set_point(0, z * 3.0)
    dock.scope_combo.setCurrentText("Current slice")
    dock.segment_btn.click()
    _wait(qtbot, dock)
    labels = dock.result.labels_layer
    assert dock.result.done_slices == {z}
    done = labels.data[z] > 0
    assert dice(done, truth[z]) > 0.6
    others = np.delete(labels.data, z, axis=0)
    assert not others.any(), "only the current slice is segmented"

    dock.scope_combo.setCurrentText("Whole volume")
    dock.segment_btn.click()
    _wait(qtbot, dock)
    assert dock.result.labels_layer is labels, "the same layers are filled, not new ones"
    assert len(dock.result.done_slices) == vol.shape[0]
    assert dice(labels.data > 0, truth) > 0.6
    np.testing.assert_allclose(labels.scale, (3.0, 1.0, 1.0))
    viewer.add_points([[z * 3.0, 10, 10]], name="a click")  # more layers: the chosen scope stays
    assert dock.scope_combo.currentText() == "Whole volume"
    viewer.add_image(vol[0], name="a 2D image")
    dock.image_combo.setCurrentText("a 2D image")  # another image: its own default scope
    assert dock.scope_combo.currentText() == "Whole image / slide"


def test_cancel_mid_volume_leaves_viewer_usable(make_napari_viewer, qtbot, mri_model):
    rng = np.random.default_rng(6)
    vol = np.concatenate([blob_volume(rng, (16, 64, 64))[0] for _ in range(8)])  # 128 slices
    viewer = make_napari_viewer()
    viewer.add_image(vol, name="long volume")
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText(mri_model)
    dock.scope_combo.setCurrentText("Whole volume")
    predictor = dock._predictor(mri_model, dock.device_combo.currentText())
    predictor.batch_size = 2
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock.progress.value() >= 2, timeout=60_000)
    dock.cancel_btn.click()
    _wait(qtbot, dock)
    assert dock.result is None
    assert not [l for l in viewer.layers if isinstance(l, Labels)], "a cancelled run must not add a mask layer"
    assert "Cancelled" in dock.status.text()
    # still usable: add a layer, step through slices, segment again
    viewer.dims.set_point(0, 3)
    viewer.add_points([[3, 10, 10]])
    assert dock.segment_btn.isEnabled()


def test_corrupt_image_gives_clear_message(make_napari_viewer, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really an image" * 10)
    viewer = make_napari_viewer()
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    try:
        viewer.open(str(bad), plugin="napari-lesionseg")
    except Exception as e:  # napari may re-raise "no layers" as a ValueError; never our traceback
        assert "lesionseg" not in type(e).__module__
    assert len(viewer.layers) == 0
    assert any("scan.png" in m for m in seen), seen


def test_model_that_does_not_fit_the_image(make_napari_viewer, qtbot, mri_model):
    """A 2.5D MRI model on a 2D ultrasound image: a clear message, no layer, no crash."""
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), name="2d")
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText(mri_model)
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    dock.segment_btn.click()
    assert dock._worker is None
    assert any("neighbouring slices" in m for m in seen), seen
    assert len(viewer.layers) == 1


@pytest.fixture
def histology_model(tmp_path_factory, _user_model_dir):
    card = tiny_model("rgb2d", tmp_path_factory.getbasetemp() / "tiny-models", install_into=_user_model_dir)
    return default_registry().get(card).name


def test_whole_slide_is_segmented_lazily(make_napari_viewer, qtbot, tmp_path, histology_model, monkeypatch):
    """A pyramidal slide opens as a multiscale layer; Segment tiles it, skips the glass, and keeps the result on
    disk (zarr) rather than in memory; the threshold slider still changes the mask."""
    from napari_lesionseg.core.inference import tiles
    from napari_lesionseg.core.io import write_pyramidal_tiff
    from tiny_models import blob_image

    rng = np.random.default_rng(3)
    H = W = 2048
    slide = np.full((H, W, 3), 245, np.uint8)  # glass
    truth = np.zeros((H, W), bool)
    for y in range(0, 768, 96):  # tissue only in the top-left corner
        for x in range(0, 768, 96):
            img, m = blob_image(rng, (96, 96), rgb=True)
            slide[y:y + 96, x:x + 96] = img
            truth[y:y + 96, x:x + 96] = m > 0
    path = tmp_path / "slide.tif"
    write_pyramidal_tiff(path, slide.shape, np.uint8,
                         lambda f, y, x, h, w: slide[::f, ::f][y:y + h, x:x + w], min_size=512)
    monkeypatch.setattr(tiles, "MAX_IN_MEMORY_PIXELS", 1_000_000)  # force the on-disk path for this small slide
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-lesionseg")
    assert viewer.layers[0].multiscale
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText(histology_model)
    dock.scope_combo.setCurrentText("Whole image / slide")
    predictor = dock._predictor(histology_model, dock.device_combo.currentText())
    dock.segment_btn.click()
    _wait(qtbot, dock)
    seg = dock.result
    assert seg is not None and not isinstance(seg.probs, np.ndarray), "slide-sized probabilities stay lazy"
    n_tiles_all = len(tiles.tile_starts(H, 64, 48)) ** 2
    assert predictor.calls * predictor.batch_size < n_tiles_all / 3, "glass tiles were not skipped"
    mask = np.asarray(seg.labels_layer.data)
    assert dice(mask > 0, truth) > 0.5
    assert not mask[1200:, 1200:].any(), "nothing found on glass"
    before = int(mask.sum())
    dock.set_threshold(0.95)
    assert int(np.asarray(seg.labels_layer.data).sum()) < before
    assert len(list(scratch.glob("lesionseg-probs-*"))) == 1, "the shown result keeps its folder (freed with it)"


def test_flips_checkbox_shows_for_a_flipping_model_and_unticked_runs_one_pass(make_napari_viewer, qtbot,
                                                                               histology_model, _user_model_dir):
    """A model whose card averages test-time flips shows the checkbox (ticked, as its figures were measured);
    unticked, Segment runs the one-pass predictor (the same as `lesionseg predict --no-flips`)."""
    from tiny_models import blob_image, with_flips

    flips = default_registry().get(with_flips(_user_model_dir / f"{histology_model}.json", _user_model_dir)).name
    viewer = make_napari_viewer()
    img, _ = blob_image(np.random.default_rng(2), (96, 96), rgb=True)
    viewer.add_image(img, rgb=True, name="he")
    dock = _open_dock(viewer)
    dock.model_combo.setCurrentText(histology_model)
    assert not dock.flips_box.isVisibleTo(dock)
    dock.model_combo.setCurrentText(flips)
    assert dock.flips_box.isVisibleTo(dock) and dock.flips_box.isChecked()
    assert "3×" in dock.flips_box.toolTip()
    dock.flips_box.setChecked(False)
    dock.segment_btn.click()
    _wait(qtbot, dock)
    assert dock.result is not None
    used = [p for (name, _device, _flips), p in dock._predictors.items() if name == flips]
    assert len(used) == 1 and used[0]._flips == []


def test_tile_model_resamples_to_its_training_pixel_size(tmp_path_factory, histology_model):
    """An image at twice the model's pixel size is upsampled for the model and the result comes back at the
    image's own size, lesions in place."""
    from napari_lesionseg.core.inference.engine import Predictor
    from tiny_models import blob_image

    card = default_registry().get(histology_model)
    card.spacing_mm = [0.001, 0.001]
    pred = Predictor(card, device="cpu")
    img, mask = blob_image(np.random.default_rng(9), (192, 192), n_blobs=2, rgb=True)
    half = img[::2, ::2]  # the same tissue at 2 um per pixel
    assert pred.spacing_zoom((0.002, 0.002)) == (2.0, 2.0)
    assert pred.spacing_zoom((1.0, 1.0)) is None, "an unknown (1.0) pixel size is not taken literally"
    probs = pred.predict_image(half, spacing=(0.002, 0.002))
    assert probs.shape == half.shape[:2]
    assert dice(probs >= 0.5, mask[::2, ::2] > 0) > 0.6
