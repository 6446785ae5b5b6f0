"""Small real models trained in seconds on synthetic images, for tests that need a model of a given kind.

They are trained by the project's own training loop (so they also exercise it) on bright blobs in noise, and
learn that task well enough for tests to check overlap. They are never shipped.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from napari_lesionseg.core.training.config import TrainConfig
from napari_lesionseg.core.training.data import Case


def blob_image(rng: np.random.Generator, shape=(96, 96), n_blobs=None, rgb=False):
    """A noisy image with 0–2 bright discs; returns (image, mask)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros(shape, np.uint8)
    n = rng.integers(0, 3) if n_blobs is None else n_blobs
    for _ in range(n):
        r = rng.uniform(6, 14)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    img = rng.normal(60, 12, shape) + mask.astype(np.float32) * 90
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, (img * 0.6).astype(np.uint8), (255 - img // 2).astype(np.uint8)], -1)
    return img, mask


def blob_volume(rng: np.random.Generator, shape=(12, 64, 64)):
    z, h, w = shape
    zz, yy, xx = np.mgrid[:z, :h, :w]
    mask = np.zeros(shape, np.uint8)
    r = rng.uniform(8, 12)
    c = (rng.uniform(4, z - 4), rng.uniform(r, h - r), rng.uniform(r, w - r))
    mask[((zz - c[0]) * 3) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r] = 1
    vol = np.clip(rng.normal(300, 40, shape) + mask.astype(np.float32) * 500, 0, 4000).astype(np.float32)
    return vol, mask


@lru_cache(maxsize=None)
def _train(kind: str, out_dir: str) -> Path:
    from napari_lesionseg.core.training.loop import train

    rng = np.random.default_rng(0)
    common = dict(encoder="resnet18", decoder_channels=[32, 16, 8, 8, 4], epochs=12, batch_size=8,
                  learning_rate=5e-3, val_fraction=0.2, early_stopping=0, output_dir=out_dir,
                  checkpoint_dir=str(Path(out_dir) / f".ckpt-{kind}"), augment=["flip"], num_threads=1)
    if kind == "gray2d":
        cases = [Case(f"c{i}", *blob_image(rng), group=f"g{i}") for i in range(40)]
        cfg = TrainConfig(name="tiny-gray", modality="ultrasound", fit="resize", patch_size=[64, 64], **common)
    elif kind == "rgb2d":
        cases = [Case(f"c{i}", *blob_image(rng, rgb=True), group=f"g{i}") for i in range(40)]
        cfg = TrainConfig(name="tiny-rgb", modality="histology", input_kind="rgb", fit="tile", patch_size=[64, 64],
                          normalisation={"kind": "range", "max": 255}, **common)
    elif kind == "slices":
        cases = [Case(f"v{i}", *blob_volume(rng), group=f"g{i}") for i in range(8)]
        cfg = TrainConfig(name="tiny-mri", modality="mri", input_kind="slices", context_slices=1, fit="tile",
                          patch_size=[64, 64], normalisation={"kind": "zscore"}, **common)
    else:
        raise ValueError(kind)
    result = train(cfg, cases=cases, resume=False)
    assert result.card is not None
    return result.card.path


def tiny_model(kind: str, cache_dir: Path, install_into: Path | None = None) -> Path:
    """Path of a tiny model's card, trained once per test session; copied into `install_into` if given."""
    card = _train(kind, str(cache_dir))
    if install_into is None:
        return card
    install_into.mkdir(parents=True, exist_ok=True)
    for p in (card, card.with_suffix(".safetensors")):
        shutil.copy2(p, install_into / p.name)
    return install_into / card.name


def with_flips(card_path: Path, install_into: Path) -> Path:
    """The same tiny model under another name, its card asking for test-time flips (as `histology-nuclei`'s)."""
    import json

    card = json.loads(Path(card_path).read_text())
    name = card["name"] + "-flips"
    card.update(name=name, tta=["hflip", "vflip"], weights=f"{name}.safetensors")
    shutil.copy2(Path(card_path).with_suffix(".safetensors"), install_into / card["weights"])
    (install_into / f"{name}.json").write_text(json.dumps(card))
    return install_into / f"{name}.json"



def constant_classifier(out_dir: Path, p_normal: float) -> Path:
    """A classifier card whose network says P(normal) = p_normal for every image (last layer zero, its bias the
    log-probabilities): for tests of the gate's wiring, where what matters is what the classifier says, not how
    well. (`test_image_gate.py` checks the shipped classifier on real images.)"""
    import torch

    from napari_lesionseg.core.models.build import save_weights
    from napari_lesionseg.core.models.card import ClassInfo, ModelCard
    from napari_lesionseg.core.models.classifier import build_classifier

    card = ModelCard(name="const-class", modality="ultrasound", kind="classifier", architecture="classifier",
                     encoder="efficientnet_lite0", decoder_channels=[], patch_size=[64, 64], tta=["hflip"],
                     classes=[ClassInfo("normal"), ClassInfo("benign"), ClassInfo("malignant")])
    net = build_classifier(card)
    with torch.no_grad():
        net.classifier.weight.zero_()
        rest = (1 - p_normal) / 2
        net.classifier.bias.copy_(torch.log(torch.tensor([p_normal, rest, rest])))
    out_dir.mkdir(parents=True, exist_ok=True)
    card.weights = "const-class.safetensors"
    save_weights(net, out_dir / card.weights, half=False)
    (out_dir / "const-class.json").write_text(card.to_json())
    return out_dir / "const-class.json"


def tiny_gated_model(cache_dir: Path, install_into: Path, p_normal: float, threshold: float = 0.5) -> Path:
    """The tiny 2D segmentation model gated by a constant classifier (P(normal) = p_normal), both in
    `install_into`; returns the segmentation card's path."""
    import json

    seg = tiny_model("gray2d", cache_dir, install_into=install_into)
    constant_classifier(install_into, p_normal)
    d = json.loads(seg.read_text())
    d["gate"] = {"classifier": "const-class", "suppress_class": "normal", "threshold": threshold}
    seg.write_text(json.dumps(d))
    return seg
