"""The stacked ultrasound gate of session 21 (benchmarks/us_gate_stacked.py): its regression learns which feature
tells normal images from lesion images, its threshold keeps the 2 % budget of found lesions on the images that chose
it, empty masks are never gated, and the go/no-go needs 5 fewer normals without more lesions lost."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def stk():
    return load_repo_script("benchmarks/us_gate_stacked.py")


def _rows(n_per_fold: int = 60, seed: int = 0) -> list[dict]:
    """Synthetic held-out rows: normals' false regions have a low mean probability inside the mask, lesions a high
    one; P(normal) is uninformative noise. A few normals have an empty mask."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(5):
        for i in range(n_per_fold):
            lesion = i % 4 != 0
            empty = not lesion and i % 8 == 0
            mean_p = rng.uniform(0.85, 0.99) if lesion else rng.uniform(0.55, 0.8)
            rows.append({"name": f"f{k}_{i}", "fold": k, "has_lesion": lesion, "p_normal": rng.uniform(0.1, 0.9),
                         "dice": 0.8 if lesion else None, "false_positive": not lesion and not empty,
                         "predicted_area_px": 0 if empty else int(rng.integers(200, 3000)), "image_px": 100000,
                         "max_prob": 0.0 if empty else rng.uniform(0.9, 1.0),
                         "mean_prob_in_mask": 0.0 if empty else mean_p})
    return rows


def test_the_regression_weighs_the_feature_that_separates(stk):
    rows = _rows()
    scorer, w = stk._fit_on(rows)
    assert abs(w[4]) > 3 * max(abs(w[1]), abs(w[2]), abs(w[3]))   # mean probability in the mask, not the noise
    s = stk.scores(rows, scorer)
    normal = np.array([not r["has_lesion"] and r["predicted_area_px"] > 0 for r in rows])
    lesion = np.array([r["has_lesion"] for r in rows])
    assert s[normal].min() > s[lesion].max() - 0.2


def test_threshold_keeps_the_lesion_budget_and_empty_masks_are_never_gated(stk):
    rows = _rows()
    scorer, _ = stk._fit_on(rows)
    s = stk.scores(rows, scorer)
    t = stk.threshold_for(rows, s)
    lesions = sum(r["has_lesion"] for r in rows)
    lost = sum(r["has_lesion"] and v > t for r, v in zip(rows, s))
    assert lost <= 0.02 * lesions
    assert not any(v > t for r, v in zip(rows, s) if not r["predicted_area_px"])


def test_nested_gating_cleans_separable_normals_without_losing_lesions(stk):
    res = stk.nested(_rows())["pooled"]
    assert res["normal_false_region"] <= 5 and res["lesions_lost"] <= 0.02 * res["n_lesion"]


def test_verdict_needs_five_fewer_normals_and_no_more_lost(stk):
    ref = {"normal_false_region": 25, "lesions_lost": 5, "lesion_images_emptied": 9}
    assert stk.verdict(ref, {"normal_false_region": 20, "lesions_lost": 5, "lesion_images_emptied": 11})["go"]
    assert not stk.verdict(ref, {"normal_false_region": 21, "lesions_lost": 4, "lesion_images_emptied": 9})["go"]
    assert not stk.verdict(ref, {"normal_false_region": 10, "lesions_lost": 6, "lesion_images_emptied": 9})["go"]
    assert not stk.verdict(ref, {"normal_false_region": 10, "lesions_lost": 5, "lesion_images_emptied": 12})["go"]
