"""napari side: real files of every modality open through this plugin with the right scale; bad files give a
notification (no traceback, no layer); masks saved from derived layers sit on their scan; the DCE dock."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _io_dicom_factory import write_series
from conftest import shared_path
from PIL import Image

from napari_lesionseg.core.geometry import geometry_from_metadata
from napari_lesionseg.napari._reader import get_reader
from napari_lesionseg.napari.layer_utils import derived_layer_kwargs

pytestmark = pytest.mark.gui
PLUGIN = "napari-lesionseg"


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen = []

    def collect(event):
        seen.append(event.value if hasattr(event, "value") else event)

    notification_manager.notification_ready.connect(collect)
    yield seen
    notification_manager.notification_ready.disconnect(collect)


def _first(folder, pattern):
    files = sorted(folder.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} in {folder}")
    return files[0]


def test_real_files_of_every_modality_open_with_the_right_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    cases = [
        (shared_path("mri", "duke_153", "post1.nii.gz"), (1.1, 0.7589286, 0.7589286), False),
        (shared_path("mri", "pyradiomics", "breast1_image.nii.gz"), (2.1, 0.664062, 0.664062), False),
        (_first(shared_path("mammography", "mias", "images"), "mdb*.png"), (0.2, 0.2), False),
        (_first(shared_path("ultrasound", "busi", "images"), "benign_*.png"), (1.0, 1.0), False),
        (_first(shared_path("histology", "monuseg_breast", "images"), "*.tif"), (1.0, 1.0), True),
        (_first(shared_path("histology", "ami_br", "patches", "normal"), "*.png"), (1.0, 1.0), True),
    ]
    for path, scale, rgb in cases:
        layers = viewer.open(path, plugin=PLUGIN)
        assert len(layers) == 1, path
        layer = layers[0]
        np.testing.assert_allclose(layer.scale, scale, rtol=1e-5, err_msg=str(path))
        assert layer.rgb == rgb
        geom = geometry_from_metadata(layer.metadata)
        assert geom is not None and geom.extra["source_path"] == str(path)
    assert len(viewer.layers) == len(cases)


def test_dicom_folder_and_slide_open_through_the_plugin(make_napari_viewer, tmp_path):
    from napari_lesionseg.core.io import write_pyramidal_tiff

    vol = np.arange(5 * 16 * 12, dtype=np.uint16).reshape(5, 16, 12)
    write_series(tmp_path / "dcm", vol, row_cos=[1, 0, 0], col_cos=[0, 1, 0], spacing_rc=(0.6, 0.5),
                 origin=[10, 20, 30], slice_step=[0, 0, 3.0], description="T1 pre")
    write_pyramidal_tiff(tmp_path / "slide.tif", (2500, 2500, 3), np.uint8,
                         lambda f, y, x, h, w: np.full((h, w, 3), 180, np.uint8), spacing=(0.0005, 0.0005),
                         tile=256, min_size=512)
    viewer = make_napari_viewer()
    [series] = viewer.open(tmp_path / "dcm", plugin=PLUGIN)
    assert series.name == "T1 pre" and series.data.shape == (5, 16, 12)
    np.testing.assert_allclose(series.scale, (3.0, 0.6, 0.5))
    [slide] = viewer.open(tmp_path / "slide.tif", plugin=PLUGIN)
    assert slide.multiscale and slide.rgb and len(slide.data) == 4 and slide.data[-1].shape[0] < 512
    np.testing.assert_allclose(slide.scale, (0.0005, 0.0005))


def test_reader_declines_what_it_does_not_handle(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "folder")) is None
    assert get_reader(str(tmp_path / "scan.nii.gz")) is not None


def test_bad_files_give_a_notification_and_no_layer(make_napari_viewer, tmp_path, notifications):
    a = np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    vol = np.ones((4, 4, 4), np.float32)
    vol[0, 0, 0] = np.nan
    nib.Nifti1Image(vol, np.eye(4)).to_filename(tmp_path / "nan.nii.gz")
    rgba = np.zeros((10, 10, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    viewer = make_napari_viewer()
    for name in ("cut.png", "transparent.png"):
        layers = viewer.open(tmp_path / name, plugin=PLUGIN)
        assert layers == []
    assert len(viewer.layers) == 0
    # Issue 14: a NIfTI with NaN voxels opens (it could not even be viewed), with a warning and a finite display
    (layer,) = viewer.open(tmp_path / "nan.nii.gz", plugin=PLUGIN)
    assert np.isnan(layer.data).sum() == 1 and np.isfinite(layer.contrast_limits).all()
    viewer.reset_view()
    messages = [str(n.message) for n in notifications]
    assert any("cut.png" in m for m in messages)
    assert any("NaN" in m for m in messages)
    assert any("alpha" in m for m in messages)


def test_mask_saved_from_a_derived_labels_layer_sits_on_the_scan(make_napari_viewer, tmp_path):
    src = shared_path("mri", "duke_153", "post1.nii.gz")
    viewer = make_napari_viewer()
    [image] = viewer.open(src, plugin=PLUGIN)
    mask = np.zeros(image.data.shape, np.uint8)
    mask[60:78, 46:82, 89:124] = 1
    kw = derived_layer_kwargs(image, "lesion")
    assert kw["scale"] == tuple(image.scale) and kw["metadata"]["lesionseg"]["derived_from"] == image.name
    labels = viewer.add_labels(mask, **kw)
    out = tmp_path / "lesion.nii.gz"
    labels.save(str(out), plugin=PLUGIN)
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, nib.load(src).affine, atol=1e-6)
    assert back.shape == (448, 448, 160) and np.asarray(back.dataobj)[89:124, 46:82, 60:78].all()
    # Saving over the scan itself is refused, and the scan is untouched.
    before = src.stat().st_mtime
    assert labels.save(str(src), plugin=PLUGIN) == []
    assert src.stat().st_mtime == before


def test_dce_widget_adds_subtraction_on_the_post_geometry(make_napari_viewer):
    from napari_lesionseg.napari.dce_widget import DCEWidget

    viewer = make_napari_viewer()
    [post] = viewer.open(shared_path("mri", "duke_153", "post1.nii.gz"), plugin=PLUGIN)
    [pre] = viewer.open(shared_path("mri", "duke_153", "pre.nii.gz"), plugin=PLUGIN)
    w = DCEWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.post.value, w.pre.value = post, pre
    w.enhancement.value = True
    sub, pct = w.run()
    assert sub.name == "post1 - pre" and tuple(sub.scale) == tuple(post.scale)
    g = geometry_from_metadata(sub.metadata)
    np.testing.assert_array_equal(g.nifti_affine, geometry_from_metadata(post.metadata).nifti_affine)
    box = (slice(60, 78), slice(46, 82), slice(89, 124))
    slab = np.zeros(sub.data.shape, bool)
    slab[60:78] = True
    inside = np.zeros(sub.data.shape, bool)
    inside[box] = True
    assert sub.data[inside].mean() > 5 * sub.data[slab & ~inside].mean()
    assert pct.data.shape == post.data.shape
