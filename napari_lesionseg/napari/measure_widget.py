"""Measure dock: a table of the lesions of a Labels layer; click a row to jump to that lesion; export CSV.

The numbers come from `napari_lesionseg.core.measure` (RECIST long/short axis on the slice where each lesion is
largest, area or volume from the layer's Geometry spacing, or its `scale` when it has none): `measure_lesions`,
the function `lesionseg measure` calls. "Draw diameters"
adds the two axes of every lesion as a Shapes layer, so a clinician can check what was measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..core.errors import LesionSegError
from ..core.geometry import geometry_from_metadata
from ..core.measure import default_table_path, measure_lesions, measurements_to_rows, write_measurements_csv
from ._jobs import written_or_reported
from ._worker import DockJobs
from .layer_combo import NONE, LayerCombo
from .layer_utils import layer_source_path, layer_spacing, refuse_overwriting_open_inputs
from ._scroll import WrappedLabel, scrolling_layout

class MeasureWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from napari.layers import Image, Labels

        self.viewer = napari_viewer
        self.measurements: list = []
        self._measured_layer = None
        self._spacing_known = True
        try:
            from .autosave import ensure_autosave

            ensure_autosave(napari_viewer)
        except Exception:
            pass

        self.mask_combo = LayerCombo(napari_viewer, (Labels,))
        self.image_combo = LayerCombo(napari_viewer, (Image,), optional=True)
        self.pre_combo = LayerCombo(napari_viewer, (Image,), optional=True, accept=lambda la: not la.rgb)
        self.mask_combo.currentIndexChanged.connect(self._auto_pick_images)

        form = QFormLayout()
        form.addRow("Mask (Labels):", self.mask_combo)
        form.addRow("Intensity image:", self.image_combo)
        form.addRow("Pre-contrast (DCE):", self.pre_combo)

        self.measure_btn = QPushButton("Measure lesions")
        self.measure_btn.clicked.connect(self.measure_async)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.clicked.connect(lambda: self.export_csv())
        self.export_btn.setEnabled(False)
        self.draw_check = QCheckBox("Draw diameters")
        self.draw_check.setToolTip("Add the long and short axis of each lesion as a Shapes layer")
        self.seg_btn = QPushButton("DICOM SEG + report…")
        self.seg_btn.setToolTip("Save the mask as a DICOM SEG on its DICOM series, with the measurements as a DICOM "
                                "structured report beside it (for a PACS)")
        self.seg_btn.clicked.connect(lambda: self.export_dicom())
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_btn)
        buttons.addWidget(self.export_btn)
        buttons.addWidget(self.seg_btn)

        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.cellClicked.connect(lambda row, _col: self.jump_to(row))
        self.status = WrappedLabel("Choose a mask and press Measure.")
        self.status.setWordWrap(True)
        self.units_note = QLabel("Pixel size unknown — sizes in pixels (px, px²). State the pixel size in the "
                                 "Segment dock (typed in, or from two ruler points) to measure in mm.")
        self.units_note.setWordWrap(True)
        self.units_note.setStyleSheet("color: #e0a030")
        self.units_note.setVisible(False)

        layout = scrolling_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.draw_check)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.units_note)
        layout.addWidget(self.table)

        # follow the selected Labels layer in the layer list
        napari_viewer.layers.selection.events.active.connect(self._on_active)
        self._on_active()
        self._auto_pick_images()
        self.jobs = DockJobs(self, start_buttons=(self.measure_btn,), status=self.status,
                             failure_prefix="Measuring failed")

    @property
    def _worker(self):
        return self.jobs.worker

    # ------------------------------------------------------------------------------------------ choices

    def _on_active(self, *_):
        from napari.layers import Labels

        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            self.mask_combo.select(active)

    def _auto_pick_images(self, *_):
        """Pick an image of the mask's shape (preferring a post-contrast one) and a 'pre' image if any."""
        mask = self.mask_combo.layer()
        if mask is None:
            return
        same = [la for la in self.viewer.layers if la.__class__.__name__ == "Image" and not la.multiscale
                and tuple(la.data.shape[: mask.data.ndim]) == tuple(mask.data.shape)
                and (la.rgb or la.data.ndim == mask.data.ndim)]
        if self.image_combo.currentText() == NONE and same:
            post = [la for la in same if "post" in la.name.lower() and "pre" not in la.name.lower()]
            self.image_combo.select((post or [la for la in same if "pre" not in la.name.lower()] or same)[0])
        if self.pre_combo.currentText() == NONE:
            pre = [la for la in same if not la.rgb and "pre" in la.name.lower().replace("post1 - pre", "")]
            if pre and len(same) > 1:
                self.pre_combo.select(pre[0])

    # ---------------------------------------------------------------------------------------- measuring

    def _inputs(self):
        """(layer, kwargs for measure_lesions, spacing known?) from the dock's choices; raises LesionSegError."""
        layer = self.mask_combo.layer()
        if layer is None:
            raise LesionSegError("No Labels layer to measure.")
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            raise LesionSegError(f"'{layer.name}' is {data.ndim}D; measurements need a 2D or 3D mask.")

        def _image(combo):
            la = combo.layer()
            if la is None or la.multiscale:
                return None
            arr = np.asarray(la.data)
            if arr.shape[: data.ndim] != data.shape:
                raise LesionSegError(f"'{la.name}' {arr.shape} does not have the mask's shape {data.shape}.")
            return arr

        image = _image(self.image_combo)
        pre = _image(self.pre_combo)
        if pre is not None and image is None:
            raise LesionSegError("Choose the post-contrast image as intensity image to measure enhancement.")
        spacing, known = layer_spacing(layer, layer.data.ndim)
        geom = geometry_from_metadata(layer.metadata, ndim=data.ndim)
        # a copy of the mask: the user may keep painting while a worker measures
        kwargs = dict(mask=data.copy(), spacing=spacing, image=image, pre=pre, geometry=geom, spacing_known=known)
        return layer, kwargs, known

    def _show_error(self, e: Exception) -> None:
        from napari.utils.notifications import show_error

        show_error(str(e))
        self.status.setText(str(e))

    def measure_now(self) -> list:
        """Measure the chosen mask now (blocking); fills the table. Returns the measurements."""
        try:
            layer, kwargs, known = self._inputs()
            results = measure_lesions(**kwargs)
        except LesionSegError as e:
            self._show_error(e)
            return []
        return self._apply(layer, results, known)

    def measure_async(self):
        """What the Measure button does: the same in a worker thread (a full volume takes about a second)."""
        try:
            layer, kwargs, known = self._inputs()
        except LesionSegError as e:
            self._show_error(e)
            return None
        self.status.setText(f"Measuring '{layer.name}'…")
        return self.jobs.start(lambda: measure_lesions(**kwargs), desc=f"Measure {layer.name}",
                               done=lambda res: self._apply(layer, res, known))

    def _apply(self, layer, results, known) -> list:
        self.measurements = results
        self._spacing_known = known
        self._measured_layer = layer
        self._fill_table()
        n = len(self.measurements)
        self.units_note.setVisible(not known)
        note = "" if known else " Pixel size unknown: sizes are in pixels, not mm."
        self.status.setText(f"{n} lesion(s) in '{layer.name}'. Click a row to go to the lesion.{note}")
        self.export_btn.setEnabled(n > 0)
        if self.draw_check.isChecked():
            self.draw_diameters()
        return self.measurements

    def _fill_table(self) -> None:
        cols, rows = measurements_to_rows(self.measurements)  # mm or px columns, as core measured them
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(cols)
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                item = QTableWidgetItem("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()

    # ------------------------------------------------------------------------------------------ jumping

    def jump_to(self, row: int) -> None:
        """Show lesion `row` of the table: its largest slice (3D) and the camera centred on its centroid."""
        if not (0 <= row < len(self.measurements)) or self._measured_layer is None:
            return
        m = self.measurements[row]
        layer = self._measured_layer
        point = np.array(m.centroid, float)
        if m.slice_index is not None:
            point[0] = m.slice_index
        world = np.asarray(layer.data_to_world(point), float)
        offset = self.viewer.dims.ndim - len(world)
        for k, value in enumerate(world):
            axis = offset + k
            if axis not in self.viewer.dims.displayed:
                self.viewer.dims.set_point(axis, float(value))
        displayed = list(self.viewer.dims.displayed)
        center = [float(world[a - offset]) for a in displayed if a - offset >= 0]
        if len(center) == len(displayed):
            self.viewer.camera.center = tuple(center)
        if hasattr(layer, "selected_label") and m.label > 0 and len(np.unique(layer.data)) > 2:
            layer.selected_label = int(m.label)
        self.table.selectRow(row)

    # ------------------------------------------------------------------------------------------ drawing

    def draw_diameters(self):
        """A Shapes layer with the long (red) and short (yellow) axis of each lesion."""
        layer = self._measured_layer
        if layer is None or not self.measurements:
            return None
        lines, colors = [], []
        for m in self.measurements:
            for ends, color in ((m.long_axis_endpoints, "red"), (m.short_axis_endpoints, "yellow")):
                if ends is None:
                    continue
                e = np.asarray(ends, float)
                if m.slice_index is not None:
                    e = np.column_stack([np.full(2, m.slice_index, float), e])
                lines.append(e)
                colors.append(color)
        name = f"{layer.name} diameters"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        if not lines:
            return None
        return self.viewer.add_shapes(lines, shape_type="line", edge_color=colors, edge_width=1.5 * min(layer.scale),
                                      name=name, scale=layer.scale, translate=layer.translate)

    # ------------------------------------------------------------------------------------------ export

    def default_csv_path(self) -> Path | None:
        layer = self._measured_layer
        if layer is None:
            return None
        src = layer_source_path(layer)
        if src is None:
            return None
        src = Path(src)
        if src.is_dir():  # a DICOM series folder: beside it, named after the layer
            return src.parent / f"{layer.name}_measurements.csv"
        from napari.layers import Labels

        if isinstance(layer, Labels) and layer.source is not None and layer.source.path:
            return default_table_path(src)  # the mask file itself was opened: its table beside it
        return src.parent / f"{_safe(layer.name)}_measurements.csv"

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the table (atomically) beside the mask, or to `path`; asks for a file when neither is known."""
        from napari.utils.notifications import show_info

        if not self.measurements:
            self.measure_now()
            if not self.measurements:
                return None
        if path is None:
            path = self.default_csv_path()
        if path is None:
            name, _ = QFileDialog.getSaveFileName(self, "Save measurements", f"{self._measured_layer.name}"
                                                  "_measurements.csv", "CSV (*.csv)")
            if not name:
                return None
            path = name
        def write():
            refuse_overwriting_open_inputs(path, self.viewer)  # the scan, its series, an expert mask
            return write_measurements_csv(self.measurements, path)

        out = written_or_reported(write, path)
        if out is None:
            return None
        show_info(f"Measurements saved to {out}")
        self.status.setText(f"Saved {out}")
        return out


    def export_dicom(self, path: str | Path | None = None) -> tuple[Path, Path] | None:
        """The chosen mask as a DICOM SEG, and its measurements as a DICOM SR beside it (`<name>_report.dcm`)."""
        from napari.utils.notifications import show_error, show_info

        from ..core.geometry import geometry_from_metadata
        from ..core.io.dicom_sr import write_seg_and_report
        from .dicom_export import is_dicom_layer, seg_options_from_metadata

        layer = self.mask_combo.layer()
        if layer is None or not is_dicom_layer(layer):
            show_error("Choose a mask of a DICOM scan: a DICOM SEG refers to the DICOM images it was drawn on.")
            return None
        if path is None:
            name, _ = QFileDialog.getSaveFileName(self, "Save DICOM SEG", f"{_safe(layer.name)}.dcm",
                                                  "DICOM SEG (*.dcm)")
            if not name:
                return None
            path = name
        def write():
            refuse_overwriting_open_inputs(path, self.viewer)  # a slice of the source series, the scan, a mask
            return write_seg_and_report(np.asarray(layer.data), geometry_from_metadata(layer.metadata), path,
                                        source_path=layer_source_path(layer),
                                        **seg_options_from_metadata(layer.metadata))

        out = written_or_reported(write, path)
        if out is None:
            return None
        show_info(f"DICOM SEG saved to {out[0]}, measurement report to {out[1].name}")
        self.status.setText(f"Saved {out[0]} and {out[1].name}")
        return out


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "mask"
