"""The nested choice among ultrasound image classifiers (benchmarks/us_classifier_nested.py): fold k's candidate and
threshold must come from the other folds only, and a candidate that gates too many lesion images is not chosen for
gating more normals."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def nested():
    return load_repo_script("benchmarks/us_classifier_nested.py")


def _rows(p_normal_of_normals: float, p_normal_of_lesions: float, seed: int) -> list[dict]:
    """5 folds of 10 normal, 30 benign and 20 malignant images; P(normal) around the given values (the lesion
    images' noise is the same for every seed, so candidates differ only on the normal images)."""
    normal_rng, lesion_rng = np.random.default_rng(seed), np.random.default_rng(99)
    rows = []
    for k in range(5):
        for label, n in (("normal", 10), ("benign", 30), ("malignant", 20)):
            for i in range(n):
                rng = normal_rng if label == "normal" else lesion_rng
                pn = float(np.clip(rng.normal(p_normal_of_normals if label == "normal" else p_normal_of_lesions,
                                              0.15), 0.01, 0.98))
                rest = 1 - pn
                pb = rest * (0.8 if label == "benign" else 0.3)
                rows.append({"name": f"{label}_{k}_{i}", "label": label, "fold": k,
                             "p": np.array([pn, pb, rest - pb])})
    return rows


def test_the_candidate_that_gates_more_normals_is_chosen_in_every_fold(nested):
    cands = {"S": _rows(0.55, 0.2, 0), "W": _rows(0.85, 0.2, 1), "A": _rows(0.6, 0.2, 2)}
    res = nested.nested(cands)
    assert [o["chosen"] for o in res["per_fold"]] == ["W"] * 5
    assert res["pooled"]["n_normal_gated"] > 40
    assert res["pooled"]["n_lesion_gated"] <= 0.05 * res["pooled"]["n_lesion"]


@pytest.mark.parametrize("rewrite", ["S_normals_perfect", "lesions_look_normal"])
def test_fold_k_is_chosen_and_thresholded_without_fold_k(nested, rewrite):
    """Fold 0 rewritten (S calls its normals normal with certainty, or every candidate calls its lesions normal):
    fold 0's own choice and threshold must not change, while the folds that use fold 0 as inner data see it."""
    cands = {"S": _rows(0.55, 0.2, 0), "W": _rows(0.6, 0.2, 1), "A": _rows(0.7, 0.2, 2)}
    before = nested.nested(cands)["per_fold"]
    changed = copy.deepcopy(cands)
    for c, rows in changed.items():
        for r in rows:
            if r["fold"] != 0:
                continue
            if rewrite == "S_normals_perfect" and c == "S" and r["label"] == "normal":
                r["p"] = np.array([0.99, 0.005, 0.005])
            if rewrite == "lesions_look_normal" and r["label"] != "normal":
                r["p"] = np.array([0.97, 0.015, 0.015])
    after = nested.nested(changed)["per_fold"]
    assert after[0]["chosen"] == before[0]["chosen"] and after[0]["threshold"] == before[0]["threshold"]
    assert after[0]["inner"] == before[0]["inner"]
    assert after[1]["inner"] != before[1]["inner"]


def test_a_candidate_gating_too_many_lesion_images_is_not_eligible(nested):
    scores = {"S": {"n_normal_kept": 20, "lesion_gated_rate": 0.01, "macro_f1": 0.7},
              "W": {"n_normal_kept": 5, "lesion_gated_rate": 0.04, "macro_f1": 0.9},
              "A": {"n_normal_kept": 20, "lesion_gated_rate": 0.02, "macro_f1": 0.8}}
    assert nested.choose(scores) == "A"  # W gates 4% of lesions; S and A tie on normals, A has the higher F1
    scores["A"]["lesion_gated_rate"] = 0.03
    assert nested.choose(scores) == "S"
