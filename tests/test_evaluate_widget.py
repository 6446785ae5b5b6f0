"""The Segment dock's "Evaluate on this image": the shown Dice is the Dice of the mask against the chosen reference
layer (a real image from another hospital, BrEaST, when it is here), and a lesion-free reference shows a false
lesion."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from napari_lesionseg.core.metrics import dice

from conftest import REPO, SHARED_DATA


def _image_and_truth():
    p = SHARED_DATA / "ultrasound" / "breast_lesions_usg" / "images" / "10013.png"
    if p.exists():
        return p, iio.imread(p.parent.parent / "masks" / p.name) > 0
    p = REPO / "sample_data" / "busi_malignant_006.png"
    return p, iio.imread(REPO / "sample_data" / "busi_malignant_006_mask.png") > 0


def test_evaluate_button_against_reference(make_napari_viewer, qtbot):
    path, truth = _image_and_truth()
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-lesionseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    dock.model_combo.setCurrentText("ultrasound-lesion")
    # the model's figure is the one measured on unseen data, not the split that chose its epochs
    card = dock.registry.get("ultrasound-lesion")
    assert card.headline_metric() in dock.model_info.text() and "unseen" in dock.model_info.text()
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=180_000)
    mask = np.asarray(dock.result.labels_layer.data) > 0

    viewer.add_labels(truth.astype(np.uint8), name="truth")
    dock.reference_combo.setCurrentText("truth")
    dock.evaluate_row.button.click()
    text = dock.evaluate_row.result_label.text()
    expected = dice(mask, truth)
    assert expected > 0.5, "the shipped model should find this lesion"
    assert text.startswith(f"Dice {expected:.3f}") and "found" in text

    viewer.add_labels(np.zeros_like(truth, np.uint8), name="no lesion")
    dock.reference_combo.setCurrentText("no lesion")
    r = dock.evaluate_row.evaluate()
    assert r.false_positive and "false lesion" in dock.evaluate_row.result_label.text()
