"""Issue 14, input checks and units: each bad input of the issue reproduced, now with a clear outcome.

Units follow whether the file states its pixel size; a DICOM folder keeps its readable series; `--series` picks
one; a model of another modality is refused unless --force; train says which images have no mask; a scan given as
a mask, an image too small to segment, and NaN voxels each get a clear message (never a traceback).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.checks import MIN_IMAGE_SIDE, check_mask_like
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.geometry import Geometry
from napari_lesionseg.core.io import pick_series, read_scan
from napari_lesionseg.core.measure import measure_lesions, measurements_to_rows
from napari_lesionseg.core.models import default_registry
from napari_lesionseg.core.training.data import load_folder

from _io_dicom_factory import MG_STORAGE, make_dataset, write_series
from conftest import REPO, shared_path
from test_annotations_csv_cli import napari_points_csv, napari_shapes_csv
from tiny_models import tiny_model

SAMPLE_US = REPO / "sample_data" / "busi_malignant_006.png"
SAMPLE_US_MASK = REPO / "sample_data" / "busi_malignant_006_mask.png"
ROW, COL = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _square_mask(path: Path, shape=(60, 60), box=(10, 30, 10, 30)) -> Path:
    m = np.zeros(shape, np.uint8)
    m[box[0]:box[1], box[2]:box[3]] = 255
    iio.imwrite(path, m)
    return path


# -- sizes in the right unit ------------------------------------------------------------------------------

def test_measure_png_without_pixel_size_reports_pixels(tmp_path, capsys):
    mask = _square_mask(tmp_path / "m.png")
    code, out, _ = _run(["measure", "--mask", mask], capsys)
    assert code == 0
    (row,) = _rows(tmp_path / "m_measurements.csv")
    assert float(row["area_px2"]) == 400 and float(row["long_axis_px"]) == pytest.approx(20 * 2 ** 0.5, abs=1)
    assert not any(k.endswith(("_mm", "_mm2", "_ml")) for k in row), row.keys()
    assert "px²" in out and "mm" not in out.split("\n", 1)[1]  # the table lines say px; the note explains
    assert "pixel size is unknown" in out and "--spacing" in out


def test_measure_with_spacing_reports_mm(tmp_path, capsys):
    mask = _square_mask(tmp_path / "m.png")
    code, out, _ = _run(["measure", "--mask", mask, "--spacing", "0.1"], capsys)
    assert code == 0
    (row,) = _rows(tmp_path / "m_measurements.csv")
    assert float(row["area_mm2"]) == pytest.approx(4.0) and "long_axis_mm" in row and "area_px2" not in row
    assert "mm²" in out and "unknown" not in out


def test_measure_png_mask_of_a_dicom_with_pixel_spacing_is_in_mm(tmp_path, capsys):
    """A PNG mask drawn on a mammogram whose DICOM states PixelSpacing: the image's mm are used."""
    raw = np.full((60, 60), 1000, np.uint16)
    ds = make_dataset(raw, modality="MG", sop_class=MG_STORAGE, PixelSpacing=[0.1, 0.1])
    ds.save_as(tmp_path / "mg.dcm", enforce_file_format=True)
    mask = _square_mask(tmp_path / "m.png")
    code, out, _ = _run(["measure", "--mask", mask, "--image", tmp_path / "mg.dcm"], capsys)
    assert code == 0
    (row,) = _rows(tmp_path / "m_measurements.csv")
    assert float(row["area_mm2"]) == pytest.approx(4.0) and float(row["mean_intensity"]) == 1000


def test_core_measurement_says_its_unit():
    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 5:25] = 1
    unknown = Geometry(spacing=(1.0, 1.0), extra={"spacing_source": "none"})
    (m,) = measure_lesions(mask, geometry=unknown)
    assert (m.size_column, m.size_unit, m.length_unit, m.size) == ("area_px2", "px²", "px", 200.0)
    cols, _ = measurements_to_rows([m])
    assert "area_px2" in cols and "long_axis_px" in cols and not any(c.endswith("_mm") for c in cols)
    known = Geometry(spacing=(0.5, 0.5), extra={"spacing_source": "given"})
    (m,) = measure_lesions(mask, geometry=known)
    assert (m.size_column, m.size) == ("area_mm2", pytest.approx(50.0))
    (m,) = measure_lesions(np.stack([mask] * 3), geometry=Geometry(spacing=(1.0, 1.0, 1.0),
                                                                    extra={"spacing_source": "none"}))
    assert m.size_column == "volume_voxels" and m.size == 600


def test_lines_to_masks_says_pixels_without_spacing_and_mm_with_it(tmp_path, capsys):
    from test_annotations_lines import lesion_image
    from napari_lesionseg.core.annotations import longest_diameter

    img, truth = lesion_image(seed=4)
    iio.imwrite(tmp_path / "us.png", np.clip(img, 0, 255).astype(np.uint8))
    lines = napari_shapes_csv(tmp_path / "l.csv", [list(longest_diameter(truth))], ["line"])
    args = ["lines-to-masks", "--image", tmp_path / "us.png", "--annotations", lines, "--output", tmp_path / "m.png"]
    code, out, _ = _run(args, capsys)
    assert code == 0
    lesion = [line for line in out.splitlines() if line.startswith("lesion 1")][0]
    assert "pixels" in lesion and "mm" not in lesion and "pixel size is unknown" in out
    n = int((iio.imread(tmp_path / "m.png") > 0).sum())
    code, out, _ = _run(args[:-1] + [tmp_path / "m2.png", "--spacing", "0.1"], capsys)
    assert code == 0
    assert f"{n} pixels = {n * 0.01:.2f} mm²" in out and "unknown" not in out


def test_lines_to_masks_on_mini_mias_is_in_mm(tmp_path, capsys):
    src = shared_path("mammography", "mias", "images", "mdb005.png")
    shutil.copy(src, tmp_path / "mdb005.png")
    lines = napari_shapes_csv(tmp_path / "l.csv", [[[500, 480], [500, 540]]], ["line"])
    code, out, _ = _run(["lines-to-masks", "--image", tmp_path / "mdb005.png", "--annotations", lines,
                         "--output", tmp_path / "m.png"], capsys)
    assert code == 0
    assert "mm²" in [line for line in out.splitlines() if line.startswith("lesion 1")][0]
    assert "unknown" not in out


def test_points_radius_in_mm_needs_a_pixel_size(tmp_path, capsys):
    iio.imwrite(tmp_path / "us.png", np.full((64, 64), 90, np.uint8))
    pts = napari_points_csv(tmp_path / "p.csv", [[30, 30]])
    args = ["points-to-masks", "--image", tmp_path / "us.png", "--annotations", pts, "--radius", "2", "--mm",
            "--output", tmp_path / "d.png"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "--spacing" in err and not (tmp_path / "d.png").exists()
    code, out, _ = _run(args + ["--spacing", "0.2"], capsys)
    assert code == 0 and "radius 2 mm" in out
    disk = iio.imread(tmp_path / "d.png") > 0
    assert disk[30, 30] and disk[30, 39] and not disk[30, 41]  # 2 mm = 10 pixels of 0.2 mm


# -- DICOM folders: a corrupt file, several series, --series ------------------------------------------------

def _two_series_and_a_corrupt_file(folder: Path) -> None:
    vol = (np.arange(4 * 32 * 32) % 200).reshape(4, 32, 32).astype(np.uint16)
    kw = dict(row_cos=ROW, col_cos=COL, spacing_rc=(0.7, 0.7), origin=np.zeros(3), slice_step=(0, 0, 2.0))
    write_series(folder, vol, description="pre", series_number=1, **kw)
    write_series(folder, vol + 50, description="post 1", series_number=2, **kw)
    single = make_dataset(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), SeriesDescription="scout")
    single.save_as(folder / "scout.dcm", enforce_file_format=True)
    data = (folder / "scout.dcm").read_bytes()
    (folder / "scout.dcm").write_bytes(data[: len(data) - 3000])  # truncated pixel data
    (folder / "junk.dcm").write_bytes(b"not a dicom file at all" * 10)


def test_dicom_folder_with_a_corrupt_file_keeps_the_good_series(tmp_path):
    _two_series_and_a_corrupt_file(tmp_path)
    scans = read_scan(tmp_path)
    assert [s.name for s in scans] == ["pre", "post 1"]
    assert int(scans[1].data.mean() - scans[0].data.mean()) == 50
    for s in scans:
        warnings = " ".join(s.metadata["warnings"])
        assert "scout.dcm" in warnings and "junk.dcm" in warnings


def test_a_series_with_a_broken_slice_is_left_out_and_named(tmp_path):
    vol = np.ones((4, 32, 32), np.uint16)
    kw = dict(row_cos=ROW, col_cos=COL, spacing_rc=(0.7, 0.7), origin=np.zeros(3), slice_step=(0, 0, 2.0))
    write_series(tmp_path, vol, description="pre", series_number=1, **kw)
    _, paths = write_series(tmp_path, vol, description="post 1", series_number=2, **kw)
    paths[2].write_bytes(paths[2].read_bytes()[:-1500])
    (scan,) = read_scan(tmp_path)
    assert scan.name == "pre"
    assert any(paths[2].name in w and "post 1" in w for w in scan.metadata["warnings"])


def test_two_series_with_one_description_get_their_series_numbers(tmp_path):
    for number in (3, 4):
        ds = make_dataset(np.full((40, 40), 100 * number, np.uint16), modality="MG", sop_class=MG_STORAGE,
                          SeriesDescription="L CC", SeriesNumber=number, PixelSpacing=[0.1, 0.1])
        ds.save_as(tmp_path / f"mg{number}.dcm", enforce_file_format=True)
    scans = read_scan(tmp_path)
    assert sorted(s.name for s in scans) == ["L CC (3)", "L CC (4)"]
    assert pick_series(scans, "4", tmp_path).data.mean() == 400
    assert pick_series(scans, "#1", tmp_path).name == "L CC (3)"
    with pytest.raises(LesionSegError, match="matches 2 series"):
        pick_series(scans, "L CC", tmp_path)


def test_series_option_picks_one_series_in_the_cli(tmp_path, capsys):
    folder = tmp_path / "study"
    _two_series_and_a_corrupt_file(folder)
    lines = napari_shapes_csv(tmp_path / "l.csv", [[[1, 8, 8], [1, 20, 20]]], ["line"])
    args = ["lines-to-masks", "--image", folder, "--annotations", lines, "--output", tmp_path / "m.nii.gz"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "holds 2 series" in err and "1: pre" in err and "2: post 1" in err and "--series" in err
    for choice in ("post", "2", "#2"):
        code, out, err = _run(args + ["--series", choice], capsys)
        assert code == 0, err
        assert "scout.dcm" in err and "junk.dcm" in err  # the bad files are named
        assert "mL" in out  # PixelSpacing and slice positions: sizes in mm
    code, _, err = _run(args + ["--series", "dwi"], capsys)
    assert code == 2 and "no such series" in err


# -- the wrong model for the modality -------------------------------------------------------------------

def _install(kind, tmp_path_factory, user_dir) -> str:
    card = tiny_model(kind, tmp_path_factory.getbasetemp() / "tiny-models", install_into=user_dir)
    return default_registry().get(card).name


def _nifti_volume(path: Path, bad_value=None) -> Path:
    rng = np.random.default_rng(0)
    vol = rng.normal(300, 40, (64, 64, 6)).astype(np.float32)
    if bad_value is not None:
        vol[:5, :5, :] = bad_value
    nib.Nifti1Image(vol, np.diag([0.7, 0.7, 2.0, 1.0])).to_filename(path)
    return path


@pytest.mark.slow
def test_ultrasound_model_on_an_mri_volume_is_refused_unless_forced(tmp_path, tmp_path_factory, _user_model_dir,
                                                                    capsys):
    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    src = _nifti_volume(tmp_path / "t1.nii.gz")
    args = ["predict", "--model", model, "--input", src, "--output", tmp_path / "m.nii.gz", "--device", "cpu"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "ultrasound" in err and "MRI" in err and "--force" in err
    assert not (tmp_path / "m.nii.gz").exists()
    code, _, err = _run(args + ["--force"], capsys)
    assert code == 0 and "warning" in err and "MRI" in err
    assert nib.load(tmp_path / "m.nii.gz").shape == (64, 64, 6)


@pytest.mark.slow
def test_colour_model_on_a_grayscale_image_is_refused_unless_forced(tmp_path, tmp_path_factory, _user_model_dir,
                                                                   capsys):
    model = _install("rgb2d", tmp_path_factory, _user_model_dir)
    iio.imwrite(tmp_path / "gray.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    args = ["predict", "--model", model, "--input", tmp_path / "gray.png", "--output", tmp_path / "m.png",
            "--device", "cpu"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "colour" in err and "grayscale" in err and "--force" in err
    code, _, _ = _run(args + ["--force"], capsys)
    assert code == 0 and iio.imread(tmp_path / "m.png").shape == (64, 64)


def test_fit_rule_is_one_core_function():
    from napari_lesionseg.core.inference.run import fit_report
    from napari_lesionseg.core.models.card import ModelCard

    us = ModelCard(name="us", modality="ultrasound")
    he = ModelCard(name="he", modality="histology", input_kind="rgb", in_channels=3)
    assert fit_report(us, image_name="t1", spatial_shape=(20, 64, 64), rgb=False, modality="mri").mismatches
    assert not fit_report(us, image_name="x", spatial_shape=(64, 64), rgb=False, modality="ultrasound").mismatches
    guessed = fit_report(us, image_name="mdb005", spatial_shape=(64, 64), rgb=False, modality="mammography",
                         modality_guessed=True)
    assert not guessed.mismatches and guessed.notes  # PNG guesses between ultrasound and mammography only note
    other = fit_report(us, image_name="capture", spatial_shape=(64, 64), rgb=False, modality="ot")
    assert not other.mismatches and other.notes  # a DICOM secondary capture says nothing about the modality
    (msg,) = fit_report(he, image_name="g", spatial_shape=(64, 64), rgb=False, modality="ultrasound").mismatches
    assert "colour" in msg


# -- train: missing masks, masks = images ----------------------------------------------------------------

def _pairs(tmp_path, n_images=10, n_masks=4):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    img, mask = np.full((32, 32), 80, np.uint8), np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    for i in range(n_images):
        iio.imwrite(images / f"case{i:02d}.png", img)
    for i in range(n_masks):
        iio.imwrite(masks / f"case{i:02d}.png", mask)
    return images, masks


def test_train_says_which_images_have_no_mask(tmp_path):
    images, masks = _pairs(tmp_path)
    said = []
    cases = load_folder(images, masks, report=said.append)
    assert len(cases) == 4
    (msg,) = said
    assert msg.startswith("4 image/mask pairs found; 6 images") and "case04.png" in msg and "(+1 more)" in msg


@pytest.mark.slow
def test_train_cli_prints_the_pairs_it_found(tmp_path, capsys):
    images, masks = _pairs(tmp_path)
    code, out, _ = _run(["train", "--images", images, "--masks", masks, "--modality", "ultrasound", "--name",
                         "half", "--epochs", "1", "--batch-size", "2", "--threads", "1", "--output-dir",
                         tmp_path / "out"], capsys)
    assert code == 0
    assert "4 image/mask pairs found; 6 images" in out and "case04.png, case05.png" in out


def test_train_refuses_images_as_their_own_masks(tmp_path, capsys):
    images, _ = _pairs(tmp_path)
    code, _, err = _run(["train", "--images", images, "--masks", Path(str(images) + "/../images"),
                         "--modality", "ultrasound", "--name", "x", "--output-dir", tmp_path / "out"], capsys)
    assert code == 2 and "same folder" in err
    assert not (tmp_path / "out").exists()


# -- a scan given as a mask ------------------------------------------------------------------------------

def test_measure_refuses_a_scan_given_as_mask(tmp_path, capsys):
    code, _, err = _run(["measure", "--mask", SAMPLE_US, "--output", tmp_path / "t.csv"], capsys)
    assert code == 2 and "does not look like a mask" in err and not (tmp_path / "t.csv").exists()
    probs = np.random.default_rng(0).random((8, 20, 20)).astype(np.float32)
    nib.Nifti1Image(probs, np.eye(4)).to_filename(tmp_path / "prob.nii.gz")
    code, _, err = _run(["measure", "--mask", tmp_path / "prob.nii.gz", "--output", tmp_path / "t.csv"], capsys)
    assert code == 2 and "probability map" in err


def test_real_masks_with_many_labels_are_still_masks():
    """Solid labels pass however many there are (nuclei); the real BUSI mask passes too."""
    labels = np.zeros((200, 200), np.int32)
    for k in range(100):
        y, x = divmod(k, 10)
        labels[y * 20 + 2:y * 20 + 12, x * 20 + 2:x * 20 + 12] = k + 1
    assert check_mask_like(labels, "nuclei").max() == 100
    assert set(np.unique(check_mask_like(iio.imread(SAMPLE_US_MASK), "mask"))) <= {0, 255}
    with pytest.raises(LesionSegError, match="scattered"):
        check_mask_like(iio.imread(SAMPLE_US), "busi")


# -- images too small ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 8)])
def test_images_too_small_are_refused_with_the_minimum(tmp_path, capsys, shape):
    iio.imwrite(tmp_path / "tiny.png", np.full(shape, 120, np.uint8))
    lines = napari_shapes_csv(tmp_path / "l.csv", [[[0, 0], [0, min(shape[1] - 1, 5) or 1]]], ["line"])
    code, _, err = _run(["lines-to-masks", "--image", tmp_path / "tiny.png", "--annotations", lines,
                         "--output", tmp_path / "m.png"], capsys)
    assert code == 2 and f"at least {MIN_IMAGE_SIDE} × {MIN_IMAGE_SIDE}" in err
    from napari_lesionseg.core.inference.run import check_fit
    from napari_lesionseg.core.models.card import ModelCard

    with pytest.raises(LesionSegError, match=f"at least {MIN_IMAGE_SIDE}"):
        check_fit(ModelCard(name="us", modality="ultrasound"), read_scan(tmp_path / "tiny.png")[0])


@pytest.mark.slow
def test_predict_refuses_a_one_pixel_wide_image(tmp_path, tmp_path_factory, _user_model_dir, capsys):
    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    iio.imwrite(tmp_path / "line.png", np.full((1, 500), 120, np.uint8))
    code, _, err = _run(["predict", "--model", model, "--input", tmp_path / "line.png",
                         "--output", tmp_path / "m.png", "--device", "cpu"], capsys)
    assert code == 2 and "1 × 500 pixels" in err and not (tmp_path / "m.png").exists()


# -- NaN / Inf -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_nan_voxels_are_background_when_segmenting(tmp_path, tmp_path_factory, _user_model_dir, capsys):
    import tifffile

    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    img = np.random.default_rng(0).normal(60, 12, (64, 64)).astype(np.float32)
    img[:6] = np.nan
    img[-1, -1] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", img)
    code, _, err = _run(["predict", "--model", model, "--input", tmp_path / "nan.tif",
                         "--output", tmp_path / "m.png", "--device", "cpu"], capsys)
    assert code == 0
    assert "385 NaN or infinite" in err and "background" in err
    assert iio.imread(tmp_path / "m.png").shape == (64, 64)
    src = _nifti_volume(tmp_path / "nan.nii.gz", bad_value=np.nan)
    code, _, err = _run(["predict", "--model", model, "--input", src, "--output", tmp_path / "m.nii.gz",
                         "--device", "cpu", "--force"], capsys)
    assert code == 0 and "treated as background" in err
    mask = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj)
    assert mask.shape == (64, 64, 6)


@pytest.mark.gui
@pytest.mark.slow
def test_segment_dock_warns_about_the_wrong_modality(make_napari_viewer, qtbot, tmp_path, tmp_path_factory,
                                                     _user_model_dir):
    """The dock uses the same core rule: an ultrasound model on an MRI volume gives a napari warning (the user
    chose it, so it still runs); NaN voxels are said and segmented as background."""
    from napari.layers import Labels
    from napari.utils.notifications import notification_manager

    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    src = _nifti_volume(tmp_path / "t1.nii.gz", bad_value=np.nan)
    viewer = make_napari_viewer()
    viewer.open(str(src), plugin="napari-lesionseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    dock.refresh_models()
    dock.model_combo.setCurrentText(model)
    dock.scope_combo.setCurrentText("Current slice")
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=120_000)
    assert any("ultrasound" in m and "MRI" in m for m in seen), seen
    assert any("treated as background" in m for m in seen), seen
    assert any(isinstance(la, Labels) for la in viewer.layers)


def test_line_tool_treats_nan_as_background(tmp_path, capsys):
    from test_annotations_lines import lesion_image
    from napari_lesionseg.core.annotations import longest_diameter

    img, truth = lesion_image(seed=4)
    vol = np.repeat(img[None].astype(np.float32), 5, axis=0)
    vol[:, :4, :] = np.nan
    nib.Nifti1Image(vol.T, np.diag([0.5, 0.5, 2.0, 1.0])).to_filename(tmp_path / "nan.nii.gz")
    p0, p1 = longest_diameter(truth)
    lines = napari_shapes_csv(tmp_path / "l.csv", [[[2, *p0], [2, *p1]]], ["line"])
    code, out, err = _run(["lines-to-masks", "--image", tmp_path / "nan.nii.gz", "--annotations", lines,
                           "--output", tmp_path / "m.nii.gz"], capsys)
    assert code == 0 and "NaN or infinite" in err and "mL" in out
    mask = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj).T
    assert mask[2].any() and not mask[:, :4].any()
