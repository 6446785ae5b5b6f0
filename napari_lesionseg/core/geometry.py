"""Where an array sits in the world: spacing, the full affine, and the source header.

Arrays in this project are in napari's axis order: for volumes (z, y, x) — slices first — which is the
reverse of NIfTI's (i, j, k). `Geometry.affine` maps *array* indices (napari order) to world millimetres, so
napari's `scale` is the column norms of its 3x3 part. `nifti_affine` keeps the file's own affine for writing
back, untouched (napari-nifti's lesson: the true affine travels with every derived layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

METADATA_KEY = "lesionseg"


@dataclass
class Geometry:
    spacing: tuple[float, ...]
    """Size of one pixel/voxel along each spatial array axis, in millimetres (napari `scale`)."""
    nifti_affine: np.ndarray | None = None
    """4x4 affine of the source in NIfTI index order (i, j, k), exactly as in the file; None for 2D rasters."""
    reversed_axes: bool = True
    """True when the array is the NIfTI array with its spatial axes reversed (i, j, k) -> (k, j, i)."""
    header: Any = None
    """The source's header object (nibabel header, DICOM dataset summary…), copied onto derived outputs."""
    extra: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @property
    def spacing_known(self) -> bool:
        """False when the file states no pixel size (PNG/JPEG): `spacing` is then 1 = one pixel, not 1 mm."""
        return self.extra.get("spacing_known", True) is not False and self.extra.get("spacing_source") != "none"

    def array_affine(self) -> np.ndarray:
        """4x4 (or 3x3 for 2D) affine from array indices (napari order) to world mm."""
        n = self.ndim
        if self.nifti_affine is None or n != 3:
            a = np.eye(n + 1)
            a[:n, :n] = np.diag(self.spacing)
            return a
        a = np.asarray(self.nifti_affine, dtype=float)
        if not self.reversed_axes:
            return a.copy()
        perm = np.eye(4)
        perm[:3, :3] = np.eye(3)[::-1]
        return a @ perm

    def to_metadata(self) -> dict:
        return {METADATA_KEY: {"geometry": self}}

    def copy(self, **changes) -> "Geometry":
        return replace(self, **changes)


def geometry_from_metadata(metadata: dict | None, ndim: int | None = None) -> Geometry | None:
    """The Geometry stored on a napari layer's metadata, or None."""
    if not metadata:
        return None
    entry = metadata.get(METADATA_KEY, {})
    geom = entry.get("geometry") if isinstance(entry, dict) else None
    if geom is None:
        return None
    if ndim is not None and geom.ndim != ndim:
        return None
    return geom


def default_geometry(shape: tuple[int, ...], spacing: float | tuple[float, ...] = 1.0) -> Geometry:
    """Geometry of an image with no known placement: unit (or given) spacing, identity orientation."""
    n = len(shape)
    if np.isscalar(spacing):
        spacing = (float(spacing),) * n
    return Geometry(spacing=tuple(float(s) for s in spacing))


def with_given_spacing(geometry: Geometry, spacing: float | tuple[float, ...]) -> Geometry:
    """A copy of `geometry` whose pixel size (mm) the user stated, for files that state none (PNG, JPEG…).

    Scans that carry their own placement (a NIfTI/DICOM affine) are refused: their spacing is not a guess.
    """
    from .errors import LesionSegError

    if geometry.nifti_affine is not None:
        raise LesionSegError("This scan states its own voxel size (its file's affine); it cannot be changed here.")
    values = (float(spacing),) * geometry.ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != geometry.ndim:
        raise LesionSegError(f"Give one pixel size or {geometry.ndim} (one per axis); got {len(values)}.")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise LesionSegError("The pixel size must be a positive number of millimetres.")
    extra = dict(geometry.extra, spacing_source="given", spacing_known=True)
    return replace(geometry, spacing=values, extra=extra)


def spacing_from_ruler(p0, p1, distance_mm: float) -> float:
    """Pixel size (mm) from two points (pixel coordinates) that lie `distance_mm` apart on the patient.

    For ultrasound: two clicks on the depth scale's ticks (e.g. 10 mm apart) give the image's pixel size.
    """
    from .errors import LesionSegError

    a, b = np.asarray(p0, float), np.asarray(p1, float)
    if a.shape != b.shape or a.ndim != 1:
        raise LesionSegError("The ruler needs two points with the same number of coordinates.")
    pixels = float(np.linalg.norm(b - a))
    if not np.isfinite(distance_mm) or distance_mm <= 0:
        raise LesionSegError("Enter the distance between the two ruler points in millimetres (more than 0).")
    if pixels < 1.0:
        raise LesionSegError("The two ruler points are less than one pixel apart; put them on two distant ticks.")
    return float(distance_mm) / pixels
