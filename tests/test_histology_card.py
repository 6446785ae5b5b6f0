"""The shipped nuclei model's card reports cross-validated figures per kind of tile, and its recipe chooses nothing
on held-out tiles (a fixed schedule: no validation split, no early stopping)."""

from __future__ import annotations

from conftest import REPO, shared_path

from napari_lesionseg.core.models import default_registry
from napari_lesionseg.core.training.config import TrainConfig


def _card():
    return {c.name: c for c in default_registry().cards()}["histology-nuclei"]


def test_card_reports_breast_and_other_organ_figures_from_cross_validation():
    card = _card()
    external = card.metrics["external"]
    assert set(external) == {"monuseg_breast_cv", "monuseg_other_organs_cv"}
    breast, other = external["monuseg_breast_cv"], external["monuseg_other_organs_cv"]
    assert (breast["n_lesion"], other["n_lesion"]) == (6, 12)
    for block in (breast, other):
        dice = list(block["per_tile"].values())
        assert len(dice) == block["n_lesion"]
        assert abs(sum(dice) / len(dice) - block["mean_dice"]) < 1e-3  # the mean is of the listed tiles
        assert block["ci95_mean_dice"][0] <= block["mean_dice"] <= block["ci95_mean_dice"][1]
        assert block["sd_dice"] > 0 and "cross-validation" in block["dataset"]
    assert not set(breast["per_tile"]) & set(other["per_tile"])
    assert "CV" in card.headline_metric() and "breast" in card.headline_metric()
    assert "cross-validated" in card.notes.lower() and "training tiles" in card.metrics["selection_split"]["note"]


def test_every_tile_of_the_recipe_was_held_out_once():
    card = _card()
    cfg = TrainConfig.from_file(REPO / card.recipe)
    assert len(cfg.sources) == 2 and cfg.val_fraction == 0 and cfg.early_stopping == 0
    assert "hed" in cfg.augment
    tiles = {p.stem for src in cfg.sources for p in shared_path(*src["images"].split("/")[3:]).glob("*.tif")}
    held_out = {t for block in card.metrics["external"].values() for t in block["per_tile"]}
    assert len(tiles) == 18 and held_out == tiles


def test_the_recipe_builds_the_shipped_network_and_names_its_starting_weights():
    """`lesionseg train --config models/histology-nuclei.yaml` must make the network whose weights ship: same
    encoder, decoder and input, the shipped tensors fit it one for one, and the card names the ImageNet start."""
    from napari_lesionseg.core.models.build import build_network, load_state, load_weights_into
    from napari_lesionseg.core.training.loop import card_for

    card = _card()
    cfg = TrainConfig.from_file(REPO / card.recipe)
    assert (card.architecture, card.encoder, card.in_channels) == (cfg.architecture, cfg.encoder, 3)
    assert card.pretrained_encoder == cfg.encoder_init == "efficientnet-lite0-imagenet"
    assert card.tta == cfg.tta  # the flips its cross-validated figures were measured with
    assert "ImageNet" in card.training_data and "ImageNet" in card.notes and "from scratch" not in card.notes
    load_weights_into(build_network(card_for(cfg)), load_state(card.weights_path), "recipe network")
