"""Issue 18: one path from every front end to the core. The same file through the Segment dock and through
`lesionseg predict` gives the same answer: the same mask pixel for pixel, or the same refusal in the same words.

The dock turns the layer into a `Scan` (`napari/scan_adapter.py`) and calls the core's `check_fit` /
`predict_scan`, which `lesionseg predict` calls on the `Scan` it read. Picking a model in the dock is the user's
explicit choice, so a model made for another kind of image runs there as `lesionseg predict --force` does, and the
CLI's refusal is said as a warning, word for word.
"""

from __future__ import annotations

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
from napari.layers import Labels

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.io import read_scan
from napari_lesionseg.core.models import default_registry
from tiny_models import blob_image, blob_volume, tiny_model

from conftest import REPO

SAMPLE_US = REPO / "sample_data" / "busi_malignant_006.png"  # a real ultrasound PNG (BUSI), shipped as a sample


def _install(kind, tmp_path_factory, user_dir) -> str:
    card = tiny_model(kind, tmp_path_factory.getbasetemp() / "tiny-models", install_into=user_dir)
    return default_registry().get(card).name


def _cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


def _dock_mask(make_napari_viewer, qtbot, path, model, scope=None):
    """Open `path` as a user does, Segment it with `model` at the model's threshold; (dock, mask or None)."""
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-lesionseg")
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    dock.refresh_models()
    dock.model_combo.setCurrentText(model)
    if scope:
        dock.scope_combo.setCurrentText(scope)
    dock.segment_btn.click()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=180_000)
    qtbot.wait(50)  # queued notifications
    labels = [l for l in viewer.layers if isinstance(l, Labels)]
    return dock, (np.asarray(labels[0].data) if labels else None)


def _cli_threshold(dock) -> str:
    """The dock's slider value (the model's threshold, to two decimals), so both threshold alike."""
    return f"{dock.threshold:.2f}"


@pytest.mark.gui
def test_normal_case_dock_mask_equals_cli_mask_on_a_real_png(make_napari_viewer, qtbot, tmp_path,
                                                             tmp_path_factory, _user_model_dir, capsys):
    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    dock, dock_mask = _dock_mask(make_napari_viewer, qtbot, SAMPLE_US, model)
    assert dock_mask is not None and dock.result.card.name == model
    code, err = _cli(["predict", "--model", model, "--input", SAMPLE_US, "--output", tmp_path / "m.png",
                      "--device", "cpu", "--threshold", _cli_threshold(dock)], capsys)
    assert code == 0, err
    cli_mask = iio.imread(tmp_path / "m.png")
    assert cli_mask.shape == dock_mask.shape
    assert np.array_equal(cli_mask > 0, dock_mask > 0), f"{int(((cli_mask > 0) != (dock_mask > 0)).sum())} px differ"
    assert (dock_mask > 0).any() and not (dock_mask > 0).all(), "a mask that is neither empty nor everything"


@pytest.mark.gui
def test_normal_case_on_a_volume_whole_volume_equals_cli(make_napari_viewer, qtbot, tmp_path, tmp_path_factory,
                                                         _user_model_dir, capsys):
    model = _install("slices", tmp_path_factory, _user_model_dir)
    vol, _ = blob_volume(np.random.default_rng(11), (12, 64, 64))
    src = tmp_path / "t1.nii.gz"
    nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), np.diag([0.8, 0.8, 3.0, 1.0])).to_filename(src)
    dock, dock_mask = _dock_mask(make_napari_viewer, qtbot, src, model, scope="Whole volume")
    assert dock_mask is not None and len(dock.result.done_slices) == 12
    code, err = _cli(["predict", "--model", model, "--input", src, "--output", tmp_path / "m.nii.gz",
                      "--device", "cpu", "--threshold", _cli_threshold(dock)], capsys)
    assert code == 0, err
    cli_mask = np.asarray(read_scan(tmp_path / "m.nii.gz")[0].data)  # napari axis order, as the dock's layer
    assert cli_mask.shape == dock_mask.shape
    assert np.array_equal(cli_mask > 0, dock_mask > 0)
    assert (dock_mask > 0).any()


@pytest.mark.gui
def test_colour_model_on_a_grayscale_png_one_rule(make_napari_viewer, qtbot, tmp_path, tmp_path_factory,
                                                  _user_model_dir, capsys, messages):
    """An H&E (RGB) model on a grayscale PNG: the CLI refuses it unless --force, saying why; the dock says the
    same sentence as a warning and gives the mask `--force` gives."""
    model = _install("rgb2d", tmp_path_factory, _user_model_dir)
    img, _ = blob_image(np.random.default_rng(4), (96, 96))
    src = tmp_path / "gray.png"
    iio.imwrite(src, np.clip(img, 0, 255).astype(np.uint8))
    args = ["predict", "--model", model, "--input", src, "--output", tmp_path / "m.png", "--device", "cpu"]
    code, err = _cli(args, capsys)
    assert code == 2 and not (tmp_path / "m.png").exists()
    refusal = next(line for line in err.splitlines() if "colour" in line)
    sentence = refusal.split("error: ", 1)[-1].split(" Pass --force")[0].strip()
    assert "grayscale" in sentence

    dock, dock_mask = _dock_mask(make_napari_viewer, qtbot, src, model)
    assert any(sentence in m for m in messages), (sentence, messages)
    assert dock_mask is not None
    code, err = _cli(args + ["--force", "--threshold", _cli_threshold(dock)], capsys)
    assert code == 0, err
    cli_mask = iio.imread(tmp_path / "m.png")
    assert cli_mask.shape == dock_mask.shape == (96, 96)
    assert np.array_equal(cli_mask > 0, dock_mask > 0)


@pytest.mark.gui
def test_whole_image_model_on_a_slide_one_answer(make_napari_viewer, qtbot, tmp_path, tmp_path_factory,
                                                 _user_model_dir, capsys, messages):
    """A whole-image (resize) model on a pyramidal slide would load level 0 whole and shrink it to 64 px: both
    refuse it with the same message, before any work; the dock adds no layer."""
    from napari_lesionseg.core.io import write_pyramidal_tiff

    model = _install("gray2d", tmp_path_factory, _user_model_dir)
    slide = np.full((2048, 2048, 3), 240, np.uint8)
    slide[300:700, 300:700] = (120, 60, 150)
    src = tmp_path / "slide.tif"
    write_pyramidal_tiff(src, slide.shape, np.uint8, lambda f, y, x, h, w: slide[::f, ::f][y:y + h, x:x + w],
                         min_size=512)
    code, err = _cli(["predict", "--model", model, "--input", src, "--output", tmp_path / "m.tif",
                      "--device", "cpu", "--force"], capsys)
    assert code == 2 and not (tmp_path / "m.tif").exists()
    assert "a slide needs a tiled model" in err

    viewer = make_napari_viewer()
    viewer.open(str(src), plugin="napari-lesionseg")
    assert viewer.layers[0].multiscale
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Segment lesions")
    dock.refresh_models()
    dock.model_combo.setCurrentText(model)
    dock.segment_btn.click()
    assert dock._worker is None, "refused before a worker starts"
    refusal = next(line for line in err.splitlines() if "tiled model" in line).split("error: ", 1)[-1].strip()
    assert any(refusal in m for m in messages), (refusal, messages)
    assert len(viewer.layers) == 1


def test_scan_from_layer_is_the_scan_the_cli_reads(tmp_path):
    """The adapter gives back what `read_scan` read: geometry (spacing, affine, source path), modality and whether it
    was guessed, rgb, axes; a layer made in the console gets its spacing from its scale."""
    from napari.layers import Image

    from napari_lesionseg.napari._reader import read_layers
    from napari_lesionseg.napari.scan_adapter import scan_from_layer

    vol, _ = blob_volume(np.random.default_rng(1), (10, 32, 40))
    src = tmp_path / "t1.nii.gz"
    nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), np.diag([0.7, 0.8, 2.5, 1.0])).to_filename(src)
    for path in (src, SAMPLE_US):
        (cli,) = read_scan(path)
        data, kwargs, _ = read_layers(str(path))[0]
        scan = scan_from_layer(Image(data, **kwargs))
        assert scan.axes == cli.axes and scan.rgb == cli.rgb and scan.modality == cli.modality
        assert scan.spatial_shape == cli.spatial_shape
        np.testing.assert_allclose(scan.geometry.spacing, cli.geometry.spacing)
        assert scan.source_path == cli.source_path
        assert scan.metadata.get("modality_guessed", False) == bool(cli.metadata.get("modality_guessed"))
        if cli.geometry.nifti_affine is not None:
            np.testing.assert_allclose(scan.geometry.nifti_affine, cli.geometry.nifti_affine)
    console = scan_from_layer(Image(np.zeros((5, 20, 30), np.float32), scale=(3.0, 0.5, 0.5), name="console"))
    assert console.axes == "zyx" and console.geometry.spacing == (3.0, 0.5, 0.5) and console.modality == ""
    assert console.geometry.spacing_known
    rgb = scan_from_layer(Image(np.zeros((20, 30, 3), np.uint8), rgb=True, name="he"))
    assert rgb.axes == "yxc" and rgb.rgb and rgb.spatial_shape == (20, 30)
    assert not rgb.geometry.spacing_known, "a scale of 1 is one pixel, not 1 mm"
