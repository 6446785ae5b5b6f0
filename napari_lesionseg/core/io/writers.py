"""Writing masks and probability maps where the source scan sits, in the format the extension asks for.

- `.nii` / `.nii.gz`: the source's affine and a copy of its header (dtype, scaling and intent reset), so any NIfTI
  viewer overlays the mask on the scan. 2D rasters get an affine from their spacing.
- `.png`: 2D only; a binary mask is written 0/255, multi-class labels keep their values (uint8, or uint16 above 255).
- `.tif` / `.tiff`: same values as PNG (3D masks as a page stack), with the spacing in the resolution tags;
  slide-sized masks (≥ 8192² pixels, or lazy arrays) as a tiled, zlib-compressed pyramid, written tile by tile.
- `.dcm`: a DICOM SEG referring to the source series (masks of DICOM scans only; `dicom_seg.py`).
Every write goes to a temporary file and is renamed at the end (`atomic.py`); the source scan is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .atomic import atomic_path
from .nifti import is_nifti, write_nifti
from .slide import SLIDE_PIXELS

MASK_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".dcm")
TILE = 512


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if is_nifti(name):
        return "nifti"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".dcm"):
        return "seg"
    raise LesionSegError(
        f"Cannot write {path.name}: unsupported extension. Use one of {', '.join(MASK_SUFFIXES)}."
    )


def _image_format_of(path: Path) -> str:
    fmt = _format_of(path)
    if fmt == "seg":
        raise LesionSegError(f"Cannot write {path.name}: a .dcm file here is a DICOM SEG, for masks only. "
                             "Save images as .nii.gz or .tif.")
    return fmt


def _sources(geometry: Geometry | None, source_path) -> list:
    out = [source_path]
    if geometry is not None:
        out.append(geometry.extra.get("source_path"))
        out.extend(geometry.extra.get("source_files", []) or [])
    return out


def _is_lazy(a) -> bool:
    return not isinstance(a, np.ndarray) and hasattr(a, "shape") and hasattr(a, "dtype")


def _check_shape(mask, geometry: Geometry | None) -> None:
    if 0 in mask.shape:
        raise LesionSegError(f"The mask is empty (shape {tuple(mask.shape)}); nothing to write.")
    if geometry is None:
        return
    expected = geometry.extra.get("shape")
    if expected is not None and tuple(mask.shape[-len(expected):]) != tuple(expected):
        raise LesionSegError(
            f"The mask's shape {tuple(mask.shape)} does not match its scan {tuple(expected)}; it would not sit on the scan."
        )


def _label_array(mask) -> np.ndarray:
    """Integer labels: bool → uint8; binary 0/1 stays 0/1 here (PNG/TIFF turn it into 0/255)."""
    a = np.asarray(mask)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or np.any(a != np.round(a)):
            raise LesionSegError("A mask must hold whole label numbers; use write_probabilities for a probability map.")
        a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise LesionSegError("A mask cannot hold negative label values.")
    mx = int(a.max()) if a.size else 0
    if mx <= 255:
        return a.astype(np.uint8, copy=False)
    if mx <= 65535:
        return a.astype(np.uint16, copy=False)
    raise LesionSegError(f"Label value {mx} is too large for an image file (max 65535).")


def _display_labels(a: np.ndarray) -> np.ndarray:
    """Binary masks as 0/255 (visible in any viewer); multi-class labels unchanged."""
    if a.dtype == np.uint8 and a.size and int(a.max()) == 1:
        return (a * 255).astype(np.uint8)
    return a


def write_mask(mask, geometry: Geometry | None, path: str | os.PathLike, source_path=None, *,
               seg: dict | None = None) -> Path:
    """Write a label mask (napari axis order, same spatial shape as the scan) to `path`; returns the path written.

    `geometry` is the source scan's (from `read_scan` or a layer's metadata); `source_path` adds one more file that
    must not be overwritten (the geometry's own source is always protected). `seg`: for a `.dcm` DICOM SEG, the
    keyword arguments of `dicom_seg.build_seg` (class_names, algorithm, edited).
    """
    path = Path(path)
    fmt = _format_of(path)
    _check_shape(mask, geometry)
    if fmt == "seg":
        from .dicom_seg import write_seg

        if geometry is None:
            raise LesionSegError("A DICOM SEG needs the mask's DICOM scan; this mask has no source geometry.")
        return write_seg(np.asarray(mask), geometry, path, source_path=source_path, **(seg or {}))
    geometry = geometry or Geometry(spacing=(1.0,) * np.ndim(mask))
    big = _is_lazy(mask) or (np.ndim(mask) == 2 and int(np.prod(mask.shape)) >= SLIDE_PIXELS)
    with atomic_path(path, _sources(geometry, source_path)) as tmp:
        if fmt == "tiff" and big:
            if len(mask.shape) != 2:
                raise LesionSegError("Slide-sized masks must be 2D.")
            write_pyramidal_tiff(tmp, mask.shape, np.uint8, _mask_regions(mask), spacing=geometry.spacing[-2:])
            return path
        a = _label_array(mask)
        if fmt == "nifti":
            write_nifti(a, geometry, tmp)
        elif fmt == "png":
            _write_png(_display_labels(a), tmp)
        else:
            _write_tiff(_display_labels(a), tmp, geometry)
    return path


def write_probabilities(prob, geometry: Geometry | None, path: str | os.PathLike, source_path=None) -> Path:
    """Write a probability map in [0, 1]: float32 for NIfTI/TIFF, 0–255 for PNG (8-bit)."""
    path = Path(path)
    fmt = _image_format_of(path)
    a = np.asarray(prob, dtype=np.float32)
    _check_shape(a, geometry)
    if not np.isfinite(a).all():
        raise LesionSegError("The probability map contains NaN or infinite values.")
    if a.size and (a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise LesionSegError(f"Probabilities must lie in [0, 1] (got {a.min():.3g}–{a.max():.3g}).")
    geometry = geometry or Geometry(spacing=(1.0,) * a.ndim)
    with atomic_path(path, _sources(geometry, source_path)) as tmp:
        if fmt == "nifti":
            write_nifti(a, geometry, tmp)
        elif fmt == "png":
            _write_png(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), tmp)
        else:
            _write_tiff(a, tmp, geometry)
    return path


def _write_png(a: np.ndarray, tmp: Path) -> None:
    from PIL import Image

    if a.ndim != 2:
        raise LesionSegError(f"PNG holds a single 2D image; this mask has shape {a.shape}. Save it as .nii.gz or .tif.")
    Image.fromarray(a).save(tmp, format="PNG")


def _resolution(spacing) -> dict:
    sp = [float(s) for s in spacing][-2:]
    if len(sp) < 2 or any(s <= 0 for s in sp) or sp == [1.0, 1.0]:
        return {}
    return {"resolution": (10.0 / sp[1], 10.0 / sp[0]), "resolutionunit": "CENTIMETER"}


def _write_tiff(a: np.ndarray, tmp: Path, geometry: Geometry) -> None:
    import tifffile

    tifffile.imwrite(tmp, a, compression="zlib", photometric="minisblack", **_resolution(geometry.spacing))


def _mask_regions(mask) -> Callable:
    def region(factor: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        block = mask[y * factor:(y + h) * factor:factor, x * factor:(x + w) * factor:factor]
        return _display_labels(_label_array(np.asarray(block)))

    return region


def pyramid_shapes(height: int, width: int, min_size: int = 1024) -> list[tuple[int, int, int]]:
    """(factor, height, width) of each level: halving until the longer side is below `min_size`."""
    out = [(1, height, width)]
    f = 2
    while max(height, width) // (f // 2) > min_size and len(out) < 12:
        out.append((f, -(-height // f), -(-width // f)))
        f *= 2
    return out


def write_pyramidal_tiff(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype,
    region: Callable[[int, int, int, int, int], np.ndarray],
    *,
    spacing=None,
    tile: int = TILE,
    compression: str = "zlib",
    min_size: int = 1024,
) -> None:
    """Write a tiled pyramidal TIFF (level 0 + SubIFDs) one tile at a time, so memory stays at a few tiles.

    `region(factor, y, x, h, w)` returns the pixels of level `factor` (1, 2, 4, …) at level coordinates
    (y, x) of size (h, w) [× samples]. Used for slide-sized masks and by the slide benchmark.
    """
    import tifffile

    H, W = int(shape[0]), int(shape[1])
    samples = int(shape[2]) if len(shape) == 3 else 1
    levels = pyramid_shapes(H, W, min_size)

    def tiles(factor: int, h: int, w: int) -> Iterator[np.ndarray]:
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                yield np.asarray(region(factor, y, x, min(tile, h - y), min(tile, w - x)), dtype=dtype)

    photometric = "rgb" if samples == 3 else "minisblack"
    res = _resolution(spacing) if spacing is not None else {}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, (factor, h, w) in enumerate(levels):
            lvl_shape = (h, w, samples) if samples > 1 else (h, w)
            extra = {"subifds": len(levels) - 1} if i == 0 else {"subfiletype": 1}
            if res:
                r = res["resolution"]
                extra.update(resolution=(r[0] / factor, r[1] / factor), resolutionunit=res["resolutionunit"])
            tw.write(tiles(factor, h, w), shape=lvl_shape, dtype=dtype, tile=(tile, tile), compression=compression,
                     photometric=photometric, **extra)


def write_image_array(image, geometry: Geometry | None, path: str | os.PathLike, source_path=None) -> Path:
    """Write a gray image (e.g. a subtraction volume) with its values unchanged: NIfTI/TIFF keep the dtype,
    PNG takes 8/16-bit integers only."""
    path = Path(path)
    fmt = _image_format_of(path)
    a = np.asarray(image)
    _check_shape(a, geometry)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "uif":
        raise LesionSegError(f"Cannot write an image of type {a.dtype}.")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise LesionSegError("The image contains NaN or infinite values.")
    if fmt == "png" and a.dtype not in (np.uint8, np.uint16):
        raise LesionSegError(f"PNG holds 8- or 16-bit integers; this image is {a.dtype}. Save it as .nii.gz or .tif.")
    geometry = geometry or Geometry(spacing=(1.0,) * a.ndim)
    with atomic_path(path, _sources(geometry, source_path)) as tmp:
        if fmt == "nifti":
            write_nifti(a.astype(np.float32) if a.dtype == np.float64 else a, geometry, tmp)
        elif fmt == "png":
            _write_png(a, tmp)
        else:
            _write_tiff(a, tmp, geometry)
    return path
