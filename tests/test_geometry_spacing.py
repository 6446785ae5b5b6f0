"""Stating a pixel size for files that have none: typed in, or from two ruler points a known distance apart."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.geometry import Geometry, spacing_from_ruler, with_given_spacing
from napari_lesionseg.core.io import read_scan

from conftest import REPO


def test_ruler_gives_the_pixel_size():
    # two ticks of an ultrasound depth scale, 10 mm apart, 80 pixels apart (diagonal: 3-4-5 triangle x 16)
    assert spacing_from_ruler((10, 20), (58, 84), 10.0) == pytest.approx(0.125)
    assert spacing_from_ruler((0, 0), (0, 200), 50.0) == pytest.approx(0.25)


@pytest.mark.parametrize("p0, p1, mm, words", [
    ((5, 5), (5, 5.5), 10.0, "less than one pixel"),
    ((0, 0), (0, 100), 0.0, "more than 0"),
    ((0, 0), (0, 100), float("nan"), "more than 0"),
    ((0, 0), (0, 0, 1), 10.0, "same number"),
])
def test_ruler_refuses_what_cannot_give_a_size(p0, p1, mm, words):
    with pytest.raises(LesionSegError, match=words):
        spacing_from_ruler(p0, p1, mm)


def test_given_spacing_on_a_png_without_one():
    [scan] = read_scan(REPO / "sample_data" / "busi_malignant_006.png")
    geom = scan.geometry
    assert not geom.spacing_known and geom.spacing == (1.0, 1.0)
    given = with_given_spacing(geom, 0.08)
    assert given.spacing == (0.08, 0.08) and given.spacing_known
    assert given.extra["spacing_source"] == "given"
    assert given.extra["source_path"] == geom.extra["source_path"]
    assert not geom.spacing_known and geom.extra["spacing_source"] == "none", "the original is not changed"
    assert with_given_spacing(geom, (0.1, 0.2)).spacing == (0.1, 0.2)


def test_given_spacing_refuses_nonsense_and_scans_with_their_own():
    geom = Geometry(spacing=(1.0, 1.0), extra={"spacing_source": "none"})
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(LesionSegError, match="positive"):
            with_given_spacing(geom, bad)
    with pytest.raises(LesionSegError, match="one pixel size or 2"):
        with_given_spacing(geom, (0.1, 0.1, 0.1))
    nifti = Geometry(spacing=(2.0, 0.7, 0.7), nifti_affine=np.diag([0.7, 0.7, 2.0, 1.0]))
    with pytest.raises(LesionSegError, match="states its own voxel size"):
        with_given_spacing(nifti, 1.0)


def test_free_path_never_takes_someone_elses_file(tmp_path):
    from napari_lesionseg.core.io.atomic import free_path

    target = tmp_path / "scan_mask.nii.gz"
    assert free_path(target) == target
    target.write_bytes(b"expert")
    assert free_path(target) == tmp_path / "scan_mask-1.nii.gz"
    (tmp_path / "scan_mask-1.nii.gz").write_bytes(b"another")
    assert free_path(target) == tmp_path / "scan_mask-2.nii.gz"
    assert free_path(target, ours=[target]) == target  # a file this session wrote may be replaced
