"""Diameter line → lesion mask: synthetic lesions with known truth, real BUSI/MRI lesions, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.annotations import Line, line_to_mask, lines_to_labels, longest_diameter, pair_short_axes
from napari_lesionseg.core.annotations.line_model import line_model_available
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.metrics import dice

from conftest import pyradiomics_volume, shared_path


def lesion_image(shape=(200, 240), centre=(100, 110), axes=(38, 50), angle=0.5, spacing=(1.0, 1.0), seed=0,
                 irregular=True):
    """Ultrasound-like: a dark lobulated lesion on speckled tissue; returns (image, truth). Axes in mm."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    y = (yy - centre[0]) * spacing[0]
    x = (xx - centre[1]) * spacing[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    r = np.hypot(u / axes[1], v / axes[0])
    if irregular:
        r = r * (1 + 0.08 * np.sin(3 * np.arctan2(v, u)))
    truth = r <= 1
    img = 140 + 25 * rng.standard_normal(shape)
    img[truth] = 55 + 20 * rng.standard_normal(truth.sum())
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(img, 1.0).astype(np.float32), truth


METHODS = ["classical"] + (["learned"] if line_model_available() else [])


@pytest.mark.parametrize("method", METHODS)
def test_line_gives_mask_that_follows_the_lesion(method):
    img, truth = lesion_image()
    p0, p1 = longest_diameter(truth)
    mask = line_to_mask(img, p0, p1, method=method)
    assert mask.shape == img.shape and mask.dtype == bool
    assert dice(mask, truth) > 0.85
    # better than the shape prior alone: the lobulated boundary is followed
    from napari_lesionseg.core.annotations.frame import LineFrame
    from napari_lesionseg.core.annotations.lines import ellipse_prior

    fr = LineFrame.from_line(p0, p1)
    v, box = fr.paste(ellipse_prior(0.6, soft=0.01), img.shape)
    ell = np.zeros_like(truth)
    ell[box] = v > 0.5
    assert dice(mask, truth) > dice(ell, truth)


def test_anisotropic_pixels_are_respected():
    """The same 60×100 mm lesion imaged with 0.5×1 mm pixels: the mask must still fit it."""
    img, truth = lesion_image(shape=(260, 160), centre=(130, 80), axes=(30, 50), angle=0.3, spacing=(0.5, 1.0),
                              seed=3)
    p0, p1 = longest_diameter(truth, spacing=(0.5, 1.0))
    mask = line_to_mask(img, p0, p1, spacing=(0.5, 1.0), method="classical")
    assert dice(mask, truth) > 0.85
    # ignoring the spacing would give the wrong shape
    assert dice(mask, truth) > dice(line_to_mask(img, *longest_diameter(truth), method="classical"), truth) - 0.05


def test_several_lines_give_several_labels():
    img1, t1 = lesion_image(shape=(200, 400), centre=(100, 100), axes=(25, 40), angle=0.2, seed=1)
    img2, t2 = lesion_image(shape=(200, 400), centre=(100, 290), axes=(30, 45), angle=-0.6, seed=2)
    img = np.where(t2, img2, img1)
    lines = [Line(*longest_diameter(t1)), Line(*longest_diameter(t2))]
    labels = lines_to_labels(img, lines, method="classical")
    assert set(np.unique(labels)) == {0, 1, 2}
    assert dice(labels == 1, t1) > 0.8 and dice(labels == 2, t2) > 0.8


def test_short_axis_is_paired_and_used():
    img, truth = lesion_image(axes=(20, 55), angle=0.0, irregular=False, seed=5)
    p0, p1 = longest_diameter(truth)
    from napari_lesionseg.core.annotations import short_axis

    s0, s1 = short_axis(truth, p0, p1)
    lines = pair_short_axes([(p0, p1), (s0, s1)])
    assert len(lines) == 1 and lines[0].short is not None
    labels = lines_to_labels(img, lines, method="classical")
    assert dice(labels > 0, truth) > 0.85
    # a flat lesion: telling the short axis keeps the mask from bulging past it
    half_short = np.hypot(*(s1 - s0)) / 2
    rows = np.flatnonzero(labels.any(1))
    assert (rows[-1] - rows[0]) / 2 < half_short * 1.3


def test_volume_mask_continues_through_slices_with_spacing():
    """A bright ellipsoid in a noisy volume with 2.5 mm slices: a line on the middle slice gives a 3D mask."""
    rng = np.random.default_rng(0)
    sp = np.array([2.5, 0.8, 0.8])
    zz, yy, xx = np.mgrid[:24, :80, :80].astype(float)
    r = (((zz - 12) * sp[0]) / 14) ** 2 + (((yy - 40) * sp[1]) / 16) ** 2 + (((xx - 38) * sp[2]) / 20) ** 2
    truth = r <= 1
    vol = (40 + 10 * rng.standard_normal(truth.shape)).astype(np.float32)
    vol[truth] += 80
    p0, p1 = longest_diameter(truth[12], sp[1:])
    mask = line_to_mask(vol, np.r_[12, p0], np.r_[12, p1], spacing=sp)
    assert mask.shape == vol.shape
    assert dice(mask, truth) > 0.8
    zs = np.flatnonzero(mask.any((1, 2)))
    assert zs.min() <= 8 and zs.max() >= 16  # ~±14 mm of 2.5 mm slices, not just the drawn slice


# ----------------------------------------------------------------------------------------------- bad input

def test_zero_length_line_is_refused():
    img, _ = lesion_image()
    with pytest.raises(LesionSegError, match="zero length"):
        line_to_mask(img, (50, 50), (50, 50))


def test_line_outside_the_image_is_refused():
    img, _ = lesion_image()
    with pytest.raises(LesionSegError, match="outside the image"):
        line_to_mask(img, (50, 50), (50, 400))
    with pytest.raises(LesionSegError, match="Line 2.*outside"):
        lines_to_labels(img, [Line((50, 50), (60, 90)), Line((-20, 5), (10, 10))])


def test_no_lines_is_refused():
    img, _ = lesion_image()
    with pytest.raises(LesionSegError, match="no lines"):
        lines_to_labels(img, [])


@pytest.mark.parametrize("method", ["auto", "classical"])
def test_line_on_a_flat_region_is_refused(method):
    img = np.full((100, 100), 7.0, np.float32)
    with pytest.raises(LesionSegError, match="flat"):
        line_to_mask(img, (20, 20), (60, 70), method=method)


def test_line_on_a_flat_slice_of_a_volume_is_refused():
    vol = np.zeros((12, 60, 60), np.float32)
    vol[:3] = np.random.default_rng(0).random((3, 60, 60))  # signal elsewhere, none where the line is
    with pytest.raises(LesionSegError, match="flat"):
        lines_to_labels(vol, [Line((8, 10, 10), (8, 40, 45))], spacing=(3.0, 0.7, 0.7))


def test_line_across_slices_and_unknown_method_are_refused():
    vol = np.random.default_rng(0).random((10, 50, 50)).astype(np.float32)
    with pytest.raises(LesionSegError, match="one slice"):
        line_to_mask(vol, (2, 10, 10), (7, 30, 30))
    with pytest.raises(LesionSegError, match="Unknown method"):
        line_to_mask(vol[0], (10, 10), (30, 30), method="magic")


# ----------------------------------------------------------------------------------------------- real data

def _busi(name):
    import imageio.v3 as iio

    img = iio.imread(shared_path("ultrasound", "busi", "images", f"{name}.png"))
    mask = iio.imread(shared_path("ultrasound", "busi", "masks", f"{name}.png")) > 0
    return img, mask


@pytest.mark.parametrize("method", METHODS)
def test_real_busi_lesions(method):
    scores = []
    for name in ("benign_101", "malignant_006", "benign_010"):
        img, mask = _busi(name)
        p0, p1 = longest_diameter(mask)
        scores.append(dice(line_to_mask(img, p0, p1, method=method), mask))
    assert np.mean(scores) > 0.75, scores


def test_real_mri_lesion_in_3d():
    vol, lab, sp = pyradiomics_volume("breast1")
    z = int(np.argmax(lab.sum((1, 2))))
    p0, p1 = longest_diameter(lab[z], sp[1:])
    mask = line_to_mask(vol, np.r_[z, p0], np.r_[z, p1], spacing=sp)
    assert dice(mask, lab) > 0.6
    assert mask.any(axis=(1, 2)).sum() >= 2
