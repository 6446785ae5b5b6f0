"""NIfTI (.nii/.nii.gz) reading and writing with the file's affine and header kept exactly.

Arrays are returned in napari order: the spatial axes of the NIfTI array (i, j, k) reversed to (z, y, x); a 4th
(time/phase) axis comes first: (t, z, y, x). `Geometry.nifti_affine` is the file's own affine (`img.affine`), so
writing a mask back with it reproduces the source placement bit for bit, oblique or not.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..geometry import Geometry
from .memory import check_fits_in_memory
from .scan import Scan, check_array

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def stem(path: str | Path) -> str:
    name = Path(path).name
    for s in (".nii.gz", ".nii"):
        if name.lower().endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def spacing_from_affine(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel size along NIfTI axes (i, j, k): the column norms of the affine's 3x3 part."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))


def _read_dtype(img) -> np.dtype:
    """The dtype nibabel returns: the stored one, or float when the header scales the values."""
    slope, inter = getattr(img.dataobj, "slope", None), getattr(img.dataobj, "inter", None)
    if (slope is not None and slope != 1) or (inter is not None and inter != 0):
        return np.dtype(np.float64)
    return np.dtype(img.get_data_dtype())


def read_nifti(path: str | Path, *, modality: str | None = None) -> list[Scan]:
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        check_fits_in_memory(img.shape, _read_dtype(img), path.name)
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise LesionSegError(f"File not found: {path}") from None
    except (nib.filebasedimages.ImageFileError, EOFError, zlib.error, OSError, ValueError) as e:
        raise LesionSegError(
            f"{path.name} is not a readable NIfTI file (truncated or corrupt?): {e}"
        ) from None
    check_array(data.reshape(img.shape) if data.size == 0 else data, path.name)  # the header's shape in the message
    # Trailing singleton axes (x, y, z, 1) are not a time axis.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        axes = "yx"
    elif data.ndim == 3:
        axes = "zyx"
    elif data.ndim == 4:
        axes = "tzyx"
    else:
        raise LesionSegError(f"{path.name} has {data.ndim} dimensions {data.shape}; only 2D, 3D and 4D NIfTI are supported.")
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    affine = np.array(img.affine, dtype=float)
    zooms = spacing_from_affine(affine)[: min(3, data.ndim)]
    arr = np.ascontiguousarray(data.T)  # (i, j, k[, t]) -> ([t,] k, j, i)
    geom = Geometry(
        spacing=tuple(reversed(zooms)),
        nifti_affine=affine,
        reversed_axes=True,
        header=img.header.copy(),
        extra={
            "source_path": str(path),
            "format": "nifti",
            "shape": tuple(s for s, a in zip(arr.shape, axes) if a != "t"),
            "axcodes": "".join(nib.aff2axcodes(affine)),
        },
    )
    scan = Scan(data=arr, geometry=geom, modality=modality or "mri", name=stem(path), axes=axes)
    return [scan]


def _nifti_image_class(header):
    import nibabel as nib

    if isinstance(header, nib.Nifti2Header):
        return nib.Nifti2Image, header
    if isinstance(header, nib.Nifti1Header):
        return nib.Nifti1Image, header
    return nib.Nifti1Image, None


def affine_for_geometry(geometry: Geometry) -> np.ndarray:
    """The NIfTI affine to write: the source's own, or one built from the spacing (axes reversed) for 2D rasters."""
    if geometry.nifti_affine is not None:
        return np.asarray(geometry.nifti_affine, dtype=float)
    aff = np.eye(4)
    sp = list(reversed(geometry.spacing))[:3]
    for i, s in enumerate(sp):
        aff[i, i] = s
    return aff


def nifti_image(data: np.ndarray, geometry: Geometry, *, axes: str | None = None):
    """A nibabel image of `data` (napari order) placed with the geometry's affine and a copy of its header."""
    a = np.asarray(data)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype == np.int64 or a.dtype == np.uint64:
        if a.size and (a.min() < np.iinfo(np.int16).min or a.max() > np.iinfo(np.int32).max):
            raise LesionSegError("Label values do not fit in 32 bits.")
        a = a.astype(np.uint8 if a.size == 0 or (a.min() >= 0 and a.max() <= 255) else np.int32)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    if geometry.nifti_affine is None or geometry.reversed_axes:
        a = a.T  # napari order back to NIfTI (i, j, k[, t])
    affine = affine_for_geometry(geometry)
    cls, src_header = _nifti_image_class(geometry.header)
    header = src_header.copy() if src_header is not None else None
    if header is not None:
        sform_code = int(header["sform_code"])
        qform_code = int(header["qform_code"])
        header["cal_min"] = 0
        header["cal_max"] = 0
        header.set_intent("none")
    else:
        sform_code = qform_code = 1 if geometry.nifti_affine is not None else 0
    img = cls(a, affine, header=header)
    img.header.set_data_dtype(a.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    # The sform carries the exact affine; the qform (rotation + zooms only) follows when it can represent it.
    img.set_sform(affine, code=sform_code if sform_code > 0 else (qform_code or 2))
    try:
        img.set_qform(affine, code=qform_code)
    except Exception:  # shear cannot go in a quaternion
        img.set_qform(None, code=0)
    return img


def write_nifti(data: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Write to `path` (already a temporary path: the caller makes it atomic)."""
    nifti_image(data, geometry).to_filename(str(path))
