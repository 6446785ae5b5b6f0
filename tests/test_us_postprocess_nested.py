"""The nested choice of a default post-processing (benchmarks/us_postprocess_nested.py): fold k's setting must come
from the other four folds only, and a setting that misses more lesions there is not chosen for a higher Dice."""

from __future__ import annotations

import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def bench():
    return load_repo_script("benchmarks/us_postprocess_nested.py")


def _rows(bench, dice_of: dict[str, float], missed_of: dict[str, int] | None = None, fold_dice=None):
    """10 lesion images per fold; every candidate scores 0.70 unless `dice_of` says otherwise; `missed_of[c]` of
    each fold's images are misses (Dice 0.05); `fold_dice[(c, k)]` overrides one fold."""
    missed_of, fold_dice = missed_of or {}, fold_dice or {}
    rows, fold_of = {}, {}
    for cand, _t, _p in bench.CANDIDATES:
        rows[cand] = []
        for k in range(bench.FOLDS):
            for i in range(10):
                name = f"benign_{k}_{i}"
                fold_of[name] = k
                d = 0.05 if i < missed_of.get(cand, 0) else fold_dice.get((cand, k), dice_of.get(cand, 0.70))
                rows[cand].append({"name": name, "has_lesion": True, "dice": d, "missed": d < 0.1,
                                   "false_positive": False})
    return rows, fold_of


def test_fold_k_is_scored_with_a_setting_chosen_without_fold_k(bench):
    # "fill_holes" is far better on fold 2 only: it must win for the other folds (it raises their inner mean),
    # and never for fold 2 itself, where the inner folds see no gain.
    rows, fold_of = _rows(bench, {}, fold_dice={("t0.50 fill_holes", 2): 0.95})
    res = bench.nested(rows, fold_of)
    chosen = {k: v["chosen"] for k, v in res["per_fold"].items()}
    assert chosen["fold2"] == bench.BASELINE
    assert all(chosen[f"fold{k}"] == "t0.50 fill_holes" for k in (0, 1, 3, 4))
    assert res["per_fold"]["fold2"]["outer"]["mean_dice"] == pytest.approx(0.70)


def test_a_setting_that_misses_more_lesions_is_not_chosen_for_a_higher_dice(bench):
    rows, fold_of = _rows(bench, {"t0.50 keep_largest": 0.90, "t0.50 min_size 200 px": 0.75},
                          missed_of={"t0.50 keep_largest": 1})
    res = bench.nested(rows, fold_of)
    assert {v["chosen"] for v in res["per_fold"].values()} == {"t0.50 min_size 200 px"}
    assert res["pooled"]["misses"] == 0


def test_ties_go_to_the_earlier_simpler_setting(bench):
    rows, fold_of = _rows(bench, {})
    assert bench.choose(rows, lambda n: True)[0] == bench.BASELINE
