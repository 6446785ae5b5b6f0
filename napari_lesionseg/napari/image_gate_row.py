"""The Segment dock's image-gate row: whether the model's image classifier may empty the mask of an image it calls
normal, and what it said about the last segmented image (class probabilities next to the mask).

Self-contained so the dock only asks it `enabled()`, tells it the chosen model (`set_model`) and shows a result
(`show_result`); the gating itself is `core.inference.gate.gate_probabilities`, the function `lesionseg predict`
and `lesionseg evaluate` use.
"""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from ._scroll import WrappedLabel


class ImageGateRow(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.checkbox = QCheckBox("No mask on images the classifier calls normal")
        self.checkbox.setChecked(False)
        self.checkbox.setToolTip("Tick to let the classifier empty the mask of an image it calls normal")
        self.label = WrappedLabel("")
        self.label.setWordWrap(True)
        lay.addWidget(self.checkbox)
        lay.addWidget(self.label)
        self.setVisible(False)

    def enabled(self) -> bool:
        return self.checkbox.isChecked()

    def set_model(self, card) -> None:
        """Shown only for models whose card names a gate classifier."""
        gate = getattr(card, "gate", None) if card is not None else None
        self.setVisible(bool(gate))
        from ..core.inference.gate import gate_on

        self.checkbox.setChecked(gate_on(card))  # the card's default; the user may change it
        if gate:
            self.checkbox.setToolTip(f"{gate.get('classifier')}: P({gate.get('suppress_class', 'normal')}) > "
                                     f"{float(gate.get('threshold', 0.5)):.2f} empties the mask. Untick to see the "
                                     "raw mask of every image. Its class probabilities are shown either way.")
        self.label.setText("")

    def show_result(self, result) -> None:
        """`result`: a core.inference.gate.GateResult, or None (a volume/slide, or a model without a gate)."""
        if result is None:
            self.label.setText("")
            return
        self.label.setText(f"Image classes ({result.classifier}): {result.summary()}")
