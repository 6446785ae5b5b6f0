"""Small DICOM files written with pydicom for the I/O tests (no real patient data involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"


def make_dataset(pixels: np.ndarray, *, modality="MR", sop_class=MR_STORAGE, photometric="MONOCHROME2",
                 series_uid=None, **attrs) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = attrs.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientID = "TEST"
    pixels = np.ascontiguousarray(pixels)
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = attrs.pop("BitsStored", ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.tobytes()
    return ds


def write_series(folder: Path, volume: np.ndarray, *, row_cos, col_cos, spacing_rc, origin, slice_step,
                 description="T1 post", series_number=1, shuffle=True, **attrs) -> tuple[str, list[Path]]:
    """Write `volume` (z, y, x) as one file per slice, slice k at origin + k*slice_step; files in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    study = attrs.pop("StudyInstanceUID", generate_uid())
    order = np.random.default_rng(0).permutation(len(volume)) if shuffle else np.arange(len(volume))
    paths = []
    for n, k in enumerate(order):
        pos = np.asarray(origin, float) + k * np.asarray(slice_step, float)
        ds = make_dataset(volume[k], series_uid=uid, StudyInstanceUID=study,
                          ImageOrientationPatient=[float(v) for v in (*row_cos, *col_cos)],
                          ImagePositionPatient=[float(v) for v in pos],
                          PixelSpacing=[float(spacing_rc[0]), float(spacing_rc[1])],
                          SliceThickness=float(np.linalg.norm(slice_step)),
                          SeriesDescription=description, SeriesNumber=series_number,
                          InstanceNumber=int(n + 1), **attrs)
        p = folder / f"IM{series_number:02d}_{n:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return uid, paths
