"""The rule of the session-20 classifier comparison (benchmarks/us_classifier_compare.py): a candidate ships only if
it leaves at least 5 fewer normal images with a false region, loses no more lesions, keeps AUC/F1 and gates no
more second-site images; a condition it could not be measured on counts as failed."""

from __future__ import annotations

import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def compare():
    return load_repo_script("benchmarks/us_classifier_compare.py")


def _block(normals_fp: int, lost: int, emptied: int, auc: float = 0.93, f1: float = 0.79, breast: int | None = 2):
    b = {"auc_fold_mean": auc, "macro_f1_fold_mean": f1,
         "segmenter": {"normal_false_region": normals_fp, "lesions_lost": lost, "lesion_images_emptied": emptied}}
    if breast is not None:
        b["second_site"] = {"gated": breast}
    return b


def test_fewer_false_regions_and_nothing_lost_ships(compare):
    assert compare.verdict(_block(25, 5, 9), _block(19, 5, 11, breast=1))["ship_candidate"]


@pytest.mark.parametrize("candidate", [
    _block(22, 8, 12, f1=0.81, breast=1),   # session 20's Lite1: 3 fewer normals, 3 more lesions lost
    _block(20, 5, 12),                      # 3 more lesion images emptied than allowed
    _block(19, 5, 9, auc=0.90),             # benign/malignant AUC fell
    _block(19, 5, 9, breast=3),             # gates more images at the other hospital
    _block(19, 5, 9, breast=None),          # second site not measured
])
def test_a_failed_or_unmeasured_condition_does_not_ship(compare, candidate):
    assert not compare.verdict(_block(25, 5, 9), candidate)["ship_candidate"]


def _probs_dir(root, rows):
    """OUT/fold<k>/probs.csv as scripts/train_us_classifier.py writes them: rows of (name, fold, p_normal)."""
    import csv

    for k in range(5):
        (root / f"fold{k}").mkdir(parents=True)
        with open(root / f"fold{k}" / "probs.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "group", "label", "fold", "p_normal", "p_benign", "p_malignant"])
            for name, fold, pn in rows:
                if fold == k:
                    w.writerow([name, name, "benign", fold, pn, (1 - pn) / 2, (1 - pn) / 2])
    return root


def test_two_classifiers_are_averaged_per_image_and_must_share_folds(compare, tmp_path):
    a = _probs_dir(tmp_path / "a", [("x", 0, 0.2), ("y", 3, 0.6)])
    b = _probs_dir(tmp_path / "b", [("x", 0, 0.4), ("y", 3, 1.0)])
    avg = compare.held_out_probs(compare.members(f"r.yaml:{a}+r.yaml:{b}"))
    assert {r["name"]: round(float(r["p"][0]), 6) for r in avg} == {"x": 0.3, "y": 0.8}
    moved = _probs_dir(tmp_path / "c", [("x", 1, 0.4), ("y", 3, 1.0)])
    with pytest.raises(SystemExit):
        compare.held_out_probs(compare.members(f"r.yaml:{a}+r.yaml:{moved}"))
