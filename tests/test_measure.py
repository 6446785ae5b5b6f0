"""Measurements agree with the truth: real pyradiomics lesion (volume) and synthetic shapes with known axes."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_lesionseg.core.measure import (
    default_table_path,
    diameters_2d,
    label_lesions,
    measure_lesions,
    write_measurements_csv,
)

from conftest import shared_path


def _ellipsoid(a, b, c, spacing, shape, center=None, angle_deg=0.0):
    """Binary ellipsoid with semi-axes a (x), b (y), c (z) in mm, rotated in-plane by angle, on a (z, y, x) grid."""
    center = center if center is not None else [(n - 1) / 2 for n in shape]
    z, y, x = np.meshgrid(*[(np.arange(n) - c0) * s for n, c0, s in zip(shape, center, spacing)], indexing="ij")
    t = math.radians(angle_deg)
    xr = x * math.cos(t) + y * math.sin(t)
    yr = -x * math.sin(t) + y * math.cos(t)
    return (xr / a) ** 2 + (yr / b) ** 2 + (z / c) ** 2 <= 1.0


def test_breast1_label_volume_matches_voxel_count():
    nib = pytest.importorskip("nibabel")
    path = shared_path("mri", "pyradiomics", "breast1_label.nii.gz")
    img = nib.load(str(path))
    mask = np.asarray(img.dataobj).T  # napari order (z, y, x)
    spacing = tuple(float(z) for z in img.header.get_zooms()[::-1])
    assert spacing == pytest.approx((2.1, 0.664062, 0.664062), abs=1e-4)
    (m,) = measure_lesions(mask, spacing)
    n = int((mask > 0).sum())
    assert n == 143
    truth_ml = n * np.prod(spacing) / 1000.0
    assert m.size == pytest.approx(truth_ml, rel=0.02)
    assert m.n_voxels == n
    # diameters: the long axis cannot exceed the lesion's in-plane bounding-box diagonal, and is at least its side
    zs, ys, xs = np.nonzero(mask)
    plane = mask[m.slice_index] > 0
    assert plane.sum() == max((mask[k] > 0).sum() for k in range(mask.shape[0]))
    py, px = np.nonzero(plane)
    h = (py.max() - py.min() + 1) * spacing[1]
    w = (px.max() - px.min() + 1) * spacing[2]
    assert max(h, w) - spacing[1] <= m.long_axis_mm <= math.hypot(h, w) + 1e-6
    assert 0 < m.short_axis_mm <= m.long_axis_mm


def test_breast1_with_image_through_cli(tmp_path):
    pytest.importorskip("nibabel")
    from napari_lesionseg.cli.main import main

    label = shared_path("mri", "pyradiomics", "breast1_label.nii.gz")
    image = shared_path("mri", "pyradiomics", "breast1_image.nii.gz")
    out = tmp_path / "table.csv"
    assert main(["measure", "--mask", str(label), "--image", str(image), "--output", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1
    r = rows[0]
    for col in ("label", "volume_ml", "long_axis_mm", "short_axis_mm", "mean_intensity"):
        assert col in r
    assert float(r["volume_ml"]) == pytest.approx(143 * 0.664062 ** 2 * 2.1 / 1000, rel=0.02)
    import nibabel as nib

    img = np.asarray(nib.load(str(image)).dataobj)
    lab = np.asarray(nib.load(str(label)).dataobj)
    assert float(r["mean_intensity"]) == pytest.approx(img[lab > 0].mean(), rel=1e-3)


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_ellipsoid_volume_and_diameters(angle):
    a, b, c = 18.0, 11.0, 7.0  # semi-axes in mm: x, y, z
    spacing = (1.5, 0.6, 0.6)
    mask = _ellipsoid(a, b, c, spacing, (15, 81, 81), angle_deg=angle)
    (m,) = measure_lesions(mask, spacing)
    assert m.size == pytest.approx(4 / 3 * math.pi * a * b * c / 1000.0, rel=0.02)
    voxel = max(spacing[1:])
    assert abs(m.long_axis_mm - 2 * a) <= voxel
    assert abs(m.short_axis_mm - 2 * b) <= voxel
    assert m.slice_index == 7  # the equator
    # the long axis lies along the ellipsoid's x axis, rotated by `angle`
    (y0, x0), (y1, x1) = m.long_axis_endpoints
    direction = math.degrees(math.atan2(y1 - y0, x1 - x0)) % 180
    assert min(abs(direction - angle), 180 - abs(direction - angle)) < 5


def test_2d_disc_area_and_diameter_anisotropic_pixels():
    yy, xx = np.mgrid[:200, :100]
    sy, sx = 0.25, 0.5  # mm
    r = 20.0  # mm
    mask = ((yy - 100) * sy) ** 2 + ((xx - 50) * sx) ** 2 <= r * r
    (m,) = measure_lesions(mask, (sy, sx))
    assert m.ndim == 2 and m.slice_index is None
    assert m.size == pytest.approx(math.pi * r * r, rel=0.02)
    assert abs(m.long_axis_mm - 2 * r) <= sx
    assert abs(m.short_axis_mm - 2 * r) <= sx


def test_short_axis_is_perpendicular_chord_not_width():
    """An L-shape: the longest perpendicular chord is shorter than the extent across the long axis."""
    mask = np.zeros((60, 60), bool)
    mask[5:55, 5:15] = True   # vertical bar 50 x 10
    mask[45:55, 5:30] = True  # foot 10 x 25
    long_len, short_len, le, se = diameters_2d(mask)
    assert long_len == pytest.approx(math.hypot(50, 25), abs=1.0)
    ends = np.asarray(se)
    u = np.diff(np.asarray(le), axis=0)[0]
    v = np.diff(ends, axis=0)[0]
    assert abs(np.dot(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v)) < 0.01  # perpendicular
    assert short_len < 25  # a chord inside the shape, not the projection width


def test_components_vs_label_values():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:8, 2:8] = 1
    mask[20:30, 20:30] = 1
    comps = measure_lesions(mask, 0.5)
    assert [m.n_voxels for m in comps] == [36, 100]
    assert [m.size for m in comps] == pytest.approx([9.0, 25.0])
    multi = mask.copy()
    multi[20:30, 20:30] = 3
    multi[2:8, 2:8] = 5
    by_label = measure_lesions(multi, 0.5)
    assert sorted(m.label for m in by_label) == [3, 5]
    assert label_lesions(multi).max() == 5
    # one label split in two pieces stays one lesion
    split = np.zeros((40, 40), np.uint8)
    split[2:8, 2:8] = 2
    split[20:30, 20:30] = 2
    split[35:38, 35:38] = 4
    res = {m.label: m for m in measure_lesions(split, 1.0, by="label")}
    assert res[2].n_voxels == 136


def test_enhancement_and_centroid():
    mask = np.zeros((5, 20, 20), np.uint8)
    mask[1:4, 5:10, 5:10] = 1
    pre = np.full(mask.shape, 100.0)
    post = pre + 50 * mask
    (m,) = measure_lesions(mask, (2.0, 1.0, 1.0), image=post, pre=pre)
    assert m.mean_enhancement == pytest.approx(50.0)
    assert m.mean_intensity == pytest.approx(150.0)
    assert m.centroid == pytest.approx((2.0, 7.0, 7.0))
    assert m.centroid_mm == pytest.approx((4.0, 7.0, 7.0))


def test_csv_written_atomically_beside_the_mask(tmp_path):
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:5] = 1
    target = default_table_path(tmp_path / "lesion.nii.gz")
    assert target.name == "lesion_measurements.csv"
    write_measurements_csv(measure_lesions(mask, 1.0), target)
    rows = list(csv.DictReader(open(target)))
    assert rows[0]["label"] == "1" and float(rows[0]["area_mm2"]) == 9.0
    assert [p.name for p in tmp_path.iterdir()] == ["lesion_measurements.csv"]  # no temporary left behind


def test_cli_on_png_mask_reports_pixels(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_lesionseg.cli.main import main

    mask = np.zeros((30, 30), np.uint8)
    mask[5:15, 5:15] = 255
    iio.imwrite(tmp_path / "m.png", mask)
    assert main(["measure", "--mask", str(tmp_path / "m.png"), "--spacing", "0.1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "m_measurements.csv")))
    assert float(rows[0]["area_mm2"]) == pytest.approx(1.0)
    assert main(["measure", "--mask", str(tmp_path / "missing.nii.gz")]) == 2


def test_cli_enhancement_on_duke_sample_crop(tmp_path):
    """DCE: a box mask over the Duke tumour measured with pre and post-contrast: enhancement well above zero."""
    nib = pytest.importorskip("nibabel")
    from napari_lesionseg.cli.main import main
    from napari_lesionseg.napari._sample_data import SAMPLE_DIR

    post = SAMPLE_DIR / "duke153_post1_crop.nii.gz"
    pre = SAMPLE_DIR / "duke153_pre_crop.nii.gz"
    img = nib.load(str(post))
    box = np.zeros(img.shape, np.uint8)
    box[32:67, 32:68, 8:26] = 1  # the dataset's tumour box inside the crop (NIfTI i, j, k)
    nib.Nifti1Image(box, img.affine).to_filename(str(tmp_path / "box.nii.gz"))
    out = tmp_path / "t.csv"
    assert main(["measure", "--mask", str(tmp_path / "box.nii.gz"), "--image", str(post), "--pre", str(pre),
                 "-o", str(out)]) == 0
    (row,) = list(csv.DictReader(open(out)))
    assert float(row["volume_ml"]) == pytest.approx(35 * 36 * 18 * 0.759 ** 2 * 1.1 / 1000, rel=0.01)
    assert float(row["mean_enhancement"]) == pytest.approx(88.9, rel=0.05)  # the data README's figure
    assert int(row["slice"]) in range(8, 26)
