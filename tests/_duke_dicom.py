"""The real Duke-153 DCE crop (sample_data/) as an MR DICOM subtraction series (post1 − pre), with the geometry of
the NIfTI crop: what a scanner would send to a PACS, for the DICOM SEG and PACS tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from _io_dicom_factory import write_series

from napari_lesionseg.core.io.nifti import read_nifti

from conftest import REPO

SAMPLE = REPO / "sample_data"
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Tumour box of the crop (sample_data/duke153_crop.txt), NIfTI (i, j, k) inclusive -> napari (z, y, x) slices.
TUMOUR = (slice(8, 26), slice(32, 68), slice(32, 67))


def subtraction_series(folder: Path) -> tuple[str, str, list[Path], np.ndarray]:
    """(study uid, series uid, files, volume z,y,x) of post1 − pre of the Duke crop as an MR DICOM series."""
    [post] = read_nifti(SAMPLE / "duke153_post1_crop.nii.gz")
    [pre] = read_nifti(SAMPLE / "duke153_pre_crop.nii.gz")
    vol = (post.data.astype(np.int32) - pre.data.astype(np.int32)).astype(np.int16)
    lps = LPS_FROM_RAS @ np.asarray(post.geometry.nifti_affine, float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    study = pydicom.uid.generate_uid()
    uid, files = write_series(
        folder, vol, row_cos=lps[:3, 0] / spacing[0], col_cos=lps[:3, 1] / spacing[1],
        spacing_rc=(spacing[1], spacing[0]), origin=lps[:3, 3], slice_step=lps[:3, 2],
        description="post1 - pre (SUB)", series_number=7, StudyInstanceUID=study,
        FrameOfReferenceUID=pydicom.uid.generate_uid(), PatientName="Duke^153", StudyDate="20260101",
        StudyTime="120000", StudyID="1", AccessionNumber="A153", PatientSex="F", PatientBirthDate="")
    return study, uid, files, vol
