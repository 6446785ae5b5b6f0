"""2D rasters (mammography, ultrasound, histology tiles): bit depths, channels, spacing, masks written back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from conftest import shared_path
from PIL import Image

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import read_scan, write_mask, write_probabilities


def _gradient(h=40, w=50, dtype=np.uint8, top=255):
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".pgm", ".tif"])
def test_8bit_gray_formats(tmp_path, suffix):
    a = _gradient()
    p = tmp_path / f"img{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, a)
    else:
        Image.fromarray(a).save(p)
    [scan] = read_scan(p)
    np.testing.assert_array_equal(scan.data, a)
    assert scan.axes == "yx" and not scan.rgb and scan.layer_scale() == (1.0, 1.0)
    assert scan.modality == ("mammography" if suffix == ".pgm" else "ultrasound")


@pytest.mark.parametrize("suffix", [".png", ".pgm", ".tif"])
def test_16bit_gray_formats_keep_their_values(tmp_path, suffix):
    a = _gradient(dtype=np.uint16, top=4000)
    p = tmp_path / f"mammo{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, a)
    else:
        Image.fromarray(a).save(p)
    [scan] = read_scan(p)
    assert scan.data.dtype == np.uint16
    np.testing.assert_array_equal(scan.data, a)
    assert scan.modality == "mammography"


def test_jpeg_rgb_with_equal_channels_is_one_gray_channel(tmp_path):
    a = _gradient()
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "us.png")
    [scan] = read_scan(tmp_path / "us.png")
    assert not scan.rgb and scan.data.shape == a.shape
    Image.fromarray(a).save(tmp_path / "us.jpg", quality=95)
    [scan] = read_scan(tmp_path / "us.jpg")
    assert scan.data.shape == a.shape and scan.modality == "ultrasound"
    assert np.abs(scan.data.astype(int) - a).mean() < 3  # lossy, but the same picture


def test_colour_image_stays_rgb_and_is_histology(tmp_path):
    a = np.zeros((30, 40, 3), np.uint8)
    a[..., 0] = 200
    a[..., 2] = np.arange(40)
    Image.fromarray(a).save(tmp_path / "he.png")
    [scan] = read_scan(tmp_path / "he.png")
    assert scan.rgb and scan.axes == "yxc" and scan.modality == "histology"
    assert scan.layer_scale() == (1.0, 1.0)


def test_opaque_alpha_is_dropped_with_a_warning_and_transparency_is_refused(tmp_path):
    a = np.zeros((20, 30, 4), np.uint8)
    a[..., 0] = 50
    a[..., 1] = 120
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "opaque.png")
    with pytest.warns(UserWarning, match="alpha"):
        [scan] = read_scan(tmp_path / "opaque.png")
    assert scan.rgb and scan.data.shape == (20, 30, 3)
    assert any("alpha" in w for w in scan.metadata["warnings"])
    a[5:10, 5:10, 3] = 0
    Image.fromarray(a, "RGBA").save(tmp_path / "holes.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(LesionSegError, match="alpha channel with transparent pixels"):
            read_scan(tmp_path / "holes.png")


def test_spacing_override_and_tiff_resolution(tmp_path):
    a = _gradient()
    Image.fromarray(a).save(tmp_path / "x.png")
    [scan] = read_scan(tmp_path / "x.png", spacing=0.2)
    assert scan.geometry.spacing == (0.2, 0.2)
    # 0.25 µm pixels stated in the TIFF resolution tags (40 000 pixels per cm).
    rgb = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "he.tif", rgb, resolution=(40000, 40000), resolutionunit="CENTIMETER")
    [scan] = read_scan(tmp_path / "he.tif")
    assert scan.geometry.spacing == pytest.approx((0.00025, 0.00025))
    assert scan.metadata["microns_per_pixel"] == pytest.approx((0.25, 0.25))


def test_unsupported_truncated_and_empty_files_are_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LesionSegError, match="unsupported format"):
        read_scan(tmp_path / "notes.txt")
    a = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LesionSegError, match="cut.png"):
        read_scan(tmp_path / "cut.png")
    (tmp_path / "fake.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(LesionSegError, match="fake.tif"):
        read_scan(tmp_path / "fake.tif")
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 5), np.uint8))
    with pytest.raises(LesionSegError):
        read_scan(tmp_path / "empty.tif")
    with pytest.raises(LesionSegError, match="not found"):
        read_scan(tmp_path / "missing.png")


def test_png_and_tiff_masks(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "us.png")
    [scan] = read_scan(tmp_path / "us.png", spacing=0.1)
    mask = np.zeros(scan.shape, bool)
    mask[10:20, 5:25] = True
    write_mask(mask, scan.geometry, tmp_path / "mask.png")
    back = np.array(Image.open(tmp_path / "mask.png"))
    assert set(np.unique(back)) == {0, 255} and (back == 255).sum() == mask.sum()
    labels = mask.astype(np.uint8) * 2
    labels[30:35, 30:35] = 3
    write_mask(labels, scan.geometry, tmp_path / "labels.png")
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "labels.png")), labels)
    write_mask(mask, scan.geometry, tmp_path / "mask.tif")
    with tifffile.TiffFile(tmp_path / "mask.tif") as tf:
        np.testing.assert_array_equal(tf.asarray(), mask * 255)
        xres = tf.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(100.0)  # 0.1 mm pixels = 100 per cm
    write_probabilities(np.full(scan.shape, 0.5, np.float32), scan.geometry, tmp_path / "p.png")
    assert np.array(Image.open(tmp_path / "p.png")).max() == 128


def test_real_mias_and_busi_images():
    mg_path = sorted(shared_path("mammography", "mias", "images").glob("mdb*.png"))[0]
    [mg] = read_scan(mg_path)
    assert mg.modality == "mammography" and mg.shape == (1024, 1024) and mg.layer_scale() == (0.2, 0.2)
    us_path = sorted(shared_path("ultrasound", "busi", "images").glob("malignant_*.png"))[0]
    [us] = read_scan(us_path)
    assert us.modality == "ultrasound" and us.data.ndim == 2 and us.layer_scale() == (1.0, 1.0)
    m = shared_path("ultrasound", "busi", "masks", us_path.name)
    [mask] = read_scan(m)
    assert mask.shape == us.shape


@pytest.mark.parametrize("name,modality", [("P121_L_DM_CC.png", "mammography"), ("left_MLO.png", "mammography"),
                                           ("RCC.png", "mammography"), ("benign (12).png", "ultrasound"),
                                           ("MLOGIC_scan.png", "ultrasound"), ("10080.png", "ultrasound")])
def test_an_8bit_mammogram_named_by_its_view_is_guessed_as_mammography(tmp_path, name, modality):
    """An exported digital mammogram (8-bit PNG, no metadata) named with its view code (CC, MLO) opens as
    mammography, so the Segment dock offers the mammography model; other 8-bit names stay ultrasound."""
    p = tmp_path / name
    Image.fromarray(_gradient()).save(p)
    [scan] = read_scan(p)
    assert scan.modality == modality and scan.metadata.get("modality_guessed")


def test_real_cdd_cesm_mammogram_opens_as_mammography():
    path = sorted(shared_path("mammography", "cdd_cesm", "images").glob("*_DM_*.png"))[0]
    [scan] = read_scan(path)
    assert scan.modality == "mammography"
