"""The shipped models give sensible masks on real images they were not trained on (their validation cases)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.metrics import dice
from napari_lesionseg.core.models import default_registry

from conftest import REPO, SHARED_DATA


def test_shipped_models_are_listed_with_honest_cards(capsys):
    cards = {c.name: c for c in default_registry().cards()}
    assert {"ultrasound-lesion", "mammography-mass", "histology-nuclei", "mri-lesion"} <= set(cards)
    for c in cards.values():
        assert c.weights_path.stat().st_size < 15e6
        assert "not for diagnosis" in c.intended_use
        assert c.training_data and c.licence and c.date and (c.recipe or "").startswith("models/")
        # a validation Dice, or (MRI: two cases only) a card that says plainly there is no validation
        assert "val_dice" in c.metrics or "no independent validation" in c.notes.lower()
        if c.pretrained_encoder:  # a known source, and the card says where its starting weights came from
            from napari_lesionseg.core.models.pretrained import SOURCES

            assert c.pretrained_encoder in SOURCES and "ImageNet" in c.training_data
    assert main(["models"]) == 0
    assert "ultrasound-lesion" in capsys.readouterr().out
    assert "starting point for fine-tuning" in cards["mri-lesion"].notes.lower()
    assert "sensitivity" in " ".join(cards["mammography-mass"].metrics)


def test_histology_nuclei_on_a_held_out_monuseg_tile(tmp_path):
    tile = SHARED_DATA / "histology" / "monuseg_breast" / "images" / "TCGA-A7-A13E-01Z-00-DX1.tif"
    truth_path = SHARED_DATA / "histology" / "monuseg_breast" / "binary_masks_derived" / "TCGA-A7-A13E-01Z-00-DX1.png"
    if not tile.exists():  # the bundled sample is the same held-out tile
        tile = REPO / "sample_data" / "monuseg_TCGA-A7-A13E-01Z-00-DX1.png"
        truth_path = REPO / "sample_data" / "monuseg_TCGA-A7-A13E-01Z-00-DX1_nuclei.png"
    out = tmp_path / "nuclei.png"
    assert main(["predict", "--model", "histology-nuclei", "--input", str(tile), "--output", str(out),
                 "--device", "cpu"]) == 0
    mask = iio.imread(out) > 0
    truth = iio.imread(truth_path) > 0
    assert mask.shape == truth.shape
    assert dice(mask, truth) > 0.7


def test_mammography_mass_finds_the_mass_of_a_held_out_woman(tmp_path):
    """mdb032 (a benign mass, MIAS circle at column 388, row 282, radius 66 px) is in the validation split."""
    from napari_lesionseg.core.annotations import Circle, circles_to_labels

    src = SHARED_DATA / "mammography" / "mias" / "images" / "mdb032.png"
    if not src.exists():
        pytest.skip("mini-MIAS not found in ../shared/data")
    out = tmp_path / "mdb032_mask.png"
    assert main(["predict", "--model", "mammography-mass", "--input", str(src), "--output", str(out),
                 "--device", "cpu"]) == 0
    mask = iio.imread(out) > 0
    circle = circles_to_labels(mask.shape, [Circle(row=282, col=388, radius=66)]) > 0
    assert mask.shape == (1024, 1024)
    assert dice(mask, circle) > 0.5
    assert (mask & ~circle).sum() < 0.5 * mask.sum()  # most of the mask lies on the mass, not elsewhere
    assert mask.mean() < 0.02


def test_mri_lesion_on_the_duke_dce_crop_with_pre_contrast_subtraction(tmp_path):
    """`--pre` makes the subtraction the model was trained on; the mask lands in the dataset's tumour box."""
    import nibabel as nib

    post = REPO / "sample_data" / "duke153_post1_crop.nii.gz"
    pre = REPO / "sample_data" / "duke153_pre_crop.nii.gz"
    out = tmp_path / "duke_mask.nii.gz"
    assert main(["predict", "--model", "mri-lesion", "--input", str(post), "--pre", str(pre), "--output", str(out),
                 "--device", "cpu"]) == 0
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, nib.load(str(post)).affine, atol=1e-4)  # geometry kept
    mask = np.asarray(img.dataobj) > 0  # NIfTI (i, j, k)
    box = np.zeros(mask.shape, bool)
    box[32:67, 32:68, 8:26] = True  # sample_data/duke153_crop.txt
    assert mask.sum() * np.prod(img.header.get_zooms()[:3]) > 500  # at least 0.5 mL of lesion
    assert (mask & box).sum() > 0.8 * mask.sum()


def test_predict_refuses_a_pre_contrast_scan_on_another_grid(tmp_path, capsys):
    post = REPO / "sample_data" / "duke153_post1_crop.nii.gz"
    us = REPO / "sample_data" / "busi_malignant_006.png"
    code = main(["predict", "--model", "mri-lesion", "--input", str(post), "--pre", str(us),
                 "--output", str(tmp_path / "m.nii.gz"), "--device", "cpu"])
    assert code != 0
    assert "phases" in capsys.readouterr().err  # "The two phases have different shapes …", no traceback
    assert not (tmp_path / "m.nii.gz").exists()
