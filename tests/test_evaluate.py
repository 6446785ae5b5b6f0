"""`lesionseg evaluate`: per-case figures on masks with a Dice known in advance, the summary and its interval, the
CSV, and the run going on past a bad case. The end-to-end test builds its truth masks from `lesionseg predict`'s
own output, so every expected figure is exact arithmetic."""

from __future__ import annotations

import csv
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_lesionseg.cli.main import main
from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.evaluate import (
    CSV_COLUMNS,
    bootstrap_ci,
    case_metrics,
    class_of,
    pair_files,
    summarise,
    summary_line,
)
from napari_lesionseg.core.models import default_registry
from tiny_models import blob_image, tiny_model


def _square(shape, y0, x0, size):
    m = np.zeros(shape, np.uint8)
    m[y0:y0 + size, x0:x0 + size] = 255
    return m


# -- the per-case function ---------------------------------------------------------------------------------

def test_case_metrics_known_overlap():
    truth = _square((40, 40), 0, 0, 10)        # 100 px
    pred = _square((40, 40), 0, 5, 10)         # 100 px, 50 shared
    r = case_metrics(pred, truth, "malignant_007")
    assert r.dice == pytest.approx(0.5) and r.iou == pytest.approx(50 / 150)
    assert r.cls == "malignant" and r.has_lesion and r.hit and not r.missed and not r.false_positive
    assert (r.truth_area_px, r.predicted_area_px) == (100, 100)


def test_case_metrics_miss_and_false_positive():
    truth = _square((40, 40), 0, 0, 10)
    far = _square((40, 40), 30, 30, 10)
    missed = case_metrics(far, truth, "benign_001")
    assert missed.dice == 0.0 and missed.missed and not missed.hit
    empty = np.zeros((40, 40), np.uint8)
    fp = case_metrics(far, empty, "normal_003")
    assert fp.false_positive and fp.dice is None and not fp.has_lesion and fp.cls == "normal"
    clean = case_metrics(empty, empty, "normal_004")
    assert not clean.false_positive and clean.dice is None


def test_case_metrics_shape_mismatch_is_a_clear_error():
    with pytest.raises(LesionSegError, match="same size"):
        case_metrics(np.zeros((10, 10)), np.zeros((12, 10)), "x")


def test_class_prefix():
    assert class_of("benign_012") == "benign" and class_of("normal_1") == "normal"
    assert class_of("10013") == "" and class_of("benignish") == "" and class_of("P121_L_DM_CC") == ""


def test_summary_figures_and_fixed_bootstrap():
    dices = [1.0, 0.8, 0.6, 0.05]
    cases = []
    for i, d in enumerate(dices):  # lesion cases built to the wanted Dice: truth 100 px, prediction k px inside it
        k = int(round(100 * d / (2 - d)))
        truth = _square((30, 30), 0, 0, 10)
        pred = np.zeros_like(truth)
        pred.flat[np.flatnonzero(truth)[:k]] = 1
        cases.append(case_metrics(pred, truth, f"{'benign' if i < 2 else 'malignant'}_{i}"))
    cases.append(case_metrics(_square((30, 30), 20, 20, 3), np.zeros((30, 30)), "normal_9"))
    cases.append(case_metrics(np.zeros((30, 30)), np.zeros((30, 30)), "normal_10"))
    got = [c.dice for c in cases[:4]]
    s = summarise(cases)
    assert s["n_lesion"] == 4 and s["n_lesion_free"] == 2 and s["misses"] == 1 and s["fp_images"] == 1
    assert s["mean_dice"] == pytest.approx(np.mean(got)) and s["median_dice"] == pytest.approx(np.median(got))
    assert s["p10_dice"] == pytest.approx(np.percentile(got, 10))
    lo, hi = s["ci95_mean_dice"]
    assert lo < s["mean_dice"] < hi and (lo, hi) == bootstrap_ci(got)  # same seed, same interval
    assert s["per_class"]["benign"]["n_lesion"] == 2 and s["per_class"]["malignant"]["misses"] == 1
    assert s["per_class"]["normal"]["fp_images"] == 1
    line = summary_line(s)
    assert f"Dice {np.mean(got):.3f}" in line and "1 missed" in line and "1 of 2 lesion-free" in line
    assert "malignant:" in line


def test_pairing_reports_unmatched(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    for n in ("a", "b", "c"):
        iio.imwrite(tmp_path / "im" / f"{n}.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(tmp_path / "m" / "a.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(tmp_path / "m" / "b_mask.png", np.zeros((8, 8), np.uint8))  # predict's / Accept's naming
    iio.imwrite(tmp_path / "m" / "z.png", np.zeros((8, 8), np.uint8))
    p = pair_files(tmp_path / "im", tmp_path / "m")
    assert [n for n, _, _ in p.pairs] == ["a", "b"]
    assert [x.name for x in p.images_without_mask] == ["c.png"]
    assert [x.name for x in p.masks_without_image] == ["z.png"]
    # one folder holding both (as the dock's Accept leaves them): never an image paired with itself
    iio.imwrite(tmp_path / "im" / "a_mask.png", np.zeros((8, 8), np.uint8))
    same = pair_files(tmp_path / "im", tmp_path / "im")
    assert [(n, i.name, m.name) for n, i, m in same.pairs] == [("a", "a.png", "a_mask.png")]
    assert [x.name for x in same.images_without_mask] == ["b.png", "c.png"]


# -- end to end through the CLI ----------------------------------------------------------------------------

@pytest.fixture()
def tiny_gray(tmp_path_factory, _user_model_dir) -> str:
    card = tiny_model("gray2d", tmp_path_factory.getbasetemp() / "tiny-models", install_into=_user_model_dir)
    return default_registry().get(card).name


def _read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_COLUMNS
    return {r["name"]: r for r in rows}


def test_cli_evaluate_known_dice(tmp_path, tiny_gray, capsys):
    rng = np.random.default_rng(3)
    images, masks, pred = tmp_path / "images", tmp_path / "masks", tmp_path / "pred"
    images.mkdir()
    masks.mkdir()
    names = ["benign_001", "benign_002", "malignant_001", "normal_001", "normal_002", "odd_size"]
    for n in names:
        img, _ = blob_image(rng, n_blobs=0 if n == "normal_002" else 1)
        iio.imwrite(images / f"{n}.png", img)
    iio.imwrite(images / "unlabelled.png", blob_image(rng)[0])
    # what `lesionseg predict` makes of them is the basis of every expected figure
    assert main(["predict", "--model", tiny_gray, "--input", str(images), "--output", str(pred)]) == 0
    p = {n: iio.imread(pred / f"{n}_mask.png") > 0 for n in names}
    assert p["benign_001"].any() and p["normal_001"].any(), "the tiny model should find a bright blob"
    half = np.zeros_like(p["benign_002"])
    half.flat[np.flatnonzero(p["benign_002"])[: p["benign_002"].sum() // 2]] = True
    far = np.zeros_like(p["malignant_001"])
    far[:8, :8] = True
    assert not (far & p["malignant_001"]).any()
    truths = {"benign_001": p["benign_001"], "benign_002": half, "malignant_001": far,
              "normal_001": np.zeros_like(far), "normal_002": np.zeros_like(far)}
    for n, t in truths.items():
        iio.imwrite(masks / f"{n}.png", t.astype(np.uint8) * 255)
    iio.imwrite(masks / "odd_size.png", np.zeros((50, 70), np.uint8))
    iio.imwrite(masks / "orphan.png", np.zeros((96, 96), np.uint8))

    out = tmp_path / "per_case.csv"
    capsys.readouterr()
    assert main(["evaluate", "--model", tiny_gray, "--images", str(images), "--masks", str(masks),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr()
    rows = _read_csv(out)
    assert sorted(rows) == sorted(names)
    k, n_pred = int(half.sum()), int(p["benign_002"].sum())
    expected = {"benign_001": 1.0, "benign_002": 2 * k / (k + n_pred), "malignant_001": 0.0}
    for n, d in expected.items():
        assert float(rows[n]["dice"]) == pytest.approx(d, abs=1e-4)
    assert rows["malignant_001"]["missed"] == "True" and rows["benign_002"]["missed"] == "False"
    assert rows["normal_001"]["false_positive"] == "True"  # a blob where the truth says no lesion
    assert rows["normal_002"]["false_positive"] == str(bool(p["normal_002"].any()))
    assert rows["normal_002"]["dice"] == "" and rows["normal_001"]["has_lesion"] == "False"
    assert "same size" in rows["odd_size"]["error"]
    mean = np.mean(list(expected.values()))
    fp = 1 + int(p["normal_002"].any())
    assert f"Dice {mean:.3f}" in printed.out and "1 missed" in printed.out
    assert f"{fp} of 2 lesion-free" in printed.out and "1 case(s) failed" in printed.out
    assert f"benign: Dice {(1 + expected['benign_002']) / 2:.3f}" in printed.out
    assert "no mask for image: unlabelled.png" in printed.err and "no image for mask: orphan.png" in printed.err

    # predict's own output as the truth: the model agrees with itself everywhere
    assert main(["evaluate", "--model", tiny_gray, "--images", str(images), "--masks", str(pred)]) == 0
    assert "Dice 1.000" in capsys.readouterr().out


def test_cli_evaluate_clean_errors(tmp_path, tiny_gray, capsys):
    empty, masks = tmp_path / "empty", tmp_path / "masks"
    empty.mkdir()
    masks.mkdir()
    iio.imwrite(masks / "a.png", np.zeros((8, 8), np.uint8))
    assert main(["evaluate", "--model", tiny_gray, "--images", str(empty), "--masks", str(masks)]) == 2
    assert "No readable images" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    iio.imwrite(other / "b.png", np.zeros((8, 8), np.uint8))
    assert main(["evaluate", "--model", tiny_gray, "--images", str(other), "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert "No image" in err and "Traceback" not in err
    assert main(["evaluate", "--model", tiny_gray, "--images", str(other), "--masks", str(masks),
                 "--output", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.txt").exists()
    capsys.readouterr()
    assert main(["evaluate", "--model", tiny_gray, "--images", str(other), "--masks", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "Mask folder not found" in err and "evaluating" not in err  # the message alone, no empty progress bar


# -- what a user is shown --------------------------------------------------------------------------------

def test_headline_is_the_external_figure_never_the_selection_split():
    from napari_lesionseg.core.models.card import ModelCard

    card = ModelCard(name="m", modality="ultrasound", metrics={"val_dice": 0.81})
    assert "0.81" in card.headline_metric() and "chose the epoch" in card.headline_metric()
    card.metrics["external"] = {"site2": {"mean_dice": 0.7304, "ci95_mean_dice": [0.573, 0.858], "n_lesion": 15,
                                          "short": "BrEaST", "misses": 2, "n_lesion_free": 4, "fp_images": 1}}
    text = card.headline_metric()
    assert text.startswith("Dice 0.73 (95% CI 0.57–0.86) on 15 unseen") and "BrEaST" in text
    assert "2 missed" in text and "1 of 4 normal" in text and "0.81" not in text
    assert ModelCard(name="x", modality="mri").headline_metric() == "no independent validation"


def test_shipped_cards_show_second_source_figures():
    cards = {c.name: c for c in default_registry().cards()}
    for name in ("ultrasound-lesion", "mammography-mass", "histology-nuclei"):
        m = cards[name].metrics
        assert m.get("external"), f"{name} has no figure from data that chose nothing"
        assert "val_dice" in m["selection_split"]["keys"]
        assert "unseen" in cards[name].headline_metric()
    # mammography is judged as a detector (issue 15's goal: masses found at <= 0.5 false regions per image)
    assert "22 of 33 masses found at 0.37 false regions per image" in cards["mammography-mass"].headline_metric()
    assert "masses found" not in cards["ultrasound-lesion"].headline_metric()


def test_series_choice_in_a_multi_series_folder(tmp_path):
    from _io_dicom_factory import write_series

    from napari_lesionseg.core.inference.run import read_one_scan

    vol = np.arange(4 * 20 * 24, dtype=np.uint16).reshape(4, 20, 24)
    kw = dict(row_cos=np.array([1.0, 0, 0]), col_cos=np.array([0, 1.0, 0]), spacing_rc=(0.8, 0.8),
              origin=np.zeros(3), slice_step=np.array([0, 0, 2.0]))
    write_series(tmp_path, vol, description="pre", series_number=1, **kw)
    write_series(tmp_path, vol + 50, description="post 1", series_number=2, **kw)
    assert read_one_scan(tmp_path, "post").name == "post 1"
    assert read_one_scan(tmp_path, "2").name == "post 1"
    assert read_one_scan(tmp_path, "1").name == "pre"  # the series number, though "post 1" contains a 1
    with pytest.raises(LesionSegError, match="holds 2 series"):
        read_one_scan(tmp_path)
    with pytest.raises(LesionSegError, match=r"no such series.*pre.*post 1"):
        read_one_scan(tmp_path, "dwi")


def test_headline_of_a_cross_validated_block_shows_the_spread_over_folds():
    from napari_lesionseg.core.models.card import ModelCard

    card = ModelCard(name="m", modality="ultrasound", metrics={"external": {"cv": {
        "mean_dice": 0.7338, "ci95_mean_dice": [0.711, 0.757], "n_lesion": 478, "short": "BUSI 5-fold CV",
        "misses": 25, "n_lesion_free": 99, "fp_images": 81, "folds": {"n": 5, "sd_mean_dice": 0.0222}}}})
    text = card.headline_metric()
    assert text.startswith("Dice 0.73 ± 0.02 over 5 folds (95% CI 0.71–0.76) on 478 unseen")
    assert "25 missed" in text and "81 of 99 normal" in text
