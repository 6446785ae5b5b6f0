"""Pilot figures (benchmarks/us_pilot_summary.py): a fold run is pooled beside the same folds of the reference, and
a lesion image the gate empties counts as missed."""

from __future__ import annotations

import json

from conftest import load_repo_script


def _row(name, dice, fp=False):
    return {"name": name, "has_lesion": dice is not None, "dice": dice, "false_positive": fp}


def test_fold_runs_are_pooled_beside_the_reference_and_gated(tmp_path):
    summary = load_repo_script("benchmarks/us_pilot_summary.py")
    run = tmp_path / "f0.json"
    run.write_text(json.dumps({"folds": {"fold0": {"rows": [_row("a", 0.9), _row("b", 0.05), _row("n", None, True)],
                                                   "minutes": 3.0}}}))
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"folds": {"fold0": {"rows": [_row("a", 0.8), _row("b", 0.6), _row("n", None, False)]},
                                         "fold1": {"rows": [_row("z", 0.1)]}}}))
    cls = tmp_path / "cls"
    (cls / "fold0").mkdir(parents=True)
    (cls / "cv.json").write_text(json.dumps({"per_fold": [{"fold": 0, "gate_threshold": 0.5}]}))
    (cls / "fold0" / "probs.csv").write_text("name,p_normal\na,0.9\nb,0.1\nn,0.7\n")
    out = tmp_path / "s.json"
    assert summary.main(["--fold-run", str(run), "--reference", str(ref), "--classifier", str(cls), "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["pooled"] == {"n_lesion": 2, "mean_dice": 0.475, "misses": 1, "n_normal": 1, "normals_false_region": 1}
    assert s["pooled_reference"]["mean_dice"] == 0.7 and s["pooled_reference"]["n_lesion"] == 2  # fold 1 not pooled
    gated = s["pooled_gated"]  # a (0.9) and n (0.7) gated: the normal's false region goes, lesion a is lost
    assert gated["normal_false_region"] == 0 and gated["lesions_lost"] == 1 and gated["misses"] == 2
