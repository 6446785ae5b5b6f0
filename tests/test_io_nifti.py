"""NIfTI: masks written back sit exactly on their scan (real Duke MRI, oblique synthetic), DCE subtraction, bad files."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import percentage_enhancement, read_scan, subtraction, write_mask, write_probabilities

# Duke tumour box from ../shared/data/README.md, NIfTI array axes (x, y, z), inclusive.
BOX_X, BOX_Y, BOX_Z = (89, 123), (46, 81), (60, 77)


def _box_zyx(shape):
    m = np.zeros(shape, bool)
    m[BOX_Z[0]:BOX_Z[1] + 1, BOX_Y[0]:BOX_Y[1] + 1, BOX_X[0]:BOX_X[1] + 1] = True
    return m


def test_duke_mask_round_trip_keeps_affine_shape_and_position(tmp_path):
    src = shared_path("mri", "duke_153", "post1.nii.gz")
    [scan] = read_scan(src)
    ref = nib.load(src)
    assert scan.axes == "zyx" and scan.shape == ref.shape[::-1]
    np.testing.assert_allclose(scan.layer_scale(), ref.header.get_zooms()[::-1], rtol=1e-6)
    mask = _box_zyx(scan.shape).astype(np.uint8)
    out = write_mask(mask, scan.geometry, tmp_path / "mask.nii.gz")
    back = nib.load(out)
    assert back.shape == ref.shape
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-6)
    assert nib.aff2axcodes(back.affine) == nib.aff2axcodes(ref.affine)
    data = np.asarray(back.dataobj)
    # The box is where the README says, in the file's own (x, y, z) axes.
    assert data[BOX_X[0]:BOX_X[1] + 1, BOX_Y[0]:BOX_Y[1] + 1, BOX_Z[0]:BOX_Z[1] + 1].all()
    assert data.sum() == mask.sum()
    assert back.get_data_dtype() == np.uint8


def test_duke_tumour_box_lands_on_the_enhancing_lesion():
    [post] = read_scan(shared_path("mri", "duke_153", "post1.nii.gz"))
    [pre] = read_scan(shared_path("mri", "duke_153", "pre.nii.gz"))
    sub = subtraction(post, pre)
    assert sub.geometry.nifti_affine is post.geometry.nifti_affine or np.array_equal(
        sub.geometry.nifti_affine, post.geometry.nifti_affine)
    box = _box_zyx(sub.data.shape)
    slab = slice(BOX_Z[0], BOX_Z[1] + 1)
    inside = float(sub.data[box].mean())
    outside = float(sub.data[slab][~box[slab]].mean())
    assert inside > 60 and inside > 5 * outside, (inside, outside)
    # The same box shifted off the lesion (mirrored to the other breast) shows no such enhancement.
    shifted = np.roll(box, sub.data.shape[2] // 2, axis=2)
    assert float(sub.data[shifted].mean()) < inside / 3
    pct = percentage_enhancement(post, pre)
    assert float(np.median(pct.data[box])) > float(np.median(pct.data[slab][~box[slab]])) + 20


def _oblique_affine():
    a, b = 0.35, -0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag([0.7, 0.9, 2.5])
    aff[:3, 3] = [-101.3, 37.7, 12.9]
    return aff


def test_oblique_volume_round_trip(tmp_path):
    vol = np.random.default_rng(1).integers(0, 1000, (30, 25, 12)).astype(np.int16)  # (i, j, k)
    src = tmp_path / "oblique.nii.gz"
    nib.Nifti1Image(vol, _oblique_affine()).to_filename(src)
    [scan] = read_scan(src)
    assert scan.shape == (12, 25, 30)
    np.testing.assert_array_equal(scan.data, vol.T)
    np.testing.assert_allclose(scan.geometry.spacing, (2.5, 0.9, 0.7), rtol=1e-6)
    mask = (scan.data > 900).astype(np.uint8)
    write_mask(mask, scan.geometry, tmp_path / "m.nii")
    back = nib.load(tmp_path / "m.nii")
    np.testing.assert_allclose(back.affine, nib.load(src).affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.dataobj), (vol > 900).astype(np.uint8))
    # The qform (what some viewers read) is the same oblique placement too.
    np.testing.assert_allclose(back.get_qform(), nib.load(src).affine, atol=1e-4)
    probs = np.clip(scan.data / 1000.0, 0, 1).astype(np.float32)
    write_probabilities(probs, scan.geometry, tmp_path / "p.nii.gz")
    p = nib.load(tmp_path / "p.nii.gz")
    np.testing.assert_allclose(p.affine, nib.load(src).affine, atol=1e-6)
    np.testing.assert_allclose(p.get_fdata(), probs.T, atol=1e-6)


def test_4d_nifti_puts_time_first_and_can_be_refused_where_3d_is_expected(tmp_path):
    vol = np.arange(5 * 6 * 7 * 3, dtype=np.float32).reshape(5, 6, 7, 3)  # (i, j, k, t)
    src = tmp_path / "dce.nii.gz"
    nib.Nifti1Image(vol, np.diag([0.8, 0.8, 1.5, 1])).to_filename(src)
    [scan] = read_scan(src)
    assert scan.axes == "tzyx" and scan.shape == (3, 7, 6, 5)
    np.testing.assert_array_equal(scan.data[2], vol[..., 2].T)
    assert scan.layer_scale() == pytest.approx((1.0, 1.5, 0.8, 0.8))
    with pytest.raises(LesionSegError, match="4 dimensions.*3 are expected"):
        read_scan(src, expect_ndim=3)
    # A 3D mask written for the 4D scan keeps the affine.
    write_mask(np.ones(scan.shape[1:], np.uint8), scan.geometry, tmp_path / "m.nii.gz")
    assert nib.load(tmp_path / "m.nii.gz").shape == (5, 6, 7)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_nifti_opens_with_a_warning(tmp_path, bad):
    """Issue 14: a NIfTI with NaN/Inf could not even be viewed; it opens, says so, and shows its finite range."""
    vol = np.ones((4, 5, 6), np.float32)
    vol[1, 2, 3] = bad
    vol[0, 0, 0] = 7.0
    nib.Nifti1Image(vol, np.eye(4)).to_filename(tmp_path / "nan.nii.gz")
    (scan,) = read_scan(tmp_path / "nan.nii.gz")
    assert any("NaN or infinite" in w for w in scan.metadata["warnings"])
    assert scan.contrast_limits == (1.0, 7.0)


def test_zero_sized_axis_is_refused(tmp_path):
    for name in ("empty.nii", "empty.nii.gz"):  # gzipped, nibabel reads the data as shape (0,): say the header's
        nib.Nifti1Image(np.zeros((4, 0, 6), np.int16), np.eye(4)).to_filename(tmp_path / name)
        with pytest.raises(LesionSegError, match=r"empty axis \(shape \(4, 0, 6\)\)"):
            read_scan(tmp_path / name)


def test_truncated_and_corrupt_nifti_are_clear_errors(tmp_path):
    vol = np.random.default_rng(0).integers(0, 100, (40, 40, 40)).astype(np.int16)
    good = tmp_path / "good.nii.gz"
    nib.Nifti1Image(vol, np.eye(4)).to_filename(good)
    data = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LesionSegError, match="cut.nii.gz"):
        read_scan(tmp_path / "cut.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"\x00" * 100)
    with pytest.raises(LesionSegError, match="junk.nii"):
        read_scan(tmp_path / "junk.nii")
    (tmp_path / "plain.nii.gz").write_bytes(gzip.compress(b"hello"))
    with pytest.raises(LesionSegError):
        read_scan(tmp_path / "plain.nii.gz")


def test_source_scan_is_never_overwritten_and_failed_writes_leave_nothing(tmp_path):
    src = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)).to_filename(src)
    before = src.read_bytes()
    [scan] = read_scan(src)
    with pytest.raises(LesionSegError, match="overwrite the source"):
        write_mask(np.zeros(scan.shape, np.uint8), scan.geometry, src)
    assert src.read_bytes() == before
    # Wrong shape: refused before anything is written.
    with pytest.raises(LesionSegError, match="does not match"):
        write_mask(np.zeros((3, 8, 8), np.uint8), scan.geometry, tmp_path / "m.nii.gz")
    # A PNG cannot hold a volume: the error comes mid-write, and no partial or temporary file is left.
    with pytest.raises(LesionSegError, match="PNG"):
        write_mask(np.zeros(scan.shape, np.uint8), scan.geometry, tmp_path / "m.png")
    with pytest.raises(LesionSegError, match="unsupported extension"):
        write_mask(np.zeros(scan.shape, np.uint8), scan.geometry, tmp_path / "m.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_pyradiomics_label_sits_on_its_image():
    [img] = read_scan(shared_path("mri", "pyradiomics", "breast1_image.nii.gz"))
    [lab] = read_scan(shared_path("mri", "pyradiomics", "breast1_label.nii.gz"))
    assert img.shape == lab.shape
    np.testing.assert_allclose(img.geometry.nifti_affine, lab.geometry.nifti_affine, atol=1e-5)
    assert int((lab.data > 0).sum()) == 143
