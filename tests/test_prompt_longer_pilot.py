"""benchmarks/prompt_longer_pilot.py: its rule on synthetic per-lesion tables (a gain on MRI or mammogram lines
or MRI boxes is needed, and no source x prompt may lose more than 0.005)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import prompt_longer_pilot as plp  # noqa: E402


def _table(tmp_path, name, mean_of):
    rows = ["source,patient,name,fold,method,prompt,dice,seconds"]
    for s in plp.SOURCES:
        for p in plp.PROMPTS:
            for i in range(4):
                rows.append(f"{s},P{i},{s}_{i},{i % 2},learned,{p},{mean_of(s, p):.4f},0.1")
    (tmp_path / name).write_text("\n".join(rows))
    return plp.read_rows(tmp_path / name)


def _verdict(tmp_path, mean_of):
    ref = _table(tmp_path, "r.csv", lambda s, p: {"mri_slices": 0.635, "cdd_cesm": 0.82}.get(s, 0.895))
    cand = _table(tmp_path, "c.csv", mean_of)
    return plp.verdict({f"{s}/{p}": plp.paired(ref, cand, s, p) for s in plp.SOURCES for p in plp.PROMPTS})


def test_a_gain_on_one_target_without_losses_is_a_go(tmp_path):
    assert _verdict(tmp_path, lambda s, p: {"mri_slices": 0.655, "cdd_cesm": 0.82}.get(s, 0.893))["go"]


def test_too_small_a_gain_or_a_loss_elsewhere_is_no_go(tmp_path):
    small = _verdict(tmp_path, lambda s, p: {"mri_slices": 0.645, "cdd_cesm": 0.83}.get(s, 0.895))
    assert small["clauses"] == {"1_mri_line_or_box_or_cdd_line_plus_0.015": False, "2_none_worse_than_0.005": True}
    lossy = _verdict(tmp_path, lambda s, p: {"mri_slices": 0.70, "cdd_cesm": 0.82}.get(s, 0.88))
    assert lossy["clauses"] == {"1_mri_line_or_box_or_cdd_line_plus_0.015": True, "2_none_worse_than_0.005": False}


def test_one_fold_is_reported_but_not_judged(tmp_path):
    import json

    _table(tmp_path, "r.csv", lambda s, p: 0.6)
    rows = (tmp_path / "r.csv").read_text().splitlines()
    (tmp_path / "c.csv").write_text("\n".join([rows[0]] + [r.replace(",0.6000,", ",0.7000,") for r in rows[1:]
                                                           if r.split(",")[3] == "0"]))
    (tmp_path / "rule.txt").write_text("the rule")
    plp.main(["--reference", str(tmp_path / "r.csv"), "--candidate", str(tmp_path / "c.csv"), "--rule",
              str(tmp_path / "rule.txt"), "--out", str(tmp_path / "o.json"), "--only-fold", "0"])
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["verdict"]["go"] is None  # half the folds cannot decide a rule written on both
    line = out["cv_candidate_against_reference"]["mri_slices/line"]
    assert line["lesions"] == 2 and line["difference"] == 0.1  # fold 0's lesions only, paired
