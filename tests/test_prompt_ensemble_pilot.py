"""benchmarks/prompt_ensemble_pilot.py: lesions paired by name, the difference and its patient bootstrap, and the
rule's clauses (synthetic per-lesion tables)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import prompt_ensemble_pilot as pep  # noqa: E402


def _csv(path, dice_of):
    rows = ["source,patient,name,fold,method,prompt,dice,seconds"]
    for s in pep.SOURCES:
        for p in pep.PROMPTS:
            for i in range(6):  # two lesions per image: the same name twice
                rows.append(f"{s},P{i // 2},{s}_{i // 2},{i % 2},learned,{p},{dice_of(s, p, i):.4f},0.1")
    path.write_text("\n".join(rows))
    return pep.read_rows(path)


def _mri3d(breast1, brain1, inside=1.0):
    vol = {"breast1": {"mean_over_prompts": breast1}, "brain1": {"mean_over_prompts": brain1},
           "duke_153": {"inside_box": inside}}
    return vol


def test_the_difference_is_paired_lesion_by_lesion(tmp_path):
    ref = _csv(tmp_path / "r.csv", lambda s, p, i: 0.5 + 0.05 * i)
    cand = _csv(tmp_path / "c.csv", lambda s, p, i: 0.5 + 0.05 * i + (0.02 if s == "mri_slices" else 0.0))
    r = pep.paired(ref, cand, "mri_slices", "line")
    assert r["lesions"] == 6 and r["patients"] == 3 and r["reference"] == pytest.approx(0.625)
    assert r["difference"] == pytest.approx(0.02) and r["ci95"][0] == pytest.approx(0.02, abs=1e-4)
    assert r["better"] == 6 and r["worse"] == 0
    with pytest.raises(ValueError):
        pep.paired(ref, {}, "busi", "box")


def test_the_rule_needs_every_clause(tmp_path):
    ref = _csv(tmp_path / "r.csv", lambda s, p, i: 0.6)
    good = _csv(tmp_path / "g.csv", lambda s, p, i: 0.615 if s == "mri_slices" else 0.598)
    table = {f"{s}/{p}": pep.paired(ref, good, s, p) for s in pep.SOURCES for p in pep.PROMPTS}
    mri = {"shipped": {"line_3d": _mri3d(0.79, 0.50)}, "candidate": {"line_3d": _mri3d(0.787, 0.51)}}
    fast = {"candidate_2d_line_s": 0.15}
    assert pep.verdict(table, mri, fast)["go"]
    assert not pep.verdict(table, mri, {"candidate_2d_line_s": 0.25})["go"]
    assert not pep.verdict(table, mri, None)["go"]  # speed not measured: no go
    slow3d = {"shipped": mri["shipped"], "candidate": {"line_3d": _mri3d(0.78, 0.51)}}
    assert not pep.verdict(table, slow3d, fast)["clauses"]["3_3d_breast1_brain1_duke"]
    worse = _csv(tmp_path / "w.csv", lambda s, p, i: 0.615 if s == "mri_slices" else 0.59)
    table_w = {f"{s}/{p}": pep.paired(ref, worse, s, p) for s in pep.SOURCES for p in pep.PROMPTS}
    assert pep.verdict(table_w, mri, fast)["clauses"] == {
        "1_ispy1_line_plus_0.010": True, "2_none_worse_than_0.005": False, "3_3d_breast1_brain1_duke": True,
        "4_speed_2d_line_le_0.20s": True}
