"""Opening and saving scans of all four modalities with their geometry intact (Qt-free; used by CLI, engine, napari).

    from napari_lesionseg.core.io import read_scan, write_mask
    scans = read_scan("post1.nii.gz")              # list[Scan]; a DICOM folder gives one Scan per series
    write_mask(mask, scans[0].geometry, "mask.nii.gz")   # same affine/header; never overwrites the source

Every problem a user can fix raises `LesionSegError` with a message meant for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LesionSegError
from .dce import percentage_enhancement, phases_from_4d, subtraction
from .dicom import folder_has_dicom, looks_like_dicom, read_dicom_file, read_dicom_folder
from .nifti import NIFTI_SUFFIXES, is_nifti, read_nifti
from .raster import RASTER_SUFFIXES, TIFF_SUFFIXES, read_raster
from .scan import MODALITIES, Scan, note_non_finite
from .slide import OPENSLIDE_SUFFIXES, TIFFLIKE_SLIDES, read_openslide, read_tiff_slide, tiff_is_slide
from .writers import MASK_SUFFIXES, write_image_array, write_mask, write_probabilities, write_pyramidal_tiff

__all__ = [
    "MODALITIES", "MASK_SUFFIXES", "READ_SUFFIXES", "Scan", "can_read", "describe_series", "percentage_enhancement",
    "phases_from_4d", "pick_series", "read_scan", "subtraction", "write_image_array", "write_mask", "write_probabilities", "write_pyramidal_tiff",
]

READ_SUFFIXES = (*NIFTI_SUFFIXES, ".dcm", ".dicom", *RASTER_SUFFIXES, *TIFF_SUFFIXES, *OPENSLIDE_SUFFIXES)


def can_read(path: str | os.PathLike) -> bool:
    """Cheap check (no pixels read): a file with a supported extension, or a folder holding DICOM files."""
    p = Path(path)
    if p.is_dir():
        return folder_has_dicom(p)
    name = p.name.lower()
    return name.endswith(READ_SUFFIXES) or (p.is_file() and not p.suffix and looks_like_dicom(p))


def read_scan(path: str | os.PathLike, *, modality: str | None = None, spacing=None,
              expect_ndim: int | None = None) -> list[Scan]:
    """Open a file or DICOM folder as a list of Scans (napari axis order, geometry attached).

    modality: override the guess ("mri", "mammography", "histology", "ultrasound").
    spacing: pixel size in mm (a number, or per axis) for files that do not state it (PNG, JPEG…).
    expect_ndim: the number of spatial+time axes the caller needs (e.g. 3 for a volume model); a scan with a
    different number raises LesionSegError instead of failing later.
    """
    if modality is not None and modality not in MODALITIES:
        raise LesionSegError(f"Unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}.")
    p = Path(path)
    if not p.exists():
        raise LesionSegError(f"File or folder not found: {p}")
    name = p.name.lower()
    kw = {"modality": modality}
    if p.is_dir():
        scans = read_dicom_folder(p, spacing=spacing, **kw)
    elif is_nifti(name):
        if spacing is not None:
            raise LesionSegError("NIfTI files carry their own voxel spacing; do not pass spacing=.")
        scans = read_nifti(p, **kw)
    elif name.endswith((".dcm", ".dicom")) or (not p.suffix and looks_like_dicom(p)):
        from .dicom_seg import is_seg_file, read_seg_file

        scans = read_seg_file(p) if is_seg_file(p) else read_dicom_file(p, spacing=spacing, **kw)
    elif name.endswith(TIFF_SUFFIXES + TIFFLIKE_SLIDES):
        if name.endswith(TIFFLIKE_SLIDES) or tiff_is_slide(p):
            scans = read_tiff_slide(p, spacing=spacing, **kw)
        else:
            scans = read_raster(p, spacing=spacing, **kw)
    elif name.endswith(OPENSLIDE_SUFFIXES):
        scans = read_openslide(p, spacing=spacing, **kw)
    elif name.endswith(RASTER_SUFFIXES):
        scans = read_raster(p, spacing=spacing, **kw)
    else:
        raise LesionSegError(
            f"{p.name}: unsupported format. Open NIfTI (.nii/.nii.gz), DICOM (.dcm or a series folder), "
            "PNG/JPEG/BMP/PGM, or TIFF/OME-TIFF/SVS slides."
        )
    for s in scans:
        note_non_finite(s)
    if expect_ndim is not None:
        for s in scans:
            n = sum(1 for a in s.axes if a in "tzyx")
            if n != expect_ndim:
                raise LesionSegError(
                    f"{s.name} has {n} dimensions (axes {s.axes.replace('c', '')}, shape {s.shape}) but {expect_ndim} "
                    f"are expected here" + (" — a 4D file holds several phases; pick one." if n == 4 else ".")
                )
    return scans


def describe_series(scans: list[Scan]) -> str:
    """One line per scan of a file or folder, numbered from 1, to choose from: `1: pre (series 3, 4 × 32 × 32)`."""
    from .dicom import series_number_of

    lines = []
    for i, s in enumerate(scans, start=1):
        number = series_number_of(s)
        shape = " × ".join(str(n) for n in s.spatial_shape)
        lines.append(f"{i}: {s.name} ({f'series {number}, ' if number else ''}{shape})")
    return "; ".join(lines)


def pick_series(scans: list[Scan], choice: str | None, source: str | os.PathLike = "") -> Scan:
    """The one scan a command works on. `choice` (the CLI's --series) is a DICOM SeriesNumber, the series'
    description (exact, else a unique part of it), or `#N` for the N-th listed; a plain number that is no
    SeriesNumber is taken as the N-th listed. None is fine when there is only one scan."""
    from .dicom import series_number_of

    where = Path(source).name or "the input"
    if choice is None or str(choice).strip() == "":
        if len(scans) == 1:
            return scans[0]
        raise LesionSegError(f"{where} holds {len(scans)} series: {describe_series(scans)}. Choose one with "
                             "--series (its number, its description, or #N for the N-th listed).")
    text = str(choice).strip()
    index = text[1:] if text.startswith("#") else None
    if index is None and text.isdigit():
        by_number = [s for s in scans if series_number_of(s) == text]
        if len(by_number) == 1:
            return by_number[0]
        if len(by_number) > 1:
            raise LesionSegError(f"--series {text}: {len(by_number)} series of {where} carry that number; "
                                 f"choose one with #N: {describe_series(scans)}.")
        index = text
    if index is not None and index.isdigit():
        k = int(index)
        if 1 <= k <= len(scans):
            return scans[k - 1]
        raise LesionSegError(f"--series {text}: {where} has {len(scans)} series ({describe_series(scans)}).")
    low = text.lower()
    for match in ([s for s in scans if s.name.lower() == low],
                  [s for s in scans if low in s.name.lower()]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise LesionSegError(f"--series {text!r} matches {len(match)} series of {where}: "
                                 f"{', '.join(s.name for s in match)}. Give its number or #N: "
                                 f"{describe_series(scans)}.")
    raise LesionSegError(f"--series {text!r}: no such series in {where}. It holds: {describe_series(scans)}.")
