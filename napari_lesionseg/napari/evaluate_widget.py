"""The Segment dock's "Evaluate on this image" row: the current mask against a labelled reference layer.

The figures come from `core.evaluate.case_metrics`, the function `lesionseg evaluate` uses per case, so the dock and
the command line never disagree on what a Dice, a miss or a false positive is.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from ..core.errors import LesionSegError
from ..core.evaluate import MISS_DICE, CaseResult, case_metrics


def _unwrap(obj):
    return getattr(obj, "__wrapped__", obj)


class EvaluateRow(QWidget):
    """A button and a result line; it reads the dock's segmentation and its 'Threshold from' reference layer."""

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.button = QPushButton("Evaluate on this image")
        self.button.setToolTip("Compare the current mask with the reference Labels layer chosen above "
                               "(Dice, missed lesion, false lesion), as `lesionseg evaluate` does per case")
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        lay.addWidget(self.button)
        lay.addWidget(self.result_label, 1)
        self.button.clicked.connect(self.evaluate)

    def evaluate(self) -> CaseResult | None:
        dock = self.dock
        seg = dock.result
        ref_name = dock.reference_combo.currentText()
        if seg is None or not ref_name or ref_name not in dock.viewer.layers:
            show_warning("Segment an image and choose its labelled reference mask ('Threshold from') first.")
            return None
        ref_layer = _unwrap(dock.viewer.layers[ref_name])
        if ref_layer is _unwrap(seg.labels_layer):
            show_warning("The reference is the mask being evaluated: choose a ground-truth Labels layer.")
            return None
        predicted, truth = np.asarray(seg.labels_layer.data), np.asarray(ref_layer.data)
        if predicted.ndim == 3 and seg.done_slices and predicted.shape == truth.shape:
            idx = [slice(None)] * 3  # only the slices that were segmented
            idx[seg.done_slices_axis] = sorted(seg.done_slices)
            predicted, truth = predicted[tuple(idx)], truth[tuple(idx)]
        try:
            r = case_metrics(predicted, truth, name=seg.image_layer.name)
        except LesionSegError as e:
            show_error(f"{e} (reference {ref_name})")
            return None
        self.result_label.setText(describe_case(r))
        return r


def describe_case(r: CaseResult) -> str:
    if r.has_lesion:
        verdict = f"missed (Dice < {MISS_DICE:g})" if r.missed else "found"
        return f"Dice {r.dice:.3f}, IoU {r.iou:.3f}: lesion {verdict}"
    if r.false_positive:
        return f"No lesion in the reference, but the mask marks {r.predicted_area_px} pixel(s): a false lesion"
    return "No lesion in the reference and none in the mask"
