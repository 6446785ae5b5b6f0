"""`Scan`: one opened image with everything needed to place it (geometry) and show it (contrast, rgb, multiscale).

Readers in this package all return `list[Scan]` so the CLI, the engine and the napari reader share one shape.

Modality guess (a hint for picking a model; override with `read_scan(..., modality=...)`):
- NIfTI → "mri"; DICOM by its Modality tag: MR → "mri", MG → "mammography", US → "ultrasound", SM → "histology",
  anything else → the tag in lower case;
- colour rasters (RGB whose channels differ), pyramidal slides, SVS/NDPI → "histology";
- grayscale rasters that are 16-bit, PGM, or named like mini-MIAS (`mdbNNN`) → "mammography";
- other grayscale rasters (PNG/JPEG/BMP/8-bit TIFF) → "ultrasound".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geometry import METADATA_KEY, Geometry

MODALITIES = ("mri", "mammography", "histology", "ultrasound")


@dataclass
class Scan:
    data: Any
    """numpy array in napari axis order, or for a multiscale slide a list of lazy (dask) arrays, finest first."""
    geometry: Geometry
    """Spacing of the spatial axes (mm), the source affine/header; `geometry.extra['source_path']` is the file read."""
    modality: str
    name: str
    rgb: bool = False
    """True when the last axis holds RGB colour (napari `rgb=True`)."""
    axes: str = "yx"
    """Axis letters in napari order: 't' time/phase, 'z', 'y', 'x', and 'c' for the RGB axis (always last)."""
    channel_axis: int | None = None
    contrast_limits: tuple[float, float] | None = None
    """Display window (e.g. the DICOM VOI window); None lets napari choose."""
    multiscale: bool = False
    metadata: dict = field(default_factory=dict)
    """Reader notes: 'warnings' (list of str), DICOM summary, microns per pixel, etc."""
    layer_type: str = "image"
    """'image', or 'labels' for a mask read from a file (a DICOM SEG placed on its source series)."""

    @property
    def source_path(self) -> str | None:
        return self.geometry.extra.get("source_path")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.data[0] if self.multiscale else self.data).shape)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes only (what a mask for this scan must have)."""
        return tuple(n for n, a in zip(self.shape, self.axes) if a in "zyx")

    def layer_scale(self) -> tuple[float, ...]:
        """napari `scale`: the geometry spacing, with 1 for a time axis (the RGB axis takes no scale)."""
        spacing = iter(self.geometry.spacing)
        return tuple(1.0 if a == "t" else float(next(spacing)) for a in self.axes if a != "c")

    def layer_metadata(self) -> dict:
        """Layer metadata: the Geometry under 'lesionseg' plus modality and reader notes (no napari affine)."""
        meta = self.geometry.to_metadata()
        meta[METADATA_KEY].update(modality=self.modality, axes=self.axes, source_path=self.source_path)
        meta[METADATA_KEY]["reader"] = {k: v for k, v in self.metadata.items() if not k.startswith("_")}
        return meta

    def layer_kwargs(self) -> dict:
        """Keyword arguments for a napari Image layer (Qt-free, so the CLI/tests can inspect them)."""
        kw: dict = {
            "name": self.name,
            "scale": self.layer_scale(),
            "metadata": self.layer_metadata(),
        }
        if self.layer_type == "labels":
            return kw
        kw["rgb"] = self.rgb
        if self.multiscale:
            kw["multiscale"] = True
        if self.contrast_limits is not None:
            kw["contrast_limits"] = [float(self.contrast_limits[0]), float(self.contrast_limits[1])]
        if self.channel_axis is not None:
            kw["channel_axis"] = self.channel_axis
        return kw

    def warn(self, message: str) -> None:
        self.metadata.setdefault("warnings", []).append(message)


def check_array(a: np.ndarray, what: str) -> None:
    """Reject arrays with an empty axis: there is nothing to show. (NaN/Inf are allowed: see `note_non_finite`.)"""
    from ..errors import LesionSegError

    if a.size == 0 or 0 in a.shape:
        raise LesionSegError(f"{what} has an empty axis (shape {tuple(a.shape)}); there is no image to show.")


def note_non_finite(scan: Scan) -> None:
    """A scan with NaN/Inf values opens (the file is what it is), with a warning and a display range taken from
    its finite values; segmenting treats those voxels as background (`core.checks.replace_non_finite`)."""
    if scan.multiscale or not isinstance(scan.data, np.ndarray) or not np.issubdtype(scan.data.dtype, np.floating):
        return
    bad = ~np.isfinite(scan.data)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return
    finite = scan.data[~bad]
    if finite.size and scan.contrast_limits is None:
        low, high = float(finite.min()), float(finite.max())
        scan.contrast_limits = (low, high if high > low else low + 1.0)
    scan.metadata["non_finite_voxels"] = n_bad
    scan.warn(f"{scan.name} has {n_bad} NaN or infinite values (outside the field of view?): they are shown as "
              "empty and treated as background when segmenting.")


MASK_NAME_MARK = "_mask"
MAX_MASK_LABELS = 32


def mask_labels(scan: Scan) -> np.ndarray | None:
    """The label image when `scan` is a saved mask, else None.

    A mask is a single-channel file whose name holds '_mask' (what Export and `lesionseg predict` write) and whose
    pixels are whole numbers with few distinct values: 0/255 or 0/1 (binary, returned as 0/1 so the brush's
    label 1 matches), or up to 32 lesion labels (kept). Opened as a Labels layer, it can be corrected and measured.
    """
    from pathlib import Path

    source = scan.source_path
    name = Path(source).name if source else scan.name
    if scan.rgb or scan.multiscale or MASK_NAME_MARK not in name.lower():
        return None
    a = np.asarray(scan.data)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or np.any(a != np.round(a)):
            return None
    elif not np.issubdtype(a.dtype, np.integer):
        return None
    values = np.unique(a)
    if values.size > MAX_MASK_LABELS + 1 or values.min() < 0:
        return None
    if set(values.tolist()) <= {0, 1, 255}:
        return (a > 0).astype(np.uint8)
    return a.astype(np.uint8 if values.max() <= 255 else np.uint16)
