"""Every sample opens through napari's File → Open Sample mechanism, with the right spacing and geometry."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.geometry import geometry_from_metadata
from napari_lesionseg.napari._sample_data import SAMPLE_DIR

KEYS = ["busi_ultrasound", "mias_mammogram", "monuseg_he", "duke_dce_mri"]


def test_sample_files_are_small_and_documented():
    files = [p for p in SAMPLE_DIR.iterdir() if p.is_file()]
    assert files
    for p in files:
        assert p.stat().st_size < 2_000_000, p
    readme = (SAMPLE_DIR / "README.md").read_text()
    for word in ("BUSI", "Al-Dhabyani", "MIAS", "research", "MoNuSeg", "CC BY-NC-SA 4.0", "Duke", "CC BY-NC 4.0"):
        assert word in readme


def test_duke_crop_affine_places_voxels_where_the_original_does(shared_data):
    nib = pytest.importorskip("nibabel")
    crop = nib.load(str(SAMPLE_DIR / "duke153_post1_crop.nii.gz"))
    full = nib.load(str(shared_data / "mri" / "duke_153" / "post1.nii.gz"))
    offset = np.array([57, 14, 52])
    for ijk in ([0, 0, 0], [10, 20, 5], [98, 99, 33]):
        ijk = np.array(ijk)
        w_crop = crop.affine @ np.r_[ijk, 1]
        w_full = full.affine @ np.r_[ijk + offset, 1]
        assert np.allclose(w_crop, w_full, atol=1e-4)
        assert crop.dataobj[tuple(ijk)] == full.dataobj[tuple(ijk + offset)]


@pytest.mark.gui
@pytest.mark.parametrize("key", KEYS)
def test_open_sample_through_viewer(make_napari_viewer, key):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-lesionseg", key)
    assert layers
    for layer in layers:
        geom = geometry_from_metadata(layer.metadata)
        assert geom is not None, layer.name
        assert tuple(layer.scale)[-geom.ndim:] == pytest.approx(geom.spacing)
    first = layers[0]
    if key == "busi_ultrasound":
        assert first.data.shape == (478, 432)
        assert layers[1].__class__.__name__ == "Labels" and layers[1].data.max() == 1
        assert layers[1].data.sum() == 12527  # the expert mask's lesion pixels
    elif key == "mias_mammogram":
        assert first.data.shape == (512, 512)
        assert tuple(first.scale) == pytest.approx((0.4, 0.4))  # 200 µm x 2 (downsampled)
        mass = layers[1].data[0]
        # the annotated mass centre is brighter than the breast around it
        r, c = np.round(mass).astype(int)
        assert first.data[r - 10:r + 10, c - 10:c + 10].mean() > first.data[first.data > 30].mean()
    elif key == "monuseg_he":
        assert first.rgb and first.data.shape == (1000, 1000, 3)
        assert tuple(first.scale) == pytest.approx((0.00025, 0.00025))
    elif key == "duke_dce_mri":
        names = [la.name for la in layers]
        assert any("pre" in n for n in names) and any("post1" in n for n in names)
        pre, post = layers[0], layers[1]
        assert pre.data.shape == post.data.shape == (34, 100, 99)
        assert tuple(pre.scale) == pytest.approx((1.1, 0.759, 0.759), abs=1e-3)
        geom = geometry_from_metadata(post.metadata)
        assert geom.nifti_affine is not None
        # the tumour box enhances (post1 - pre) far more than the rest of the crop
        sub = np.asarray(layers[2].data)
        box = sub[8:26, 32:68, 32:67]
        assert box.mean() > 3 * sub.mean()
