"""Annotations → masks dock: pick a Shapes (lines) or Points layer and the image, press one button, get Labels.

Lines: one lesion per line (a shorter line crossing it at ~90° is its RECIST short axis), mask following the image,
3D through neighbouring slices. Points: disks (radius in mm or px), an exp(-a·d) probability map, or clicks that
grow/shrink a mask (positive clicks in the chosen layer, negative clicks in a second one).

Annotations drawn on a scaled image (mm) live in world coordinates: every vertex goes through
`annotation_layer.data_to_world` then `image_layer.world_to_data`, so scale/translate mismatches between layers do
not matter. Work runs through the docks' worker helper (`_worker.DockJobs`: progress in the dock and napari's
activity dialog, cancellable from either); the result is a Labels layer with the image's scale and
metadata, or — when written into an existing Labels layer — an undoable edit (Ctrl+Z).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import LesionSegError
from ._worker import DockJobs
from .layer_utils import derived_layer_kwargs
from .scan_adapter import scan_from_layer
from .layer_combo import LayerCombo

LINE_METHODS = {"auto (prompt network; in 3D with the random walker)": "auto", "learned (line-prompted U-Net)": "learned",
                "classical (random walker + ellipse prior)": "classical"}
POINT_MODES = ("disks", "probability map exp(-a·d)", "grow/shrink a mask (clicks)",
               "lesion at each click (prompt network)")


def image_array(image_layer) -> tuple[np.ndarray, int]:
    """(data, spatial ndim); multiscale slides are refused (annotate a tile)."""
    if image_layer.multiscale:
        raise LesionSegError(f"'{image_layer.name}' is a multi-resolution slide; annotate a tile instead.")
    data = np.asarray(image_layer.data)
    nd = data.ndim - 1 if image_layer.rgb else data.ndim
    if nd not in (2, 3):
        raise LesionSegError(f"'{image_layer.name}' has {nd} spatial dimensions; pick a 2D image or a 3D volume.")
    return data, nd


def to_image_voxels(coords: np.ndarray, ann_layer, image_layer, nd: int, viewer_point=None) -> np.ndarray:
    """Annotation-layer data coordinates → image array indices, through world coordinates.

    A 2D annotation layer over a 3D image is placed on the slice the viewer shows (`viewer_point`, world).
    """
    out = []
    for c in np.atleast_2d(coords):
        world = np.asarray(ann_layer.data_to_world(np.asarray(c, float)), float)
        if len(world) < image_layer.ndim:
            if viewer_point is None:
                raise LesionSegError(f"'{ann_layer.name}' is {len(world)}-D but the image is {image_layer.ndim}-D.")
            world = np.r_[np.asarray(viewer_point, float)[-image_layer.ndim:-len(world)], world]
        world = world[-image_layer.ndim:]
        data = np.asarray(image_layer.world_to_data(world), float)
        out.append(data[-nd:] if not image_layer.rgb else data[:nd])
    return np.array(out, float)


AUTO_NETWORK = "automatic (for the image)"
"""Network choice: the shipped prompt network for the image's modality (`line_model.network_for`)."""


class AnnotateWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from napari.layers import Image, Labels, Points, Shapes

        self.viewer = napari_viewer
        self.last_result = None
        self.ann_combo = LayerCombo(napari_viewer, (Shapes, Points))
        self.image_combo = LayerCombo(napari_viewer, (Image,))
        self.neg_combo = LayerCombo(napari_viewer, (Points,), optional=True)
        self.target_combo = LayerCombo(napari_viewer, (Labels,), optional=True)
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(LINE_METHODS))
        self.network_combo = QComboBox()
        self.network_combo.setToolTip("The prompt network that turns lines and boxes into masks: the shipped one "
                                      "for the image's modality, or one fine-tuned on your corrected masks "
                                      "(`lesionseg finetune-prompt`, or the Train dock with a prompt network as base)")
        self._fill_networks()
        from ..core.models import default_registry

        default_registry().on_change(self._fill_networks)
        self.destroyed.connect(lambda *_: default_registry().remove_listener(self._fill_networks))
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(POINT_MODES))
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.1, 1000)
        self.radius.setValue(3.0)
        self.in_mm = QCheckBox("mm (else pixels)")
        self.in_mm.setChecked(True)
        self.decay = QDoubleSpinBox()
        self.decay.setDecimals(3)
        self.decay.setRange(0.001, 100)
        self.decay.setValue(0.5)
        self.decay.setToolTip("a in exp(-a·d): the map halves every ln2/a (mm or px)")
        self.reach = QDoubleSpinBox()
        self.reach.setRange(0.5, 10000)
        self.reach.setValue(15.0)
        self.reach.setToolTip("How far a lesion may grow from the clicks (mm or px, as the radius)")
        radius_row = QHBoxLayout()
        radius_row.addWidget(self.radius)
        radius_row.addWidget(self.in_mm)

        form = QFormLayout()
        form.addRow("Annotations (lines, boxes or points):", self.ann_combo)
        form.addRow("Image:", self.image_combo)
        form.addRow("Line method:", self.method_combo)
        form.addRow("Prompt network:", self.network_combo)
        form.addRow("Points give:", self.mode_combo)
        form.addRow("Disk radius:", radius_row)
        form.addRow("Click reach:", self.reach)
        form.addRow("Heat-map decay a:", self.decay)
        form.addRow("Negative clicks:", self.neg_combo)
        form.addRow("Write into (undoable):", self.target_combo)

        self.run_btn = QPushButton("Make mask")
        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn = QPushButton("Cancel")
        self.clicks_btn = QPushButton("Add click layers")
        self.clicks_btn.setToolTip("Add 'positive clicks' and 'negative clicks' Points layers on the image")
        self.clicks_btn.clicked.connect(self.add_click_layers)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addWidget(self.clicks_btn)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Draw a line across each lesion (Shapes, line tool; a second, shorter line across it "
                             "gives its width and a better mask, most on MRI), a box around it (rectangle tool) or "
                             "click points, then Make mask.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.ann_combo.currentIndexChanged.connect(self._update_enabled)
        self.mode_combo.currentIndexChanged.connect(self._update_enabled)
        self._update_enabled()
        self.jobs = DockJobs(self, progress_bar=self.progress, cancel_button=self.cancel_btn,
                             start_buttons=(self.run_btn,), status=self.status, hide_progress=True,
                             on_progress=self._on_step)

    @property
    def worker(self):
        """The running job's napari worker, else None."""
        return self.jobs.worker

    # ------------------------------------------------------------------------------ helpers

    def _update_enabled(self, *_):
        from napari.layers import Points

        ann = self.ann_combo.layer()
        points = isinstance(ann, Points)
        mode = self.mode_combo.currentText()
        self.method_combo.setEnabled(not points)
        self.network_combo.setEnabled(not points)
        self.mode_combo.setEnabled(points)
        self.radius.setEnabled(points and mode == POINT_MODES[0])
        self.reach.setEnabled(points and mode == POINT_MODES[2])
        self.decay.setEnabled(points and mode == POINT_MODES[1])
        self.neg_combo.setEnabled(points and mode in POINT_MODES[2:])
        self.in_mm.setEnabled(points)

    def _fill_networks(self, *_):
        """Automatic, then every prompt network of the one registry (shipped and fine-tuned)."""
        from ..core.models import default_registry

        current = self.network_combo.currentText()
        self.network_combo.clear()
        self.network_combo.addItem(AUTO_NETWORK)
        self.network_combo.addItems(default_registry().names(kind="prompt"))
        if current and self.network_combo.findText(current) >= 0:
            self.network_combo.setCurrentText(current)

    def add_click_layers(self):
        image = self.image_combo.layer()
        kw = {} if image is None else {"scale": image.scale[-image.ndim:], "translate": image.translate[-image.ndim:]}
        ndim = image.ndim if image is not None else 2
        pos = self.viewer.add_points(np.zeros((0, ndim)), name="positive clicks", face_color="lime", size=6, **kw)
        neg = self.viewer.add_points(np.zeros((0, ndim)), name="negative clicks", face_color="red", size=6, **kw)
        self.ann_combo.select(pos)
        self.neg_combo.select(neg)
        self.mode_combo.setCurrentIndex(2)
        pos.mode = "add"
        return pos, neg

    def _job(self):
        """Collect everything from the GUI (main thread) into a pure function for the worker."""
        from napari.layers import Points, Shapes

        from ..core import annotations as ann_core
        from ..core.annotations import prompts

        ann = self.ann_combo.layer()
        image = self.image_combo.layer()
        if ann is None:
            raise LesionSegError("Choose a Shapes layer (lines) or a Points layer.")
        if image is None:
            raise LesionSegError("Choose the image the annotations were drawn on.")
        data, nd = image_array(image)
        scan = scan_from_layer(image)  # the core's input, as `lesionseg lines-to-masks` reads it
        spacing = tuple(scan.geometry.spacing)
        point = tuple(self.viewer.dims.point)
        shape = data.shape[:nd] if not image.rgb else data.shape[:-1]
        if isinstance(ann, Shapes):
            if len(ann.data) == 0:
                raise LesionSegError(f"'{ann.name}' is empty: draw a line across each lesion first.")
            shapes = [ann_core.Shape(i, t, to_image_voxels(v, ann, image, nd, point))
                      for i, (v, t) in enumerate(zip(ann.data, ann.shape_type))]
            method = LINE_METHODS[self.method_combo.currentText()]
            modality = scan.modality or None
            chosen = self.network_combo.currentText()
            model = None if chosen in ("", AUTO_NETWORK) else chosen

            def job(progress, cancelled):  # lines and rectangles (box prompts)
                return prompts.shapes_to_labels(data, shapes, spacing=spacing, method=method, rgb=image.rgb,
                                                progress=progress, cancelled=cancelled, modality=modality,
                                                model=model), "labels"

            return job, f"{image.name} lesions", image
        if not isinstance(ann, Points):
            raise LesionSegError(f"'{ann.name}' is neither a Shapes nor a Points layer.")
        if len(ann.data) == 0:
            raise LesionSegError(f"'{ann.name}' is empty: click on each lesion first.")
        pts = to_image_voxels(ann.data, ann, image, nd, point)
        mode = self.mode_combo.currentText()
        unit_sp = spacing if self.in_mm.isChecked() else None
        radius = float(self.radius.value())
        if mode == POINT_MODES[0]:
            return (lambda progress, cancelled: (ann_core.points_to_disks(shape, pts, radius, unit_sp), "labels"),
                    f"{ann.name} disks", image)
        if mode == POINT_MODES[1]:
            a = float(self.decay.value())
            return (lambda progress, cancelled: (ann_core.points_to_heatmap(shape, pts, a, unit_sp), "image"),
                    f"{ann.name} exp(-{a:g}d)", image)
        neg_layer = self.neg_combo.layer()
        neg = to_image_voxels(neg_layer.data, neg_layer, image, nd, point) if neg_layer is not None and len(
            neg_layer.data) else np.zeros((0, nd))
        target = self.target_combo.layer()
        base = None
        if target is not None:
            base = np.asarray(target.data) > 0
            if base.shape != tuple(shape):
                raise LesionSegError(f"'{target.name}' {base.shape} does not match the image {tuple(shape)}.")
        if mode == POINT_MODES[3]:
            modality = (image.metadata.get("lesionseg", {}) or {}).get("modality")

            def job(progress, cancelled):  # one lesion per centre click, refined by the clicks near it
                return prompts.clicks_to_labels(data, pts, neg, spacing=spacing, rgb=image.rgb, modality=modality,
                                                progress=progress, cancelled=cancelled), "labels"

            return job, f"{image.name} lesions", image
        gray = data if not image.rgb else data[..., :3].mean(-1)
        reach = float(self.reach.value())

        def job(progress, cancelled):
            m = ann_core.clicks_to_mask(gray, pts, neg, mask=base, spacing=unit_sp, reach=reach)
            return m.astype(np.int32), "labels"

        return job, f"{image.name} lesions", image

    # ------------------------------------------------------------------------------ running

    def run(self, blocking: bool = False):
        """Start the conversion (in a thread unless blocking); returns the worker or, blocking, the new layer."""
        from napari.utils.notifications import show_error

        try:
            job, name, image = self._job()
            if blocking:
                return self._show(job(None, lambda: False), name, image)
        except LesionSegError as e:
            self.status.setText(str(e))
            show_error(str(e))
            return None
        self.status.setText("Working…")
        ctx = self.jobs.context
        return self.jobs.start(job, ctx.progress, ctx.cancelled, desc=f"Make mask: {name}",
                               done=lambda r: self._show(r, name, image), cancelled=self._cancelled)

    def _on_step(self, i, n):
        self.status.setText(f"Lesion {i} of {n} done…")

    def cancel(self):
        self.jobs.cancel()

    def _cancelled(self):
        from napari.utils.notifications import show_info

        self.status.setText("Cancelled.")
        show_info("Cancelled.")

    def _show(self, result, name, image):
        data, kind = result
        target = self.target_combo.layer()
        if kind == "labels" and target is not None and np.shape(target.data) == data.shape:
            # an undoable edit of an existing Labels layer (Ctrl+Z restores it)
            changed = np.asarray(target.data) != data
            idx = np.nonzero(changed)
            if len(idx[0]):
                target.data_setitem(idx, data[idx].astype(np.asarray(target.data).dtype))
            self.last_result = target
            self.status.setText(f"Updated '{target.name}' ({len(idx[0])} pixels changed; Ctrl+Z to undo).")
            return target
        kw = derived_layer_kwargs(image, name, ndim=data.ndim)
        if kind == "labels":
            layer = self.viewer.add_labels(data.astype(np.int32), **kw)
            n = len(np.unique(data)) - 1
            self.status.setText(f"'{layer.name}': {n} lesion{'s' if n != 1 else ''}. Paint/erase to correct.")
        else:
            layer = self.viewer.add_image(data, colormap="magma", blending="additive", contrast_limits=(0, 1), **kw)
            self.status.setText(f"'{layer.name}': probability map (1 on each point).")
        self.last_result = layer
        return layer
