"""Autosave of the viewer's Labels layers every minute and when the viewer closes; recovery after a crash.

`ensure_autosave(viewer)` installs one `Autosaver` per viewer (idempotent: every dock of the plugin calls it).
A layer is written only when its content changed since it was added or last saved (a CRC of its array is
compared: this also catches edits that emit no event), so an idle session writes nothing. Files and format:
`napari_lesionseg.core.autosave`. `recover_autosaved_masks(viewer)` (the "Recover autosaved masks" menu
action) offers the saved masks and adds the chosen ones back as Labels layers with their geometry.
"""

from __future__ import annotations

import weakref
import zlib

import numpy as np
from napari.viewer import Viewer
from qtpy.QtCore import QEvent, QObject, QTimer

from ..core import autosave as core_autosave
from ..core.geometry import METADATA_KEY, geometry_from_metadata
from .layer_utils import layer_source_path

DEFAULT_INTERVAL_MS = 60_000
_SAVERS: dict[int, "Autosaver"] = {}  # id(viewer) -> its Autosaver


def _unwrap(viewer):
    """The viewer itself (plugins receive it wrapped in napari's PublicOnlyProxy)."""
    while hasattr(viewer, "__wrapped__"):
        viewer = viewer.__wrapped__
    return viewer


def _main_window(viewer):
    """The viewer's Qt main window (to save when it closes), or None (headless viewer, future napari)."""
    try:
        return _unwrap(viewer).window._qt_window
    except Exception:
        return None


def _fingerprint(data) -> tuple | None:
    """A cheap content fingerprint of an in-memory array (None for lazy/multiscale data: not autosaved)."""
    if not isinstance(data, np.ndarray):
        return None
    a = np.ascontiguousarray(data)
    return (a.shape, str(a.dtype), zlib.crc32(memoryview(a).cast("B")))


class Autosaver(QObject):
    """Saves changed Labels layers of one viewer on a timer and on close."""

    def __init__(self, viewer, interval_ms: int = DEFAULT_INTERVAL_MS, directory=None):
        super().__init__()
        viewer = _unwrap(viewer)
        self._viewer_ref = weakref.ref(viewer)
        self.directory = directory
        self._baseline: dict[int, tuple | None] = {}  # id(layer) -> fingerprint at add / last save
        self.last_saved: list = []
        self.timer = QTimer(self)
        self.timer.setInterval(int(interval_ms))
        self.timer.timeout.connect(self.tick)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in list(viewer.layers):
            self._watch(layer)
        self._window_ref = None
        window = _main_window(viewer)
        if window is not None:  # else a headless viewer: the timer still runs
            window.installEventFilter(self)
            self._window_ref = weakref.ref(window)
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._on_quit)
        self.timer.start()

    def _on_quit(self) -> None:
        if self.timer.isActive():
            self.stop(save=True)

    @property
    def viewer(self):
        return self._viewer_ref()

    # -------------------------------------------------------------------------------------- tracking

    def _is_labels(self, layer) -> bool:
        from napari.layers import Labels

        return isinstance(layer, Labels)

    def _watch(self, layer) -> None:
        if self._is_labels(layer):
            self._baseline[id(layer)] = _fingerprint(layer.data)

    def _on_inserted(self, event) -> None:
        self._watch(event.value)

    def _on_removed(self, event) -> None:
        self._baseline.pop(id(event.value), None)

    def changed_layers(self) -> list:
        viewer = self.viewer
        if viewer is None:
            return []
        out = []
        for layer in list(viewer.layers):
            if not self._is_labels(layer):
                continue
            fp = _fingerprint(layer.data)
            if fp is None:
                continue
            if id(layer) not in self._baseline:
                self._baseline[id(layer)] = None
            if fp != self._baseline[id(layer)]:
                out.append(layer)
        return out

    # ---------------------------------------------------------------------------------------- saving

    def tick(self) -> list:
        """Save every Labels layer that changed since it was added or last saved; returns the files written."""
        written = []
        for layer in self.changed_layers():
            try:
                geom = geometry_from_metadata(layer.metadata, ndim=layer.data.ndim)
                path = core_autosave.autosave_mask(
                    layer.data, name=layer.name, geometry=geom, source=layer_source_path(layer), directory=self.directory,
                    extra={"scale": [float(s) for s in layer.scale]},
                )
            except Exception as e:  # never let autosave break the session
                try:
                    from napari.utils.notifications import show_warning

                    show_warning(f"Autosave of '{layer.name}' failed: {e}")
                except Exception:
                    pass
                continue
            self._baseline[id(layer)] = _fingerprint(layer.data)
            written.append(path)
        self.last_saved = written
        return written

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        window = self._window_ref() if self._window_ref is not None else None
        if window is not None and obj is window and event.type() == QEvent.Close:
            self.stop(save=True)  # last save, then let the viewer go
        return False

    def stop(self, save: bool = True) -> None:
        """Stop the timer (saving a last time unless `save` is False) and forget the viewer."""
        if save:
            self.tick()
        self.timer.stop()
        window = self._window_ref() if self._window_ref is not None else None
        if window is not None:
            try:
                window.removeEventFilter(self)
            except RuntimeError:
                pass
        self._window_ref = None
        viewer = self.viewer
        if viewer is not None:
            viewer.layers.events.inserted.disconnect(self._on_inserted)
            viewer.layers.events.removed.disconnect(self._on_removed)
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            try:
                app.aboutToQuit.disconnect(self._on_quit)
            except (TypeError, RuntimeError):
                pass


def ensure_autosave(viewer, interval_ms: int = DEFAULT_INTERVAL_MS, directory=None) -> Autosaver:
    """The viewer's Autosaver, created on first call."""
    real = _unwrap(viewer)
    key = id(real)
    saver = _SAVERS.get(key)
    if saver is None or saver.viewer is not real or not saver.timer.isActive():
        try:
            core_autosave.prune_autosaves(directory=directory)
        except OSError:
            pass
        saver = Autosaver(real, interval_ms=interval_ms, directory=directory)
        _SAVERS[key] = saver
        weakref.finalize(real, _SAVERS.pop, key, None)
    return saver


def add_recovered_layer(viewer, entry, directory=None):
    """Add one autosave as a Labels layer (named '<name> (recovered)') with its geometry and scale."""
    mask, geom, record = core_autosave.load_autosave(entry)
    meta = {}
    if geom is not None:
        if record.get("source"):
            geom.extra["source_path"] = record["source"]
        meta = geom.to_metadata()
        meta[METADATA_KEY]["source_path"] = record.get("source")
    meta.setdefault(METADATA_KEY, {})["recovered_from"] = str(getattr(entry, "path", entry))
    scale = record.get("extra", {}).get("scale") or (list(geom.spacing) if geom is not None else None)
    kwargs = {"name": f"{record.get('name', 'mask')} (recovered)", "metadata": meta}
    if scale is not None and len(scale) == mask.ndim:
        kwargs["scale"] = scale
    return viewer.add_labels(mask, **kwargs)


def recover_autosaved_masks(viewer, entries=None, ask: bool = True) -> list:
    """The "Recover autosaved masks" action: choose among the autosaves (newest first) and add them.

    With `ask=False` (tests, scripts) every given entry (default: all) is added without a dialog.
    """
    ensure_autosave(viewer)
    available = core_autosave.list_autosaves() if entries is None else list(entries)
    if not available:
        from napari.utils.notifications import show_info

        show_info("No autosaved masks to recover.")
        return []
    chosen = available
    if ask:
        chosen = _choose_dialog(viewer, available)
    return [add_recovered_layer(viewer, e) for e in chosen]


def _choose_dialog(viewer, entries) -> list:
    from qtpy.QtWidgets import QAbstractItemView, QDialog, QDialogButtonBox, QLabel, QListWidget, QVBoxLayout

    dlg = QDialog(_main_window(viewer))
    dlg.setWindowTitle("Recover autosaved masks")
    lay = QVBoxLayout(dlg)
    lay.addWidget(QLabel(f"Autosaved masks (folder {core_autosave.autosave_dir()}); choose the ones to reopen:"))
    lst = QListWidget()
    lst.setSelectionMode(QAbstractItemView.ExtendedSelection)
    for e in entries:
        lst.addItem(e.describe())
    if entries:
        lst.item(0).setSelected(True)
    lay.addWidget(lst)
    buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
    buttons.accepted.connect(dlg.accept)
    buttons.rejected.connect(dlg.reject)
    lay.addWidget(buttons)
    if dlg.exec_() != QDialog.Accepted:
        return []
    return [entries[lst.row(item)] for item in lst.selectedItems()]


def recover_autosaved_masks_command(viewer: Viewer) -> None:
    """npe2 command behind File → "Recover autosaved masks"."""
    recover_autosaved_masks(viewer, ask=True)
