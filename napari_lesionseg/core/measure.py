"""Per-lesion measurements in world units: size, RECIST-style diameters, intensity and enhancement.

A *lesion* is a connected component of a binary mask, or one label value of a multi-label mask (`by="auto"`
picks: several distinct label values -> one lesion per value; a single value -> connected components).

For each lesion:

* `area_mm2` (2D) or `volume_ml` (3D): pixel/voxel count x pixel area/voxel volume (1 mL = 1000 mm^3);
* `long_axis_mm`: the longest diameter, and `short_axis_mm`: the longest diameter perpendicular to it
  (RECIST 1.1), both measured in-plane on the slice where the lesion is largest (3D; axis 0 is the slice
  axis in napari order) or on the lesion itself (2D). The outline is the sub-pixel iso-contour at 0.5
  (marching squares) scaled by the in-plane spacing, so anisotropic pixels are handled and a digitised disc
  of radius r measures about 2r, not 2r - 1;
* `mean_intensity` over the lesion when an image is given, and `mean_enhancement` (post - pre) when a
  pre-contrast image or an enhancement map is given;
* the centroid in array indices (napari order) to jump to, and in world mm.

Units follow whether the pixel size is known (`Geometry.spacing_known`): a PNG/JPEG that states no pixel size is
measured in pixels, and the columns say so (`area_px2` or `volume_voxels`, `long_axis_px`, `short_axis_px`, no
`centroid_*_mm`), so a table never calls pixels millimetres. `LesionMeasurement.spacing_known` carries the answer to
every caller (CLI, Measure dock).

Everything here is Qt-free; `napari_lesionseg.napari.measure_widget` shows the table and
`lesionseg measure` writes it as CSV.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import LesionSegError
from .geometry import Geometry

__all__ = [
    "LesionMeasurement",
    "label_lesions",
    "measure_lesions",
    "diameters_2d",
    "measurements_to_rows",
    "size_text",
    "write_measurements_csv",
    "default_table_path",
]


@dataclass
class LesionMeasurement:
    label: int
    ndim: int
    n_voxels: int
    size: float
    """area in mm^2 (2D) or volume in mL (3D)"""
    long_axis_mm: float
    short_axis_mm: float
    slice_index: int | None
    """array index along axis 0 of the slice where the lesion is largest (3D), else None"""
    centroid: tuple[float, ...]
    """centroid in array indices, napari axis order"""
    centroid_mm: tuple[float, ...]
    """centroid in world millimetres (through the geometry's affine when known, else index x spacing)"""
    mean_intensity: float | None = None
    mean_enhancement: float | None = None
    spacing_known: bool = True
    """False when the pixel size is unknown: `size`, `long_axis_mm`, `short_axis_mm` are then in pixels."""
    long_axis_endpoints: np.ndarray | None = field(default=None, repr=False)
    """2x2 (row, col) array-index endpoints of the long axis on its slice (for drawing a line)"""
    short_axis_endpoints: np.ndarray | None = field(default=None, repr=False)

    @property
    def size_column(self) -> str:
        if not self.spacing_known:
            return "volume_voxels" if self.ndim == 3 else "area_px2"
        return "volume_ml" if self.ndim == 3 else "area_mm2"

    @property
    def size_unit(self) -> str:
        """Unit of `size` as a reader writes it: mm², mL, px² or voxels."""
        if not self.spacing_known:
            return "voxels" if self.ndim == 3 else "px²"
        return "mL" if self.ndim == 3 else "mm²"

    @property
    def length_unit(self) -> str:
        """Unit of the long and short axis: mm, or px when the pixel size is unknown."""
        return "mm" if self.spacing_known else "px"


# --------------------------------------------------------------------------------------------- lesions


def label_lesions(mask: np.ndarray, by: str = "auto") -> np.ndarray:
    """An integer image with one positive value per lesion.

    by: "component" (connected components of mask > 0, full connectivity), "label" (keep the mask's own
    label values) or "auto" ("label" when the mask holds two or more distinct positive values).
    """
    m = np.asarray(mask)
    if m.dtype == bool:
        m = m.astype(np.uint8)
    if by not in ("auto", "component", "label"):
        raise ValueError(f"by must be 'auto', 'component' or 'label', not {by!r}")
    if by == "auto":
        values = np.unique(m)
        values = values[values > 0]
        by = "label" if len(values) >= 2 else "component"
    if by == "label":
        out = np.where(m > 0, m, 0)
        return out.astype(np.int64, copy=False)
    structure = ndimage.generate_binary_structure(m.ndim, m.ndim)
    lab, _ = ndimage.label(m > 0, structure=structure)
    return lab


# ------------------------------------------------------------------------------------------- diameters


def _contour_points(region: np.ndarray) -> list[np.ndarray]:
    """Sub-pixel outline(s) of a 2D binary region, as (row, col) arrays in the region's index frame."""
    from skimage import measure as skm

    padded = np.pad(region.astype(np.float32), 1)
    contours = skm.find_contours(padded, 0.5)
    return [c - 1.0 for c in contours if len(c)]


def _max_pair(points: np.ndarray) -> tuple[float, int, int]:
    """Largest pairwise distance among points (n, 2) and the indices of the pair (on the convex hull)."""
    n = len(points)
    if n < 2:
        return 0.0, 0, 0
    idx = np.arange(n)
    if n > 3:
        try:
            from scipy.spatial import ConvexHull

            idx = ConvexHull(points).vertices
        except Exception:  # degenerate (collinear) sets
            idx = np.arange(n)
    hull = points[idx]
    if len(hull) > 3000:  # keep the O(h^2) search bounded
        step = math.ceil(len(hull) / 3000)
        idx = idx[::step]
        hull = points[idx]
    d2 = ((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return float(math.sqrt(d2[i, j])), int(idx[i]), int(idx[j])


def diameters_2d(region: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)):
    """Longest diameter and longest perpendicular diameter of a 2D binary region, in world units.

    Returns (long, short, long_endpoints, short_endpoints) with endpoints as 2x2 (row, col) index arrays
    in the region's frame. The short axis is the longest chord perpendicular to the long axis: the outline
    is cut by lines perpendicular to the long axis (every quarter pixel) and the longest cut is kept.
    """
    region = np.asarray(region, bool)
    if not region.any():
        return 0.0, 0.0, None, None
    sy, sx = float(spacing[0]), float(spacing[1])
    scale = np.array([sy, sx])
    contours = _contour_points(region)
    if not contours:
        return 0.0, 0.0, None, None
    pts = np.concatenate(contours) * scale  # world (y, x)
    long_len, i, j = _max_pair(pts)
    long_ends = np.stack([pts[i], pts[j]]) / scale
    if long_len == 0:
        return 0.0, 0.0, long_ends, None
    u = (pts[j] - pts[i]) / long_len  # unit vector along the long axis
    v = np.array([-u[1], u[0]])
    origin = pts[i]
    # every closed outline edge, in (along, across) coordinates
    a_list, b_list = [], []
    for c in contours:
        w = c * scale - origin
        along = w @ u
        across = w @ v
        a_list.append(np.stack([along[:-1], across[:-1], along[1:], across[1:]], axis=1))
    edges = np.concatenate(a_list) if a_list else np.zeros((0, 4))
    step = 0.25 * min(sy, sx)
    positions = np.arange(step / 2, long_len, step)
    best, best_pos, best_lo, best_hi = 0.0, None, 0.0, 0.0
    if len(edges) and len(positions):
        a0, b0, a1, b1 = edges.T
        lo_a = np.minimum(a0, a1)
        hi_a = np.maximum(a0, a1)
        # process positions in chunks to bound memory (edges x positions)
        chunk = max(1, int(2e6 // max(len(edges), 1)))
        for s in range(0, len(positions), chunk):
            p = positions[s:s + chunk][:, None]
            crosses = (lo_a[None] <= p) & (p < hi_a[None]) & (hi_a > lo_a)[None]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (p - a0[None]) / (a1 - a0)[None]
            b = b0[None] + t * (b1 - b0)[None]
            bmax = np.where(crosses, b, -np.inf).max(axis=1)
            bmin = np.where(crosses, b, np.inf).min(axis=1)
            widths = np.where(np.isfinite(bmax) & np.isfinite(bmin), bmax - bmin, 0.0)
            k = int(np.argmax(widths))
            if widths[k] > best:
                best = float(widths[k])
                best_pos, best_lo, best_hi = float(p[k, 0]), float(bmin[k]), float(bmax[k])
    short_ends = None
    if best_pos is not None:
        e0 = origin + best_pos * u + best_lo * v
        e1 = origin + best_pos * u + best_hi * v
        short_ends = np.stack([e0, e1]) / scale
    return long_len, best, long_ends, short_ends


# ---------------------------------------------------------------------------------------- measurements


def _spacing_of(mask: np.ndarray, spacing, geometry: Geometry | None) -> tuple[float, ...]:
    if spacing is None and geometry is not None:
        spacing = geometry.spacing
    if spacing is None:
        spacing = (1.0,) * mask.ndim
    if np.isscalar(spacing):
        spacing = (float(spacing),) * mask.ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != mask.ndim:
        raise LesionSegError(f"spacing {spacing} does not match a {mask.ndim}D mask")
    return spacing


def measure_lesions(
    mask: np.ndarray,
    spacing: float | tuple[float, ...] | None = None,
    image: np.ndarray | None = None,
    pre: np.ndarray | None = None,
    enhancement: np.ndarray | None = None,
    geometry: Geometry | None = None,
    by: str = "auto",
    spacing_known: bool | None = None,
) -> list[LesionMeasurement]:
    """Measure every lesion of a 2D (y, x) or 3D (z, y, x) mask.

    spacing: pixel/voxel size in mm per array axis (napari order); defaults to `geometry.spacing`, else 1.
    spacing_known: whether that size is real millimetres; by default `geometry.spacing_known` when a geometry is
    given, else True when `spacing` is given and False when neither is (sizes then in pixels).
    image: the scan (same shape) for `mean_intensity`; for DCE, the post-contrast image.
    pre: pre-contrast image; with `image`, `mean_enhancement` = mean(image - pre) over the lesion.
    enhancement: an enhancement map (e.g. post - pre) used directly for `mean_enhancement`.
    An RGB image (..., 3) is averaged over its channels for `mean_intensity`.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise LesionSegError(f"measurements need a 2D or 3D mask, not {mask.ndim}D (shape {mask.shape})")
    if spacing_known is None:
        spacing_known = geometry.spacing_known if geometry is not None else spacing is not None
    spacing = _spacing_of(mask, spacing, geometry)
    if not spacing_known:
        spacing = (1.0,) * mask.ndim  # one pixel = 1: sizes in px, never a guessed mm

    def _check(arr, what):
        if arr is None:
            return None
        arr = np.asarray(arr)
        if arr.ndim == mask.ndim + 1 and arr.shape[-1] in (3, 4) and arr.shape[:-1] == mask.shape:
            arr = arr[..., :3].astype(np.float64).mean(-1)
        if arr.shape != mask.shape:
            raise LesionSegError(f"{what} shape {arr.shape} does not match the mask {mask.shape}")
        return arr

    image = _check(image, "image")
    pre = _check(pre, "pre-contrast image")
    enhancement = _check(enhancement, "enhancement map")
    if enhancement is None and pre is not None and image is not None:
        enhancement = image.astype(np.float64) - pre.astype(np.float64)

    lab = label_lesions(mask, by=by)
    objects = ndimage.find_objects(lab)
    cell = float(np.prod(spacing))
    affine = geometry.array_affine() if geometry is not None and geometry.ndim == mask.ndim else None
    results: list[LesionMeasurement] = []
    for value, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        region = lab[sl] == value
        n = int(region.sum())
        if n == 0:
            continue
        offset = np.array([s.start for s in sl], float)
        local = np.argwhere(region)
        centroid = tuple(float(c) for c in (local.mean(0) + offset))
        if affine is not None:
            centroid_mm = tuple(float(c) for c in (affine @ np.r_[centroid, 1.0])[: mask.ndim])
        else:
            centroid_mm = tuple(float(c * s) for c, s in zip(centroid, spacing))
        if mask.ndim == 3:
            per_slice = region.reshape(region.shape[0], -1).sum(1)
            ties = np.flatnonzero(per_slice == per_slice.max())
            k = int(ties[np.argmin(np.abs(ties + offset[0] - centroid[0]))])  # ties: the one nearest the centroid
            plane = region[k]
            slice_index = int(k + offset[0])
            size = n * cell / 1000.0 if spacing_known else float(n)
            in_plane = spacing[1:]
            off2 = offset[1:]
        else:
            plane = region
            slice_index = None
            size = n * cell
            in_plane = spacing
            off2 = offset
        long_len, short_len, le, se = diameters_2d(plane, in_plane)
        if le is not None:
            le = le + off2
        if se is not None:
            se = se + off2
        mean_int = float(image[sl][region].astype(np.float64).mean()) if image is not None else None
        mean_enh = float(enhancement[sl][region].astype(np.float64).mean()) if enhancement is not None else None
        results.append(
            LesionMeasurement(
                label=int(value),  # the label value itself, or the component number
                ndim=mask.ndim,
                n_voxels=n,
                size=float(size),
                long_axis_mm=float(long_len),
                short_axis_mm=float(short_len),
                slice_index=slice_index,
                centroid=centroid,
                centroid_mm=centroid_mm,
                mean_intensity=mean_int,
                mean_enhancement=mean_enh,
                spacing_known=bool(spacing_known),
                long_axis_endpoints=le,
                short_axis_endpoints=se,
            )
        )
    return results


# ----------------------------------------------------------------------------------------------- table


def measurements_to_rows(measurements: list[LesionMeasurement]) -> tuple[list[str], list[list]]:
    """(columns, rows) of a measurement table; columns depend on what was measured and on the unit (mm or px)."""
    if not measurements:
        return ["label"], []
    first = measurements[0]
    ndim, known = first.ndim, first.spacing_known
    length = first.length_unit
    axes = ("z", "y", "x") if ndim == 3 else ("y", "x")
    cols = ["label", "n_voxels" if ndim == 3 else "n_pixels", first.size_column,
            f"long_axis_{length}", f"short_axis_{length}"]
    if ndim == 3:
        cols.append("slice")
    has_int = any(m.mean_intensity is not None for m in measurements)
    has_enh = any(m.mean_enhancement is not None for m in measurements)
    if has_int:
        cols.append("mean_intensity")
    if has_enh:
        cols.append("mean_enhancement")
    cols += [f"centroid_{a}" for a in axes]
    if known:
        cols += [f"centroid_{a}_mm" for a in axes]
    rows = []
    for m in measurements:
        r = [m.label, m.n_voxels, round(m.size, 6), round(m.long_axis_mm, 3), round(m.short_axis_mm, 3)]
        if ndim == 3:
            r.append(m.slice_index)
        if has_int:
            r.append(None if m.mean_intensity is None else round(m.mean_intensity, 4))
        if has_enh:
            r.append(None if m.mean_enhancement is None else round(m.mean_enhancement, 4))
        r += [round(c, 2) for c in m.centroid]
        if known:
            r += [round(c, 3) for c in m.centroid_mm]
        rows.append(r)
    return cols, rows


def size_text(n_pixels: int, spacing, spacing_known: bool) -> str:
    """A region's size for a person: `23102 pixels = 231.02 mm²` when the pixel size is known, else only pixels."""
    ndim = len(spacing)
    what = "voxels" if ndim == 3 else "pixels"
    if not spacing_known:
        return f"{n_pixels} {what} (pixel size unknown)"
    cell = float(np.prod(spacing))
    if ndim == 3:
        return f"{n_pixels} {what} = {n_pixels * cell / 1000.0:.2f} mL"
    return f"{n_pixels} {what} = {n_pixels * cell:.2f} mm²"


def write_measurements_csv(measurements: list[LesionMeasurement], path: str | os.PathLike) -> Path:
    """Write the table as CSV atomically (the project's one atomic writer, `io/atomic.py`)."""
    import csv

    from .io.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols, rows = measurements_to_rows(measurements)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
    return path


def default_table_path(mask_path: str | os.PathLike) -> Path:
    """`<mask stem>_measurements.csv` beside the mask (`lesion.nii.gz` -> `lesion_measurements.csv`)."""
    p = Path(mask_path)
    name = p.name
    for ext in (".nii.gz", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        stem = p.stem
    return p.with_name(f"{stem}_measurements.csv")
