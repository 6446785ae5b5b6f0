"""Cross-validation runs side by side (one --out each) are merged into one result by `--merge`."""

import json
from types import SimpleNamespace

import pytest

from conftest import load_repo_script

cv_common = load_repo_script("benchmarks/cv_common.py")


def _fold(dice):
    return {"rows": [{"name": "a", "dice": dice}], "summary": {"all": {"mean_dice": dice}}}


def test_folds_from_two_runs_become_one_result(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"folds": {"fold2": _fold(0.7), "fold0": _fold(0.8)}}))
    (tmp_path / "b.json").write_text(json.dumps({"folds": {"fold1": _fold(0.6)}, "final": {"card": "x.json"}}))
    args = SimpleNamespace(threads=1, work=str(tmp_path / "work"), out=str(tmp_path / "all.json"),
                           recipe="models/ultrasound-lesion-single.yaml",
                           merge=[str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    results, _save, recipe, _work = cv_common.start(args)
    assert list(results["folds"]) == ["fold0", "fold1", "fold2"]
    assert results["final"] == {"card": "x.json"} and recipe.name == "ultrasound-lesion-single"
    saved = json.loads((tmp_path / "all.json").read_text())  # written at once: the merged file is the resume point
    assert saved["folds"]["fold1"]["summary"]["all"]["mean_dice"] == 0.6


def test_one_fold_with_two_different_results_is_refused():
    results = {"folds": {"fold0": _fold(0.8)}}
    with pytest.raises(SystemExit, match="fold0"):
        cv_common.merge_results(results, [{"folds": {"fold0": _fold(0.5)}}], ["b.json"])
    assert results["folds"]["fold0"]["summary"]["all"]["mean_dice"] == 0.8
    cv_common.merge_results(results, [{"folds": {"fold0": _fold(0.8)}}], ["same.json"])  # the same figures: fine
