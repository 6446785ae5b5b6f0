"""Fine-tuning the prompt network on corrected masks: published as a prompt card that `lesionseg models` lists and
lines-to-masks (and the Annotations dock) can use; a whole-image model is refused as a base; inputs never change.

Synthetic images (three bright ellipses), a few steps: this checks the path, not the gain (the held-out gain is
`benchmarks/eval_prompt_finetune.py`, reported in models/line_prompt/README.md).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.annotations.line_model import line_model_available, model_card
from napari_lesionseg.core.errors import Cancelled, LesionSegError
from napari_lesionseg.core.metrics import dice


def _needs_prompt_network():
    if not line_model_available() or "prompt_channels" not in model_card():
        pytest.skip("the prompt network (models/line_prompt/prompt_unet) is not installed")


def _ellipse_images(n: int = 3, size: int = 96):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for i in range(n):
        m = ((yy - 48) / (18 + 2 * i)) ** 2 + ((xx - 44 - 3 * i) / 13) ** 2 < 1
        images.append(np.clip(rng.normal(90, 12, (size, size)) + 70 * m, 0, 255).astype(np.uint8))
        masks.append(m)
    return images, masks


def _folders(tmp_path):
    import imageio.v3 as iio

    images, masks = _ellipse_images()
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (im, m) in enumerate(zip(images, masks)):
        iio.imwrite(tmp_path / "images" / f"case{i}.png", im)
        iio.imwrite(tmp_path / "masks" / f"case{i}.png", (m * 255).astype(np.uint8))
    return tmp_path / "images", tmp_path / "masks", images[0], masks[0]


def _digests(*folders) -> dict:
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.iterdir())}


def test_finetune_prompt_publishes_a_card_that_models_lists_and_lines_to_masks_uses(tmp_path, capsys,
                                                                                 _user_model_dir):
    import imageio.v3 as iio

    from test_annotations_csv_cli import napari_shapes_csv

    _needs_prompt_network()
    images, masks, image0, mask0 = _folders(tmp_path)
    before = _digests(images, masks)
    assert main(["finetune-prompt", "--base", "prompt_unet", "--images", str(images), "--masks", str(masks),
                 "--name", "my-scanner", "--steps", "3"]) == 0
    assert "published my-scanner" in capsys.readouterr().out
    card = json.loads((_user_model_dir / "line_prompt" / "my-scanner.json").read_text())
    assert card["kind"] == "prompt" and card["parent"] == "prompt_unet" and card["steps"] == 3
    assert card["n_train_lesions"] == 3 and "prompt_channels" in card

    assert main(["models"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["my-scanner", "prompt"] in [row[:2] for row in listed]

    p0, p1 = (30, 44), (66, 44)  # across the first ellipse, top to bottom
    csv = napari_shapes_csv(tmp_path / "lines.csv", [[p0, p1]], ["line"])
    iio.imwrite(tmp_path / "scan.png", image0)
    assert main(["lines-to-masks", "--image", str(tmp_path / "scan.png"), "--annotations", str(csv),
                 "--model", "my-scanner", "--output", str(tmp_path / "mask.png")]) == 0
    assert dice(iio.imread(tmp_path / "mask.png") > 0, mask0) > 0.7
    assert main(["lines-to-masks", "--image", str(tmp_path / "scan.png"), "--annotations", str(csv),
                 "--model", "no-such-network", "--output", str(tmp_path / "other.png")]) == 2
    assert "not installed" in capsys.readouterr().err and not (tmp_path / "other.png").exists()
    assert _digests(images, masks) == before  # the corrected masks and their images are only read


def test_train_with_a_prompt_base_fine_tunes_the_prompt_network(tmp_path, capsys, monkeypatch, _user_model_dir):
    from napari_lesionseg.core.training import prompt_finetune

    _needs_prompt_network()
    monkeypatch.setattr(prompt_finetune, "DEFAULT_STEPS", 2)
    images, masks, _, _ = _folders(tmp_path)
    assert main(["train", "--base", "prompt_unet", "--images", str(images), "--masks", str(masks),
                 "--name", "via-train"]) == 0
    assert json.loads((_user_model_dir / "line_prompt" / "via-train.json").read_text())["steps"] == 2


def test_a_whole_image_model_is_refused_as_base_and_nothing_is_written(tmp_path, capsys, _user_model_dir):
    from napari_lesionseg.core.models import default_registry
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model

    segmentation = default_registry().names()
    if not segmentation:
        pytest.skip("no shipped whole-image model")
    images, masks, _, _ = _folders(tmp_path)
    assert main(["finetune-prompt", "--base", segmentation[0], "--images", str(images), "--masks", str(masks),
                 "--name", "wrong"]) == 2
    err = capsys.readouterr().err
    assert "whole-image segmentation model, not a prompt network" in err and "Traceback" not in err
    with pytest.raises(LesionSegError, match="not a prompt network"):
        finetune_prompt_model(segmentation[0], *_ellipse_images(), "wrong", steps=1)
    assert not list(_user_model_dir.rglob("wrong*"))


def test_the_line_only_network_fine_tunes_on_lines_and_keeps_its_two_channels(_user_model_dir):
    """busi_line_unet (image + short axis, lines only) learns from corrected masks with line samples in its own
    two channels; the published card is still line-only, names its parent and its inverted test-time view."""
    from napari_lesionseg.core.annotations.line_model import LEGACY_MODEL, load_line_model
    from napari_lesionseg.core.annotations.lines import line_to_mask
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model
    from napari_lesionseg.core.training.prompt_samples import lesions_from_components, make_sample

    if not line_model_available(LEGACY_MODEL):
        pytest.skip("the BUSI line network is not installed")
    images, masks = _ellipse_images()
    les = lesions_from_components("t", "p", "n", images[0].astype(np.float32), [masks[0]])[0]
    x, y = make_sample(np.random.default_rng(0), les, line_only=True)
    assert x.shape == (2, 128, 128) and y.shape == (1, 128, 128) and y.any()
    card = finetune_prompt_model(LEGACY_MODEL, images, masks, "line-only", steps=3)
    raw = load_line_model(card.name)[1]
    assert card.in_channels == 2 and "prompt_channels" not in raw and raw["parent"] == LEGACY_MODEL
    assert raw["steps"] == 3 and raw["prompts"] == ["line"] and "invert" in raw["tta"]
    m = line_to_mask(images[0], (30, 44), (66, 44), method="learned", model=card.name)
    assert dice(m, masks[0]) > 0.6


def test_cancelled_fine_tuning_publishes_nothing(_user_model_dir):
    from napari_lesionseg.core.training.prompt_finetune import finetune_prompt_model

    _needs_prompt_network()
    steps = []
    with pytest.raises(Cancelled):
        finetune_prompt_model("prompt_unet", *_ellipse_images(), "stopped", steps=50,
                              progress=lambda i, n: steps.append(i), cancelled=lambda: len(steps) >= 2)
    assert steps == [1, 2] and not list(_user_model_dir.rglob("stopped*"))
    with pytest.raises(LesionSegError, match="no lesion"):
        finetune_prompt_model("prompt_unet", *_ellipse_images(1)[:1], [np.zeros((96, 96), bool)], "empty", steps=1)


def test_train_dock_fine_tunes_a_prompt_network_that_the_annotations_dock_offers(make_napari_viewer, qtbot,
                                                                                monkeypatch, _user_model_dir):
    from napari_lesionseg.core.training import prompt_finetune
    _needs_prompt_network()
    monkeypatch.setattr(prompt_finetune, "DEFAULT_STEPS", 2)
    viewer = make_napari_viewer()
    for i, (im, m) in enumerate(zip(*_ellipse_images())):
        viewer.add_image(im, name=f"scan{i}")
        viewer.add_labels(m.astype(np.uint8), name=f"scan{i} mask",
                          metadata={"lesionseg": {"derived_from": f"scan{i}"}})
    _, train = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Fine-tune a model")
    _, annotate = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Annotations to masks (lines, points)")
    names = [train.base_combo.itemText(i) for i in range(train.base_combo.count())]
    assert "prompt_unet" in names  # a prompt network can be chosen as the base
    train.base_combo.setCurrentText("prompt_unet")
    train.name_edit.setText("from-dock")
    assert [(im.name, lab.name) for im, lab in train.checked_pairs()] == [(f"scan{i}", f"scan{i} mask")
                                                                          for i in range(3)]
    train.start()  # the dock's own button path: a thread, progress and the registry told in the GUI thread
    qtbot.waitUntil(lambda: getattr(train, "prompt_job", None) is not None and not train.prompt_job.jobs.running(),
                    timeout=120000)
    job = train.prompt_job
    assert job.card is not None and job.card.name == "from-dock" and job.card.kind == "prompt"
    assert "Published the prompt network from-dock" in train.status.text()
    assert json.loads(job.card.path.read_text())["n_train_lesions"] == 3
    offered = [annotate.network_combo.itemText(i) for i in range(annotate.network_combo.count())]
    assert "from-dock" in offered and "prompt_unet" in offered


def test_train_dock_cancel_stops_the_prompt_fine_tuning_and_publishes_nothing(make_napari_viewer, qtbot, monkeypatch,
                                                                             _user_model_dir):
    from napari_lesionseg.core.training import prompt_finetune

    _needs_prompt_network()
    monkeypatch.setattr(prompt_finetune, "DEFAULT_STEPS", 500)
    viewer = make_napari_viewer()
    im, m = _ellipse_images(1)[0][0], _ellipse_images(1)[1][0]
    viewer.add_image(im, name="scan")
    viewer.add_labels(m.astype(np.uint8), name="scan mask", metadata={"lesionseg": {"derived_from": "scan"}})
    _, train = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Fine-tune a model")
    train.base_combo.setCurrentText("prompt_unet")
    train.name_edit.setText("never")
    train.start()
    qtbot.waitUntil(lambda: "of 500" in train.status.text(), timeout=120000)  # training: "step k of 500"
    assert not train.start_btn.isEnabled() and train.cancel_btn.isEnabled()
    train.cancel_btn.click()
    qtbot.waitUntil(lambda: not train.prompt_job.jobs.running(), timeout=60000)
    assert "cancelled; nothing was published" in train.status.text()
    assert train.prompt_job.card is None and not list(_user_model_dir.rglob("never*"))
    assert train.start_btn.isEnabled()


def test_train_dock_offers_only_prompt_networks_it_can_fine_tune(make_napari_viewer):
    """The line-only busi_line_unet learns from lines only (headless fine-tuning); the dock, whose users correct
    line and box masks alike, does not offer it."""
    _needs_prompt_network()
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Fine-tune a model")
    names = [train.base_combo.itemText(i) for i in range(train.base_combo.count())]
    assert "prompt_unet" in names and "busi_line_unet" not in names
