"""DICOM: series → volume with the right affine, masks written as NIfTI on that affine, mammograms displayed right."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _io_dicom_factory import MG_STORAGE, make_dataset, write_series

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import read_scan, write_mask

ROW = np.array([np.cos(0.3), np.sin(0.3), 0.0])
COL = np.array([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), np.sin(0.2)])  # oblique plane
SPACING_RC = (0.8, 0.7)
ORIGIN = np.array([-120.5, 88.25, -40.0])


def _volume(nz=6, ny=20, nx=24):
    z, y, x = np.mgrid[:nz, :ny, :nx]
    return (100 * z + 3 * y + x).astype(np.uint16)


def _expected_ras_affine(step):
    lps = np.eye(4)
    lps[:3, 0] = ROW * SPACING_RC[1]
    lps[:3, 1] = COL * SPACING_RC[0]
    lps[:3, 2] = step
    lps[:3, 3] = ORIGIN
    return np.diag([-1, -1, 1, 1]) @ lps


def test_series_is_stacked_in_slice_order_with_the_dicom_affine(tmp_path):
    vol = _volume()
    normal = np.cross(ROW, COL)
    step = 2.5 * normal
    write_series(tmp_path / "s", vol, row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN,
                 slice_step=step, RescaleSlope=2, RescaleIntercept=-10)
    [scan] = read_scan(tmp_path / "s")
    assert scan.axes == "zyx" and scan.modality == "mri" and scan.name == "T1 post"
    np.testing.assert_array_equal(scan.data, vol.astype(np.int32) * 2 - 10)  # ordered by position, rescaled
    np.testing.assert_allclose(scan.geometry.spacing, (2.5, 0.8, 0.7), atol=1e-9)
    np.testing.assert_allclose(scan.geometry.nifti_affine, _expected_ras_affine(step), atol=1e-9)
    # Voxel (z=k, y=r, x=c) sits at IPP_k + c*Δc*row + r*Δr*col (LPS), i.e. the DICOM definition.
    k, r, c = 4, 7, 11
    world = scan.geometry.nifti_affine @ [c, r, k, 1]
    lps = ORIGIN + k * step + c * SPACING_RC[1] * ROW + r * SPACING_RC[0] * COL
    np.testing.assert_allclose(world[:3], lps * [-1, -1, 1], atol=1e-9)


def test_mask_of_a_dicom_series_written_as_nifti_sits_on_the_series(tmp_path):
    vol = _volume()
    step = 3.0 * np.cross(ROW, COL) + [0.0, 0.0, 0.0]
    write_series(tmp_path / "s", vol, row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN, slice_step=step)
    [scan] = read_scan(tmp_path / "s")
    mask = np.zeros(scan.shape, np.uint8)
    mask[2, 5:9, 10:15] = 1
    out = write_mask(mask, scan.geometry, tmp_path / "mask.nii.gz")
    img = nib.load(out)
    assert img.shape == (24, 20, 6)  # NIfTI (i, j, k) = (columns, rows, slices)
    # NIfTI-1 stores the affine as float32: equal to the DICOM-derived one to float32 precision.
    np.testing.assert_allclose(img.affine, _expected_ras_affine(step), atol=2e-5)
    assert int(img.header["sform_code"]) == 1
    back = np.asarray(img.dataobj)
    assert back[10:15, 5:9, 2].all() and back.sum() == mask.sum()


def test_two_series_in_one_folder_become_two_named_scans(tmp_path):
    vol = _volume(4)
    kw = dict(row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN, slice_step=2 * np.cross(ROW, COL))
    write_series(tmp_path, vol, description="pre", series_number=1, **kw)
    write_series(tmp_path, vol + 50, description="post 1", series_number=2, **kw)
    (tmp_path / "notes.txt").write_text("not dicom")
    scans = read_scan(tmp_path)
    assert [s.name for s in scans] == ["pre", "post 1"]
    assert int(scans[1].data.mean() - scans[0].data.mean()) == 50


def test_mixed_series_is_refused_with_a_clear_message(tmp_path):
    vol = _volume(4)
    uid, paths = write_series(tmp_path, vol, row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN,
                              slice_step=2 * np.cross(ROW, COL), shuffle=False)
    # A second acquisition at the same positions in the same series (e.g. two phases exported together).
    write_series(tmp_path / "tmp", vol, row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN,
                 slice_step=2 * np.cross(ROW, COL), series_number=3, shuffle=False)
    import pydicom

    for p in sorted((tmp_path / "tmp").iterdir()):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = uid
        ds.save_as(tmp_path / f"dup_{p.name}")
        p.unlink()
    (tmp_path / "tmp").rmdir()
    with pytest.raises(LesionSegError, match="same slice position"):
        read_scan(tmp_path)


def test_series_with_different_image_sizes_is_refused(tmp_path):
    uid, paths = write_series(tmp_path, _volume(3), row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN,
                              slice_step=2 * np.cross(ROW, COL), shuffle=False)
    write_series(tmp_path / "x", _volume(1, 10, 10), row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC,
                 origin=ORIGIN + 20 * np.cross(ROW, COL), slice_step=np.cross(ROW, COL), series_number=9)
    import pydicom

    p = next((tmp_path / "x").iterdir())
    ds = pydicom.dcmread(p)
    ds.SeriesInstanceUID = uid
    ds.save_as(tmp_path / "odd.dcm")
    p.unlink()
    (tmp_path / "x").rmdir()
    with pytest.raises(LesionSegError, match="mixes image sizes"):
        read_scan(tmp_path)


def test_folder_without_dicom_is_a_clear_error(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(b"\0" * 300)
    with pytest.raises(LesionSegError, match="No DICOM"):
        read_scan(tmp_path)


def test_truncated_dicom_is_a_clear_error(tmp_path):
    ds = make_dataset(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    p = tmp_path / "t.dcm"
    ds.save_as(p, enforce_file_format=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 3000])
    with pytest.raises(LesionSegError, match="t.dcm"):
        read_scan(p)
    (tmp_path / "junk.dcm").write_bytes(b"this is not dicom at all")
    with pytest.raises(LesionSegError, match="junk.dcm"):
        read_scan(tmp_path / "junk.dcm")


def _mammogram(tmp_path, **attrs):
    y, x = np.mgrid[:300, :200]
    raw = np.where((x - 40) ** 2 + (y - 150) ** 2 < 90**2, 600, 3800).astype(np.uint16)  # breast dark in MONO1
    raw[140:160, 50:70] = 200  # a dense lesion: darkest raw value
    ds = make_dataset(raw, modality="MG", sop_class=MG_STORAGE, photometric="MONOCHROME1", BitsStored=12, **attrs)
    p = tmp_path / "mg.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p, raw


def test_monochrome1_mammogram_is_inverted_windowed_and_spaced(tmp_path):
    p, raw = _mammogram(tmp_path, ImagerPixelSpacing=[0.07, 0.065], WindowCenter=1000, WindowWidth=1200)
    [scan] = read_scan(p)
    assert scan.modality == "mammography" and scan.axes == "yx"
    assert scan.geometry.spacing == (0.07, 0.065)
    # Inverted: the dense lesion is now the brightest thing, the background the darkest.
    assert scan.data[150, 60] > scan.data[150, 10] > scan.data[10, 190]
    np.testing.assert_array_equal(scan.data, 4095 - raw)
    # The window (1000 ± 600 on raw values) follows the inversion: 4095 - 1600 .. 4095 - 400.
    assert scan.contrast_limits == pytest.approx((2495, 3695))


def test_voi_lut_gives_the_display_range(tmp_path):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [1024, 500, 12]
    item.LUTData = np.arange(1024, dtype=np.uint16).tobytes()
    p, raw = _mammogram(tmp_path, PixelSpacing=[0.1, 0.1])
    import pydicom

    ds = pydicom.dcmread(p)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.VOILUTSequence = [item]
    ds.save_as(p)
    [scan] = read_scan(p)
    assert scan.contrast_limits == (500.0, 1523.0)
    assert scan.geometry.spacing == (0.1, 0.1)


def test_ultrasound_rgb_dicom_with_equal_channels_is_one_channel(tmp_path):
    gray = (np.arange(50 * 60) % 251).astype(np.uint8).reshape(50, 60)
    ds = make_dataset(np.stack([gray] * 3, -1), modality="US", sop_class="1.2.840.10008.5.1.4.1.1.6.1",
                      photometric="RGB")
    p = tmp_path / "us.dcm"
    ds.save_as(p, enforce_file_format=True)
    [scan] = read_scan(p)
    assert scan.modality == "ultrasound" and not scan.rgb and scan.data.shape == (50, 60)
    np.testing.assert_array_equal(scan.data, gray)
    assert scan.metadata.get("warnings")  # no spacing in the file: the user is told


def test_dce_phases_in_one_series_become_a_time_axis(tmp_path):
    import pydicom

    vol = _volume(4)
    kw = dict(row_cos=ROW, col_cos=COL, spacing_rc=SPACING_RC, origin=ORIGIN, slice_step=2 * np.cross(ROW, COL))
    uid, _ = write_series(tmp_path, vol, TemporalPositionIdentifier=1, **kw)
    write_series(tmp_path / "p2", vol + 300, series_number=2, TemporalPositionIdentifier=2, **kw)
    for p in sorted((tmp_path / "p2").iterdir()):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = uid
        ds.save_as(tmp_path / f"phase2_{p.name}")
        p.unlink()
    (tmp_path / "p2").rmdir()
    [scan] = read_scan(tmp_path)
    assert scan.axes == "tzyx" and scan.shape == (2, 4, 20, 24)
    np.testing.assert_array_equal(scan.data[0], vol)
    np.testing.assert_array_equal(scan.data[1], vol + 300)
    assert scan.layer_scale() == pytest.approx((1.0, 2.0, 0.8, 0.7))
    assert scan.metadata["phase_tag"] == "TemporalPositionIdentifier"
    with pytest.raises(LesionSegError, match="4 dimensions"):
        read_scan(tmp_path, expect_ndim=3)
