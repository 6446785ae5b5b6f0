"""Whole slides: pyramidal TIFF / OME-TIFF opened lazily as multiscale, slide-sized masks written as pyramids."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_lesionseg.core.io import read_scan, write_mask, write_pyramidal_tiff


def _pattern(factor, y, x, h, w):
    """Synthetic H&E-like colours at level `factor`, a function of full-resolution coordinates."""
    yy, xx = np.mgrid[y:y + h, x:x + w] * factor
    r = (200 + 40 * np.sin(xx / 300.0)).astype(np.uint8)
    g = ((yy // 97) % 200).astype(np.uint8)
    b = ((xx // 53) % 256).astype(np.uint8)
    return np.stack([r, g, b], -1)


@pytest.fixture
def slide(tmp_path):
    p = tmp_path / "slide.tif"
    # 0.25 µm/pixel → 1 / 0.25e-4 cm = 40 000 pixels per cm.
    write_pyramidal_tiff(p, (3000, 4100, 3), np.uint8, _pattern, spacing=(0.00025, 0.00025), tile=256, min_size=512)
    return p


def test_pyramidal_tiff_opens_lazily_as_multiscale(slide):
    [scan] = read_scan(slide)
    assert scan.multiscale and scan.rgb and scan.modality == "histology" and scan.axes == "yxc"
    shapes = [lv.shape for lv in scan.data]
    assert shapes[0] == (3000, 4100, 3)
    assert [s[:2] for s in shapes[1:]] == [(1500, 2050), (750, 1025), (375, 513)]
    assert all(isinstance(lv, da.Array) for lv in scan.data)
    assert scan.data[0].chunksize[:2] == (256, 256)  # reads one tile at a time
    assert scan.geometry.spacing == pytest.approx((0.00025, 0.00025))
    assert scan.layer_scale() == pytest.approx((0.00025, 0.00025))
    np.testing.assert_array_equal(scan.data[0][1000:1010, 2000:2020].compute(), _pattern(1, 1000, 2000, 10, 20))
    np.testing.assert_array_equal(scan.data[2][100:105, 300:310].compute(), _pattern(4, 100, 300, 5, 10))
    kw = scan.layer_kwargs()
    assert kw["multiscale"] and kw["rgb"] and kw["contrast_limits"] == [0.0, 255.0]


def test_ome_tiff_physical_size_gives_the_spacing(tmp_path):
    p = tmp_path / "s.ome.tif"
    data = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    with tifffile.TiffWriter(p, bigtiff=True, ome=True) as tw:
        tw.write(data, subifds=1, tile=(256, 256), photometric="rgb",
                 metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tw.write(data[::2, ::2], subfiletype=1, tile=(256, 256), photometric="rgb")
    [scan] = read_scan(p)
    assert scan.name == "s" and scan.multiscale and len(scan.data) == 2
    assert scan.geometry.spacing == pytest.approx((0.0005, 0.0005))


def test_slide_sized_mask_is_written_as_a_tiled_pyramid(tmp_path, slide):
    [scan] = read_scan(slide)
    h, w = scan.data[0].shape[:2]
    mask = da.zeros((h, w), dtype=np.uint8, chunks=(1024, 1024))
    mask[500:900, 1000:1600] = 1
    out = write_mask(mask, scan.geometry, tmp_path / "mask.tif")
    with tifffile.TiffFile(out) as tf:
        s = tf.series[0]
        assert len(s.levels) >= 3 and tf.pages[0].is_tiled
        full = s.levels[0].asarray()
        assert full.shape == (h, w) and (full == 255).sum() == 400 * 600
        assert s.levels[1].asarray()[250:450, 500:800].min() == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "slide.tif"]


def test_openslide_formats_open_lazily_when_the_extra_is_installed(tmp_path):
    pytest.importorskip("openslide")
    from napari_lesionseg.core.io import read_openslide

    a = np.random.default_rng(0).integers(0, 255, (1500, 2100, 3), dtype=np.uint8)
    p = tmp_path / "generic.tif"  # OpenSlide's generic tiled TIFF stands in for MRXS & co.
    tifffile.imwrite(p, a, tile=(256, 256), photometric="rgb", compression="zlib", resolution=(40000, 40000),
                     resolutionunit="CENTIMETER")
    [scan] = read_openslide(p)
    assert scan.multiscale and scan.rgb and scan.data[0].shape == (1500, 2100, 3)
    assert isinstance(scan.data[0], da.Array)
    assert scan.geometry.spacing == pytest.approx((0.00025, 0.00025))
    np.testing.assert_array_equal(scan.data[0][1200:1500, 2000:2100].compute(), a[1200:, 2000:])
