"""H&E tools on real tiles: deconvolution, Macenko normalisation, mitosis heatmaps and counts."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_lesionseg.core import histology as H
from napari_lesionseg.core.errors import LesionSegError

from conftest import shared_path

TILE_A = "TCGA-A7-A13E-01Z-00-DX1"   # pale, purple
TILE_B = "TCGA-AR-A1AK-01Z-00-DX1"   # pinker: a different stain


def _tile(name):
    tifffile = pytest.importorskip("tifffile")
    return tifffile.imread(shared_path("histology", "monuseg_breast", "images", f"{name}.tif"))[..., :3]


def _nuclei(name):
    import imageio.v3 as iio

    return iio.imread(shared_path("histology", "monuseg_breast", "binary_masks_derived", f"{name}.png")) > 0


@pytest.mark.parametrize("name", [TILE_A, TILE_B, "TCGA-E2-A1B5-01Z-00-DX1"])
def test_haematoxylin_is_higher_inside_nuclei(name):
    rgb, nuclei = _tile(name), _nuclei(name)
    h, e = H.deconvolve_he(rgb)
    assert h.shape == e.shape == rgb.shape[:2]
    assert h[nuclei].mean() > 2.0 * h[~nuclei].mean()
    # a pixel-wise check too: nuclei rank above background (AUC of H as a nucleus detector)
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    inside = rng.choice(h[nuclei], 5000)
    outside = rng.choice(h[~nuclei], 5000)
    auc = mannwhitneyu(inside, outside).statistic / (len(inside) * len(outside))
    assert auc > 0.8


def test_macenko_moves_stain_vectors_and_colours_towards_the_reference():
    a, b = _tile(TILE_A), _tile(TILE_B)
    ea, eb = H.macenko_stain_matrix(a), H.macenko_stain_matrix(b)
    # haematoxylin vectors have the larger red OD component (the H/E ordering is right)
    for est in (ea, eb):
        assert est.stain_matrix[0, 0] > est.stain_matrix[0, 1]
        assert np.allclose(np.linalg.norm(est.stain_matrix, axis=0), 1.0)
    before = [H.stain_angle_degrees(ea.stain_matrix[:, k], eb.stain_matrix[:, k]) for k in range(2)]
    assert min(before) > 5  # the tiles really differ
    n = H.macenko_normalize(a, b)
    assert n.shape == a.shape and n.dtype == np.uint8
    en = H.macenko_stain_matrix(n)
    after = [H.stain_angle_degrees(en.stain_matrix[:, k], eb.stain_matrix[:, k]) for k in range(2)]
    assert all(x < y / 3 for x, y in zip(after, before)), (before, after)
    assert np.allclose(en.max_concentrations, eb.max_concentrations, rtol=0.15)
    # mean tissue colour moves towards the reference's
    ta, tb, tn = H.tissue_mask(a), H.tissue_mask(b), H.tissue_mask(n)
    ma, mb, mn = a[ta].mean(0), b[tb].mean(0), n[tn].mean(0)
    assert np.linalg.norm(mn - mb) < 0.6 * np.linalg.norm(ma - mb)
    # structure is kept: haematoxylin still marks the nuclei
    h, _ = H.deconvolve_he(n)
    nuclei = _nuclei(TILE_A)
    assert h[nuclei].mean() > 2.0 * h[~nuclei].mean()


def test_macenko_refuses_blank_image():
    with pytest.raises(LesionSegError):
        H.macenko_stain_matrix(np.full((64, 64, 3), 250, np.uint8))


def test_mitotic_figures_in_ami_br_patches_are_haematoxylin_dense():
    import imageio.v3 as iio

    folder = shared_path("histology", "ami_br", "patches", "normal")
    files = sorted(folder.glob("*.png"))[:60]
    centre_higher = 0
    for f in files:
        h, _ = H.deconvolve_he(iio.imread(f)[..., :3])
        centre = h[52:76, 52:76].mean()
        centre_higher += centre > h.mean()
    assert centre_higher / len(files) > 0.8


def test_heatmap_is_exp_of_distance():
    pts = np.array([[10, 10], [40, 70]])
    hm = H.points_heatmap(pts, (50, 80), a=0.2)
    assert hm[10, 10] == pytest.approx(1.0) and hm[40, 70] == pytest.approx(1.0)
    assert hm[10, 15] == pytest.approx(math.exp(-0.2 * 5), rel=1e-5)
    assert hm[13, 14] == pytest.approx(math.exp(-0.2 * 5), rel=1e-5)
    # spacing in mm: a per mm
    hm_mm = H.points_heatmap(pts, (50, 80), a=2.0, spacing=0.1)
    assert np.allclose(hm_mm, hm, atol=1e-6)
    # a point outside the grid still shapes the map
    edge = H.points_heatmap([[-5, 0]], (10, 10), a=1.0)
    assert edge[0, 0] == pytest.approx(math.exp(-5), rel=1e-5)
    assert not H.points_heatmap(np.zeros((0, 2)), (5, 5)).any()


def test_counts_per_region_and_per_hpf():
    labels = np.zeros((100, 100), np.uint8)
    labels[:50] = 1
    labels[50:, 50:] = 2
    pts = np.array([[10, 10], [20, 30], [70, 70], [70, 10], [200, 200]])
    per = H.count_points_per_region(pts, labels, spacing=0.01)
    assert per[1]["count"] == 2 and per[2]["count"] == 1 and per[0]["count"] == 1
    assert per[1]["area_mm2"] == pytest.approx(0.5)
    assert per[1]["per_mm2"] == pytest.approx(4.0)
    # HPF side sqrt(0.25) = 0.5 mm = 50 px at 0.01 mm: a 2x2 grid of fields
    hpf = H.count_points_per_hpf(pts, (100, 100), 0.01, hpf_area_mm2=0.25)
    assert hpf.counts.tolist() == [[2, 0], [1, 1]]
    assert hpf.n_points == 4 and hpf.max_per_hpf == 2
    with pytest.raises(LesionSegError):
        H.count_points_per_hpf(pts, (100, 100), None)


def test_hpf_counts_on_a_real_slide_annotation():
    """AMi-Br mitotic figures of one MIDOG slide: counts per HPF are conserved and the hotspot is consistent."""
    path = shared_path("histology", "ami_br", "AMI-BR.csv")
    rows = [r for r in csv.DictReader(open(path)) if r["dataset"] == "MIDOG21" and r["slide"] == "002.tiff"]
    assert len(rows) > 5
    pts = np.array([[float(r["y"]), float(r["x"])] for r in rows])
    shape = (int(pts[:, 0].max()) + 1, int(pts[:, 1].max()) + 1)
    spacing = 0.00025  # mm per pixel at 40x
    hpf = H.count_points_per_hpf(pts, shape, spacing)
    side_px = math.sqrt(0.237) / spacing
    assert hpf.field_size_px[0] == pytest.approx(side_px)
    assert hpf.counts.sum() == len(pts)
    hot, box = H.hotspot_count(pts, shape, spacing, n_fields=10)
    assert hpf.max_per_hpf <= hot <= len(pts)
    r0, c0, r1, c1 = box
    inside = (pts[:, 0] >= r0) & (pts[:, 0] < r1) & (pts[:, 1] >= c0) & (pts[:, 1] < c1)
    assert abs(int(inside.sum()) - hot) <= 1
