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
