"""The shipped models give sensible masks on real images they were not trained on (their validation cases)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.metrics import dice
from napari_lesionseg.core.models import default_registry

from conftest import REPO, SHARED_DATA


def test_shipped_models_are_listed_with_honest_cards(capsys):
    cards = {c.name: c for c in default_registry().cards()}
    assert {"ultrasound-lesion", "histology-nuclei"} <= set(cards)
    for c in cards.values():
        assert c.weights_path.stat().st_size < 15e6
        assert "not for diagnosis" in c.intended_use
        assert c.training_data and c.licence and c.date and "val_dice" in c.metrics
    assert main(["models"]) == 0
    assert "ultrasound-lesion" in capsys.readouterr().out


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
