"""Fine-tuning from the dock on corrected masks: a child process, a live plot, Cancel within one batch, and the
new model listed and selected in every model dropdown while the viewer's event loop keeps running."""

from __future__ import annotations


import numpy as np
import pytest
from napari.layers import Labels
from qtpy.QtCore import QElapsedTimer, QTimer

from napari_lesionseg.core.models import default_registry
from tiny_models import blob_image, tiny_model

from conftest import shared_path

BUSI_IMAGES = ["benign_101", "benign_104", "malignant_006", "malignant_039", "malignant_098", "benign_207",
               "malignant_020", "normal_007"]


def _open(viewer, name):
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", name)
    return dock


def _busi_pairs(viewer):
    import imageio.v3 as iio

    from napari_lesionseg.napari.layer_utils import derived_layer_kwargs

    root = shared_path("ultrasound", "busi")
    for name in BUSI_IMAGES:
        img = root / "images" / f"{name}.png"
        if not img.exists():
            continue
        layer = viewer.open(str(img), plugin="napari-lesionseg")[0]
        mask = (iio.imread(root / "masks" / f"{name}.png") > 0).astype(np.uint8)
        if mask.ndim == 3:
            mask = mask[..., 0]
        viewer.add_labels(mask, **derived_layer_kwargs(layer, f"{layer.name} mask"))


class StallMeter:
    """A 20 ms QTimer; the longest gap between its ticks is how long the event loop was blocked."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.worst = 0
        self.ticks = 0

    def start(self):
        self.clock.start()
        self.timer.start()

    def _tick(self):
        self.worst = max(self.worst, self.clock.restart())
        self.ticks += 1

    def stop(self):
        self.timer.stop()


@pytest.mark.slow
def test_finetune_from_dock_on_busi_with_cancel(make_napari_viewer, qtbot, tmp_path_factory, _user_model_dir):
    shared_path("ultrasound", "busi", "images")
    tiny_model("gray2d", tmp_path_factory.mktemp("tiny"), install_into=_user_model_dir)
    viewer = make_napari_viewer()
    _busi_pairs(viewer)
    segment = _open(viewer, "Segment lesions")
    dock = _open(viewer, "Fine-tune a model")

    assert dock.pair_list.count() == len([l for l in viewer.layers if isinstance(l, Labels)]) >= 6
    first = dock.pair_list.item(0).text()
    assert first.endswith(BUSI_IMAGES[0]) and first.startswith(f"{BUSI_IMAGES[0]} mask")

    dock.base_combo.setCurrentText("tiny-gray")
    assert not dock.modality_combo.isEnabled() and dock.modality_combo.currentText() == "ultrasound"
    dock.name_edit.setText("busi-finetuned")
    dock.epochs.setValue(40)
    dock.batch_size.setValue(2)

    meter = StallMeter()
    meter.start()
    dock.start_btn.click()
    assert dock.process is not None and not dock.start_btn.isEnabled()
    # Let it train into the second epoch (so one validation Dice is on the plot), then Cancel.
    qtbot.waitUntil(lambda: bool(dock.plot.dices) and len(dock.plot.losses) > dock._batches_per_epoch, timeout=120_000)
    dock.cancel_btn.click()
    with qtbot.waitSignal(dock.finished, timeout=120_000) as blocker:
        pass
    meter.stop()

    done = blocker.args[0]
    print(f"worst event-loop gap {meter.worst} ms over {meter.ticks} ticks; stopped at {dock.stopped_at}; "
          f"{dock.batches_after_cancel} batch(es) after Cancel")
    assert done and done["cancelled"], dock.status.text()
    assert dock.stopped_at is not None and dock.stopped_at["epoch"] >= 2
    assert dock.batches_after_cancel <= 1, f"{dock.batches_after_cancel} batches ran after Cancel"
    assert meter.ticks > 50
    assert meter.worst < 100, f"event loop stalled {meter.worst} ms while training"

    # Published, listed and selected everywhere; the parent stays available.
    name = done["name"]
    assert name == "busi-finetuned"
    card = default_registry().get(name)
    assert card.parent == "tiny-gray" and card.path.parent == _user_model_dir
    assert "val_dice" in card.metrics
    items = [segment.model_combo.itemText(i) for i in range(segment.model_combo.count())]
    assert name in items and "tiny-gray" in items
    assert segment.model_combo.currentText() == name
    # Issue 14: 'Start from' keeps the user's choice (it used to switch to the new model, chaining a second run).
    assert dock.base_combo.currentText() == "tiny-gray"
    assert "published busi-finetuned" in dock.status.text()


def test_pairs_follow_derived_from_and_bad_input_is_refused(make_napari_viewer, qtbot, _user_model_dir):
    rng = np.random.default_rng(1)
    viewer = make_napari_viewer()
    a, ma = blob_image(rng, shape=(48, 48), n_blobs=1)
    b, _ = blob_image(rng, shape=(48, 48), n_blobs=1)
    viewer.add_image(a, name="scan A")
    viewer.add_image(b, name="scan B")
    viewer.add_labels(np.zeros((48, 48), np.uint8), name="empty mask",
                      metadata={"lesionseg": {"derived_from": "scan B"}})
    viewer.add_labels(np.zeros((30, 30), np.uint8), name="unrelated")
    dock = _open(viewer, "Fine-tune a model")
    pairs = [dock.pair_list.item(i).text() for i in range(dock.pair_list.count())]
    assert pairs == ["empty mask ← scan B"]  # the image it was derived from, not the first of that shape

    dock.base_combo.setCurrentText("(train from scratch)")
    dock.modality_combo.setCurrentText("histology")
    assert dock.aug_checks["stain"].isChecked() and not dock.clahe.isChecked()
    dock.modality_combo.setCurrentText("ultrasound")
    assert dock.clahe.isChecked()
    cfg = dock.build_config()
    assert cfg.preprocessing == ["clahe"] and cfg.base is None and cfg.loss == "bce_dice"

    dock.start_btn.click()  # only an empty mask: refused with a message, nothing started
    assert dock.process is None and dock.start_btn.isEnabled()
