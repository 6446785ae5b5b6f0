"""A combo box of the viewer's layers of some kinds, shared by the docks."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

NONE = "(none)"


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of some types, kept in sync with the layer list."""

    def __init__(self, viewer, kinds: tuple, optional: bool = False, accept=None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.kinds = kinds
        self.optional = optional
        self.accept = accept
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)
        self.refresh()

    def refresh(self, *_):
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        if self.optional:
            self.addItem(NONE)
        for layer in self.viewer.layers:
            if isinstance(layer, self.kinds) and (self.accept is None or self.accept(layer)):
                self.addItem(layer.name)
        idx = self.findText(current)
        if idx >= 0:
            self.setCurrentIndex(idx)
        self.blockSignals(False)
        if idx < 0:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        name = self.currentText()
        if not name or name == NONE or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def select(self, layer) -> None:
        i = self.findText(layer.name)
        if i >= 0:
            self.setCurrentIndex(i)
