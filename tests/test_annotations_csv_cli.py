"""napari's own CSV exports → annotations, and the `lesionseg lines-to-masks` / `points-to-masks` commands."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.annotations import read_points_csv, read_shapes_csv, shapes_to_segments
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.metrics import dice

from conftest import shared_path
from test_annotations_lines import lesion_image


def napari_shapes_csv(path, shapes, types):
    from napari_builtins.io._write import napari_write_shapes

    assert napari_write_shapes(str(path), [np.asarray(s, float) for s in shapes], {"shape_type": types})
    return path


def napari_points_csv(path, coords, properties=None):
    from napari_builtins.io._write import napari_write_points

    assert napari_write_points(str(path), np.asarray(coords, float), {"properties": properties or {}})
    return path


def test_reads_exactly_what_napari_writes(tmp_path):
    shapes = [[[10, 20], [30, 60]], [[5, 5], [7, 9], [40, 9]], [[1, 2], [3, 4], [5, 6], [1, 9]]]
    p = napari_shapes_csv(tmp_path / "s.csv", shapes, ["line", "path", "polygon"])
    assert p.read_text().splitlines()[0] == "index,shape-type,vertex-index,axis-0,axis-1"
    got = read_shapes_csv(p)
    assert [s.shape_type for s in got] == ["line", "path", "polygon"]
    for s, want in zip(got, shapes):
        np.testing.assert_allclose(s.vertices, want)
    segs = shapes_to_segments(got, 2)
    np.testing.assert_allclose(segs[1], [[5, 5], [40, 9]])  # a path: its two farthest vertices

    q = napari_points_csv(tmp_path / "p.csv", [[1, 2, 3], [4, 5, 6]], {"label": np.array([1, 0])})
    assert q.read_text().splitlines()[0] == "index,axis-0,axis-1,axis-2,label"
    pts = read_points_csv(q)
    np.testing.assert_allclose(pts.coords, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(pts.properties["label"], [1, 0])


def test_wrong_or_empty_csv_is_refused(tmp_path):
    pts = napari_points_csv(tmp_path / "p.csv", [[1, 2]])
    with pytest.raises(LesionSegError, match="not a napari Shapes CSV"):
        read_shapes_csv(pts)
    empty = tmp_path / "e.csv"
    empty.write_text("index,shape-type,vertex-index,axis-0,axis-1\n")
    with pytest.raises(LesionSegError, match="no shapes"):
        read_shapes_csv(empty)
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(LesionSegError, match="empty"):
        read_points_csv(tmp_path / "blank.csv")
    rect = napari_shapes_csv(tmp_path / "r.csv", [[[0, 0], [0, 5], [5, 5], [5, 0]]], ["rectangle"])
    with pytest.raises(LesionSegError, match="rectangle"):
        shapes_to_segments(read_shapes_csv(rect), 2)


def _png(path, a):
    import imageio.v3 as iio

    iio.imwrite(path, np.clip(a, 0, 255).astype(np.uint8))
    return path


def test_cli_lines_to_masks_2d(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_lesionseg.core.annotations import longest_diameter

    img, truth = lesion_image(seed=4)
    p0, p1 = longest_diameter(truth)
    image = _png(tmp_path / "us.png", img)
    csv = napari_shapes_csv(tmp_path / "lines.csv", [[p0, p1]], ["line"])
    out = tmp_path / "mask.png"
    assert main(["lines-to-masks", "--image", str(image), "--annotations", str(csv), "--output", str(out)]) == 0
    mask = iio.imread(out) > 0
    assert dice(mask, truth) > 0.85
    assert "lesion 1" in capsys.readouterr().out


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    img, _ = lesion_image()
    image = _png(tmp_path / "us.png", img)
    csv = napari_shapes_csv(tmp_path / "zero.csv", [[[50, 50], [50, 50]]], ["line"])
    rc = main(["lines-to-masks", "--image", str(image), "--annotations", str(csv), "--output", str(tmp_path / "m.png")])
    assert rc == 2 and "zero length" in capsys.readouterr().err
    out = napari_shapes_csv(tmp_path / "out.csv", [[[50, 50], [50, 900]]], ["line"])
    rc = main(["lines-to-masks", "--image", str(image), "--annotations", str(out), "--output", str(tmp_path / "m.png")])
    assert rc == 2 and "outside the image" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()


def test_cli_points_to_masks_disks_and_heatmap(tmp_path):
    import imageio.v3 as iio

    image = _png(tmp_path / "he.png", np.random.default_rng(0).integers(0, 255, (64, 80)))
    pts = napari_points_csv(tmp_path / "pts.csv", [[10, 10], [40, 60]])
    out = tmp_path / "disks.png"
    assert main(["points-to-masks", "--image", str(image), "--annotations", str(pts), "--output", str(out),
                 "--radius", "4"]) == 0
    lab = iio.imread(out)
    assert lab[10, 10] == 1 and lab[40, 60] == 2 and lab[10, 15] == 0 and (lab == 1).sum() == 49
    heat = tmp_path / "heat.tif"
    assert main(["points-to-masks", "--image", str(image), "--annotations", str(pts), "--output", str(heat),
                 "--heatmap", "0.5"]) == 0
    h = iio.imread(heat)
    assert h.dtype == np.float32 and h[10, 10] == pytest.approx(1) and h[10, 12] == pytest.approx(np.exp(-1), rel=1e-4)
    bad = napari_points_csv(tmp_path / "bad.csv", [[10, 10], [100, 10]])
    assert main(["points-to-masks", "--image", str(image), "--annotations", str(bad), "--output",
                 str(tmp_path / "x.png"), "--radius", "3"]) == 2


def test_cli_lines_to_masks_nifti_volume_keeps_geometry(tmp_path):
    import nibabel as nib

    src = shared_path("mri", "pyradiomics", "breast1_image.nii.gz")
    lab = np.asarray(nib.load(str(shared_path("mri", "pyradiomics", "breast1_label.nii.gz"))).dataobj).T > 0
    from napari_lesionseg.core.annotations import longest_diameter

    z = int(np.argmax(lab.sum((1, 2))))
    sp = np.asarray(nib.load(str(src)).header.get_zooms()[:3])[::-1]
    p0, p1 = longest_diameter(lab[z], sp[1:])
    csv = napari_shapes_csv(tmp_path / "l.csv", [[np.r_[z, p0], np.r_[z, p1]]], ["line"])
    out = tmp_path / "mask.nii.gz"
    assert main(["lines-to-masks", "--image", str(src), "--annotations", str(csv), "--output", str(out)]) == 0
    m = nib.load(str(out))
    np.testing.assert_allclose(m.affine, nib.load(str(src)).affine, atol=1e-5)
    assert dice(np.asarray(m.dataobj).T > 0, lab) > 0.6
    # the same line in mm (a Shapes layer drawn without the image's scale) with --world
    csv_mm = napari_shapes_csv(tmp_path / "mm.csv", [[np.r_[z, p0] * sp, np.r_[z, p1] * sp]], ["line"])
    out2 = tmp_path / "mask_mm.nii.gz"
    assert main(["lines-to-masks", "--image", str(src), "--annotations", str(csv_mm), "--output", str(out2),
                 "--world"]) == 0
    assert (np.asarray(nib.load(str(out2)).dataobj) == np.asarray(m.dataobj)).all()


def test_cli_circles_from_mini_mias(tmp_path):
    import imageio.v3 as iio

    image = shared_path("mammography", "mias", "images", "mdb005.png")
    table = shared_path("mammography", "mias", "annotations.csv")
    out = tmp_path / "mdb005_mask.png"
    assert main(["points-to-masks", "--image", str(image), "--circles", str(table), "--output", str(out)]) == 0
    lab = iio.imread(out)
    assert lab.shape == (1024, 1024) and lab[891, 477] == 1 and lab[856 - 25, 500] == 2
    normal = shared_path("mammography", "mias", "images", "mdb003.png")
    assert main(["points-to-masks", "--image", str(normal), "--circles", str(table), "--output",
                 str(tmp_path / "x.png")]) == 2
