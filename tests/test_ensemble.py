"""Ensembles: two trained models combined into one that averages them, stored in int8, usable and fine-tunable
like any other model."""

from __future__ import annotations

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.inference.engine import Predictor
from napari_lesionseg.core.models.build import load_state, save_weights
from napari_lesionseg.core.models.card import ModelCard
from napari_lesionseg.core.models.registry import user_models_dir
from napari_lesionseg.core.training.config import TrainConfig
from napari_lesionseg.core.training.data import load_folder
from napari_lesionseg.core.training.loop import train
from tiny_models import blob_image

torch.set_num_threads(1)


def _write_cases(folder, n=12, seed=0):
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        img, mask = blob_image(rng, shape=(48, 48), n_blobs=1 if i % 3 else 0)
        iio.imwrite(folder / "images" / f"c{i:02d}.png", img)
        iio.imwrite(folder / "masks" / f"c{i:02d}.png", mask * 255)
    return folder


def _recipe(folder, name, **kw) -> TrainConfig:
    d = dict(name=name, modality="ultrasound", images=str(folder / "images"), masks=str(folder / "masks"),
             encoder="resnet18", decoder_channels=[32, 16, 8, 8, 4], fit="resize", patch_size=[48, 48], epochs=3,
             batch_size=4, augment=["flip"], num_threads=1, output_dir=str(folder / "out"),
             checkpoint_dir=str(folder / f"ckpt-{name}"), early_stopping=0, val_fraction=0.25,
             recipe=f"models/{name}.yaml")
    d.update(kw)
    return TrainConfig(**d)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two small models trained on the same blob images with different recipes, and the recipe of the first."""
    folder = _write_cases(tmp_path_factory.mktemp("ens-data"))
    a = train(_recipe(folder, "blob-a"), resume=False).card
    b = train(_recipe(folder, "blob-b", learning_rate=3e-3, weight_decay=0.01), resume=False).card
    recipe = folder / "blob-a.json"
    recipe.write_text(json.dumps(dataclasses.asdict(_recipe(folder, "blob-a"))))
    return a, b, recipe, folder


def test_two_models_become_one_model_that_averages_their_probabilities(members, tmp_path, capsys):
    a, b, recipe, folder = members
    out = tmp_path / "models"
    assert main(["ensemble", "--models", str(a.path), str(b.path), "--name", "blob-pair", "--config", str(recipe),
                 "--output-dir", str(out)]) == 0
    card = ModelCard.read(out / "blob-pair.json")
    assert card.members == 2 and card.weight_storage == "int8"
    # the card measures the ensemble itself on the members' validation split, and keeps what each member scored
    assert card.metrics["n_val_lesion"] >= 1 and 0 <= card.metrics["val_dice"] <= 1
    assert card.metrics["member_val_dice"] == [a.metrics["val_dice"], b.metrics["val_dice"]]
    assert "combined by `lesionseg ensemble`" in card.recipe
    # two networks in int8 take about the space of one in fp16
    fp16_one = a.weights_path.stat().st_size
    assert card.weights_path.stat().st_size < 1.2 * fp16_one

    image = load_folder(folder / "images", folder / "masks")[1].image
    p_a, p_b = (Predictor(c, device="cpu").predict_image(image) for c in (a, b))
    p_ens = Predictor(card, device="cpu").predict_image(image)
    assert np.abs(p_ens - (p_a + p_b) / 2).max() < 0.05  # int8 weights: close, not bit-identical
    assert np.abs(p_a - p_b).max() > 0.05  # the members differ, so the average is not either of them

    # it is a model like any other: listed, and `predict` makes a mask with it
    user_dir = user_models_dir()  # the per-user folder (a temporary one in tests)
    user_dir.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        (user_dir / f.name).write_bytes(f.read_bytes())
    assert main(["models"]) == 0
    assert "blob-pair" in capsys.readouterr().out
    src = folder / "images" / "c01.png"
    mask_path = tmp_path / "c01_mask.png"
    assert main(["predict", "--model", "blob-pair", "--input", str(src), "--output", str(mask_path),
                 "--device", "cpu"]) == 0
    truth = iio.imread(folder / "masks" / "c01.png") > 0
    mask = iio.imread(mask_path) > 0
    assert (mask & truth).sum() > 0.5 * truth.sum()


def test_models_that_do_not_fit_together_are_refused_and_nothing_is_written(members, tmp_path, capsys):
    a, _, _, folder = members
    other = train(_recipe(folder, "blob-64", patch_size=[64, 64], epochs=1), resume=False).card
    out = tmp_path / "models"
    assert main(["ensemble", "--models", str(a.path), str(other.path), "--name", "bad", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "differ in patch_size" in err and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())
    assert main(["ensemble", "--models", str(a.path), "--name", "alone", "--output-dir", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err


def test_an_ensemble_is_fine_tuned_like_a_single_model(members, tmp_path):
    a, b, _, folder = members
    out = tmp_path / "models"
    assert main(["ensemble", "--models", str(a.path), str(b.path), "--name", "blob-pair",
                 "--output-dir", str(out)]) == 0
    base = ModelCard.read(out / "blob-pair.json")
    cfg = _recipe(folder, "blob-pair-tuned", base=str(base.path), epochs=1, output_dir=str(tmp_path / "tuned"),
                  encoder_lr_scale=0.3)
    tuned = train(cfg, resume=False).card
    assert tuned.members == 2 and tuned.weight_storage == "int8" and tuned.parent == "blob-pair"
    before, after = load_state(base.weights_path), load_state(tuned.weights_path)
    assert before.keys() == after.keys() and any(k.startswith("members.1.") for k in after)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # both members learnt


def test_int8_storage_keeps_every_weight_within_half_a_step(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 1))
    save_weights(net, tmp_path / "w.safetensors", int8=True)
    back = load_state(tmp_path / "w.safetensors")
    for k, v in net.state_dict().items():
        if v.is_floating_point() and v.ndim >= 2:
            step = v.abs().flatten(1).amax(1) / 127
            err = (back[k] - v).abs().flatten(1).amax(1)
            assert torch.all(err <= step / 2 + 1e-7), k
        elif v.is_floating_point():  # biases and BatchNorm statistics stay fp16
            torch.testing.assert_close(back[k], v, atol=1e-3, rtol=1e-3)
