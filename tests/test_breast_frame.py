"""Mammograms in one frame (`fit: breast`, core/breast.py): the breast found, cropped, chest wall turned left, scaled;
the mask put back exactly where the image has it, whatever the side, the margins or the pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.core.breast import breast_frame, breast_input, breast_target, find_breast
from napari_lesionseg.core.metrics import dice
from napari_lesionseg.core.models.card import ModelCard

from conftest import shared_path


def _card(size: int = 128, **kw) -> ModelCard:
    return ModelCard(name="m", modality="mammography", fit="breast", patch_size=[size, size],
                     normalisation={"kind": "percentile", "low": 1, "high": 99}, **kw)


def _film(chest_wall_right: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 300 × 260 'film': a half-disc breast against one side, a mass in it, a bright label in a far corner."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:300, :260]
    wall = 259 if chest_wall_right else 0
    breast = (yy - 150) ** 2 + (xx - wall) ** 2 < 140 ** 2
    img = rng.normal(20, 3, (300, 260))
    img[breast] = 120 + rng.normal(0, 8, breast.sum())
    mass = (yy - 120) ** 2 + (xx - (wall - 60 if chest_wall_right else 60)) ** 2 < 15 ** 2
    img[mass] += 60
    label_x = slice(5, 40) if chest_wall_right else slice(220, 255)
    img[270:290, label_x] = 250  # a film label, apart from the breast
    return np.clip(img, 0, 255).astype(np.uint8), mass


@pytest.mark.parametrize("chest_wall_right", [True, False])
def test_breast_frame_finds_the_breast_and_maps_back_exactly(chest_wall_right):
    img, mass = _film(chest_wall_right)
    x, frame = breast_input(img, _card())
    assert x.shape == (1, 128, 128) and x.min() >= -1 and x.max() <= 1
    assert frame.flip == chest_wall_right  # chest wall turned to the left
    assert frame.x1 - frame.x0 < 160  # the breast (140 px deep), not the label across the image
    assert x[0, :, :10].mean() > x[0, :, -10:].mean()  # model frame: breast tissue against the left edge
    target = breast_target(mass.astype(np.uint8), frame)
    assert target.shape == (128, 128) and target.any()
    back = frame.to_original(target.astype(np.float32)) >= 0.5
    assert back.shape == img.shape
    assert dice(back, mass) > 0.9  # the round trip puts the mass where it was
    two = frame.to_original(np.stack([target, target]).astype(np.float32))  # a class axis is kept
    assert two.shape == (2,) + img.shape


def test_breast_frame_ignores_margins_and_pixel_size():
    """The same breast with wide empty margins, or at half the resolution, gives the same model input."""
    img, _ = _film()
    x, _ = breast_input(img, _card())
    padded = np.pad(img, ((40, 0), (90, 0)), constant_values=20)
    xp, fp = breast_input(padded, _card())
    assert np.abs(xp - x).mean() < 0.05
    half = img[::2, ::2]
    xh, _ = breast_input(half, _card())
    assert np.abs(xh - x).mean() < 0.15


def test_blank_image_is_refused_with_a_message():
    from napari_lesionseg.core.errors import LesionSegError

    with pytest.raises(LesionSegError, match="blank"):
        find_breast(np.zeros((64, 64), np.float32))


def test_frame_of_a_mask_touching_everything():
    """A breast filling the whole image: the frame is the whole image, no crop."""
    frame = breast_frame(np.ones((50, 40), bool), 32)
    assert (frame.y0, frame.y1, frame.x0, frame.x1) == (0, 50, 0, 40)
    assert frame.to_original(np.ones((32, 32), np.float32)).min() > 0.99


def test_predictor_with_a_breast_model_returns_the_image_shape():
    """Through the engine users get: probabilities on the image's own grid, zero outside the breast's box."""
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.models.build import build_network

    card = _card(64, encoder="tu-resnet10t", decoder_channels=[16, 16, 8, 8, 8])
    pred = Predictor(card, device="cpu", net=build_network(card))
    img, _ = _film()
    probs = pred.predict_image(img)
    assert probs.shape == img.shape
    assert probs[280:, :5].max() == 0  # below and beside the breast: outside its box, nothing
    vol = np.stack([img, img])
    from napari_lesionseg.core.errors import LesionSegError

    with pytest.raises(LesionSegError, match="2D mammograms"):
        pred.predict_slices(vol, [0])


def test_training_in_the_breast_frame_keeps_the_last_weights(tmp_path):
    """`fit: breast` trains on breast frames and validates through the engine; `keep_last` publishes the last epoch's
    weights (a fixed schedule whose figures come from cross-validation) instead of the best-scoring ones."""
    from napari_lesionseg.core.training.config import TrainConfig
    from napari_lesionseg.core.training.data import Case
    from napari_lesionseg.core.training.loop import train

    cases = []
    for i in range(6):
        img, mass = _film(chest_wall_right=bool(i % 2))
        cases.append(Case(f"f{i}", img, mass.astype(np.uint8) if i % 3 else np.zeros_like(mass, np.uint8),
                          group=f"w{i // 2}"))
    cfg = TrainConfig(name="breast-test", modality="mammography", encoder="resnet18", decoder_channels=[16, 8, 8, 4, 4],
                      fit="breast", patch_size=[64, 64], epochs=3, batch_size=2, augment=["vflip"], num_threads=1,
                      output_dir=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt"), early_stopping=0,
                      precision="fp32", val_fraction=0.34, keep_last=True, normalisation={"kind": "percentile"})
    result = train(cfg, cases=cases, resume=False)
    assert result.card.fit == "breast" and result.card.metrics["best_epoch"] == 3
    assert "val_dice" in result.card.metrics


def test_shipped_mammography_model_on_a_mirrored_cdd_digital_mammogram(tmp_path):
    """What a user checks on a digital mammogram (CDD-CESM P190, 512 × 512, a small mass low in the breast):
    the mask has the image's shape and lies on the outlined mass; the mirrored image gives the mirrored mask.
    (P190 is one of the 7 digital images the shipped model trained on; its held-out figures are on the card.)"""
    import imageio.v3 as iio

    from napari_lesionseg.cli.main import main

    src = shared_path("mammography", "cdd_cesm", "images", "P190_L_DM_CC.png")
    truth = iio.imread(shared_path("mammography", "cdd_cesm", "masks", "P190_L_DM_CC.png")) > 0
    out = tmp_path / "p190_mask.png"
    assert main(["predict", "--model", "mammography-mass", "--input", str(src), "--output", str(out),
                 "--device", "cpu"]) == 0
    mask = iio.imread(out) > 0
    assert mask.shape == truth.shape == (512, 512)
    assert (mask & truth).sum() > 0.5 * mask.sum()  # most of the mask lies on the mass
    assert dice(mask, truth) > 0.4
    mirrored = tmp_path / "p190_mirrored.png"
    iio.imwrite(mirrored, iio.imread(src)[:, ::-1])
    out2 = tmp_path / "p190_mirrored_mask.png"
    assert main(["predict", "--model", "mammography-mass", "--input", str(mirrored), "--output", str(out2),
                 "--device", "cpu"]) == 0
    assert dice(iio.imread(out2)[:, ::-1] > 0, mask) > 0.95
