"""The Segment dock: pick an image and a model, click Segment, move the threshold, correct, export.

Inference runs in a napari thread worker (progress bar, Cancel); the probabilities are kept, so the threshold slider
only re-thresholds them into the existing Labels layer — it never runs the model again (cellpose-napari's lesson).
Once the mask has been painted on, slider moves no longer overwrite it unless the user asks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import Cancelled, LesionSegError
from ..core.geometry import geometry_from_metadata
from ..core.inference.device import available_devices
from ..core.inference.threshold import PostProcessing, apply_threshold
from ..core.models import default_registry
from ._scroll import scrolling_layout
from .layer_utils import derived_layer_kwargs

SCOPES = ("Current slice", "Whole volume", "Whole image / slide")


def _unwrap(obj):
    """napari hands plugins proxies (a new one per access): compare and keep the real objects."""
    return getattr(obj, "__wrapped__", obj)


@dataclass
class Segmentation:
    """What one Segment run produced: kept probabilities and the layers showing them."""

    image_layer: Image
    card: object
    probs: np.ndarray
    """(Z, Y, X) / (Y, X) foreground probabilities, or (K, ...) for multi-class models."""
    prob_layer: Image
    labels_layer: Labels
    done_slices: set = field(default_factory=set)
    edited: bool = False
    spacing: tuple | None = None
    done_slices_axis: int = 0
    stats: tuple | None = None
    """Normalisation statistics of the whole volume, so every slice of one run is normalised alike."""


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int)
    notice = Signal(str)


class SegmentDock(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.registry = default_registry()
        self._predictors: dict = {}
        self._worker = None
        self._cancel = threading.Event()
        self.result: Segmentation | None = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._bridge.notice.connect(show_warning)
        self._build_ui()
        self.refresh_layers()
        self.refresh_models()
        self.registry.on_change(self._on_registry_change)
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.destroyed.connect(lambda *_: self.registry.remove_listener(self._on_registry_change))
        from .autosave import ensure_autosave

        ensure_autosave(self.viewer)
        self._install_shortcuts()

    # -- UI ----------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.setMaximumWidth(480)  # leave the canvas most of the window
        lay = scrolling_layout(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet("color: gray; font-size: 10px")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(SCOPES)
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.model_info)
        form.addRow("Device", self.device_combo)
        form.addRow("Scope", self.scope_combo)
        lay.addLayout(form)
        self.model_combo.currentTextChanged.connect(self._show_model_info)
        self.image_combo.currentTextChanged.connect(self._default_scope)

        row = QHBoxLayout()
        self.segment_btn = QPushButton("Segment")
        self.segment_btn.setToolTip("Run the model (shortcut: Ctrl+Shift+S)")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.segment_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self.segment_btn.clicked.connect(self.segment)
        self.cancel_btn.clicked.connect(self.cancel)

        box = QGroupBox("Mask")
        bl = QFormLayout(box)
        trow = QHBoxLayout()
        self.threshold_slider = QSlider(Qt.Horizontal)
        self.threshold_slider.setRange(1, 99)
        self.threshold_slider.setValue(50)
        self.threshold_label = QLabel("0.50")
        trow.addWidget(self.threshold_slider)
        trow.addWidget(self.threshold_label)
        bl.addRow("Threshold", trow)
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        self.fill_holes = QCheckBox("fill holes")
        self.keep_largest = QCheckBox("keep largest")
        prow = QHBoxLayout()
        prow.addWidget(self.fill_holes)
        prow.addWidget(self.keep_largest)
        bl.addRow("Clean-up", prow)
        self.min_size = QDoubleSpinBox()
        self.min_size.setRange(0, 1e6)
        self.min_size.setDecimals(1)
        self.min_size.setSuffix(" mm² (mm³)")
        bl.addRow("Drop smaller than", self.min_size)
        for w in (self.fill_holes, self.keep_largest):
            w.toggled.connect(lambda *_: self.rethreshold(force=False))
        self.min_size.valueChanged.connect(lambda *_: self.rethreshold(force=False))
        hrow = QHBoxLayout()
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("A labelled (corrected or ground-truth) mask of the segmented image")
        self.best_iou_btn = QPushButton("Best IoU")
        self.best_gmean_btn = QPushButton("Best G-mean")
        for w in (self.reference_combo, self.best_iou_btn, self.best_gmean_btn):
            hrow.addWidget(w)
        bl.addRow("Threshold from", hrow)
        self.best_iou_btn.clicked.connect(lambda: self.choose_threshold("iou"))
        self.best_gmean_btn.clicked.connect(lambda: self.choose_threshold("gmean"))
        self.reapply_btn = QPushButton("Re-apply threshold (discards manual corrections)")
        self.reapply_btn.clicked.connect(lambda: self.rethreshold(force=True))
        bl.addRow(self.reapply_btn)
        lay.addWidget(box)

        self.export_btn = QPushButton("Export mask…")
        self.export_btn.clicked.connect(self._export_dialog)
        lay.addWidget(self.export_btn)
        lay.addStretch(1)

    def _install_shortcuts(self) -> None:
        """Ctrl+Shift+S: Segment; Ctrl+Shift+A: accept (export beside the scan); Ctrl+Shift+N: next lesion."""
        from qtpy.QtGui import QKeySequence
        from qtpy.QtWidgets import QShortcut

        for keys, slot in (("Ctrl+Shift+S", self.segment), ("Ctrl+Shift+A", self.accept),
                           ("Ctrl+Shift+N", self.next_lesion)):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ApplicationShortcut)
            sc.activated.connect(slot)

    def accept(self) -> Path | None:
        """Accept the current mask: export it beside the scan as <scan>_mask.(nii.gz|png)."""
        layer = self._export_layer()
        if layer is None:
            show_warning("There is no mask to accept yet.")
            return None
        source = (layer.metadata.get("lesionseg", {}) or {}).get("source_path")
        if not source:
            self._export_dialog()
            return None
        src = Path(source)
        stem = src.name[:-7] if src.name.endswith(".nii.gz") else src.stem
        ext = ".nii.gz" if layer.ndim == 3 else ".png"
        return self.export_to(src.parent / f"{stem}_mask{ext}", layer)

    def next_lesion(self) -> None:
        """Centre the view on the next connected lesion of the mask (cycles)."""
        from scipy import ndimage as ndi

        layer = self._export_layer()
        if layer is None or not np.asarray(layer.data).any():
            show_info("No lesion in the mask.")
            return
        comps, n = ndi.label(np.asarray(layer.data) > 0)
        centres = ndi.center_of_mass(comps > 0, comps, range(1, n + 1))
        self._lesion_cursor = (getattr(self, "_lesion_cursor", -1) + 1) % n
        c = np.asarray(centres[self._lesion_cursor])
        world = layer.data_to_world(c)
        if layer.ndim == 3:
            self.viewer.dims.set_point(range(self.viewer.dims.ndim - 3, self.viewer.dims.ndim), world)
        self.viewer.camera.center = tuple(world[-2:])
        self.status.setText(f"Lesion {self._lesion_cursor + 1} of {n}")

    # -- lists -------------------------------------------------------------------------------------------
    def image_layers(self) -> list[Image]:
        return [l for l in self.viewer.layers if isinstance(l, Image) and not l.metadata.get("lesionseg_probs")]

    def refresh_layers(self, *_) -> None:
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        names = [l.name for l in self.image_layers()]
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        ref = self.reference_combo.currentText()
        self.reference_combo.clear()
        refs = [l.name for l in self.viewer.layers if isinstance(l, Labels)]
        self.reference_combo.addItems(refs)
        if ref in refs:
            self.reference_combo.setCurrentText(ref)
        if self.image_combo.currentText() != current:  # a new image gets its default scope; the user's choice
            self._default_scope()                       # survives the layers Segment itself adds

    def refresh_models(self, select: str | None = None) -> None:
        current = select or self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for card in self.registry.cards():
            self.model_combo.addItem(card.name)
        names = [self.model_combo.itemText(i) for i in range(self.model_combo.count())]
        if current in names:
            self.model_combo.setCurrentText(current)
        else:
            self._select_model_for_image()
        self.model_combo.blockSignals(False)
        self._show_model_info(self.model_combo.currentText())

    def _on_registry_change(self, new_name: str | None) -> None:
        self.refresh_models(select=new_name)

    def _select_model_for_image(self) -> None:
        layer = self.current_image()
        modality = (layer.metadata.get("lesionseg", {}) or {}).get("modality") if layer is not None else None
        for i, card in enumerate(self.registry.cards()):
            if modality and card.modality == modality:
                self.model_combo.setCurrentIndex(i)
                return

    def _show_model_info(self, name: str) -> None:
        try:
            card = self.registry.get(name) if name else None
        except LesionSegError:
            card = None
        if card is None:
            self.model_info.setText("No model available." if not name else "")
            return
        metric = card.metrics.get("val_dice")
        text = f"{card.modality}, {card.network}"
        if isinstance(metric, (int, float)):
            text += f", validation Dice {metric:.2f}"
        if card.parent:
            text += f", fine-tuned from {card.parent}"
        self.model_info.setText(text)
        if self.result is None:
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(int(round(card.threshold * 100)))
            self.threshold_label.setText(f"{card.threshold:.2f}")
            self.threshold_slider.blockSignals(False)

    def _default_scope(self, *_) -> None:
        layer = self.current_image()
        if layer is None:
            return
        spatial = layer.ndim
        self.scope_combo.setCurrentText("Current slice" if spatial >= 3 else "Whole image / slide")

    def current_image(self) -> Image | None:
        name = self.image_combo.currentText()
        return _unwrap(self.viewer.layers[name]) if name in self.viewer.layers else None

    def _in_viewer(self, layer) -> bool:
        return layer is not None and any(_unwrap(l) is layer for l in self.viewer.layers)

    # -- segmentation ------------------------------------------------------------------------------------
    def _predictor(self, name: str, device: str):
        """The loaded model, cached; first called from the worker, so weights never load on the GUI thread."""
        from ..core.inference.engine import Predictor

        key = (name, device)
        if key not in self._predictors:
            card = self.registry.get(name)
            self._predictors[key] = Predictor(card, device=device, notice=self._bridge.notice.emit)
        return self._predictors[key]

    def segment(self) -> None:
        """Start a Segment run in a thread worker (no-op if one is running)."""
        if self._worker is not None:
            return
        layer = self.current_image()
        if layer is None:
            show_warning("Open an image first (File → Open, or File → Open Sample → Lesion Segmentation).")
            return
        model = self.model_combo.currentText()
        if not model:
            show_warning("No model available: train one from the Fine-tune dock or install the shipped models.")
            return
        scope = self.scope_combo.currentText()
        try:
            card = self.registry.get(model)  # reads the card only; the weights load in the worker
            job = self._plan(layer, card, scope)
            job["model"] = (model, self.device_combo.currentText())
        except LesionSegError as e:
            show_error(str(e))
            return
        self._cancel.clear()
        self.segment_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Segmenting {layer.name} with {model}…")
        worker = create_worker(self._run_job, job, _start_thread=False)
        worker.returned.connect(lambda out: self._finish(job, out))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._worker_done)
        self._worker = worker
        worker.start()

    def _plan(self, layer: Image, card, scope: str) -> dict:
        """Everything the worker needs, read on the GUI thread (layers must not be touched from the worker)."""
        multiscale = layer.multiscale
        data = layer.data[0] if multiscale else layer.data
        spatial_ndim = layer.ndim
        rgb = layer.rgb
        if card.input_kind == "rgb" and not rgb:
            raise LesionSegError(f"Model {card.name} is for colour (H&E) images; {layer.name} is grayscale.")
        if spatial_ndim > 3:
            raise LesionSegError(f"{layer.name} has {spatial_ndim} axes (several phases?). Segment one phase or a "
                                 "subtraction image (DCE dock).")
        if card.input_kind == "slices" and spatial_ndim != 3:
            raise LesionSegError(f"Model {card.name} reads neighbouring slices; {layer.name} is 2D.")
        job = {"card": card, "data": data, "ndim": spatial_ndim, "scope": scope, "layer": layer.name,
               "lazy": multiscale or not isinstance(data, np.ndarray), "spacing": tuple(layer.scale[-2:]),
               "overview": None}
        if multiscale:
            from ..core.inference.tiles import pick_overview

            job["overview"] = pick_overview(list(layer.data))  # find the tissue on a coarse level, not level 0
        if job["lazy"] and spatial_ndim == 2 and card.fit != "tile":
            raise LesionSegError(f"Model {card.name} resizes whole images; a slide needs a tiled model "
                                 "(e.g. histology-nuclei).")
        if spatial_ndim == 3:
            if scope == "Current slice":
                axis = self._slice_axis(layer)
                index = int(np.clip(round(layer.world_to_data(self.viewer.dims.point)[axis]), 0,
                                    data.shape[axis] - 1))
                job.update(axis=axis, indices=[index])
            else:
                job.update(axis=0, indices=list(range(data.shape[0])))
            existing = self.result if (self.result is not None and self.result.image_layer is layer
                                       and self.result.card.name == card.name) else None
            if existing is not None and existing.done_slices and job["axis"] != existing.done_slices_axis:
                existing = None
            job["existing"] = existing
            job["stats"] = existing.stats if existing is not None else None
        return job

    def _slice_axis(self, layer: Image) -> int:
        """The axis the user is stepping through in the displayed orientation."""
        displayed = set(self.viewer.dims.displayed)
        offset = self.viewer.dims.ndim - layer.ndim
        candidates = [a - offset for a in range(self.viewer.dims.ndim) if a not in displayed and a - offset >= 0]
        return candidates[-1] if candidates else 0

    def _run_job(self, job: dict):
        """Runs in the worker thread: only numpy/torch here. A Cancel comes back as a result, not an error."""
        try:
            return self._predict(job)
        except Cancelled:
            return {"cancelled": True}

    def _predict(self, job: dict):
        predictor = self._predictor(*job["model"])
        progress = self._bridge.progress.emit
        cancelled = self._cancel.is_set
        data = job["data"]
        if job["ndim"] == 3:
            vol = np.asarray(data)
            stats = job.get("stats") or predictor.volume_stats(vol)
            probs = predictor.predict_slices(vol, job["indices"], axis=job["axis"], progress=progress,
                                             cancelled=cancelled, stats=stats)
            return {"slices": probs, "stats": stats}
        # Slides stay lazy: tiles are read one batch at a time; large results land in a zarr store on disk.
        probs = predictor.predict_image(data if job["lazy"] else np.asarray(data), progress=progress,
                                        cancelled=cancelled, spacing=job["spacing"], overview=job["overview"])
        return {"probs": probs}

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def cancel(self) -> None:
        if self._worker is not None:
            self._cancel.set()
            self.status.setText("Cancelling…")

    def _worker_done(self) -> None:
        self._worker = None
        self.segment_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setRange(0, 1)

    def _failed(self, err: Exception) -> None:
        if isinstance(err, Cancelled):
            self.status.setText("Cancelled: no new layer was added; finished slices were kept.")
            show_info("Segmentation cancelled.")
        elif isinstance(err, LesionSegError):
            self.status.setText(str(err))
            show_error(str(err))
        else:
            self.status.setText(f"Segmentation failed: {type(err).__name__}: {err}")
            show_error(f"Segmentation failed: {type(err).__name__}: {err}")

    def _finish(self, job: dict, out: dict) -> None:
        card = job["card"]
        if out.get("cancelled"):
            self._failed(Cancelled())
            return
        if job["layer"] not in self.viewer.layers:
            show_warning("The image was closed while it was being segmented; nothing was added.")
            return
        layer = _unwrap(self.viewer.layers[job["layer"]])
        if job["ndim"] == 3:
            seg = job.get("existing")
            if seg is None or not self._in_viewer(seg.prob_layer) or not self._in_viewer(seg.labels_layer):
                shape = layer.data[0].shape if layer.multiscale else layer.data.shape
                probs = np.zeros(((card.n_outputs,) if card.multiclass else ()) + tuple(shape), np.float32)
                seg = self._new_result(layer, card, probs)
                seg.done_slices_axis = job["axis"]
            seg.stats = out["stats"]
            axis = job["axis"]
            region = None
            for k, idx in enumerate(job["indices"]):
                sl = [slice(None)] * 3
                sl[axis] = idx
                if card.multiclass:
                    seg.probs[(slice(None),) + tuple(sl)] = out["slices"][k]
                else:
                    seg.probs[tuple(sl)] = out["slices"][k]
                seg.done_slices.add(idx)
                region = tuple(sl) if len(job["indices"]) == 1 else None
            self.result = seg
            seg.prob_layer.refresh()
            self.rethreshold(force=True, region=region)
            self.status.setText(f"{len(seg.done_slices)} slice(s) segmented with {card.name}.")
        else:
            probs = out["probs"]
            seg = self._new_result(layer, card, probs)
            self.result = seg
            self.rethreshold(force=True)
            self.status.setText(f"Segmented with {card.name}. Move the threshold, correct with the label tools, "
                                "then Export.")
        self.viewer.layers.selection.active = self.result.labels_layer

    def _new_result(self, layer: Image, card, probs) -> Segmentation:
        if not isinstance(probs, np.ndarray):  # a slide-sized result in a zarr store: shown lazily
            import dask.array as da

            probs = da.from_zarr(probs)
            if not card.multiclass:
                probs = probs[0]
        fg = probs if not card.multiclass else 1.0 - probs[0]
        base = layer.name
        pkw = derived_layer_kwargs(layer, f"{base} probabilities ({card.name})", ndim=fg.ndim)
        pkw["metadata"]["lesionseg_probs"] = True
        pkw["metadata"]["lesionseg_model"] = card.name
        prob_layer = self.viewer.add_image(fg, colormap="inferno", blending="additive", opacity=0.5,
                                           contrast_limits=(0, 1), **pkw)
        shape = probs.shape[1:] if card.multiclass else probs.shape
        lkw = derived_layer_kwargs(layer, f"{base} mask", ndim=len(shape))
        lkw["metadata"]["lesionseg_model"] = card.name
        if isinstance(probs, np.ndarray):
            labels = self.viewer.add_labels(np.zeros(shape, np.uint8), opacity=0.5, **lkw)
        else:
            labels = self.viewer.add_labels(self._lazy_mask(probs, card), opacity=0.5, **lkw)
        prob_layer, labels = _unwrap(prob_layer), _unwrap(labels)
        seg = Segmentation(image_layer=layer, card=card, probs=probs, prob_layer=prob_layer, labels_layer=labels,
                           spacing=tuple(labels.scale))
        labels.events.paint.connect(lambda *_: self._mark_edited(seg))
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(int(round(card.threshold * 100)))
        self.threshold_label.setText(f"{card.threshold:.2f}")
        self.threshold_slider.blockSignals(False)
        return seg

    def _lazy_mask(self, probs, card):
        t = self.threshold
        if card.multiclass:
            return ((probs[1:].argmax(0) + 1) * ((1.0 - probs[0]) >= t)).astype(np.uint8)  # = apply_threshold
        return (probs >= t).astype(np.uint8)

    def _mark_edited(self, seg: Segmentation) -> None:
        seg.edited = True

    def _on_layer_removed(self, event) -> None:
        removed = _unwrap(event.value)
        if self.result is not None and (removed is self.result.labels_layer or removed is self.result.image_layer):
            self.result = None

    # -- threshold ---------------------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    def set_threshold(self, value: float) -> None:
        self.threshold_slider.setValue(int(round(np.clip(value, 0.01, 0.99) * 100)))

    def _on_threshold(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.rethreshold(force=False)

    def post_processing(self) -> PostProcessing:
        return PostProcessing(fill_holes=self.fill_holes.isChecked(), min_size_mm2=self.min_size.value(),
                              keep_largest=self.keep_largest.isChecked())

    def rethreshold(self, force: bool = False, region=None) -> None:
        """Re-threshold the kept probabilities into the Labels layer (no model call)."""
        seg = self.result
        if seg is None or not self._in_viewer(seg.labels_layer):
            return
        if seg.edited and not force:
            self.status.setText("The mask has manual corrections: the new threshold was not applied. "
                                "Click 'Re-apply threshold' to discard the corrections.")
            return
        labels = seg.labels_layer
        if not isinstance(seg.probs, np.ndarray):
            labels.data = self._lazy_mask(seg.probs, seg.card)  # cheap: nothing is computed until displayed
            return
        if force and seg.edited:
            # Discarding corrections goes through the Labels layer's own history: Ctrl+Z brings them back.
            new = np.zeros_like(labels.data)
            apply_threshold(seg.probs, self.threshold, new, multiclass=seg.card.multiclass,
                            post=self.post_processing(), spacing=seg.spacing)
            changed = np.nonzero(new != labels.data)
            labels.data_setitem(changed, new[changed])
            seg.edited = False
            return
        apply_threshold(seg.probs, self.threshold, labels.data, multiclass=seg.card.multiclass,
                        post=self.post_processing(), spacing=seg.spacing, region=region)
        if force:
            seg.edited = False
        labels.refresh()

    def choose_threshold(self, criterion: str) -> float | None:
        """Set the slider to the threshold that best reproduces a labelled mask (IoU or G-mean criterion).

        The two differ widely on small lesions: IoU favours precision, G-mean balances sensitivity and specificity.
        """
        from ..core.thresholds import best_thresholds

        seg = self.result
        ref_name = self.reference_combo.currentText()
        if seg is None or ref_name not in self.viewer.layers:
            show_warning("Segment an image and choose a labelled reference mask first.")
            return None
        ref = np.asarray(self.viewer.layers[ref_name].data) > 0
        fg = seg.probs if not seg.card.multiclass else 1.0 - seg.probs[0]
        if ref.shape != fg.shape:
            show_error(f"The reference mask {ref_name} {ref.shape} does not match the segmented image {fg.shape}.")
            return None
        valid = None
        if fg.ndim == 3 and seg.done_slices:
            valid = np.zeros(fg.shape, bool)
            idx = [slice(None)] * 3
            idx[seg.done_slices_axis] = sorted(seg.done_slices)
            valid[tuple(idx)] = True
        try:
            choice = best_thresholds(fg, ref, valid=valid)
        except LesionSegError as e:
            show_error(str(e))
            return None
        t = choice.iou_threshold if criterion == "iou" else choice.gmean_threshold
        self.set_threshold(t)
        self.status.setText(f"Best IoU at {choice.iou_threshold:.2f} (IoU {choice.iou:.2f}); best G-mean at "
                            f"{choice.gmean_threshold:.2f} (G-mean {choice.gmean:.2f}). Threshold set to {t:.2f}.")
        return t

    # -- export ------------------------------------------------------------------------------------------
    def _export_dialog(self) -> None:
        layer = self._export_layer()
        if layer is None:
            show_warning("There is no mask to export yet: click Segment, or select a Labels layer.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export mask", f"{layer.name}.nii.gz" if layer.ndim == 3
                                              else f"{layer.name}.png",
                                              "Masks (*.nii.gz *.nii *.png *.tif *.tiff)")
        if path:
            self.export_to(path, layer)

    def _export_layer(self) -> Labels | None:
        active = _unwrap(self.viewer.layers.selection.active)
        if isinstance(active, Labels):
            return active
        if self.result is not None and self._in_viewer(self.result.labels_layer):
            return self.result.labels_layer
        return None

    def export_to(self, path: str | Path, layer: Labels | None = None) -> Path | None:
        """Write the mask with the scan's geometry (and a measurement table beside it when available)."""
        from ..core.io import write_mask

        layer = layer or self._export_layer()
        if layer is None:
            show_warning("There is no mask to export.")
            return None
        geometry = geometry_from_metadata(layer.metadata)
        source = (layer.metadata.get("lesionseg", {}) or {}).get("source_path")
        try:
            out = write_mask(np.asarray(layer.data), geometry, path, source_path=source)
        except LesionSegError as e:
            show_error(str(e))
            return None
        except OSError as e:
            show_error(f"Could not write {path}: {e}")
            return None
        show_info(f"Mask written to {out}")
        self.status.setText(f"Exported {out}")
        return Path(out)
