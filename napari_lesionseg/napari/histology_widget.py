"""Histology dock: H&E deconvolution, Macenko normalisation to a reference, mitosis heatmaps and counts.

All computation is in `napari_lesionseg.core.histology`; new layers sit on their source (same scale,
translate and Geometry metadata). Normalisation runs through the docks' worker helper (`_worker.DockJobs`; a
1000x1000 tile takes ~2 s); the layers are read on the GUI thread, only arrays go to the worker.
Counting per high-power field needs the pixel size: it is the layer's spacing in mm (40x ≈ 0.00025 mm).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import histology as H
from ..core.errors import LesionSegError
from ._worker import DockJobs
from .layer_utils import derived_layer_kwargs
from .layer_combo import LayerCombo

MAX_PIXELS = 64_000_000  # in-memory work only: a whole slide must be cropped to a region first


def _rgb_array(layer) -> np.ndarray:
    if layer.multiscale:
        raise LesionSegError(f"'{layer.name}' is a multi-resolution slide: crop a region (tile) to work on first.")
    a = np.asarray(layer.data)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise LesionSegError(f"'{layer.name}' is not a 2D RGB image (shape {a.shape}).")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise LesionSegError(f"'{layer.name}' has {a.shape[0] * a.shape[1] / 1e6:.0f} Mpixels: crop a region first.")
    return a


def _pixel_mm(layer) -> float:
    """The layer's pixel size in mm (its Geometry, else its scale), through the one layer -> Scan adapter."""
    from .scan_adapter import layer_geometry_or_default

    return float(np.mean(layer_geometry_or_default(layer).spacing[-2:]))


class HistologyWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from napari.layers import Image, Labels, Points

        self.viewer = napari_viewer
        try:
            from .autosave import ensure_autosave

            ensure_autosave(napari_viewer)
        except Exception:
            pass
        is_rgb = lambda la: bool(getattr(la, "rgb", False))  # noqa: E731

        # --- stains
        self.rgb_combo = LayerCombo(napari_viewer, (Image,), accept=is_rgb)
        self.ref_combo = LayerCombo(napari_viewer, (Image,), accept=is_rgb)
        self.deconv_btn = QPushButton("Deconvolve H&&E")
        self.deconv_btn.setToolTip("Add haematoxylin (nuclei) and eosin (cytoplasm, stroma) layers")
        self.deconv_btn.clicked.connect(self.deconvolve)
        self.norm_btn = QPushButton("Normalise to reference (Macenko)")
        self.norm_btn.clicked.connect(lambda: self.normalise(blocking=False))
        stains = QGroupBox("Stains")
        f1 = QFormLayout(stains)
        f1.addRow("H&&E image:", self.rgb_combo)
        f1.addRow(self.deconv_btn)
        f1.addRow("Reference tile:", self.ref_combo)
        f1.addRow(self.norm_btn)

        # --- points
        self.points_combo = LayerCombo(napari_viewer, (Points,))
        self.regions_combo = LayerCombo(napari_viewer, (Labels,), optional=True)
        self.hpf_spin = QDoubleSpinBox()
        self.hpf_spin.setDecimals(3)
        self.hpf_spin.setRange(0.01, 10.0)
        self.hpf_spin.setSingleStep(0.01)
        self.hpf_spin.setValue(H.DEFAULT_HPF_AREA_MM2)
        self.hpf_spin.setSuffix(" mm²")
        self.decay_spin = QDoubleSpinBox()
        self.decay_spin.setDecimals(3)
        self.decay_spin.setRange(0.001, 10.0)
        self.decay_spin.setValue(0.1)
        self.decay_spin.setToolTip("a in exp(-a·d), d in pixels")
        self.count_btn = QPushButton("Count points")
        self.count_btn.clicked.connect(self.count)
        self.heatmap_btn = QPushButton("Heatmap exp(-a·d)")
        self.heatmap_btn.clicked.connect(self.heatmap)
        pts = QGroupBox("Mitoses / point annotations")
        f2 = QFormLayout(pts)
        f2.addRow("Points:", self.points_combo)
        f2.addRow("Regions (optional):", self.regions_combo)
        f2.addRow("HPF area:", self.hpf_spin)
        f2.addRow(self.count_btn)
        f2.addRow("Decay a (per pixel):", self.decay_spin)
        f2.addRow(self.heatmap_btn)

        if self.ref_combo.count() > 1 and self.ref_combo.currentText() == self.rgb_combo.currentText():
            self.ref_combo.setCurrentIndex(1)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.addWidget(stains)
        lay.addWidget(pts)
        lay.addWidget(self.result)
        lay.addStretch(1)
        self.jobs = DockJobs(self, start_buttons=(self.norm_btn,), status=self.result,
                             failure_prefix="Normalisation failed")

    # ------------------------------------------------------------------------------------------ helpers

    def _error(self, e: Exception) -> None:
        from napari.utils.notifications import show_error

        show_error(str(e))
        self.result.setText(str(e))

    def _image_for_points(self, points_layer):
        """The RGB image the points sit on (the chosen H&E image), for the field size; else None."""
        return self.rgb_combo.layer()

    # ------------------------------------------------------------------------------------------ stains

    def deconvolve(self):
        layer = self.rgb_combo.layer()
        if layer is None:
            self._error(LesionSegError("Choose an RGB H&E image."))
            return None
        try:
            h, e = H.deconvolve_he(_rgb_array(layer))
        except LesionSegError as err:
            self._error(err)
            return None
        def _limits(a):  # robust display window: the few darkest specks must not wash out the rest
            hi = float(np.percentile(a, 99.5))
            return (0.0, hi if hi > 0 else float(a.max()) or 1.0)

        hl = self.viewer.add_image(h, colormap="blue", blending="additive", contrast_limits=_limits(h),
                                   **derived_layer_kwargs(layer, f"{layer.name} haematoxylin"))
        el = self.viewer.add_image(e, colormap="magenta", blending="additive", contrast_limits=_limits(e),
                                   **derived_layer_kwargs(layer, f"{layer.name} eosin"))
        self.result.setText("Haematoxylin (nuclei, blue) and eosin (pink) concentrations added.")
        return hl, el

    @property
    def _worker(self):
        return self.jobs.worker

    def _add_normalised(self, out, layer, ref_layer):
        kw = derived_layer_kwargs(layer, f"{layer.name} normalised to {ref_layer.name}")
        new = self.viewer.add_image(out, rgb=True, **kw)
        self.result.setText(f"'{layer.name}' re-stained with the stain vectors of '{ref_layer.name}' (Macenko).")
        return new

    def normalise(self, blocking: bool = True):
        """Macenko-normalise the chosen image to the reference; blocking=False runs in a worker thread."""
        layer, ref = self.rgb_combo.layer(), self.ref_combo.layer()
        if layer is None or ref is None:
            self._error(LesionSegError("Choose an H&E image and a reference tile."))
            return None
        if layer is ref:
            self._error(LesionSegError("Choose a reference tile other than the image itself (open one, or a tile "
                                       "stained the way your model expects)."))
            return None
        try:
            image, reference = _rgb_array(layer), _rgb_array(ref)  # layers are read here, never in the worker
            if blocking:
                return self._add_normalised(H.macenko_normalize(image, reference), layer, ref)
        except LesionSegError as err:
            self._error(err)
            return None
        self.result.setText("Normalising…")
        return self.jobs.start(H.macenko_normalize, image, reference, desc=f"Normalise {layer.name}",
                               done=lambda out: self._add_normalised(out, layer, ref))

    # ------------------------------------------------------------------------------------------ points

    def _points_in_image_pixels(self, points_layer, shape_layer):
        """Point coordinates in the pixel frame of `shape_layer` (via world coordinates)."""
        pts = np.asarray(points_layer.data, float)
        if len(pts) == 0:
            return np.zeros((0, 2))
        world = np.array([points_layer.data_to_world(p) for p in pts])
        if shape_layer is None:
            return pts[:, -2:]
        px = np.array([shape_layer.world_to_data(w) for w in world])
        return px[:, -2:]

    def count(self) -> dict | None:
        """Counts per HPF (max, mean, 10-HPF hotspot) and, with regions, per region; shown in the dock."""
        pts_layer = self.points_combo.layer()
        if pts_layer is None:
            self._error(LesionSegError("Choose a Points layer (e.g. mitotic figures)."))
            return None
        regions = self.regions_combo.layer()
        base = self._image_for_points(pts_layer) or regions
        try:
            if base is None:
                raise LesionSegError("Choose the H&E image the points belong to (for the field size).")
            shape = tuple(base.data.shape[:2]) if not base.multiscale else tuple(base.data[0].shape[:2])
            spacing = _pixel_mm(base)
            if spacing >= 0.01:
                raise LesionSegError(f"'{base.name}' has a pixel size of {spacing:g} mm: that is not a microscope "
                                     "scan's (about 0.00025 mm at 40x). Set the layer's scale in mm first.")
            pts = self._points_in_image_pixels(pts_layer, base)
            hpf = H.count_points_per_hpf(pts, shape, spacing, hpf_area_mm2=self.hpf_spin.value())
            hot, box = H.hotspot_count(pts, shape, spacing, n_fields=10, hpf_area_mm2=self.hpf_spin.value())
            result = {"n_points": hpf.n_points, "n_fields": int(hpf.counts.size), "max_per_hpf": hpf.max_per_hpf,
                      "mean_per_hpf": hpf.mean_per_hpf, "hotspot_10hpf": hot, "hotspot_box_px": box}
            lines = [f"{hpf.n_points} point(s) over {hpf.counts.size} HPF(s) of {hpf.hpf_area_mm2:g} mm²: "
                     f"max {hpf.max_per_hpf} per HPF, mean {hpf.mean_per_hpf:.2f}; "
                     f"hotspot of 10 HPF: {hot}."]
            if regions is not None:
                if regions.data.ndim != 2 or tuple(regions.data.shape) != shape:
                    raise LesionSegError(f"Regions '{regions.name}' must be a 2D mask of the image's size {shape}.")
                rpts = self._points_in_image_pixels(pts_layer, regions)
                per = H.count_points_per_region(rpts, np.asarray(regions.data), spacing=spacing)
                result["per_region"] = per
                for lab, entry in per.items():
                    if lab == 0:
                        continue
                    hpfs = entry["area_mm2"] / self.hpf_spin.value()
                    lines.append(f"region {lab}: {entry['count']} point(s) in {entry['area_mm2']:.3f} mm² "
                                 f"({entry['count'] / hpfs if hpfs else 0:.2f} per HPF)")
                if 0 in per:
                    lines.append(f"outside regions: {per[0]['count']}")
        except LesionSegError as err:
            self._error(err)
            return None
        self.result.setText("\n".join(lines))
        self.last_counts = result
        return result

    def heatmap(self):
        """exp(-a·d) of the chosen points on the image's grid, as a new image layer."""
        pts_layer = self.points_combo.layer()
        base = self.rgb_combo.layer() or self.regions_combo.layer()
        if pts_layer is None or base is None:
            self._error(LesionSegError("Choose a Points layer and the image it belongs to."))
            return None
        shape = tuple(base.data.shape[:2]) if not base.multiscale else tuple(base.data[0].shape[:2])
        if shape[0] * shape[1] > MAX_PIXELS:
            self._error(LesionSegError("The image is too large for a heatmap: crop a region first."))
            return None
        pts = self._points_in_image_pixels(pts_layer, base)
        hm = heatmap_for(pts, shape, self.decay_spin.value())
        return self.viewer.add_image(hm, colormap="inferno", blending="additive", contrast_limits=(0.0, 1.0),
                                     **derived_layer_kwargs(base, f"{pts_layer.name} heatmap", ndim=2))


def heatmap_for(points, shape, a: float) -> np.ndarray:
    """exp(-a·d) heatmap on a (y, x) grid, d in pixels to the nearest point."""
    return H.points_heatmap(points, shape, a=a)
