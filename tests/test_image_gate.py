"""The image gate: a classifier card in the registry, `gate_probabilities` emptying a mask, `lesionseg predict`
writing classes.csv, `lesionseg evaluate` counting what the gate did, the Segment dock showing the probabilities;
and the shipped ultrasound classifier on real images (a BUSI normal image suppressed, lesions kept)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.models.registry import ModelRegistry
from tiny_models import blob_image, constant_classifier, tiny_gated_model

from conftest import REPO, shared_path

SHIPPED_CLASS = REPO / "models" / "ultrasound-class.json"


def _blob_folder(folder: Path, n: int = 3) -> list[Path]:
    """Blob images (each with one disc) and their masks, as a labelled folder."""
    rng = np.random.default_rng(3)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    out = []
    for i in range(n):
        img, mask = blob_image(rng, n_blobs=1)
        iio.imwrite(folder / "images" / f"case{i}.png", img)
        iio.imwrite(folder / "masks" / f"case{i}.png", mask * 255)
        out.append(folder / "images" / f"case{i}.png")
    return out


def test_classifier_card_is_listed_as_a_classifier_only(tmp_path):
    card_path = constant_classifier(tmp_path / "models", p_normal=0.9)
    reg = ModelRegistry([tmp_path / "models"])
    assert reg.names(kind="classifier") == ["const-class"]
    assert reg.names() == []  # never offered as a segmentation model
    from napari_lesionseg.core.models.classifier import load_classifier

    probs = load_classifier(reg.get("const-class", kind="classifier")).probabilities(np.zeros((80, 90), np.uint8))
    assert list(probs) == ["normal", "benign", "malignant"]
    assert probs["normal"] == pytest.approx(0.9, abs=1e-4)
    assert json.loads(card_path.read_text())["kind"] == "classifier"


@pytest.mark.parametrize("p_normal, suppressed", [(0.9, True), (0.2, False)])
def test_gate_empties_the_mask_only_when_the_classifier_says_normal(tmp_path, tmp_path_factory, p_normal,
                                                                    suppressed):
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.run import segment_file
    from napari_lesionseg.core.models.card import ModelCard

    seg = tiny_gated_model(tmp_path_factory.getbasetemp() / "tiny-models", tmp_path / "m", p_normal)
    (src,) = _blob_folder(tmp_path / "data", n=1)
    predictor = Predictor(ModelCard.read(seg), device="cpu")
    said = []
    _scan, probs, mask = segment_file(predictor, src, on_gate=said.append)
    _scan, raw_probs, raw_mask = segment_file(predictor, src, gate=False, on_gate=said.append)
    assert len(said) == 2 and said[0].suppressed is suppressed
    assert said[1].suppressed is False and said[1].no_lesion is suppressed  # gate off: it reports, it does not empty
    assert said[0].probabilities["normal"] == pytest.approx(p_normal, abs=1e-4)
    assert raw_mask.any()  # the tiny model finds the blob
    if suppressed:
        assert not mask.any() and not probs.any()
    else:
        np.testing.assert_array_equal(mask, raw_mask)


def test_predict_cohort_writes_classes_csv(tmp_path, tmp_path_factory):
    seg = tiny_gated_model(tmp_path_factory.getbasetemp() / "tiny-models", tmp_path / "m", p_normal=0.9)
    _blob_folder(tmp_path / "data", n=2)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(seg), "--input", str(tmp_path / "data" / "images"),
                 "--output", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "classes.csv")))
    assert [r["file"] for r in rows] == ["case0.png", "case1.png"]
    assert list(rows[0]) == ["file", "p_normal", "p_benign", "p_malignant", "suppressed"]
    assert all(float(r["p_normal"]) == pytest.approx(0.9, abs=1e-3) and r["suppressed"] == "1" for r in rows)
    assert not iio.imread(out / "case0_mask.png").any()
    raw = tmp_path / "raw"
    assert main(["predict", "--model", str(seg), "--input", str(tmp_path / "data" / "images"),
                 "--output", str(raw), "--no-gate"]) == 0
    assert iio.imread(raw / "case0_mask.png").any()
    rows = list(csv.DictReader(open(raw / "classes.csv")))  # the probabilities are reported with the gate off too
    assert all(float(r["p_normal"]) == pytest.approx(0.9, abs=1e-3) and r["suppressed"] == "0" for r in rows)


def test_evaluate_counts_what_the_gate_did(tmp_path, tmp_path_factory, capsys):
    seg = tiny_gated_model(tmp_path_factory.getbasetemp() / "tiny-models", tmp_path / "m", p_normal=0.9)
    _blob_folder(tmp_path / "data", n=2)
    rng = np.random.default_rng(9)  # one lesion-free image
    img, _ = blob_image(rng, n_blobs=0)
    iio.imwrite(tmp_path / "data" / "images" / "free.png", img)
    iio.imwrite(tmp_path / "data" / "masks" / "free.png", np.zeros_like(img))
    table = tmp_path / "cases.csv"
    assert main(["evaluate", "--model", str(seg), "--images", str(tmp_path / "data" / "images"),
                 "--masks", str(tmp_path / "data" / "masks"), "--output", str(table)]) == 0
    said = capsys.readouterr().out
    assert "0 of 1 lesion-free image(s) with a false lesion" in said
    assert "image gate emptied 1 of 1 lesion-free and 2 of 2 lesion image(s)" in said
    rows = {r["name"]: r for r in csv.DictReader(open(table))}
    assert rows["free"]["suppressed"] == "True" and rows["case0"]["image_classes"].startswith("normal=0.9")
    assert main(["evaluate", "--model", str(seg), "--images", str(tmp_path / "data" / "images"),
                 "--masks", str(tmp_path / "data" / "masks"), "--no-gate"]) == 0
    said = capsys.readouterr().out
    assert "image gate emptied" not in said
    assert "the image gate (off; --gate turns it on) would empty 1 of 1 lesion-free and 2 of 2 lesion image(s)" in said


def test_segment_dock_shows_the_class_probabilities(make_napari_viewer, qtbot, tmp_path, tmp_path_factory,
                                                    monkeypatch):
    from napari_lesionseg.core.models import registry as registry_mod
    from napari_lesionseg.napari.segment_dock import SegmentDock

    models = tmp_path / "m"
    tiny_gated_model(tmp_path_factory.getbasetemp() / "tiny-models", models, p_normal=0.9)
    monkeypatch.setattr(registry_mod, "_default", ModelRegistry([models]))
    viewer = make_napari_viewer()
    img, _ = blob_image(np.random.default_rng(4), n_blobs=1)
    viewer.add_image(img, name="us")
    dock = SegmentDock(viewer)
    dock.model_combo.setCurrentText("tiny-gray")
    assert dock.image_gate.isVisibleTo(dock) and dock.image_gate.enabled()
    dock.segment()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=60000)
    assert "normal 0.90" in dock.image_gate.label.text() and "mask suppressed" in dock.image_gate.label.text()
    assert not np.asarray(dock.result.labels_layer.data).any()
    dock.image_gate.checkbox.setChecked(False)  # the raw mask, on request
    dock.segment()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=60000)
    assert np.asarray(dock.result.labels_layer.data).any()
    assert "normal 0.90" in dock.image_gate.label.text() and "gate off: mask kept" in dock.image_gate.label.text()


# -- the shipped classifier on real images -------------------------------------------------------------------

def _shipped_or_skip():
    if not (SHIPPED_CLASS.exists() and SHIPPED_CLASS.with_suffix(".safetensors").exists()):
        pytest.skip("the shipped ultrasound-class model is not in models/")


def test_shipped_gate_suppresses_a_normal_busi_image_and_keeps_lesions(tmp_path):
    """The wiring on real images (the classifier trained on every BUSI image, so this normal image is one it saw;
    its held-out figures are on its card). The BrEaST lesion is from another hospital."""
    _shipped_or_skip()
    from napari_lesionseg.core.inference.gate import classify
    from napari_lesionseg.core.models import default_registry

    card = default_registry().get("ultrasound-lesion")
    assert card.gate and card.gate["classifier"] == "ultrasound-class"
    normal = iio.imread(shared_path("ultrasound", "busi", "images", "normal_004.png"))
    assert classify(card, normal).suppressed
    for src in (shared_path("ultrasound", "busi", "images", "malignant_051.png"),
                shared_path("ultrasound", "breast_lesions_usg", "images", "10013.png")):  # another hospital
        result = classify(card, iio.imread(src))
        assert not result.suppressed, (src.name, result.summary())


def test_shipped_ultrasound_gate_is_off_by_default_and_still_reports(tmp_path):
    """Held out, the gate emptied more real lesions than it cleaned normal images (the card's why_off_by_default):
    `lesionseg predict` keeps the mask unless --gate, and says what the classifier saw either way."""
    _shipped_or_skip()
    normal = shared_path("ultrasound", "busi", "images", "normal_004.png")
    from napari_lesionseg.core.inference.engine import Predictor
    from napari_lesionseg.core.inference.gate import gate_on
    from napari_lesionseg.core.inference.run import segment_file
    from napari_lesionseg.core.models import default_registry

    card = default_registry().get("ultrasound-lesion")
    assert card.gate["on_by_default"] is False and not gate_on(card) and gate_on(card, True)
    predictor = Predictor(card, device="cpu")
    said = []
    _s, default_probs, _m = segment_file(predictor, normal, on_gate=said.append)
    _s, gated_probs, gated_mask = segment_file(predictor, normal, gate=True, on_gate=said.append)
    assert said[0].no_lesion and not said[0].suppressed  # reported, not applied
    assert said[1].suppressed and not gated_mask.any() and not gated_probs.any()
    assert default_probs.any()
