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
