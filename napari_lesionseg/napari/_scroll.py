"""Docks that fit the window: each dock's content sits in a vertical scroll area.

Stacked in one dock column (Segment, Measure, Fine-tune), the docks' natural heights add up to 1100–1400 px, more
than a 1000 px screen: Qt then grows the window past the screen and the lowest buttons cannot be reached. Inside a
scroll area a dock asks only for a small minimum height and scrolls the rest.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget


class VerticalScrollArea(QScrollArea):
    """Scrolls up and down only: as wide as its content (plus the scroll bar), as short as the window needs."""

    def _width_for(self, content_width: int) -> int:
        return content_width + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is None:
            return hint
        return QSize(max(hint.width(), self._width_for(body.minimumSizeHint().width())), hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        body = self.widget()
        if body is None:
            return hint
        return QSize(max(hint.width(), self._width_for(body.sizeHint().width())), hint.height())


def scrolling_layout(dock: QWidget) -> QVBoxLayout:
    """Give `dock` a scroll area filling it and return the layout of the scrolled content (fill that one)."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = VerticalScrollArea(dock)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    body = QWidget(area)
    area.setWidget(body)
    outer.addWidget(area)
    dock.scroll_area = area
    return QVBoxLayout(body)


class WrappedLabel(QLabel):
    """A word-wrapped message that always gets all its lines.

    Inside a scroll area Qt lays a word-wrapped label out at the height of its first text, so a longer message
    lost its second line under the next widget; this label asks for the height its text needs at its width."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(text, parent)
        self.setWordWrap(True)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        height = self.heightForWidth(self.width()) if self.text() else 0
        if height >= 0 and height != self.minimumHeight():
            self.setMinimumHeight(height)
            parent = self.parentWidget()
            if parent is not None and parent.layout() is not None:
                parent.layout().activate()
