"""The Segment dock: pick an image and a model, click Segment, move the threshold, correct, export.

The image layer becomes a `Scan` through `scan_adapter.scan_from_layer`, and the model runs through the core's
`check_fit` / `predict_scan` — the functions `lesionseg predict` calls, so dock and CLI give the same mask and refuse
the same images (a model made for another kind of image runs as with `--force`, the CLI's refusal said as a
warning: picking the model in the dock is the user's choice). Inference runs in the docks' one worker helper
(`_worker.DockJobs`: progress in the dock and in napari's activity dialog, Cancel from either or from the status
bar). The probabilities are kept, so the threshold slider only re-thresholds them into the existing Labels layer —
it never runs the model again (cellpose-napari's lesson).
Once the mask has been painted on, slider moves no longer overwrite it unless the user asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
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
    QSizePolicy,
    QSlider,
    QWidget,
)

from ..core.errors import LesionSegError
from ..core.geometry import geometry_from_metadata, spacing_from_ruler, with_given_spacing
from ..core.inference.device import available_devices
from ..core.inference.threshold import PostProcessing, apply_threshold
from ..core.io.scan import Scan
from ..core.models import default_registry
from ..core.models.card import ModelCard
from ._jobs import written_or_reported
from ._scroll import WrappedLabel, scrolling_layout
from .dicom_export import EDITED_KEY, is_dicom_layer, seg_options_from_metadata
from ._worker import JOIN_TIMEOUT_S, DockJobs  # noqa: F401 - JOIN_TIMEOUT_S: how long closing waits
from .layer_utils import derived_layer_kwargs, layer_spacing, refuse_overwriting_open_inputs
from .scan_adapter import scan_from_layer

SCOPES = ("Current slice", "Whole volume", "Whole image / slide")
RULER_LAYER = "ruler"
UNKNOWN_PIXEL_SIZE = "Pixel size unknown — sizes in pixels. State it below, or put two ruler points a known " \
                     "distance apart (e.g. on the depth scale)."


def _unwrap(obj):
    """napari hands plugins proxies (a new one per access): compare and keep the real objects."""
    return getattr(obj, "__wrapped__", obj)


@dataclass
class Segmentation:
    """What one Segment run produced: kept probabilities and the layers showing them."""

    image_layer: Image
    card: ModelCard
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


@dataclass
class SegmentJob:
    """One Segment run, read on the GUI thread and handed to the worker (which must not touch layers)."""

    card: ModelCard
    model_name: str
    device: str
    scan: Scan
    """The image as the core takes it (`scan_from_layer`), as `lesionseg predict` would have read it."""
    scope: str
    layer_name: str
    force: bool = True
    """Run although the model was made for another kind of image (`lesionseg predict --force`): choosing the model
    in the dock is the user's choice, so a mismatch is said (the CLI's refusal, as a warning), not refused."""
    axis: int = 0
    indices: list[int] | None = None
    """Volumes: the slices to segment along `axis` (None: a 2D image or slide, segmented whole)."""
    existing: "Segmentation | None" = None
    """An earlier run on this volume with this model, whose layers the new slices fill."""
    stats: tuple | None = None
    """That run's normalisation statistics, so every slice of one volume is normalised alike."""
    flips: bool = True
    """Average the card's test-time flips (`Predictor(flips=...)`, `lesionseg predict --no-flips`)."""
    gate: bool = True
    """Let the model's image classifier empty the mask of a 2D image it calls lesion-free (`core.inference.gate`)."""


@dataclass
class SegmentOutput:
    """What the worker hands back: whole-image probabilities, or some slices' and the volume's statistics."""

    probs: object = None
    slices: np.ndarray | None = None
    stats: tuple | None = None
    gate: object = None
    """The image gate's `GateResult` (class probabilities, suppressed or not), when the gate ran."""


class SegmentDock(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.registry = default_registry()
        self._predictors: dict = {}
        self._written: set[Path] = set()
        """Files this dock wrote in this session: Accept may replace these, never anything else."""
        self.result: Segmentation | None = None
        self._build_ui()
        self.jobs = DockJobs(self, progress_bar=self.progress, cancel_button=self.cancel_btn,
                             start_buttons=(self.segment_btn,), status=self.status,
                             failure_prefix="Segmentation failed")
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
        self.flips_box = QCheckBox("Test-time flips")
        self.flips_box.setChecked(True)
        form.addRow("", self.flips_box)
        lay.addLayout(form)
        self.model_combo.currentTextChanged.connect(self._show_model_info)
        self.image_combo.currentTextChanged.connect(self._default_scope)
        self.image_combo.currentTextChanged.connect(self._update_units)

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
        self.status = WrappedLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        from .image_gate_row import ImageGateRow

        self.image_gate = ImageGateRow()  # class probabilities of the last image, and the gate's on/off
        lay.addWidget(self.image_gate)
        self.segment_btn.clicked.connect(self.segment)

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
        self.min_size.setSuffix(" mm²")
        self.min_size.setToolTip("Drop mask components smaller than this area (2D) or volume (3D)")
        bl.addRow("Drop smaller than", self.min_size)
        for w in (self.fill_holes, self.keep_largest):
            w.toggled.connect(lambda *_: self.rethreshold(force=False))
        self.min_size.valueChanged.connect(lambda *_: self.rethreshold(force=False))
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("A labelled (corrected or ground-truth) mask of the segmented image")
        self.reference_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.reference_combo.setMinimumContentsLength(14)  # long names are cut at the end; the tooltip has all
        self.reference_combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.reference_combo.currentTextChanged.connect(
            lambda text: self.reference_combo.setToolTip(text or "A labelled (corrected or ground-truth) mask"))
        bl.addRow("Reference mask", self.reference_combo)
        hrow = QHBoxLayout()
        self.best_iou_btn = QPushButton("Best IoU")
        self.best_gmean_btn = QPushButton("Best G-mean")
        for w in (self.best_iou_btn, self.best_gmean_btn):
            hrow.addWidget(w)
        bl.addRow("Threshold from", hrow)
        from .evaluate_widget import EvaluateRow

        self.evaluate_row = EvaluateRow(self)  # Dice / miss / false lesion against that reference layer
        bl.addRow(self.evaluate_row)
        self.best_iou_btn.clicked.connect(lambda: self.choose_threshold("iou"))
        self.best_gmean_btn.clicked.connect(lambda: self.choose_threshold("gmean"))
        self.reapply_btn = QPushButton("Re-apply threshold")
        self.reapply_btn.setToolTip("Threshold again, discarding manual corrections (Ctrl+Z brings them back)")
        self.reapply_btn.clicked.connect(lambda: self.rethreshold(force=True))
        bl.addRow(self.reapply_btn)
        lay.addWidget(box)
        lay.addWidget(self._pixel_size_box())

        self.export_btn = QPushButton("Export mask…")
        self.export_btn.clicked.connect(self._export_dialog)
        lay.addWidget(self.export_btn)
        lay.addStretch(1)

    def _pixel_size_box(self) -> QGroupBox:
        """State the pixel size of a file that has none (PNG/JPEG ultrasound), typed in or from two ruler points."""
        box = QGroupBox("Pixel size")
        form = QFormLayout(box)
        self.units_note = QLabel(UNKNOWN_PIXEL_SIZE)
        self.units_note.setWordWrap(True)
        self.units_note.setStyleSheet("color: #e0a030")
        form.addRow(self.units_note)
        srow = QHBoxLayout()
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setRange(0.00001, 100.0)
        self.pixel_size.setDecimals(5)
        self.pixel_size.setSingleStep(0.01)
        self.pixel_size.setValue(0.1)
        self.pixel_size.setSuffix(" mm")
        self.set_pixel_size_btn = QPushButton("Set")
        self.set_pixel_size_btn.setToolTip("Use this pixel size for the image (and the masks made from it)")
        srow.addWidget(self.pixel_size)
        srow.addWidget(self.set_pixel_size_btn)
        form.addRow("Pixel size", srow)
        rrow = QHBoxLayout()
        self.ruler_btn = QPushButton("Ruler points")
        self.ruler_btn.setToolTip(f"Adds a Points layer '{RULER_LAYER}': click two points a known distance apart")
        self.ruler_distance = QDoubleSpinBox()
        self.ruler_distance.setRange(0.01, 10000.0)
        self.ruler_distance.setDecimals(2)
        self.ruler_distance.setValue(10.0)
        self.ruler_distance.setSuffix(" mm")
        self.ruler_distance.setToolTip("The distance between the two ruler points")
        self.ruler_set_btn = QPushButton("Set from ruler")
        for w in (self.ruler_btn, self.ruler_distance, self.ruler_set_btn):
            rrow.addWidget(w)
        form.addRow("Ruler", rrow)
        self.set_pixel_size_btn.clicked.connect(lambda: self.set_pixel_size(self.pixel_size.value()))
        self.ruler_btn.clicked.connect(self.add_ruler)
        self.ruler_set_btn.clicked.connect(lambda: self.set_pixel_size_from_ruler(self.ruler_distance.value()))
        return box

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
        """Accept the current mask: export it beside the scan as <scan>_mask.(nii.gz|png).

        A file of that name that this dock did not write in this session (the expert mask shipped beside the sample,
        a colleague's mask) is never replaced: the mask goes to the next free name, <scan>_mask-1.png, and the
        status line says where."""
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
        from ..core.io.atomic import free_path
        from .layer_utils import open_input_paths

        inputs = {Path(p).resolve() for p in open_input_paths(self.viewer)}
        wanted = src.parent / f"{stem}_mask{ext}"
        target = free_path(wanted, ours=[p for p in self._written if p not in inputs])
        out = self.export_to(target, layer)
        if out is not None and target != wanted:
            msg = f"{wanted.name} already exists and was kept; the mask was written to {out}"
            show_info(msg)
            self.status.setText(msg)
        return out

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

    # -- pixel size --------------------------------------------------------------------------------------
    def spacing_known(self, layer=None) -> bool:
        """Whether the image's pixel size is known (stated by its file or by the user), so sizes are in mm."""
        layer = layer if layer is not None else self.current_image()
        if layer is None:
            return True
        return layer_spacing(layer)[1]

    def _update_units(self, *_) -> None:
        """Size fields say px when the pixel size is unknown (1 = one pixel, not 1 mm), mm otherwise; an area on a
        2D image, a volume on a volume (postprocess counts a 3D mask's components in voxels)."""
        layer = self.current_image()
        known = self.spacing_known(layer)
        power = "³" if layer is not None and layer.ndim >= 3 else "²"
        self.min_size.setSuffix(f" {'mm' if known else 'px'}{power}")
        self.units_note.setVisible(not known)
        if known and layer is not None:
            self.pixel_size.setValue(float(layer.scale[-1]))

    def set_pixel_size(self, mm: float) -> tuple | None:
        """Give the current image (and every layer made from it) a pixel size in mm; returns the new spacing."""
        from ..core.geometry import METADATA_KEY, default_geometry

        layer = self.current_image()
        if layer is None:
            show_warning("Open an image first.")
            return None
        n = layer.ndim
        geom = geometry_from_metadata(layer.metadata) or default_geometry(tuple(layer.data.shape[:n]),
                                                                          tuple(layer.scale[-n:]))
        try:
            new = with_given_spacing(geom, mm)
        except LesionSegError as e:
            show_error(str(e))
            return None
        for target in [layer] + self._layers_on(layer):
            entry = dict(target.metadata.get(METADATA_KEY) or {})
            if geometry_from_metadata(target.metadata) is not None or target is layer:
                entry["geometry"] = new.copy(extra=dict(new.extra))
            target.metadata[METADATA_KEY] = entry
            scale = list(target.scale)
            scale[-n:] = new.spacing
            target.scale = scale
        if self.result is not None and self.result.image_layer is layer:
            self.result.spacing = tuple(self.result.labels_layer.scale)
        self.viewer.reset_view()
        self._update_units()
        self.status.setText(f"{layer.name}: pixel size set to {new.spacing[-1]:.4g} mm; sizes are now in mm.")
        return new.spacing

    def _layers_on(self, layer: Image) -> list:
        """Layers that sit on `layer`'s pixels: made from it (masks, probabilities, the ruler), or read from the
        same file with the same shape (a sample's expert mask)."""
        from ..core.geometry import METADATA_KEY

        source = (layer.metadata.get(METADATA_KEY) or {}).get("source_path")
        shape = tuple(layer.data.shape[:layer.ndim]) if not layer.multiscale else None
        out = []
        for other in self.viewer.layers:
            other = _unwrap(other)
            entry = other.metadata.get(METADATA_KEY) or {}
            if other is layer:
                continue
            same_file = source and entry.get("source_path") == source and shape is not None and \
                tuple(np.shape(other.data)[:layer.ndim]) == shape
            if entry.get("derived_from") == layer.name or same_file:
                out.append(other)
        return out

    def add_ruler(self):
        """A Points layer on the image: click two points a known distance apart (e.g. depth-scale ticks)."""
        from ..core.geometry import METADATA_KEY

        layer = self.current_image()
        if layer is None:
            show_warning("Open an image first.")
            return None
        if RULER_LAYER in self.viewer.layers:
            ruler = _unwrap(self.viewer.layers[RULER_LAYER])
        else:
            ruler = _unwrap(self.viewer.add_points(
                np.empty((0, layer.ndim)), ndim=layer.ndim, name=RULER_LAYER, scale=layer.scale,
                translate=layer.translate, face_color="yellow", size=max(layer.data.shape[-2:]) / 100,
                metadata={METADATA_KEY: {"derived_from": layer.name}}))
        self.viewer.layers.selection.active = ruler
        ruler.mode = "add"
        self.status.setText("Click two points a known distance apart, enter the distance, then 'Set from ruler'.")
        return ruler

    def set_pixel_size_from_ruler(self, distance_mm: float) -> tuple | None:
        """Pixel size from the ruler's two points and the distance between them (core `spacing_from_ruler`)."""
        layer = self.current_image()
        if layer is None or RULER_LAYER not in self.viewer.layers:
            show_warning("Click 'Ruler points' and put two points on the image first.")
            return None
        ruler = _unwrap(self.viewer.layers[RULER_LAYER])
        points = np.asarray(ruler.data, float)
        try:
            if len(points) != 2:
                raise LesionSegError(f"The ruler needs exactly two points; it has {len(points)}. Delete the extra "
                                     "ones (Points layer, select and Delete).")
            pixels = [np.asarray(layer.world_to_data(ruler.data_to_world(pt)), float)[-2:] for pt in points]
            mm = spacing_from_ruler(pixels[0], pixels[1], distance_mm)
        except LesionSegError as e:
            show_error(str(e))
            return None
        return self.set_pixel_size(mm)

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
        self.refresh_references()
        if self.image_combo.currentText() != current:  # a new image gets its default scope; the user's choice
            self._default_scope()                       # survives the layers Segment itself adds
        self._update_units()

    def refresh_references(self) -> None:
        """Labelled masks to pick a threshold from: every Labels layer but the model's own output."""
        own = self.result.labels_layer if self.result is not None else None
        ref = self.reference_combo.currentText()
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        refs = [l.name for l in self.viewer.layers if isinstance(l, Labels) and _unwrap(l) is not own]
        self.reference_combo.addItems(refs)
        if ref in refs:
            self.reference_combo.setCurrentText(ref)
        self.reference_combo.blockSignals(False)
        self.reference_combo.setToolTip(self.reference_combo.currentText()
                                        or "A labelled (corrected or ground-truth) mask of the segmented image")

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
        self.image_gate.set_model(card)
        self._show_flips(card)
        if card is None:
            self.model_info.setText("No model available." if not name else "")
            return
        text = f"{card.modality}, {card.network}, {card.headline_metric()}"
        if card.parent:
            text += f", fine-tuned from {card.parent}"
        self.model_info.setText(text)
        if self.result is None:
            self.threshold_slider.blockSignals(True)
            self.threshold_slider.setValue(int(round(card.threshold * 100)))
            self.threshold_label.setText(f"{card.threshold:.2f}")
            self.threshold_slider.blockSignals(False)

    def _show_flips(self, card) -> None:
        """The flips checkbox, for a model whose card averages flipped views (`tta`): unticked, one pass, faster."""
        views = 1 + len(card.tta) if card is not None else 1
        self.flips_box.setVisible(views > 1)
        self.flips_box.setToolTip(f"Average each image or window with {views - 1} flipped copies, as the model's "
                                  f"figures were measured; untick for one pass, about {views}× faster")

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
    def _predictor(self, name: str, device: str, flips: bool = True):
        """The loaded model, cached; first called from the worker, so weights never load on the GUI thread."""
        from ..core.inference.engine import Predictor

        key = (name, device, flips)
        if key not in self._predictors:
            card = self.registry.get(name)
            self._predictors[key] = Predictor(card, device=device, notice=self.jobs.notice, flips=flips)
        return self._predictors[key]

    # the running job, for callers and tests that look at it (see `_worker.DockJobs`)
    @property
    def _worker(self):
        return self.jobs.worker

    @property
    def _cancel(self):
        return self.jobs.cancel_event

    @property
    def _idle(self):
        return self.jobs.idle

    def segment(self) -> None:
        """Start a Segment run in a thread worker (no-op if one is running)."""
        if self.jobs.running():
            return
        layer = self.current_image()
        if layer is None:
            show_warning("Open an image first (File → Open, or File → Open Sample → Lesion Segmentation).")
            return
        model = self.model_combo.currentText()
        if not model:
            show_warning("No model available: train one from the Fine-tune dock or install the shipped models.")
            return
        try:
            card = self.registry.get(model)  # reads the card only; the weights load in the worker
            job = self._plan(layer, card, self.scope_combo.currentText(), model, self.device_combo.currentText())
        except LesionSegError as e:
            self.status.setText(str(e))
            show_error(str(e))
            return
        self.status.setText(f"Segmenting {layer.name} with {model}…")
        self.jobs.start(self._predict, job, desc=f"Segment {layer.name} ({model})",
                        done=lambda out: self._finish(job, out), cancelled=self._cancelled)

    def close_and_wait(self) -> bool:
        """Cancel a running job and wait for its thread to end (at most JOIN_TIMEOUT_S); True when it ended."""
        return self.jobs.stop()

    def _plan(self, layer: Image, card: ModelCard, scope: str, model: str = "", device: str = "cpu") -> SegmentJob:
        """Everything the worker needs, read on the GUI thread (layers must not be touched from the worker).

        The fit rule is the core's `check_fit`, as in `lesionseg predict`: what cannot work is refused here, with
        the CLI's message; a model made for another kind of image runs as with `--force` (the user picked it), its
        mismatch said as a warning by the worker, in the CLI's words."""
        from ..core.inference.run import check_fit  # torch loads on first use, not with the dock

        if layer.ndim > 3:
            raise LesionSegError(f"{layer.name} has {layer.ndim} axes (several phases?). Segment one phase or a "
                                 "subtraction image (DCE dock).")
        scan = scan_from_layer(layer)
        check_fit(card, scan, force=True)  # raises for what cannot work; its messages are said by the worker, once
        job = SegmentJob(card=card, model_name=model or card.name, device=device, scan=scan, scope=scope,
                         layer_name=layer.name, gate=self.image_gate.enabled(), flips=self.flips_box.isChecked())
        if layer.ndim == 3:
            data = np.asarray(scan.data)
            if scope == "Current slice":
                job.axis = self._slice_axis(layer)
                index = int(np.clip(round(layer.world_to_data(self.viewer.dims.point)[job.axis]), 0,
                                    data.shape[job.axis] - 1))
                job.indices = [index]
            else:
                job.indices = list(range(data.shape[0]))
            existing = self.result if (self.result is not None and self.result.image_layer is layer
                                       and self.result.card.name == card.name) else None
            if existing is not None and existing.done_slices and job.axis != existing.done_slices_axis:
                existing = None
            job.existing = existing
            job.stats = existing.stats if existing is not None else None
        return job

    def _slice_axis(self, layer: Image) -> int:
        """The axis the user is stepping through in the displayed orientation."""
        displayed = set(self.viewer.dims.displayed)
        offset = self.viewer.dims.ndim - layer.ndim
        candidates = [a - offset for a in range(self.viewer.dims.ndim) if a not in displayed and a - offset >= 0]
        return candidates[-1] if candidates else 0

    def _predict(self, job: SegmentJob) -> SegmentOutput:
        """Runs in the worker thread: the core's `predict_scan` (or its slice form), as `lesionseg predict`."""
        from ..core.inference.run import predict_scan, predict_scan_slices

        predictor = self._predictor(job.model_name, job.device, job.flips)
        ctx = self.jobs.context
        common = dict(progress=ctx.progress, cancelled=ctx.cancelled, force=job.force, notice=ctx.notice)
        if job.indices is not None:
            probs, stats = predict_scan_slices(predictor, job.scan, job.indices, axis=job.axis, stats=job.stats,
                                               **common)
            return SegmentOutput(slices=probs, stats=stats)
        # Slides stay lazy: tiles are read one batch at a time; large results land in a zarr store on disk.
        said = []
        probs = predict_scan(predictor, job.scan, gate=job.gate, on_gate=said.append, **common)
        return SegmentOutput(probs=probs, gate=said[0] if said else None)

    def cancel(self) -> None:
        self.jobs.cancel()

    def _cancelled(self) -> None:
        self.status.setText("Cancelled: no new layer was added; finished slices were kept.")
        show_info("Segmentation cancelled.")

    def _finish(self, job: SegmentJob, out: SegmentOutput) -> None:
        card = job.card
        if job.layer_name not in self.viewer.layers:
            show_warning("The image was closed while it was being segmented; nothing was added.")
            return
        layer = _unwrap(self.viewer.layers[job.layer_name])
        if job.indices is not None:
            self._fill_slices(layer, job, out)
            self.image_gate.show_result(None)  # the gate judges whole 2D images only
        else:
            self.result = self._new_result(layer, card, out.probs)
            self.rethreshold(force=True)
            self.image_gate.show_result(out.gate)
            self.status.setText(f"Segmented with {card.name}. Move the threshold, correct with the label tools, "
                                "then Export.")
        self.viewer.layers.selection.active = self.result.labels_layer
        self.refresh_references()

    def _fill_slices(self, layer: Image, job: SegmentJob, out: SegmentOutput) -> None:
        """Put a volume run's slices into its probabilities (a new result, or the earlier run's layers)."""
        card = job.card
        seg = job.existing
        if seg is None or not self._in_viewer(seg.prob_layer) or not self._in_viewer(seg.labels_layer):
            shape = layer.data[0].shape if layer.multiscale else layer.data.shape
            probs = np.zeros(((card.n_outputs,) if card.multiclass else ()) + tuple(shape), np.float32)
            seg = self._new_result(layer, card, probs)
            seg.done_slices_axis = job.axis
        seg.stats = out.stats
        region = None
        for k, idx in enumerate(job.indices):
            sl = [slice(None)] * 3
            sl[job.axis] = idx
            if card.multiclass:
                seg.probs[(slice(None),) + tuple(sl)] = out.slices[k]
            else:
                seg.probs[tuple(sl)] = out.slices[k]
            seg.done_slices.add(idx)
            region = tuple(sl) if len(job.indices) == 1 else None
        self.result = seg
        seg.prob_layer.refresh()
        self.rethreshold(force=True, region=region)
        self.status.setText(f"{len(seg.done_slices)} slice(s) segmented with {card.name}.")

    def _previous_results(self, layer: Image, card) -> tuple[list, list]:
        """(probability layers, Labels layers) an earlier Segment run made from this image with this model."""
        probs, labels = [], []
        for l in self.viewer.layers:
            meta = l.metadata or {}
            if (meta.get("lesionseg") or {}).get("derived_from") != layer.name or meta.get("lesionseg_model") != card.name:
                continue
            if meta.get("lesionseg_probs"):
                probs.append(_unwrap(l))
            elif isinstance(l, Labels):
                labels.append(_unwrap(l))
        return probs, labels

    def _clear_previous_results(self, layer: Image, card) -> str:
        """Remove what an earlier run of this model on this image added, so a second run does not stack
        "… [1]" layers. A mask the user painted on is kept (their work), and the new mask gets a name of its own;
        returns the name for the new mask."""
        probs, labels = self._previous_results(layer, card)
        kept = [l for l in labels if l.metadata.get(EDITED_KEY)]
        for l in probs + [l for l in labels if l not in kept]:
            self.viewer.layers.remove(l)
        name = f"{layer.name} mask"
        if name in self.viewer.layers:
            k = 2
            while f"{layer.name} mask ({card.name}, run {k})" in self.viewer.layers:
                k += 1
            name = f"{layer.name} mask ({card.name}, run {k})"
            self.status.setText(f"Your corrected mask was kept; the new one is '{name}'.")
        return name

    def _new_result(self, layer: Image, card, probs) -> Segmentation:
        if not isinstance(probs, np.ndarray):  # a slide-sized result in a zarr store: shown lazily
            import dask.array as da

            probs = da.from_zarr(probs)
            if not card.multiclass:
                probs = probs[0]
        fg = probs if not card.multiclass else 1.0 - probs[0]
        base = layer.name
        mask_name = self._clear_previous_results(layer, card)
        pkw = derived_layer_kwargs(layer, f"{base} probabilities ({card.name})", ndim=fg.ndim)
        pkw["metadata"]["lesionseg_probs"] = True
        pkw["metadata"]["lesionseg_model"] = card.name
        prob_layer = self.viewer.add_image(fg, colormap="inferno", blending="additive", opacity=0.5,
                                           contrast_limits=(0, 1), **pkw)
        shape = probs.shape[1:] if card.multiclass else probs.shape
        lkw = derived_layer_kwargs(layer, mask_name, ndim=len(shape))
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
        seg.labels_layer.metadata[EDITED_KEY] = True  # a later run keeps this layer; a DICOM SEG says SEMIAUTOMATIC

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
            labels.metadata[EDITED_KEY] = False
            return
        apply_threshold(seg.probs, self.threshold, labels.data, multiclass=seg.card.multiclass,
                        post=self.post_processing(), spacing=seg.spacing, region=region)
        if force:
            seg.edited = False
            labels.metadata[EDITED_KEY] = False
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
        dicom = is_dicom_layer(layer)
        default = default_mask_name(layer)
        filters = "Masks (*.nii.gz *.nii *.png *.tif *.tiff)"
        if dicom:
            default = default.removesuffix(".nii.gz").removesuffix(".png") + ".dcm"
            filters = "DICOM SEG (*.dcm);;" + filters
        path, _ = QFileDialog.getSaveFileName(self, "Export mask", default, filters)
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
        def write():
            refuse_overwriting_open_inputs(path, self.viewer)  # the scan, an expert mask, any file a layer shows
            return write_mask(np.asarray(layer.data), geometry, path, source_path=source,
                              seg=seg_options_from_metadata(layer.metadata))

        out = written_or_reported(write, path)
        if out is None:
            return None
        self._written.add(Path(out).resolve())
        show_info(f"Mask written to {out}")
        self.status.setText(f"Exported {out}")
        return Path(out)


def default_mask_name(layer) -> str:
    """`<layer>_mask.png` (or .nii.gz for volumes): masks are named `*_mask*`, so they reopen as Labels."""
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", layer.name).strip("._") or "lesion"
    if "_mask" not in stem.lower():
        stem = re.sub(r"_?mask$", "", stem, flags=re.IGNORECASE) + "_mask"
    return f"{stem}.nii.gz" if layer.ndim == 3 else f"{stem}.png"
