"""Points → disks (mm or px), exp(-a·d) maps, clicks that grow/shrink a mask; circles (mini-MIAS) → disks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.annotations import (
    Circle,
    circles_to_labels,
    clicks_to_mask,
    points_to_disks,
    points_to_heatmap,
    read_circle_table,
)
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.metrics import dice

from conftest import shared_path


def test_disks_in_mm_are_round_on_anisotropic_pixels():
    # 0.5 mm rows, 1 mm columns: a 5 mm disk spans 21 rows but 11 columns
    lab = points_to_disks((100, 60), [(50, 30), (10, 5)], radius=5, spacing=(0.5, 1.0))
    assert set(np.unique(lab)) == {0, 1, 2}
    rows = np.flatnonzero((lab == 1).any(1))
    cols = np.flatnonzero((lab == 1).any(0))
    assert len(rows) == 21 and len(cols) == 11
    # area ≈ π r² in mm²
    assert abs((lab == 1).sum() * 0.5 - np.pi * 25) / (np.pi * 25) < 0.1


def test_disks_in_pixels_and_3d_balls():
    lab = points_to_disks((40, 40), [(20, 20)], radius=3)
    assert (lab == 1).sum() == 29  # the lattice points within radius 3
    ball = points_to_disks((20, 50, 50), [(10, 25, 25)], radius=6, spacing=(3.0, 1.0, 1.0), labels=False)
    assert ball.dtype == bool
    assert np.flatnonzero(ball.any((1, 2))).tolist() == [8, 9, 10, 11, 12]  # ±6 mm of 3 mm slices


def test_heatmap_is_exp_minus_a_d():
    a = 0.3
    h = points_to_heatmap((50, 80), [(25, 40)], a=a, spacing=(1.0, 2.0))
    assert h.dtype == np.float32 and h[25, 40] == pytest.approx(1.0)
    assert h[25, 45] == pytest.approx(np.exp(-a * 10), rel=1e-5)  # 5 columns × 2 mm
    assert h[30, 40] == pytest.approx(np.exp(-a * 5), rel=1e-5)
    assert h.min() == 0.0 and h.max() <= 1.0
    two = points_to_heatmap((50, 80), [(25, 10), (25, 70)], a=a)
    assert two[25, 10] == pytest.approx(1.0) and two[25, 70] == pytest.approx(1.0)


def _blob(seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:120, :160]
    truth = ((yy - 60) / 25) ** 2 + ((xx - 70) / 35) ** 2 <= 1
    img = (120 + 15 * rng.standard_normal(truth.shape)).astype(np.float32)
    img[truth] -= 70
    return img, truth


def test_positive_click_grows_a_mask_from_the_image():
    img, truth = _blob()
    m = clicks_to_mask(img, positive=[(60, 70)], reach=60)
    assert dice(m, truth) > 0.9


def test_negative_click_shrinks_a_mask():
    img, truth = _blob()
    leaked = truth.copy()
    leaked[50:70, 100:150] = True  # the mask leaked into the tissue beside the lesion
    m = clicks_to_mask(img, negative=[(60, 140)], mask=leaked, reach=40)
    assert not m[60, 140] and not m[60, 125]
    assert dice(m, truth) > 0.9
    half = truth & (np.arange(160) < 70)[None, :]
    grown = clicks_to_mask(img, positive=[(60, 80)], mask=half, reach=40)
    assert dice(grown, truth) > 0.9  # half a lesion, one positive click: the whole lesion


def test_bad_points_are_refused():
    with pytest.raises(LesionSegError, match="outside the image"):
        points_to_disks((50, 50), [(10, 10), (60, 10)], radius=2)
    with pytest.raises(LesionSegError, match="no points"):
        points_to_disks((50, 50), np.zeros((0, 2)), radius=2)
    with pytest.raises(LesionSegError, match="radius must be positive"):
        points_to_disks((50, 50), [(10, 10)], radius=0)
    with pytest.raises(LesionSegError, match="decay"):
        points_to_heatmap((50, 50), [(10, 10)], a=-1)
    with pytest.raises(LesionSegError, match="3 coordinates"):
        points_to_disks((50, 50), [(1, 10, 10)], radius=2)
    with pytest.raises(LesionSegError, match="flat"):
        clicks_to_mask(np.zeros((50, 50)), positive=[(25, 25)])
    with pytest.raises(LesionSegError, match="positive click"):
        clicks_to_mask(np.random.default_rng(0).random((50, 50)), negative=[(25, 25)])


def test_circles_from_the_mini_mias_table():
    table = shared_path("mammography", "mias", "annotations.csv")
    circles = read_circle_table(table, image="mdb005.png")
    assert [(c.col, c.row, c.radius) for c in circles] == [(477, 891, 30), (500, 856, 26)]
    lab = circles_to_labels((1024, 1024), circles)
    assert lab[891, 477] == 1 and lab[856, 500] in (1, 2) and lab[856 - 25, 500] == 2
    assert abs((lab > 0).sum() - np.pi * 30 ** 2) < np.pi * 26 ** 2  # two overlapping disks
    assert read_circle_table(table, image="mdb003.png") == []  # a normal image: no circle


def test_circle_outside_the_image_is_refused(tmp_path):
    with pytest.raises(LesionSegError, match="outside"):
        circles_to_labels((100, 100), [Circle(row=150, col=10, radius=5)])
    p = tmp_path / "c.csv"
    p.write_text("x,y,radius\n10,20,abc\n")
    with pytest.raises(LesionSegError, match="not numbers"):
        read_circle_table(p)
